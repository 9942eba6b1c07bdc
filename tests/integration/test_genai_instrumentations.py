"""Real openai client + each real instrumentation + the SDK's OTLP exporters -> a gateway -> /metrics.

The same four calls go through each instrumentation (OpenTelemetry's openai-v2, OpenInference,
OpenLLMetry/Traceloop) against the fake OpenAI server, whose usage numbers are fixed by the request
(tests/support/fake_openai.py):

* chat, "hello world, this is forty characters!!" (39 chars), max_tokens=10:
  39 input (9 cached), 10 output (5 reasoning)
* streamed chat with include_usage, "stream me please" (16 chars): 16 input (4 cached), 8 output (4 reasoning)
* embeddings of ["abcd", "efghij"]: 10 input
* chat with model fail-400: HTTP 400

What each library reports of that differs (docs/genai.md): openai-v2 2.4b0 reports no cache or
reasoning detail for chat completions and no TTFT; OpenLLMetry reports no reasoning for streams.
Expected costs are computed here with genai-prices' calc_price from exactly what each one reports.

The SDK exporters block, so every client call and the provider flush run in a worker thread while
the gateway serves on the test's event loop (SimpleSpanProcessor exports as each span ends).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from genai_prices import Usage, calc_price
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.conftest import RunningGateway, loopback_settings, sample_value, start_gateway
from tests.support.fake_openai import FakeOpenAI

pytestmark = [
    pytest.mark.integration,
    # opentelemetry-instrumentation-openai 0.62.4 declares a pydantic class-based Config at import time
    pytest.mark.filterwarnings(
        "ignore:Support for class-based `config` is deprecated:pydantic.warnings.PydanticDeprecatedSince20"
    ),
]

CHAT_PROMPT = "hello world, this is forty characters!!"
STREAM_PROMPT = "stream me please"
FIRST_CHUNK_DELAY = 0.05


@dataclass(frozen=True)
class Reported:
    """What one instrumentation puts on its spans for the four calls (docs/genai.md)."""

    cache_read: tuple[int, int]  # chat, stream
    reasoning: tuple[int, int]
    reports_ttft: bool


def _instrumentor(library: str) -> Any:
    if library == "openai_v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as V2Instrumentor

        return V2Instrumentor()
    if library == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceInstrumentor

        return OpenInferenceInstrumentor()
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor as TraceloopInstrumentor

    return TraceloopInstrumentor()


REPORTED = {
    "openai_v2": Reported(cache_read=(0, 0), reasoning=(0, 0), reports_ttft=False),
    "openinference": Reported(cache_read=(9, 4), reasoning=(5, 4), reports_ttft=True),
    "openllmetry": Reported(cache_read=(9, 4), reasoning=(5, 0), reports_ttft=True),
}
LIBRARIES = tuple(REPORTED)


@contextmanager
def instrumented(library: str, provider: TracerProvider) -> Iterator[None]:
    """One instrumentation wraps the openai module for the duration; unwrapped afterwards."""
    instrumentor = _instrumentor(library)
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def tracer_provider(gateway: RunningGateway, transport: str, service: str) -> TracerProvider:
    exporter: Any
    if transport == "grpc":
        exporter = GrpcSpanExporter(endpoint=gateway.grpc_target, insecure=True, timeout=10)
    else:
        exporter = HttpSpanExporter(endpoint=f"{gateway.http_url}/v1/traces", timeout=10)
    provider = TracerProvider(resource=Resource.create({"service.name": service, "tenant.id": "acme"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def make_calls(base_url: str) -> None:
    """The four calls, with the real synchronous client (run in a worker thread)."""
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    try:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": CHAT_PROMPT}], max_tokens=10
        )
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": STREAM_PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for _ in stream:
            pass
        client.embeddings.create(model="text-embedding-3-small", input=["abcd", "efghij"])
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="fail-400", messages=[{"role": "user", "content": "x"}])
    finally:
        client.close()


async def send_calls(gateway: RunningGateway, fake: FakeOpenAI, library: str, transport: str, service: str) -> None:
    provider = tracer_provider(gateway, transport, service)
    with instrumented(library, provider):
        await asyncio.to_thread(make_calls, fake.base_url)
    await asyncio.to_thread(provider.shutdown)


def usd(model: str, input_tokens: int, output_tokens: int, cache_read: int, reasoning: int) -> float:
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        output_reasoning_tokens=reasoning,
    )
    return float(calc_price(usage, model, provider_id="openai").total_price)


def expected_cost(reported: Reported) -> float:
    return (
        usd("gpt-4o-mini", 39, 10, reported.cache_read[0], reported.reasoning[0])
        + usd("gpt-4o-mini", 16, 8, reported.cache_read[1], reported.reasoning[1])
        + usd("text-embedding-3-small", 10, 0, 0, 0)
    )


@pytest.fixture
async def gateway() -> AsyncIterator[RunningGateway]:
    running = await start_gateway(loopback_settings())
    try:
        yield running
    finally:
        await running.gateway.shutdown()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(first_chunk_delay=FIRST_CHUNK_DELAY) as server:
        yield server


Metrics = Callable[[str, dict[str, str]], float]


async def scraped(gateway: RunningGateway) -> Metrics:
    exposition = await gateway.scrape()
    return lambda name, labels: sample_value(exposition, name, labels)


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize("library", LIBRARIES)
async def test_token_totals(gateway: RunningGateway, fake: FakeOpenAI, library: str, transport: str) -> None:
    """Input and output tokens over the four calls are exact, for every library and transport."""
    await send_calls(gateway, fake, library, transport, "chatbot")
    metric = await scraped(gateway)
    tokens = "gen_ai_client_tokens_total"
    assert {"input": 65.0, "output": 18.0, "chat_input": 55.0, "embeddings_input": 10.0} == {
        "input": metric(tokens, {"gen_ai_token_type": "input"}),
        "output": metric(tokens, {"gen_ai_token_type": "output"}),
        "chat_input": metric(tokens, {"gen_ai_token_type": "input", "gen_ai_operation_name": "chat"}),
        "embeddings_input": metric(tokens, {"gen_ai_token_type": "input", "gen_ai_operation_name": "embeddings"}),
    }


@pytest.mark.parametrize("library", LIBRARIES)
async def test_cache_and_reasoning_subsets(gateway: RunningGateway, fake: FakeOpenAI, library: str) -> None:
    """Cache-read and reasoning tokens are exactly what the library reported."""
    await send_calls(gateway, fake, library, "grpc", "chatbot")
    metric = await scraped(gateway)
    reported = REPORTED[library]
    assert (float(sum(reported.cache_read)), float(sum(reported.reasoning))) == (
        metric("gen_ai_client_tokens_total", {"gen_ai_token_type": "cache_read"}),
        metric("gen_ai_client_tokens_total", {"gen_ai_token_type": "reasoning"}),
    )


@pytest.mark.parametrize("library", LIBRARIES)
async def test_cost_matches_genai_prices(gateway: RunningGateway, fake: FakeOpenAI, library: str) -> None:
    """The cost counter equals genai-prices' price of what the library reported (to 1e-12 USD)."""
    await send_calls(gateway, fake, library, "http", "chatbot")
    metric = await scraped(gateway)
    assert expected_cost(REPORTED[library]) == pytest.approx(
        metric("gen_ai_client_cost_usd_total", {"cost_source": "genai_prices"}), abs=1e-12
    )


