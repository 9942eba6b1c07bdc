"""API keys: unauthenticated writes are refused on both protocols; a key's tenant is bound to its data."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from gateway.auth import ApiKey, AuthSettings, hash_key
from tests.conftest import RunningGateway, loopback_settings, start_gateway
from tests.support.otel_sdk import make_spans

KEY = "acme-key-0123456789"


@pytest.fixture
async def secured_gateway() -> AsyncIterator[RunningGateway]:
    running = await start_gateway(loopback_settings(auth=AuthSettings((ApiKey(hash_key(KEY), "acme"),))))
    try:
        yield running
    finally:
        await running.gateway.shutdown()


async def grpc_send(gateway: RunningGateway, headers: dict[str, str] | None) -> SpanExportResult:
    exporter = GrpcSpanExporter(endpoint=gateway.grpc_target, insecure=True, headers=headers, timeout=5)
    try:
        return await asyncio.to_thread(exporter.export, make_spans(2))
    finally:
        exporter.shutdown()


async def http_send(gateway: RunningGateway, headers: dict[str, str] | None) -> SpanExportResult:
    exporter = HttpSpanExporter(endpoint=f"{gateway.http_url}/v1/traces", headers=headers, timeout=5)
    try:
        return await asyncio.to_thread(exporter.export, make_spans(2))
    finally:
        exporter.shutdown()


async def test_grpc_without_a_key_is_unauthenticated(secured_gateway: RunningGateway) -> None:
    """No authorization metadata: the SDK's export fails and the refusal is counted, no span accepted."""
    assert SpanExportResult.FAILURE == await grpc_send(secured_gateway, None)
    assert 1.0 == await secured_gateway.value(
        "gateway_receiver_refused_requests_total", {"transport": "grpc", "reason": "unauthenticated"}
    )
    assert 0.0 == await secured_gateway.value("gateway_receiver_accepted_spans_total", {"transport": "grpc"})


async def test_grpc_with_a_wrong_key_is_unauthenticated(secured_gateway: RunningGateway) -> None:
    """A key whose hash is not configured is refused."""
    assert SpanExportResult.FAILURE == await grpc_send(secured_gateway, {"authorization": "Bearer nope"})
    assert 0.0 == await secured_gateway.value("gateway_receiver_accepted_spans_total", {"transport": "grpc"})


async def test_grpc_with_the_key_is_accepted(secured_gateway: RunningGateway) -> None:
    """The configured key in gRPC metadata is accepted."""
    assert SpanExportResult.SUCCESS == await grpc_send(secured_gateway, {"authorization": f"Bearer {KEY}"})
    assert 2.0 == await secured_gateway.value("gateway_receiver_accepted_spans_total", {"transport": "grpc"})


async def test_http_without_a_key_is_401(secured_gateway: RunningGateway) -> None:
    """No Authorization header over HTTP: refused and counted before the body is read."""
    assert SpanExportResult.FAILURE == await http_send(secured_gateway, None)
    assert 1.0 == await secured_gateway.value(
        "gateway_receiver_refused_requests_total", {"transport": "http", "reason": "unauthenticated"}
    )


async def test_http_with_the_key_is_accepted(secured_gateway: RunningGateway) -> None:
    """The configured key as a Bearer header is accepted over HTTP."""
    assert SpanExportResult.SUCCESS == await http_send(secured_gateway, {"Authorization": f"Bearer {KEY}"})
    assert 2.0 == await secured_gateway.value("gateway_receiver_accepted_spans_total", {"transport": "http"})


def test_hash_key_prints_the_sha256_of_stdin() -> None:
    """`otel-ai-gateway hash-key` hashes the key given on stdin, ignoring the trailing newline."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "hash-key"], input=b"s3cret\n", capture_output=True, timeout=60
    )
    assert (0, b"1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0\n") == (
        result.returncode,
        result.stdout,
    )
