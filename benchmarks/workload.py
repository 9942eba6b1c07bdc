"""The load: realistic GenAI traffic, pre-serialized once so sending it costs the generator nothing.

Why mixed conventions: the gateway's derivation cost depends on which keys a span carries (a
span in OpenInference or Vercel AI SDK form misses the OTel fast path and falls through to other
table rows), so a benchmark of OTel-only spans would flatter it. Each request therefore mixes
spans in the forms real instrumentations emit today (see ``/work/shared/reference`` and
``gateway/derive/conventions.py``):

* OTel GenAI current (``gen_ai.provider.name``, cache read/write, reasoning), incl. the agent and
  tool spans that must *not* be counted twice;
* OTel GenAI deprecated (``gen_ai.system``, ``prompt_tokens``/``completion_tokens``);
* OpenInference (``llm.*``, ``openinference.span.kind``), with a cost on the span;
* OpenLLMetry/Traceloop (``llm.request.type``, ``traceloop.*``, legacy cache keys);
* Vercel AI SDK (``ai.*``: the outer ``ai.streamText`` and the inner ``ai.streamText.doStream``);
* and a share of non-AI spans (HTTP server, database, outgoing HTTP) as a real service sends.

Every span carries 10-15 attributes; tenants and users are few enough (12 and 40) that the derived
series stay under the gateway's per-metric cap, as in a deployment configured for its traffic.
Requests group spans by service (one ``ResourceSpans`` per service) and by instrumentation scope,
as SDKs do. Requests are built with a seeded RNG, so a run is reproducible; a pool of 65,536 distinct spans
is cycled (``DISTINCT_GENAI_SPANS``: more distinct attribute values than the gateway memoizes).

The ``trace10k`` workload is the collector testbed's ``Trace10kSPS`` data (the perf-test data
provider): 100 tiny CLIENT spans per request with two int attributes and no resource attributes.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

Workload: TypeAlias = Literal["genai", "trace10k"]
AttrValue: TypeAlias = str | int | float | bool | list[str]
Attrs: TypeAlias = list[tuple[str, AttrValue]]

_BASE_TIME_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z: fixed, so runs are reproducible
_CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
_INTERNAL = Span.SpanKind.SPAN_KIND_INTERNAL
_SERVER = Span.SpanKind.SPAN_KIND_SERVER


@dataclass(frozen=True, slots=True)
class PreparedLoad:
    """Serialized requests to cycle through, and how many spans each one carries."""

    workload: Workload
    batch_size: int
    requests: tuple[bytes, ...]
    spans_per_request: int

    @property
    def mean_request_bytes(self) -> float:
        return sum(len(r) for r in self.requests) / len(self.requests)


@dataclass(frozen=True, slots=True)
class _Template:
    """One kind of span: which scope emits it, its name, kind, and attribute maker."""

    scope: str
    weight: float
    kind: int
    name: Callable[[random.Random], str]
    attrs: Callable[[random.Random], Attrs]
    ai: bool = True


_OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o3-mini", "gpt-4.1")
_ANTHROPIC_MODELS = ("claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022", "claude-sonnet-4-20250514")
_EMBED_MODELS = ("text-embedding-3-small", "text-embedding-3-large")
_TENANTS = tuple(f"tenant-{i:02d}" for i in range(12))
# The gateway's default tenant keys include user.id and enduser.id: 40 users keep every derived
# metric under its series cap (2000), as a deployment would configure it. Beyond the cap every
# new label set takes the overflow path, which is a separate scenario, not the common case.
_USERS = 40
_SERVICES = ("chat-api", "rag-worker", "agent-runner", "support-bot")
_FINISH = ("stop", "length", "tool_calls")


def _tokens(rng: random.Random, low: int, high: int) -> int:
    return rng.randint(low, high)


def _otel_chat(rng: random.Random) -> Attrs:
    model = rng.choice(_OPENAI_MODELS)
    inp = _tokens(rng, 200, 6000)
    return [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", model),
        ("gen_ai.response.model", f"{model}-2025-04-14"),
        ("gen_ai.usage.input_tokens", inp),
        ("gen_ai.usage.output_tokens", _tokens(rng, 20, 900)),
        ("gen_ai.usage.cache_read.input_tokens", inp // 2),
        ("gen_ai.request.max_tokens", 1024),
        ("gen_ai.request.temperature", 0.2),
        ("gen_ai.response.id", f"chatcmpl-{rng.getrandbits(64):016x}"),
        ("gen_ai.response.finish_reasons", [rng.choice(_FINISH)]),
        ("server.address", "api.openai.com"),
        ("gen_ai.conversation.id", f"conv-{rng.getrandbits(32):08x}"),
        ("tenant.id", rng.choice(_TENANTS)),
    ]


def _otel_anthropic_stream(rng: random.Random) -> Attrs:
    model = rng.choice(_ANTHROPIC_MODELS)
    cache_read = _tokens(rng, 0, 4000)
    cache_write = _tokens(rng, 0, 1000)
    return [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "anthropic"),
        ("gen_ai.request.model", model),
        ("gen_ai.response.model", model),
        ("gen_ai.usage.input_tokens", _tokens(rng, 100, 2000) + cache_read + cache_write),
        ("gen_ai.usage.output_tokens", _tokens(rng, 50, 2000)),
        ("gen_ai.usage.cache_read.input_tokens", cache_read),
        ("gen_ai.usage.cache_write.input_tokens", cache_write),
        ("gen_ai.usage.reasoning.output_tokens", _tokens(rng, 0, 400)),
        ("gen_ai.request.stream", True),
        ("gen_ai.response.time_to_first_chunk", round(rng.uniform(0.2, 1.5), 3)),
        ("gen_ai.response.finish_reasons", ["end_turn"]),
        ("server.address", "api.anthropic.com"),
        ("enduser.id", f"user-{rng.randint(1, _USERS)}"),
    ]


def _otel_embeddings(rng: random.Random) -> Attrs:
    model = rng.choice(_EMBED_MODELS)
    return [
        ("gen_ai.operation.name", "embeddings"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", model),
        ("gen_ai.response.model", model),
        ("gen_ai.usage.input_tokens", _tokens(rng, 8, 800)),
        ("gen_ai.request.encoding_formats", ["float"]),
        ("gen_ai.embeddings.dimension.count", 1536),
        ("server.address", "api.openai.com"),
        ("server.port", 443),
        ("tenant.id", rng.choice(_TENANTS)),
    ]


def _otel_agent(rng: random.Random) -> Attrs:
    return [
        ("gen_ai.operation.name", "invoke_agent"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.agent.name", rng.choice(("planner", "researcher", "support"))),
        ("gen_ai.agent.id", f"agent-{rng.randint(1, 9)}"),
        ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.usage.input_tokens", _tokens(rng, 2000, 20000)),  # aggregate: must not be counted
        ("gen_ai.usage.output_tokens", _tokens(rng, 200, 3000)),
        ("gen_ai.conversation.id", f"conv-{rng.getrandbits(32):08x}"),
        ("tenant.id", rng.choice(_TENANTS)),
        ("server.address", "agents.internal"),
    ]


def _otel_tool(rng: random.Random) -> Attrs:
    return [
        ("gen_ai.operation.name", "execute_tool"),
        ("gen_ai.tool.name", rng.choice(("search_docs", "get_weather", "sql_query"))),
        ("gen_ai.tool.type", "function"),
        ("gen_ai.tool.call.id", f"call_{rng.getrandbits(48):012x}"),
        ("gen_ai.agent.name", "planner"),
        ("gen_ai.conversation.id", f"conv-{rng.getrandbits(32):08x}"),
        ("code.function.name", "run_tool"),
        ("code.file.path", "/app/agent/tools.py"),
        ("thread.id", rng.randint(1, 64)),
        ("tenant.id", rng.choice(_TENANTS)),
    ]


def _otel_deprecated(rng: random.Random) -> Attrs:
    model = rng.choice(_OPENAI_MODELS)
    return [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.system", rng.choice(("openai", "az.ai.openai"))),
        ("gen_ai.request.model", model),
        ("gen_ai.response.model", model),
        ("gen_ai.usage.prompt_tokens", _tokens(rng, 100, 4000)),
        ("gen_ai.usage.completion_tokens", _tokens(rng, 10, 800)),
        ("gen_ai.openai.request.seed", 42),
        ("gen_ai.openai.response.service_tier", "default"),
        ("gen_ai.request.temperature", 0.7),
        ("gen_ai.request.top_p", 1.0),
        ("gen_ai.response.finish_reasons", ["stop"]),
        ("server.address", "example.openai.azure.com"),
        ("user.id", f"user-{rng.randint(1, _USERS)}"),
    ]


def _openinference_llm(rng: random.Random) -> Attrs:
    model = rng.choice(_OPENAI_MODELS)
    prompt = _tokens(rng, 100, 5000)
    completion = _tokens(rng, 10, 900)
    return [
        ("openinference.span.kind", "LLM"),
        ("llm.model_name", model),
        ("llm.provider", "openai"),
        ("llm.system", "openai"),
        ("llm.token_count.prompt", prompt),
        ("llm.token_count.completion", completion),
        ("llm.token_count.total", prompt + completion),
        ("llm.token_count.prompt_details.cache_read", prompt // 4),
        ("llm.invocation_parameters", '{"temperature": 0.1, "max_tokens": 1024}'),
        ("llm.cost.total", round(rng.uniform(0.0001, 0.05), 6)),
        ("session.id", f"sess-{rng.getrandbits(32):08x}"),
        ("user.id", f"user-{rng.randint(1, _USERS)}"),
        ("input.mime_type", "application/json"),
        ("output.mime_type", "application/json"),
    ]


def _openinference_chain(rng: random.Random) -> Attrs:
    return [
        ("openinference.span.kind", rng.choice(("CHAIN", "AGENT", "RETRIEVER"))),
        ("input.value", "What is the refund policy for annual plans?"),
        ("input.mime_type", "text/plain"),
        ("output.value", "Annual plans can be refunded within 30 days."),
        ("output.mime_type", "text/plain"),
        ("session.id", f"sess-{rng.getrandbits(32):08x}"),
        ("user.id", f"user-{rng.randint(1, _USERS)}"),
        ("metadata", '{"env": "prod"}'),
        ("tag.tags", ["rag", "support"]),
        ("llm.token_count.total", _tokens(rng, 1000, 9000)),  # aggregate on a CHAIN/AGENT span
    ]


def _traceloop_chat(rng: random.Random) -> Attrs:
    model = rng.choice(_ANTHROPIC_MODELS)
    inp = _tokens(rng, 200, 3000)
    out = _tokens(rng, 20, 1000)
    return [
        ("llm.request.type", "chat"),
        ("gen_ai.provider.name", "anthropic"),
        ("gen_ai.request.model", model),
        ("gen_ai.response.model", model),
        ("gen_ai.usage.input_tokens", inp),
        ("gen_ai.usage.output_tokens", out),
        ("gen_ai.usage.cache_read_input_tokens", inp // 3),
        ("gen_ai.usage.cache_creation_input_tokens", inp // 10),
        ("llm.usage.total_tokens", inp + out),
        ("llm.is_streaming", False),
        ("gen_ai.request.max_tokens", 2048),
        ("traceloop.workflow.name", "answer_ticket"),
        ("traceloop.entity.name", "anthropic.chat"),
        ("traceloop.association.properties.tenant_id", rng.choice(_TENANTS)),
    ]


def _traceloop_mistral(rng: random.Random) -> Attrs:
    return [
        ("llm.request.type", "chat"),
        ("gen_ai.system", "mistral_ai"),
        ("gen_ai.request.model", "mistral-large-latest"),
        ("gen_ai.response.model", "mistral-large-2411"),
        ("gen_ai.usage.prompt_tokens", _tokens(rng, 100, 3000)),
        ("gen_ai.usage.completion_tokens", _tokens(rng, 10, 600)),
        ("llm.usage.total_tokens", _tokens(rng, 200, 3600)),
        ("gen_ai.request.temperature", 0.3),
        ("traceloop.workflow.name", "summarize"),
        ("traceloop.entity.name", "mistralai.chat"),
        ("traceloop.span.kind", "task"),
    ]


def _vercel_outer(rng: random.Random) -> Attrs:
    return [
        ("operation.name", "ai.streamText"),
        ("ai.operationId", "ai.streamText"),
        ("ai.model.id", "gpt-4o"),
        ("ai.model.provider", "openai.chat"),
        ("ai.usage.inputTokens", _tokens(rng, 500, 8000)),  # outer span: usage repeated, not a leaf
        ("ai.usage.outputTokens", _tokens(rng, 50, 1500)),
        ("ai.telemetry.functionId", "chat-route"),
        ("ai.telemetry.metadata.userId", f"user-{rng.randint(1, _USERS)}"),
        ("ai.settings.maxRetries", 2),
        ("ai.response.finishReason", "stop"),
    ]


def _vercel_inner(rng: random.Random) -> Attrs:
    model = rng.choice(("gpt-4o", "gpt-4o-mini"))
    inp = _tokens(rng, 500, 8000)
    return [
        ("operation.name", "ai.streamText.doStream"),
        ("ai.operationId", "ai.streamText.doStream"),
        ("ai.model.id", model),
        ("ai.model.provider", "openai.chat"),
        ("ai.usage.inputTokens", inp),
        ("ai.usage.outputTokens", _tokens(rng, 50, 1500)),
        ("ai.usage.cachedInputTokens", inp // 5),
        ("ai.response.model", f"{model}-2024-08-06"),
        ("ai.response.finishReason", "stop"),
        ("ai.response.msToFirstChunk", round(rng.uniform(150.0, 900.0), 1)),
        ("gen_ai.system", "openai.chat"),
        ("gen_ai.request.model", model),
        ("ai.telemetry.functionId", "chat-route"),
        ("ai.telemetry.metadata.userId", f"user-{rng.randint(1, _USERS)}"),
    ]


def _http_server(rng: random.Random) -> Attrs:
    route = rng.choice(("/v1/chat", "/v1/search", "/healthz", "/v1/tickets/{id}"))
    return [
        ("http.request.method", rng.choice(("GET", "POST"))),
        ("http.route", route),
        ("url.path", route.replace("{id}", str(rng.randint(1, 9999)))),
        ("url.scheme", "https"),
        ("http.response.status_code", rng.choice((200, 200, 200, 201, 404, 500))),
        ("server.address", "chat.example.com"),
        ("server.port", 443),
        ("network.protocol.version", "1.1"),
        ("client.address", f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"),
        ("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
        ("http.request.body.size", rng.randint(100, 9000)),
    ]


def _db_client(rng: random.Random) -> Attrs:
    return [
        ("db.system.name", "postgresql"),
        ("db.namespace", "app"),
        ("db.operation.name", rng.choice(("SELECT", "INSERT", "UPDATE"))),
        ("db.collection.name", rng.choice(("tickets", "users", "embeddings"))),
        ("db.query.text", "SELECT id, body FROM tickets WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 20"),
        ("server.address", "db.internal"),
        ("server.port", 5432),
        ("network.peer.address", "10.1.0.7"),
        ("db.response.returned_rows", rng.randint(0, 20)),
        ("code.function.name", "load_tickets"),
    ]


def _http_client(rng: random.Random) -> Attrs:
    return [
        ("http.request.method", "GET"),
        ("url.full", f"https://search.internal/api/v2/query?q=refund&page={rng.randint(1, 5)}"),
        ("server.address", "search.internal"),
        ("server.port", 443),
        ("http.response.status_code", 200),
        ("network.protocol.name", "http"),
        ("network.protocol.version", "2"),
        ("http.request.resend_count", 0),
        ("http.response.body.size", rng.randint(1000, 90000)),
        ("network.peer.address", "10.2.0.12"),
    ]


def _model_name(prefix: str) -> Callable[[random.Random], str]:
    return lambda rng: f"{prefix} {rng.choice(_OPENAI_MODELS)}"


def _fixed(name: str) -> Callable[[random.Random], str]:
    return lambda rng: name


# Weights: about 70 % of spans are GenAI spans, 30 % ordinary service spans.
_TEMPLATES: tuple[_Template, ...] = (
    _Template("opentelemetry.instrumentation.openai_v2", 14, _CLIENT, _model_name("chat"), _otel_chat),
    _Template("opentelemetry.instrumentation.anthropic", 6, _CLIENT, _fixed("chat claude"), _otel_anthropic_stream),
    _Template("opentelemetry.instrumentation.openai_v2", 5, _CLIENT, _fixed("embeddings"), _otel_embeddings),
    _Template("opentelemetry.instrumentation.openai_agents", 3, _INTERNAL, _fixed("invoke_agent"), _otel_agent),
    _Template("opentelemetry.instrumentation.openai_agents", 4, _INTERNAL, _fixed("execute_tool"), _otel_tool),
    _Template("opentelemetry.instrumentation.openai", 8, _CLIENT, _fixed("openai.chat"), _otel_deprecated),
    _Template("openinference.instrumentation.openai", 8, _INTERNAL, _fixed("ChatCompletion"), _openinference_llm),
    _Template("openinference.instrumentation.langchain", 4, _INTERNAL, _fixed("RetrievalQA"), _openinference_chain),
    _Template("opentelemetry.instrumentation.anthropic", 7, _CLIENT, _fixed("anthropic.chat"), _traceloop_chat),
    _Template("opentelemetry.instrumentation.mistralai", 3, _CLIENT, _fixed("mistralai.chat"), _traceloop_mistral),
    _Template("ai", 3, _INTERNAL, _fixed("ai.streamText"), _vercel_outer),
    _Template("ai", 5, _CLIENT, _fixed("ai.streamText.doStream"), _vercel_inner),
    _Template("opentelemetry.instrumentation.fastapi", 14, _SERVER, _fixed("POST /v1/chat"), _http_server, ai=False),
    _Template("opentelemetry.instrumentation.asyncpg", 10, _CLIENT, _fixed("SELECT app"), _db_client, ai=False),
    _Template("opentelemetry.instrumentation.httpx", 6, _CLIENT, _fixed("GET"), _http_client, ai=False),
)
_WEIGHTS = tuple(t.weight for t in _TEMPLATES)


def _any_value(value: AttrValue) -> AnyValue:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value]))
    return AnyValue(string_value=value)


def _key_values(attrs: Attrs) -> list[KeyValue]:
    return [KeyValue(key=key, value=_any_value(value)) for key, value in attrs]


def _resource(service: str, index: int) -> Resource:
    return Resource(
        attributes=_key_values(
            [
                ("service.name", service),
                ("service.version", "1.8.2"),
                ("service.instance.id", f"{service}-{index}"),
                ("deployment.environment.name", "production"),
                ("telemetry.sdk.language", "python"),
                ("telemetry.sdk.name", "opentelemetry"),
                ("telemetry.sdk.version", "1.38.0"),
                ("host.name", f"node-{index % 7}"),
            ]
        )
    )


def _genai_span(rng: random.Random, template: _Template, start_ns: int) -> Span:
    duration_ns = rng.randint(5_000_000, 9_000_000_000) if template.ai else rng.randint(200_000, 300_000_000)
    error = rng.random() < 0.03
    attrs = template.attrs(rng)
    if error:
        attrs.append(("error.type", rng.choice(("timeout", "rate_limit_exceeded", "500"))))
    return Span(
        trace_id=rng.getrandbits(128).to_bytes(16, "big"),
        span_id=rng.getrandbits(64).to_bytes(8, "big"),
        parent_span_id=rng.getrandbits(64).to_bytes(8, "big"),
        name=template.name(rng),
        kind=template.kind,  # type: ignore[arg-type]
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ns,
        attributes=_key_values(attrs),
        status=Status(code=Status.StatusCode.STATUS_CODE_ERROR if error else Status.StatusCode.STATUS_CODE_UNSET),
    )


def genai_request(rng: random.Random, spans: int) -> ExportTraceServiceRequest:
    """One request of ``spans`` mixed spans, grouped by service and instrumentation scope."""
    by_service: dict[str, dict[str, list[Span]]] = {}
    for index in range(spans):
        template = rng.choices(_TEMPLATES, weights=_WEIGHTS)[0]
        service = rng.choice(_SERVICES)
        span = _genai_span(rng, template, _BASE_TIME_NS + index * 1_000_000)
        by_service.setdefault(service, {}).setdefault(template.scope, []).append(span)
    request = ExportTraceServiceRequest()
    for service_index, (service, scopes) in enumerate(by_service.items()):
        resource_spans = ResourceSpans(resource=_resource(service, service_index))
        for scope, scope_spans in scopes.items():
            resource_spans.scope_spans.append(
                ScopeSpans(scope=InstrumentationScope(name=scope, version="0.50b0"), spans=scope_spans)
            )
        request.resource_spans.append(resource_spans)
    return request


def trace10k_request(trace_seq: int, first_span_seq: int, spans: int = 100) -> ExportTraceServiceRequest:
    """The testbed perf data provider's batch: CLIENT spans with two int attributes, empty resource."""
    scope = ScopeSpans()
    for i in range(spans):
        span_seq = first_span_seq + i
        start_ns = _BASE_TIME_NS + (i + trace_seq * 1000) * 1_000_000_000
        scope.spans.append(
            Span(
                trace_id=trace_seq.to_bytes(16, "big"),
                span_id=span_seq.to_bytes(8, "big"),
                name=f"load-generator-span{span_seq + trace_seq * 1000}",
                kind=_CLIENT,
                start_time_unix_nano=start_ns,
                end_time_unix_nano=start_ns + 1_000_000,
                attributes=_key_values(
                    [("load_generator.span_seq_num", span_seq), ("load_generator.trace_seq_num", trace_seq)]
                ),
            )
        )
    request = ExportTraceServiceRequest()
    request.resource_spans.append(ResourceSpans(scope_spans=[scope]))
    return request


