"""limits.max_items_per_request: a request of more items is refused before it is decoded, and counted.

Bodies come from the real OTel SDK encoders, except the hostile ones (empty entries by the million),
which no SDK would send. The 10M-span body runs against a gateway process so that its own peak RSS
can be read.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.exporters.retry import RETRY_INFO_KEY, STATUS_DETAILS_KEY
from gateway.settings import LimitsSettings, Settings
from proto_handlers import encode_request_json
from tests.conftest import RunningGateway, loopback_settings, start_gateway
from tests.support.exporting import gateway_process
from tests.support.otel_sdk import make_log_records, make_spans
from tests.support.wire import traces_request

LIMIT = 1000
PROTOBUF = "application/x-protobuf"
GRPC_TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def refusal(limit: int, what: str) -> str:
    return (
        f"request holds more than {limit} {what}, the limit per request "
        "(limits.max_items_per_request); send smaller batches"
    )


def spans_body(count: int) -> bytes:
    return encode_spans(make_spans(count)).SerializeToString()  # type: ignore[no-any-return]


def log_records_body(count: int) -> bytes:
    return encode_logs(make_log_records(count)).SerializeToString()  # type: ignore[arg-type, no-any-return]


def data_points_body(count: int) -> bytes:
    """One SDK counter with ``count`` attribute sets: ``count`` data points."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("tests").create_counter("requests")
    for index in range(count):
        counter.add(1, {"route": f"/{index}"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return encode_metrics(data).SerializeToString()  # type: ignore[no-any-return]


@pytest.fixture
async def limited() -> AsyncIterator[RunningGateway]:
    """A gateway allowing 1000 items per request."""
    running = await start_gateway(loopback_settings(Settings(limits=LimitsSettings(max_items_per_request=LIMIT))))
    try:
        yield running
    finally:
        await running.gateway.shutdown()


async def post(url: str, body: bytes, content_type: str = PROTOBUF) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
        # A BytesIO, not bytes: aiohttp warns (an error here) about big raw bodies.
        session.post(url, data=io.BytesIO(body), headers={"Content-Type": content_type}) as response,
    ):
        return response.status, await response.read()


@pytest.mark.parametrize(
    ("signal", "body", "what"),
    [
        ("traces", spans_body(LIMIT + 1), "spans"),
        ("metrics", data_points_body(LIMIT + 1), "data points"),
        ("logs", log_records_body(LIMIT + 1), "log records"),
        ("traces", b"\x0a\x00" * (LIMIT + 1), "fields besides its spans"),
    ],
    ids=["spans", "data_points", "log_records", "empty_resource_spans"],
)
async def test_a_protobuf_request_over_the_limit_is_413_and_counted(
    limited: RunningGateway, signal: str, body: bytes, what: str
) -> None:
    """One entry over the limit: 413 with a RESOURCE_EXHAUSTED Status naming the limit, counted as too_many_items."""
    status, answer = await post(f"{limited.http_url}/v1/{signal}", body)
    assert (413, 8, refusal(LIMIT, what)) == (
        status,
        status_pb2.Status.FromString(answer).code,
        status_pb2.Status.FromString(answer).message,
    )
    assert 1.0 == await limited.value(
        "gateway_receiver_refused_requests_total", {"transport": "http", "signal": signal, "reason": "too_many_items"}
    )


@pytest.mark.parametrize(
    ("signal", "body", "accepted"),
    [
        ("traces", spans_body(LIMIT), "gateway_receiver_accepted_spans_total"),
        ("metrics", data_points_body(LIMIT), "gateway_receiver_accepted_metric_points_total"),
        ("logs", log_records_body(LIMIT), "gateway_receiver_accepted_log_records_total"),
    ],
    ids=["spans", "data_points", "log_records"],
)
async def test_a_protobuf_request_at_the_limit_is_accepted(
    limited: RunningGateway, signal: str, body: bytes, accepted: str
) -> None:
    """Exactly max_items_per_request items (a body long enough to be walked first) are accepted."""
    assert len(body) > 2 * LIMIT  # so the pre-decode walk ran on it
    status, _ = await post(f"{limited.http_url}/v1/{signal}", body)
    assert 200 == status
    assert float(LIMIT) == await limited.value(accepted, {"transport": "http"})


async def test_a_json_request_over_the_limit_is_413_and_counted(limited: RunningGateway) -> None:
    """OTLP/JSON is counted once decoded: the same 413, with the Status in JSON."""
    body = encode_request_json("traces", encode_spans(make_spans(LIMIT + 1)))
    status, answer = await post(f"{limited.http_url}/v1/traces", body, "application/json")
    assert 413 == status
    document = json.loads(answer)
    assert (8, refusal(LIMIT, "spans")) == (document["code"], document["message"])
    assert 1.0 == await limited.value(
        "gateway_receiver_refused_requests_total", {"transport": "http", "reason": "too_many_items"}
    )


async def test_a_grpc_request_over_the_limit_is_resource_exhausted_without_retry_info(
    limited: RunningGateway,
) -> None:
    """Over gRPC: RESOURCE_EXHAUSTED with the reason and no RetryInfo, so OTLP senders do not retry it."""
    async with grpc.aio.insecure_channel(limited.grpc_target) as channel:
        call = channel.unary_unary(GRPC_TRACES, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(spans_body(LIMIT + 1), timeout=30)
    trailers = caught.value.trailing_metadata() or ()
    assert (grpc.StatusCode.RESOURCE_EXHAUSTED, refusal(LIMIT, "spans"), []) == (
        caught.value.code(),
        caught.value.details(),
        [key for key, _ in trailers if key in (STATUS_DETAILS_KEY, RETRY_INFO_KEY)],
    )
    assert 1.0 == await limited.value(
        "gateway_receiver_refused_requests_total", {"transport": "grpc", "reason": "too_many_items"}
    )


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")


async def test_ten_million_empty_spans_are_refused_without_decoding(tmp_path: Path) -> None:
    """19 MiB of empty spans (1.8 GB once decoded) get 413 on the default limit, with the peak RSS
    of the gateway process growing by less than 200 MiB (measured: about 40, the body's copies)."""
    config = tmp_path / "gateway.yaml"
    config.write_text("receivers: {otlp: {http: {endpoint: '127.0.0.1:0'}}}\nprometheus: {endpoint: '127.0.0.1:0'}\n")
    body = traces_request(b"\x12\x00" * 10_000_000)  # ScopeSpans.spans, empty, ten million times
    async with gateway_process(config) as gateway:
        before = _peak_rss_kib(gateway.process.pid)
        started = time.monotonic()
        status, answer = await post(f"{gateway.http_url}/v1/traces", body)
        elapsed = time.monotonic() - started
        growth_mib = (_peak_rss_kib(gateway.process.pid) - before) / 1024
        assert (413, refusal(500_000, "spans")) == (status, status_pb2.Status.FromString(answer).message)
        assert growth_mib < 200, f"peak RSS grew by {growth_mib:.0f} MiB"
        assert elapsed < 10, f"refused after {elapsed:.1f} s"
        assert 1.0 == await gateway.value("gateway_receiver_refused_requests_total", {"reason": "too_many_items"})
        assert 0 == await gateway.stop()
