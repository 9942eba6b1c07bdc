"""The real OTel SDK exporters (gRPC, HTTP protobuf, gzip on and off) reach the gateway and are counted."""

from __future__ import annotations

import asyncio

import pytest
from grpc import Compression as GrpcCompression
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.conftest import RunningGateway
from tests.support.otel_sdk import make_log_records, make_metrics, make_spans


@pytest.mark.parametrize("compression", [GrpcCompression.NoCompression, GrpcCompression.Gzip])
async def test_grpc_span_export_is_accepted_and_counted(
    running_gateway: RunningGateway, compression: GrpcCompression
) -> None:
    """Spans sent by the SDK's OTLP/gRPC exporter are counted as accepted over grpc."""
    exporter = GrpcSpanExporter(endpoint=running_gateway.grpc_target, insecure=True, compression=compression)
    result = await asyncio.to_thread(exporter.export, make_spans(7))
    exporter.shutdown()
    assert SpanExportResult.SUCCESS == result
    assert 7.0 == await running_gateway.value("gateway_receiver_accepted_spans_total", {"transport": "grpc"})


@pytest.mark.parametrize("compression", [HttpCompression.NoCompression, HttpCompression.Gzip])
async def test_http_span_export_is_accepted_and_counted(
    running_gateway: RunningGateway, compression: HttpCompression
) -> None:
    """Spans sent by the SDK's OTLP/HTTP protobuf exporter are counted as accepted over http."""
    exporter = HttpSpanExporter(endpoint=f"{running_gateway.http_url}/v1/traces", compression=compression)
    result = await asyncio.to_thread(exporter.export, make_spans(5))
    exporter.shutdown()
    assert SpanExportResult.SUCCESS == result
    assert 5.0 == await running_gateway.value("gateway_receiver_accepted_spans_total", {"transport": "http"})


async def test_grpc_metric_export_counts_data_points(running_gateway: RunningGateway) -> None:
    """A counter with two attribute sets and one histogram point are three accepted metric points."""
    exporter = GrpcMetricExporter(endpoint=running_gateway.grpc_target, insecure=True)
    result = await asyncio.to_thread(exporter.export, make_metrics())
    exporter.shutdown()
    assert MetricExportResult.SUCCESS == result
    assert 3.0 == await running_gateway.value("gateway_receiver_accepted_metric_points_total", {"transport": "grpc"})


async def test_http_metric_export_counts_data_points(running_gateway: RunningGateway) -> None:
    """The same three metric points over OTLP/HTTP with gzip are counted under http."""
    exporter = HttpMetricExporter(endpoint=f"{running_gateway.http_url}/v1/metrics", compression=HttpCompression.Gzip)
    result = await asyncio.to_thread(exporter.export, make_metrics())
    exporter.shutdown()
    assert MetricExportResult.SUCCESS == result
    assert 3.0 == await running_gateway.value("gateway_receiver_accepted_metric_points_total", {"transport": "http"})


async def test_grpc_log_export_counts_records(running_gateway: RunningGateway) -> None:
    """Log records sent by the SDK's OTLP/gRPC log exporter are counted."""
    exporter = GrpcLogExporter(endpoint=running_gateway.grpc_target, insecure=True)
    result = await asyncio.to_thread(exporter.export, make_log_records(4))
    exporter.shutdown()
    assert LogRecordExportResult.SUCCESS == result
    assert 4.0 == await running_gateway.value("gateway_receiver_accepted_log_records_total", {"transport": "grpc"})


async def test_http_log_export_counts_records(running_gateway: RunningGateway) -> None:
    """Log records sent by the SDK's OTLP/HTTP log exporter are counted."""
    exporter = HttpLogExporter(endpoint=f"{running_gateway.http_url}/v1/logs")
    result = await asyncio.to_thread(exporter.export, make_log_records(6))
    exporter.shutdown()
    assert LogRecordExportResult.SUCCESS == result
    assert 6.0 == await running_gateway.value("gateway_receiver_accepted_log_records_total", {"transport": "http"})
