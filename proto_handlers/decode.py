"""Bytes on the wire -> opentelemetry-proto request messages, and how many items they carry.

Protobuf is the hot path: one ``FromString`` (upb, in C), mapping its error, and a check that
every trace and span id has its length (upb does not check; the collector does).
OTLP/JSON goes through orjson, then one walk over the parsed tree that writes the protobuf
encoding of the same request (hex ids included, see ``_json_wire``), then the same ``FromString``.
"""

from __future__ import annotations

import gc
from typing import Any, Final, Literal, cast, overload

import orjson
from google.protobuf.message import DecodeError as ProtobufDecodeError  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from proto_handlers._json_wire import JsonFieldError, MessageSpec, encode_message, json_type, message_spec
from proto_handlers._messages import REQUEST_TYPES
from proto_handlers.errors import DecodeError
from proto_handlers.raw_attributes import RawAttributesTraceRequest
from proto_handlers.signals import Signal, WireFormat


@overload
def decode_request(
    signal: Literal["traces"], body: bytes, fmt: WireFormat, *, indexed: Literal[False] = False
) -> ExportTraceServiceRequest: ...
@overload
def decode_request(
    signal: Literal["metrics"], body: bytes, fmt: WireFormat, *, indexed: bool = False
) -> ExportMetricsServiceRequest: ...
@overload
def decode_request(
    signal: Literal["logs"], body: bytes, fmt: WireFormat, *, indexed: bool = False
) -> ExportLogsServiceRequest: ...
@overload
def decode_request(signal: Signal, body: bytes, fmt: WireFormat, *, indexed: bool = False) -> Message: ...
def decode_request(signal: Signal, body: bytes, fmt: WireFormat, *, indexed: bool = False) -> Message:
    """Parse an uncompressed ``Export*ServiceRequest`` of ``signal`` encoded as ``fmt``.

    Raises ``DecodeError`` with a client-facing reason for anything that is not a valid request.
    A literal ``signal`` gives callers the precise request type without a cast. With ``indexed``,
    a traces request is validated as above, then returned as a ``RawAttributesTraceRequest``
    (span attributes left serialized: what derivation reads); other signals have one schema.
    """
    message_type = REQUEST_TYPES[signal]
    if fmt == "json":
        body = json_to_protobuf(signal, body)
    elif fmt != "protobuf":
        raise ValueError(f"unknown wire format {fmt!r}")
    if indexed and signal == "traces":
        _parse(signal, message_type, body)  # validation only: freed before the view is built
        return RawAttributesTraceRequest.FromString(body)
    return _parse(signal, message_type, body)


def json_to_protobuf(signal: Signal, body: bytes) -> bytes:
    """An OTLP/JSON request body -> the protobuf encoding of the same request (validated as it goes).

    What a receiver forwards for a JSON request: encoded once, here, and decoded from these bytes.
    """
    # The parsed document is a tree of up to millions of dicts and lists that lives for one call
    # and holds no cycles; the cyclic GC would traverse it again and again as it grows (over half
    # of orjson.loads's time on a 20 MiB body), so it is paused for the parse and the walk. Only
    # the call that found it enabled enables it again: concurrent decodes in threads stay correct
    # (one may finish with the GC back on) and leave it enabled.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _json_to_wire(signal, REQUEST_TYPES[signal], body)
    finally:
        if gc_was_enabled:
            gc.enable()


def _parse(signal: Signal, message_type: type[Message], body: bytes) -> Message:
    try:
        request = message_type.FromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"invalid protobuf {REQUEST_TYPES[signal].__name__}: {exc}") from None
    if not _ids_fit(signal, request):
        raise DecodeError(f"invalid protobuf {REQUEST_TYPES[signal].__name__}: {_bad_id(signal, request)}")
    return request


_JSON_SPECS: Final[dict[Signal, MessageSpec]] = {
    signal: message_spec(message_type.DESCRIPTOR) for signal, message_type in REQUEST_TYPES.items()
}


def _json_to_wire(signal: Signal, message_type: type[Message], body: bytes) -> bytes:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson also rejects invalid UTF-8 and lone surrogates here, which the OTLP/JSON spec requires,
        # and documents nested more than 1024 levels deep.
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError(f"invalid OTLP/JSON: the body must be a JSON object, not {json_type(document)}")
    try:
        # Unknown fields are ignored (the OTLP spec says MUST: newer senders may add fields).
        return encode_message(document, _JSON_SPECS[signal])
    except JsonFieldError as error:
        where = error.location()
        if error.is_id:
            raise DecodeError(f"{where}: {error.reason}") from None
        raise DecodeError(f"invalid OTLP/JSON {message_type.__name__}: {where}: {error.reason}") from None


_TRACE_ID_SIZES: Final = (0, 16)
_SPAN_ID_SIZES: Final = (0, 8)
"""An id is empty (no id) or exactly its size: what the collector's pdata accepts, the JSON walk too."""


