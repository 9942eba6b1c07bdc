"""Span metrics for spans made by the real OTel SDK, as Jaeger's Monitor tab and Prometheus read them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.conftest import RunningGateway
from tests.support.prometheus import Prometheus

CALLS = "traces_span_metrics_calls_total"


def sdk_spans() -> Sequence[ReadableSpan]:
    """A server span with a client child, and a failing server span, from the SDK tracer."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("shop")
    with (
        tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER),
        tracer.start_as_current_span("SELECT carts", kind=SpanKind.CLIENT),
    ):
        pass
    with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as failing:
        failing.set_status(Status(StatusCode.ERROR, "card declined"))
    provider.shutdown()
    return memory.get_finished_spans()


async def send(gateway: RunningGateway, spans: Sequence[ReadableSpan]) -> None:
    exporter = OTLPSpanExporter(endpoint=gateway.grpc_target, insecure=True)
    await asyncio.to_thread(exporter.export, spans)
    exporter.shutdown()


def call_lines(exposition: str) -> list[str]:
    return [line for line in exposition.splitlines() if line.startswith(CALLS)]


async def test_sdk_spans_are_counted_by_kind_and_status(running_gateway: RunningGateway) -> None:
    """Server, client and error spans each get their calls series with the connector's label values."""
    await send(running_gateway, sdk_spans())
    assert [
        f'{CALLS}{{service_name="checkout",span_name="SELECT carts",span_kind="SPAN_KIND_CLIENT",'
        'status_code="STATUS_CODE_UNSET"} 1.0',
        f'{CALLS}{{service_name="checkout",span_name="GET /cart",span_kind="SPAN_KIND_SERVER",'
        'status_code="STATUS_CODE_UNSET"} 1.0',
        f'{CALLS}{{service_name="checkout",span_name="POST /pay",span_kind="SPAN_KIND_SERVER",'
        'status_code="STATUS_CODE_ERROR"} 1.0',
    ] == call_lines(await running_gateway.scrape())


async def test_sdk_span_durations_carry_exemplars(running_gateway: RunningGateway) -> None:
    """Each span's duration bucket links to that span (trace and span id) in OpenMetrics."""
    spans = sdk_spans()
    await send(running_gateway, spans)
    body = await running_gateway.scrape("application/openmetrics-text; version=1.0.0")
    linked = {line.split('trace_id="')[1][:32] for line in body.splitlines() if 'trace_id="' in line}
    assert {format(span.context.trace_id, "032x") for span in spans} == linked


@pytest.fixture
async def prometheus(running_gateway: RunningGateway) -> AsyncIterator[Prometheus]:
    server = await Prometheus.start(running_gateway.metrics_url.removeprefix("http://"))
    try:
        await server.wait_for_target_up()
        yield server
    finally:
        await server.stop()


async def test_prometheus_stores_span_metrics_and_their_exemplars(
    running_gateway: RunningGateway, prometheus: Prometheus
) -> None:
    """Prometheus (exemplar storage on) answers the Monitor tab's error query and returns the span's trace id."""
    spans = sdk_spans()
    failing = next(span for span in spans if span.name == "POST /pay")
    await send(running_gateway, spans)
    errors = await prometheus.wait_for_value(
        f'sum by (service_name, span_name) ({CALLS}{{service_name="checkout",status_code="STATUS_CODE_ERROR"}})', 1.0
    )
    exemplars = await prometheus.wait_for_exemplars(
        'traces_span_metrics_duration_milliseconds_bucket{span_name="POST /pay"}'
    )
    trace_ids = {e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]}
    assert (1.0, {format(failing.context.trace_id, "032x")}) == (errors, trace_ids)