DISTINCT_GENAI_SPANS = 65_536
"""Distinct spans in a GenAI load's pool, whatever the batch size.

Real traffic never repeats a span, and its ids, sizes, addresses and most token counts are new
values; the gateway's attribute memo remembers what it saw (``gateway/derive/attributes.py``).
Until 2026-11-23 ~20:00 UTC the pool was 16 requests (8,192 spans at 512 per request), cycled:
every attribute value came back within a second, all of them stayed in the memo and the working
set in the CPU caches, which flattered the gateway (in-process, a 128-request pool cost ~25-40 %
more CPU per span). 65,536 spans hold ~100k distinct attributes, more than the memo keeps."""
_POOL_FORMAT = 1  # bump when the file layout of a cached pool changes
LOAD_CACHE_DIR = Path(tempfile.gettempdir()) / "otel-ai-gateway-bench-load"
"""Where the load generators keep built pools (``prepare(cache_dir=...)``)."""


def default_pool(workload: Workload, batch_size: int) -> int:
    """Requests in the pool: ``DISTINCT_GENAI_SPANS`` spans of GenAI load; 16 Trace10kSPS requests
    (the testbed's spans carry nothing but sequence numbers, which the gateway does not memoize)."""
    return max(16, DISTINCT_GENAI_SPANS // batch_size) if workload == "genai" else 16


def prepare(
    workload: Workload,
    batch_size: int,
    pool: int | None = None,
    seed: int = 20260101,
    cache_dir: Path | None = None,
) -> PreparedLoad:
    """Build and serialize ``pool`` distinct requests of ``batch_size`` spans each (``default_pool``).

    Building 65,536 GenAI spans takes 7-12 s; with ``cache_dir`` the serialized pool is kept in a
    file named by everything it depends on (this module's source included), so only the first load
    generator of a run builds it.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if pool is None:
        pool = default_pool(workload, batch_size)
    cached: Path | None = None
    if cache_dir is not None:
        source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
        cached = cache_dir / f"{workload}-{batch_size}x{pool}-{seed}-{source}-v{_POOL_FORMAT}.pool"
        requests = _read_pool(cached)
        if requests is not None:
            return PreparedLoad(workload, batch_size, requests, batch_size)
    rng = random.Random(seed + batch_size)
    if workload == "genai":
        requests = tuple(genai_request(rng, batch_size).SerializeToString() for _ in range(pool))
    else:
        requests = tuple(
            trace10k_request(trace_seq=i + 1, first_span_seq=i * batch_size + 1, spans=batch_size).SerializeToString()
            for i in range(pool)
        )
    if cached is not None:
        _write_pool(cached, requests)
    return PreparedLoad(workload=workload, batch_size=batch_size, requests=requests, spans_per_request=batch_size)


_LENGTH = struct.Struct("<I")


def _read_pool(path: Path) -> tuple[bytes, ...] | None:
    """The requests of a pool file (each prefixed by its length), or None if there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    requests = []
    offset = 0
    while offset < len(data):
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        requests.append(data[offset : offset + length])
        offset += length
    return tuple(requests)


def _write_pool(path: Path, requests: tuple[bytes, ...]) -> None:
    """Write atomically (a temporary file renamed), so concurrent generators never read half a pool."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as out:
        for request in requests:
            out.write(_LENGTH.pack(len(request)))
            out.write(request)
    os.replace(temporary, path)
