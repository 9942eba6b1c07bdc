"""Reading a backend's ``Export*ServiceResponse``: how many items it rejected (partial success)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from proto_handlers import Signal, WireFormat

_RESPONSES: Final[dict[Signal, Any]] = {
    "traces": ExportTraceServiceResponse,
    "metrics": ExportMetricsServiceResponse,
    "logs": ExportLogsServiceResponse,
}
_REJECTED_FIELD: Final[dict[Signal, str]] = {
    "traces": "rejected_spans",
    "metrics": "rejected_data_points",
    "logs": "rejected_log_records",
}
_REJECTED_JSON: Final[dict[Signal, str]] = {
    "traces": "rejectedSpans",
    "metrics": "rejectedDataPoints",
    "logs": "rejectedLogRecords",
}


@dataclass(frozen=True, slots=True)
class SendResult:
    """A successful export; ``rejected`` items (and ``message``) when the backend reported partial success."""

    rejected: int = 0
    message: str = ""


def parse_export_response(signal: Signal, body: bytes, fmt: WireFormat) -> SendResult:
    """Partial success from a 2xx / OK response body. An unreadable body is still a success:
    the backend accepted the request, and a malformed answer is no reason to resend it."""
    if not body or body == b"{}":
        return SendResult()
    try:
        if fmt == "protobuf":
            partial = _RESPONSES[signal].FromString(body).partial_success
            return SendResult(int(getattr(partial, _REJECTED_FIELD[signal])), str(partial.error_message))
        document = orjson.loads(body)
        partial_json = document.get("partialSuccess") or document.get("partial_success") or {}
        rejected = partial_json.get(_REJECTED_JSON[signal], partial_json.get(_REJECTED_FIELD[signal], 0))
        message = partial_json.get("errorMessage", partial_json.get("error_message", ""))
        return SendResult(max(0, int(rejected or 0)), str(message or ""))
    except Exception:  # protobuf DecodeError, JSON errors, wrong shapes: all "no partial success"
        return SendResult()
