"""Real OpenTelemetry SDK data and exporters, for sending to a gateway under test.

The SDK's OTLP exporters are synchronous (they block on the network), so tests call them through
``asyncio.to_thread`` while the gateway serves on the test's event loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def make_spans(
    count: int, service: str = "checkout", attributes: dict[str, object] | None = None
) -> Sequence[ReadableSpan]:
    """``count`` finished spans of one service, made by the real SDK tracer."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    for index in range(count):
        with tracer.start_as_current_span(f"op-{index}", attributes=attributes or {}):  # type: ignore[arg-type]
            pass
    provider.shutdown()
    return memory.get_finished_spans()


def make_metrics(service: str = "checkout") -> MetricsData:
    """Three data points: a counter with two attribute sets and one histogram point."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
    meter = provider.get_meter("tests")
    counter = meter.create_counter("requests", unit="1")
    counter.add(2, {"route": "/a"})
    counter.add(3, {"route": "/b"})
    meter.create_histogram("latency", unit="s").record(0.25)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def make_log_records(count: int, service: str = "checkout") -> Sequence[object]:
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("tests")
    for index in range(count):
        logger.emit(body=f"record {index}")
    provider.shutdown()
    return memory.get_finished_logs()