def _ids_fit(signal: Signal, request: Message) -> bool:
    """Whether every trace and span id is empty or of its size (the fast check; ``_bad_id`` says where).

    upb reads ``bytes`` of any length, but an id of the wrong length is not a valid request: the
    collector refuses it at unmarshal ("invalid TraceID length"). Forwarding it would only move
    the 400 downstream, after the gateway counted the items as accepted, and fail the whole batch
    it was merged into, other senders' data included. Costs about 1 µs per span.
    """
    traces, spans = _TRACE_ID_SIZES, _SPAN_ID_SIZES
    if signal == "traces":
        for resource in cast(ExportTraceServiceRequest, request).resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    if (
                        len(span.trace_id) not in traces
                        or len(span.span_id) not in spans
                        or len(span.parent_span_id) not in spans
                    ):
                        return False
                    if span.links:
                        for link in span.links:
                            if len(link.trace_id) not in traces or len(link.span_id) not in spans:
                                return False
    elif signal == "logs":
        for resource in cast(ExportLogsServiceRequest, request).resource_logs:
            for scope in resource.scope_logs:
                for record in scope.log_records:
                    if len(record.trace_id) not in traces or len(record.span_id) not in spans:
                        return False
    elif signal == "metrics":
        for resource in cast(ExportMetricsServiceRequest, request).resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None or kind == "summary":  # summary points carry no exemplars
                        continue
                    for point in getattr(metric, kind).data_points:
                        for exemplar in point.exemplars:
                            if len(exemplar.trace_id) not in traces or len(exemplar.span_id) not in spans:
                                return False
    return True


def _bad_id(signal: Signal, request: Message) -> str:
    """Where the first trace or span id of the wrong length is, and its length, once ``_ids_fit`` failed."""
    traces, spans = _TRACE_ID_SIZES, _SPAN_ID_SIZES
    if signal == "traces":
        request_spans = cast(ExportTraceServiceRequest, request)
        for r, resource in enumerate(request_spans.resource_spans):
            for s, scope in enumerate(resource.scope_spans):
                for i, span in enumerate(scope.spans):
                    if (
                        len(span.trace_id) not in traces
                        or len(span.span_id) not in spans
                        or len(span.parent_span_id) not in spans
                    ):
                        return _describe_ids(f"resource_spans[{r}].scope_spans[{s}].spans[{i}]", span, parent=True)
                    for k, link in enumerate(span.links):
                        if len(link.trace_id) not in traces or len(link.span_id) not in spans:
                            where = f"resource_spans[{r}].scope_spans[{s}].spans[{i}].links[{k}]"
                            return _describe_ids(where, link, parent=False)
    elif signal == "logs":
        request_logs = cast(ExportLogsServiceRequest, request)
        for r, resource in enumerate(request_logs.resource_logs):
            for s, scope in enumerate(resource.scope_logs):
                for i, record in enumerate(scope.log_records):
                    if len(record.trace_id) not in traces or len(record.span_id) not in spans:
                        where = f"resource_logs[{r}].scope_logs[{s}].log_records[{i}]"
                        return _describe_ids(where, record, parent=False)
    elif signal == "metrics":
        request_metrics = cast(ExportMetricsServiceRequest, request)
        for r, resource in enumerate(request_metrics.resource_metrics):
            for s, scope in enumerate(resource.scope_metrics):
                for m, metric in enumerate(scope.metrics):
                    kind = metric.WhichOneof("data")
                    if kind is None or kind == "summary":  # summary points carry no exemplars
                        continue
                    for p, point in enumerate(getattr(metric, kind).data_points):
                        for e, exemplar in enumerate(point.exemplars):
                            if len(exemplar.trace_id) not in traces or len(exemplar.span_id) not in spans:
                                where = (
                                    f"resource_metrics[{r}].scope_metrics[{s}].metrics[{m}]"
                                    f".{kind}.data_points[{p}].exemplars[{e}]"
                                )
                                return _describe_ids(where, exemplar, parent=False)
    raise AssertionError("_bad_id called on a request whose ids fit")


def _describe_ids(where: str, item: Any, *, parent: bool) -> str:
    for name, sizes in (("trace_id", _TRACE_ID_SIZES), ("span_id", _SPAN_ID_SIZES)):
        size = len(getattr(item, name))
        if size not in sizes:
            kind = name.removesuffix("_id")
            return f"{where}.{name}: a {kind} id is {sizes[1]} bytes (or empty), got {size}"
    return f"{where}.parent_span_id: a span id is 8 bytes (or empty), got {len(item.parent_span_id)}"


def count_items(signal: Signal, request: Message) -> int:
    """Count the items of a decoded request the way the OpenTelemetry Collector does.

    Spans for traces, data points of every metric type for metrics (what the collector's
    ``DataPointCount`` and its ``*_data_points`` self-metrics count), log records for logs.
    These are the units of ``rejected_*`` in partial success and of the receiver's accepted/refused
    counters, so they must agree with other OTLP components.
    """
    if signal == "traces":
        traces = cast(ExportTraceServiceRequest, request)
        return sum(len(scope.spans) for resource in traces.resource_spans for scope in resource.scope_spans)
    if signal == "metrics":
        metrics = cast(ExportMetricsServiceRequest, request)
        count = 0
        for resource in metrics.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    # gauge, sum, histogram, exponential_histogram and summary all name their points
                    # data_points; a metric with no data set has none.
                    kind = metric.WhichOneof("data")
                    if kind is not None:
                        count += len(getattr(metric, kind).data_points)
        return count
    if signal == "logs":
        logs = cast(ExportLogsServiceRequest, request)
        return sum(len(scope.log_records) for resource in logs.resource_logs for scope in resource.scope_logs)
    raise ValueError(f"unknown signal {signal!r}")
