"""A flood against a gateway whose only backend never answers: it pushes back and stays bounded.

The gateway runs as a child process (``python -m gateway``) with one ``otlp_grpc`` exporter pointing
at a black hole (a TCP listener that accepts and never answers), so its 64 MiB memory queue fills
within the first seconds and stays full. Several concurrent clients then post ~1 MiB requests of many
spans over OTLP/HTTP and OTLP/gRPC for ~15 s, retrying at once whatever the answer. The receivers must
push back (429 / RESOURCE_EXHAUSTED, counted on /metrics as ``queue_full`` or ``memory_limit``), the
process must keep answering ``/health/live``, and its peak RSS (``VmHWM``) must stay under 400 MiB.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from tests.conftest import sample_value
from tests.support.exporting import GatewayProcess, gateway_process
from tests.support.otlp_backend import black_hole

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
FLOOD_SECONDS = 15.0
HTTP_CLIENTS = 4
GRPC_CLIENTS = 4
REQUEST_BYTES = 1_000_000  # just under aiohttp's 1 MiB bytes-body threshold (a ResourceWarning past it)
PEAK_RSS_LIMIT_KIB = 400 * 1024

CONFIG = """
receivers:
  otlp:
    grpc: {{endpoint: "127.0.0.1:0"}}
    http: {{endpoint: "127.0.0.1:0"}}
prometheus: {{endpoint: "127.0.0.1:0"}}
limits:
  max_inflight_bytes: 4MiB
  max_concurrent_requests: 64
exporters:
  hole:
    type: otlp_grpc
    endpoint: http://127.0.0.1:{port}
    timeout: 1s
    compression: none
    batch: {{timeout: 10ms}}
    retry: {{initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 60s}}
    queue: {{max_bytes: 64MiB, drain_timeout: 200ms}}
pipelines:
  traces: {{exporters: [hole]}}
"""


def flood_request(target_bytes: int = REQUEST_BYTES) -> tuple[bytes, int]:
    """An ExportTraceServiceRequest of about ``target_bytes`` (a few thousand small spans), and its span count."""

    def span(n: int) -> Span:
        return Span(
            trace_id=n.to_bytes(16, "big") or b"\x01" * 16,
            span_id=(n + 1).to_bytes(8, "big"),
            name=f"GET /api/items/{n}",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=1_700_000_000_000_000_000 + n,
            end_time_unix_nano=1_700_000_000_000_100_000 + n,
            attributes=[
                KeyValue(key="http.request.method", value=AnyValue(string_value="GET")),
                KeyValue(key="url.path", value=AnyValue(string_value=f"/api/items/{n}?page=1&size=100")),
                KeyValue(key="http.response.status_code", value=AnyValue(int_value=200)),
                KeyValue(key="user_agent.original", value=AnyValue(string_value="flood-test/1.0 (loopback)")),
            ],
        )

    count = target_bytes // (span(1).ByteSize() + 3)
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="flood"))]),
                scope_spans=[
                    ScopeSpans(scope=InstrumentationScope(name="flood"), spans=[span(n) for n in range(count)])
                ],
            )
        ]
    )
    return request.SerializeToString(), count


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")


async def http_client(
    session: aiohttp.ClientSession, url: str, body: bytes, deadline: float, seen: Counter[str]
) -> None:
    headers = {"Content-Type": "application/x-protobuf"}
    while time.monotonic() < deadline:
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                seen[f"http {response.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            seen[f"http {type(exc).__name__}"] += 1
            await asyncio.sleep(0.05)


async def grpc_client(channel: grpc.aio.Channel, body: bytes, deadline: float, seen: Counter[str]) -> None:
    call = channel.unary_unary(TRACE_EXPORT, request_serializer=None, response_deserializer=None)
    while time.monotonic() < deadline:
        try:
            await call(body, timeout=10)
            seen["grpc OK"] += 1
        except grpc.aio.AioRpcError as exc:
            seen[f"grpc {exc.code().name}"] += 1
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                await asyncio.sleep(0.05)


async def watch(gateway: GatewayProcess, session: aiohttp.ClientSession, deadline: float, live: list[int]) -> None:
    """/health/live once a second while the flood runs."""
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{gateway.metrics_url}/health/live") as response:
                live.append(response.status)
        except (aiohttp.ClientError, TimeoutError):
            live.append(-1)
        await asyncio.sleep(1.0)


async def test_a_flood_against_a_dead_backend_is_pushed_back_with_bounded_memory(tmp_path: Path) -> None:
    body, spans = flood_request()
    seen: Counter[str] = Counter()
    live: list[int] = []
    async with black_hole() as hole:
        config = tmp_path / "gateway.yaml"
        config.write_text(CONFIG.format(port=hole.port))
        async with gateway_process(config) as gateway:
            grpc_target = f"127.0.0.1:{gateway.find('gateway_started')[0]['grpc_port']}"
            timeout = aiohttp.ClientTimeout(total=10)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                aiohttp.ClientSession(timeout=timeout) as health,
                grpc.aio.insecure_channel(grpc_target) as channel,
            ):
                deadline = time.monotonic() + FLOOD_SECONDS
                url = f"{gateway.http_url}/v1/traces"
                await asyncio.gather(
                    *(http_client(session, url, body, deadline, seen) for _ in range(HTTP_CLIENTS)),
                    *(grpc_client(channel, body, deadline, seen) for _ in range(GRPC_CLIENTS)),
                    watch(gateway, health, deadline, live),
                )
                async with health.get(f"{gateway.metrics_url}/health/live") as response:
                    live.append(response.status)
                async with health.get(f"{gateway.metrics_url}/metrics") as response:
                    exposition = await response.text()
            peak = peak_rss_kib(gateway.process.pid)
            assert gateway.process.returncode is None, "the gateway died under the flood"
            assert 0 == await gateway.stop()
    queue_full = sample_value(exposition, "gateway_receiver_refused_spans_total", {"reason": "queue_full"}) / spans
    memory_limit = sample_value(exposition, "gateway_receiver_refused_requests_total", {"reason": "memory_limit"})
    queued = sample_value(exposition, "gateway_exporter_queue_size_bytes", {"exporter": "hole"})
    summary = f"{len(body)} B requests of {spans} spans; answers {dict(seen)}; "
    summary += f"refused requests: queue_full {queue_full}, memory_limit {memory_limit}; "
    summary += f"queue {queued / 2**20:.1f} MiB; /health/live {live}; peak RSS {peak / 1024:.0f} MiB"
    print(summary)
    pushed_back = seen["http 429"] + seen["grpc RESOURCE_EXHAUSTED"]
    assert seen["http 200"] + seen["grpc OK"] >= 1, summary  # the queue took what it could hold
    assert pushed_back >= 10, summary
    assert seen["http 429"] >= 1 and seen["grpc RESOURCE_EXHAUSTED"] >= 1, summary
    assert queue_full + memory_limit == pushed_back, summary  # every refusal counted, with its reason
    assert set(seen) <= {"http 200", "http 429", "grpc OK", "grpc RESOURCE_EXHAUSTED"}, summary
    assert len(live) >= FLOOD_SECONDS / 2 and set(live) == {200}, summary
    assert queued > 32 * 2**20, summary  # the queue is full: the black hole took nothing
    assert peak < PEAK_RSS_LIMIT_KIB, summary
