"""Per-signal protobuf classes of opentelemetry-proto, in one table shared by the wire modules."""

from __future__ import annotations

from typing import Final

from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from proto_handlers.signals import Signal

REQUEST_TYPES: Final[dict[Signal, type[Message]]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}


def request_name(signal: Signal) -> str:
    """The request message's name, e.g. ``ExportTraceServiceRequest``, for error reasons."""
    return REQUEST_TYPES[signal].__name__
