"""Every kind of bad input gets the OTLP spec's answer with a reason, and the gateway stays up."""

from __future__ import annotations

import gzip
import zlib

import aiohttp
import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import RunningGateway, loopback_settings, start_gateway

TRACE_SERVICE = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def one_span_request() -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes(range(16))
    span.span_id = bytes(range(8))
    span.name = "ok"
    return request.SerializeToString()


async def post(
    gateway: RunningGateway, body: bytes, headers: dict[str, str], path: str = "/v1/traces"
) -> tuple[int, bytes, str]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(f"{gateway.http_url}{path}", data=body, headers=headers) as response,
    ):
        return response.status, await response.read(), response.headers.get("Content-Type", "")


async def assert_still_serving(gateway: RunningGateway) -> None:
    status, _, _ = await post(gateway, one_span_request(), PROTOBUF)
    assert 200 == status


async def test_undecodable_protobuf_is_400_with_a_status_body(running_gateway: RunningGateway) -> None:
    """A body that is not an ExportTraceServiceRequest gets 400 and a protobuf google.rpc.Status with the reason."""
    status, body, content_type = await post(running_gateway, b"\xff\xff\xff\xff", PROTOBUF)
    assert (400, "application/x-protobuf") == (status, content_type)
    decoded = status_pb2.Status.FromString(body)
    assert 3 == decoded.code  # INVALID_ARGUMENT
    assert "protobuf" in decoded.message
    await assert_still_serving(running_gateway)


async def test_invalid_json_is_400_with_a_json_status_body(running_gateway: RunningGateway) -> None:
    """Malformed OTLP/JSON gets 400 and the Status encoded as JSON, the request's own encoding."""
    status, body, content_type = await post(
        running_gateway, b'{"resourceSpans": [', {"Content-Type": "application/json"}
    )
    assert (400, "application/json") == (status, content_type)
    assert b'"code":3' in body.replace(b" ", b"")
    await assert_still_serving(running_gateway)


async def test_unsupported_content_type_is_415(running_gateway: RunningGateway) -> None:
    """Only application/x-protobuf and application/json are OTLP/HTTP content types."""
    status, body, _ = await post(running_gateway, b"hello", {"Content-Type": "text/plain"})
    assert 415 == status
    assert b"text/plain" in body


async def test_unsupported_content_encoding_is_415(running_gateway: RunningGateway) -> None:
    """A compression the gateway does not speak (brotli) is refused with 415, not guessed at."""
    status, body, _ = await post(running_gateway, b"abc", {**PROTOBUF, "Content-Encoding": "br"})
    assert 415 == status
    assert b"br" in body


async def test_get_is_405(running_gateway: RunningGateway) -> None:
    """The OTLP endpoints take POST only."""
    async with aiohttp.ClientSession() as session, session.get(f"{running_gateway.http_url}/v1/traces") as response:
        assert (405, "POST") == (response.status, response.headers.get("Allow"))


async def test_truncated_gzip_is_400(running_gateway: RunningGateway) -> None:
    """A gzip body cut short is a decode error with a reason, not a crash."""
    body = gzip.compress(one_span_request())[:-6]
    status, payload, _ = await post(running_gateway, body, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert 400 == status
    assert "gzip" in status_pb2.Status.FromString(payload).message
    await assert_still_serving(running_gateway)


async def test_body_over_the_limit_is_413() -> None:
    """A raw body over max_request_body_size is refused with 413 / RESOURCE_EXHAUSTED."""
    settings = loopback_settings()
    assert settings.http is not None
    running = await start_gateway(
        loopback_settings(http=type(settings.http)(endpoint=settings.http.endpoint, max_request_body_size=1024))
    )
    try:
        status, body, _ = await post(running, b"\x0a" * 2048, PROTOBUF)
        assert 413 == status
        assert 8 == status_pb2.Status.FromString(body).code
        await assert_still_serving(running)
    finally:
        await running.gateway.shutdown()


async def test_gzip_bomb_is_refused_at_the_decompressed_limit(running_gateway: RunningGateway) -> None:
    """64 MiB of zeros in a ~64 KiB gzip body exceed the 20 MiB decompressed limit: 413, process up."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(64)) + compressor.flush()
    assert len(bomb) < 100_000
    status, body, _ = await post(running_gateway, bomb, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert 413 == status
    assert "exceeds" in status_pb2.Status.FromString(body).message
    assert 1.0 == await running_gateway.value(
        "gateway_receiver_refused_requests_total", {"transport": "http", "reason": "too_large"}
    )
    await assert_still_serving(running_gateway)


async def grpc_export(target: str, body: bytes) -> grpc.aio.AioRpcError | bytes:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(TRACE_SERVICE, request_serializer=None, response_deserializer=None)
        try:
            return await call(body, timeout=5)  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as exc:
            return exc


async def test_grpc_undecodable_request_is_invalid_argument(running_gateway: RunningGateway) -> None:
    """Garbage bytes over gRPC get INVALID_ARGUMENT with the decode reason; the next request succeeds."""
    error = await grpc_export(running_gateway.grpc_target, b"\xff\xff\xff\xff")
    assert isinstance(error, grpc.aio.AioRpcError)
    assert grpc.StatusCode.INVALID_ARGUMENT == error.code()
    assert "protobuf" in (error.details() or "")
    assert b"" == await grpc_export(running_gateway.grpc_target, one_span_request())


async def test_grpc_message_over_the_limit_is_resource_exhausted(running_gateway: RunningGateway) -> None:
    """A request over the 4 MiB gRPC default is RESOURCE_EXHAUSTED, as the collector answers."""
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add().name = "x" * (5 * 1024 * 1024)
    error = await grpc_export(running_gateway.grpc_target, request.SerializeToString())
    assert isinstance(error, grpc.aio.AioRpcError)
    assert grpc.StatusCode.RESOURCE_EXHAUSTED == error.code()
    assert b"" == await grpc_export(running_gateway.grpc_target, one_span_request())


@pytest.mark.parametrize("path", ["/v1/metrics", "/v1/logs"])
async def test_every_signal_path_answers_bad_protobuf_with_400(running_gateway: RunningGateway, path: str) -> None:
    """Metrics and logs endpoints refuse garbage the same way traces do."""
    status, _, _ = await post(running_gateway, b"\xff\xff", PROTOBUF, path)
    assert 400 == status
