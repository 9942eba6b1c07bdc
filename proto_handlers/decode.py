"""Bytes on the wire -> opentelemetry-proto request messages, and how many items they carry.

Protobuf is the hot path: one ``FromString`` (upb, in C) plus mapping its error, nothing else.
OTLP/JSON goes through orjson and ``json_format.ParseDict`` after rewriting the hex ids the OTLP
spec uses into the base64 that the standard protobuf JSON mapping expects (see ``_json_ids``).
"""

from __future__ import annotations

import base64
from typing import Any, Literal, cast, overload

import orjson
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import DecodeError as ProtobufDecodeError  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from proto_handlers._json_ids import TRACE_ID_BYTES, BadIdError, convert_ids
from proto_handlers._messages import REQUEST_TYPES
from proto_handlers.errors import DecodeError
from proto_handlers.signals import Signal, WireFormat


@overload
def decode_request(signal: Literal["traces"], body: bytes, fmt: WireFormat) -> ExportTraceServiceRequest: ...
@overload
def decode_request(signal: Literal["metrics"], body: bytes, fmt: WireFormat) -> ExportMetricsServiceRequest: ...
@overload
def decode_request(signal: Literal["logs"], body: bytes, fmt: WireFormat) -> ExportLogsServiceRequest: ...
@overload
def decode_request(signal: Signal, body: bytes, fmt: WireFormat) -> Message: ...
def decode_request(signal: Signal, body: bytes, fmt: WireFormat) -> Message:
    """Parse an uncompressed ``Export*ServiceRequest`` of ``signal`` encoded as ``fmt``.

    Raises ``DecodeError`` with a client-facing reason for anything that is not a valid request.
    A literal ``signal`` gives callers the precise request type without a cast.
    """
    message_type = REQUEST_TYPES[signal]
    if fmt == "protobuf":
        try:
            return message_type.FromString(body)
        except ProtobufDecodeError as exc:
            raise DecodeError(f"invalid protobuf {message_type.__name__}: {exc}") from None
    if fmt == "json":
        return _decode_json(signal, message_type, body)
    raise ValueError(f"unknown wire format {fmt!r}")


def _decode_json(signal: Signal, message_type: type[Message], body: bytes) -> Message:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson also rejects invalid UTF-8 here, which the OTLP/JSON spec requires.
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError(f"invalid OTLP/JSON: the body must be a JSON object, not {_json_type(document)}")
    convert_ids(signal, document, _hex_id_to_base64)
    message = message_type()
    try:
        # Unknown fields MUST be ignored (OTLP spec): newer senders may add fields.
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise DecodeError(f"invalid OTLP/JSON {message_type.__name__}: {exc}") from None
    return message


def _hex_id_to_base64(value: Any, size: int) -> Any:
    """OTLP/JSON id (hex, any case) -> base64, which is how ``ParseDict`` reads ``bytes`` fields.

    The empty string means "no id" and stays empty; ``null`` is left for ``ParseDict``, which
    reads it as unset. Anything else must be exactly ``2 * size`` hex digits: checking the length
    first also rejects the base64 ids some senders wrongly use, with a reason that says so.
    """
    if value is None or value == "":
        return value
    kind = "trace" if size == TRACE_ID_BYTES else "span"
    if not isinstance(value, str):
        raise BadIdError(f"a {kind} id must be a hex string, not {_json_type(value)}")
    if len(value) != 2 * size:
        raise BadIdError(
            f"a {kind} id must be {2 * size} hex digits ({size} bytes; OTLP/JSON ids are hex, not base64),"
            f" got {len(value)} characters"
        )
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != size:  # fromhex skips whitespace, so a right-length string can still be short
        raise BadIdError(f"a {kind} id must be {2 * size} hex digits (OTLP/JSON ids are hex, not base64)")
    return base64.b64encode(raw).decode("ascii")


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


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