@pytest.mark.parametrize("library", LIBRARIES)
async def test_error_is_counted_once(gateway: RunningGateway, fake: FakeOpenAI, library: str) -> None:
    """The HTTP 400 is one duration observation labelled BadRequestError, whatever the library's spelling."""
    await send_calls(gateway, fake, library, "grpc", "chatbot")
    metric = await scraped(gateway)
    assert (1.0, 0.0) == (
        metric("gen_ai_client_operation_duration_seconds_count", {"error_type": "BadRequestError"}),
        metric("gen_ai_client_unpriced_operations_total", {}),
    )


@pytest.mark.parametrize("library", LIBRARIES)
async def test_labels_name_service_tenant_and_models(gateway: RunningGateway, fake: FakeOpenAI, library: str) -> None:
    """Series carry the resource's service and tenant, the request and the response model."""
    await send_calls(gateway, fake, library, "grpc", "chatbot")
    metric = await scraped(gateway)
    labels = {
        "service_name": "chatbot",
        "tenant_id": "acme",
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
        "gen_ai_response_model": "gpt-4o-mini-2024-07-18",
        "gen_ai_token_type": "input",
    }
    assert 55.0 == metric("gen_ai_client_tokens_total", labels)


@pytest.mark.parametrize("library", LIBRARIES)
async def test_time_to_first_token_where_reported(gateway: RunningGateway, fake: FakeOpenAI, library: str) -> None:
    """The streamed call gives one TTFT of at least the server's first-chunk delay, if the library says it."""
    await send_calls(gateway, fake, library, "grpc", "chatbot")
    metric = await scraped(gateway)
    count = metric("gen_ai_server_time_to_first_token_seconds_count", {})
    total = metric("gen_ai_server_time_to_first_token_seconds_sum", {})
    if REPORTED[library].reports_ttft:
        assert (1.0, True) == (count, FIRST_CHUNK_DELAY <= total < 5.0)
    else:
        assert 0.0 == count


async def test_identical_calls_give_identical_token_totals(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    """The three libraries, one service each, report the same input and output totals for the same calls."""
    for library in LIBRARIES:
        await send_calls(gateway, fake, library, "grpc", library)
    metric = await scraped(gateway)
    totals = {
        library: (
            metric("gen_ai_client_tokens_total", {"service_name": library, "gen_ai_token_type": "input"}),
            metric("gen_ai_client_tokens_total", {"service_name": library, "gen_ai_token_type": "output"}),
        )
        for library in LIBRARIES
    }
    assert {library: (65.0, 18.0) for library in LIBRARIES} == totals
