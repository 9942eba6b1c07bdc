"""Demo AI service for the compose stack: the real ``openai`` client, instrumented with
opentelemetry-instrumentation-openai-v2, calling an OpenAI-compatible fake LLM in the same process.

No API key and no network: ``fake_openai.FakeOpenAI`` (tests/support/fake_openai.py, copied next to
this file in the image) serves chat completions and embeddings on 127.0.0.1 with token usage that is a
function of the request. The spans go to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the gateway) with the SDK's
standard environment variables (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ...).

What an iteration does, so every dashboard panel has data after a few of them:

* a chat call and a streamed chat call per iteration (``gpt-4o-mini``, every third one ``gpt-4o``);
  on the streamed call the app records its time to first chunk on the instrumentation's span
  (``gen_ai.response.time_to_first_chunk``), since openai-v2 does not report one;
* with ``--embeddings``, an embeddings call (a RAG service);
* every fifth iteration a call the provider fails (HTTP 500) and one to a model no price list knows
  (``acme-distill-7b``: an unpriced operation);
* the tenant rotates over acme, globex and initech (``tenant.id`` on every span, from baggage).

``python app.py --iterations 5 --interval 0`` runs a bounded loop (the deployment tests do); the
default runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import random
import signal
import threading
import time
from typing import Any

import openai
from fake_openai import FakeOpenAI
from opentelemetry import baggage, context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

TENANTS = ("acme", "globex", "initech")
UNPRICED_MODEL = "acme-distill-7b"
FAILING_MODEL = "fail-500"  # the fake answers HTTP 500 with an OpenAI error body
PROMPTS = (
    "Summarise the attached incident report in three bullet points.",
    "Translate 'the invoice is overdue' into French and German.",
    "Which of these two contracts has the shorter notice period, and by how many days?",
    "Write a haiku about observability.",
)

# The span the instrumentation started last in this context (set by the processor below).
_current_llm_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar("current_llm_span", default=None)


class TenantAndTtftProcessor(SpanProcessor):
    """Copies the ``tenant.id`` baggage entry onto every span, and remembers the span just started so
    the app can add what the instrumentation does not measure (time to first chunk)."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        tenant = baggage.get_baggage("tenant.id", parent_context)
        if tenant is not None:
            span.set_attribute("tenant.id", str(tenant))
        _current_llm_span.set(span)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def one_iteration(client: openai.OpenAI, fake: FakeOpenAI, index: int, embeddings: bool, rng: random.Random) -> None:
    tenant = TENANTS[index % len(TENANTS)]
    token = context.attach(baggage.set_baggage("tenant.id", tenant))
    try:
        model = "gpt-4o" if index % 3 == 2 else "gpt-4o-mini"
        prompt = rng.choice(PROMPTS)
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], max_tokens=rng.randint(8, 64)
        )

        fake.first_chunk_delay = rng.uniform(0.05, 0.4)
        started = time.monotonic()
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt * 3}],
            max_tokens=rng.randint(16, 48),
            stream=True,
            stream_options={"include_usage": True},
        )
        span = _current_llm_span.get()
        first = True
        for _chunk in stream:
            if first and span is not None:
                span.set_attribute("gen_ai.response.time_to_first_chunk", time.monotonic() - started)
                first = False

        if embeddings:
            client.embeddings.create(model="text-embedding-3-small", input=[prompt, prompt[::-1]])

        if index % 5 == 4:
            with contextlib.suppress(openai.InternalServerError):
                client.chat.completions.create(model=FAILING_MODEL, messages=[{"role": "user", "content": prompt}])
            client.chat.completions.create(
                model=UNPRICED_MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=32
            )
    finally:
        context.detach(token)


async def run(args: argparse.Namespace, stop: threading.Event) -> None:
    async with FakeOpenAI() as fake:
        # The fake serves on this event loop; the synchronous client runs in a worker thread.
        await asyncio.to_thread(loop_calls, fake, args, stop)


def loop_calls(fake: FakeOpenAI, args: argparse.Namespace, stop: threading.Event) -> None:
    client = openai.OpenAI(base_url=fake.base_url, api_key="sk-demo-no-key-needed", max_retries=0)
    rng = random.Random(args.seed)
    index = 0
    try:
        while not stop.is_set() and (args.iterations == 0 or index < args.iterations):
            one_iteration(client, fake, index, args.embeddings, rng)
            index += 1
            stop.wait(args.interval)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=0, help="0: until SIGTERM")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between iterations")
    parser.add_argument("--embeddings", action="store_true", help="also call the embeddings API (a RAG service)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()

    # Resource.create() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the exporter reads
    # OTEL_EXPORTER_OTLP_ENDPOINT (http://gateway:4317 in compose).
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(TenantAndTtftProcessor())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=1000))
    OpenAIInstrumentor().instrument(tracer_provider=provider)

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        asyncio.run(run(args, stop))
    finally:
        provider.shutdown()  # flushes the batch processor


if __name__ == "__main__":
    main()
