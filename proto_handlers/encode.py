"""Answers and error bodies of the OTLP receivers, and OTLP/JSON for exporters.

Everything a receiver sends back is built here, so OTLP/gRPC and OTLP/HTTP answer alike:
``Export*ServiceResponse`` (with ``partial_success`` only when something was rejected or needs a
warning, as the spec asks), and ``google.rpc.Status``, the body of an OTLP/HTTP error answer.
JSON bodies use the OTLP/JSON mapping: lowerCamelCase keys, int64 as strings, enums as integers
and hex trace/span ids.
"""

from __future__ import annotations

import base64
from typing import Any, Final

import orjson
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from proto_handlers._json_ids import convert_ids
from proto_handlers.signals import Signal, WireFormat

_EMPTY_RESPONSE: Final[dict[WireFormat, bytes]] = {"protobuf": b"", "json": b"{}"}
"""A response without partial_success serializes to nothing: the common answer costs no encoding."""


def encode_export_response(signal: Signal, fmt: WireFormat, rejected: int = 0, error_message: str = "") -> bytes:
    """Serialize the ``Export*ServiceResponse`` of ``signal`` as ``fmt``.

    ``rejected`` counts items in the signal's unit (spans, data points, log records) and fills
    ``rejected_spans`` / ``rejected_data_points`` / ``rejected_log_records``. ``partial_success``
    is set only when ``rejected > 0`` or ``error_message`` is non-empty; a message with zero
    rejected items is a warning, which the spec allows.
    """
    if rejected < 0:
        raise ValueError(f"rejected must be >= 0, got {rejected}")
    if fmt not in _EMPTY_RESPONSE:
        raise ValueError(f"unknown wire format {fmt!r}")
    if rejected == 0 and not error_message:
        return _EMPTY_RESPONSE[fmt]
    error_message = _utf8_safe(error_message)
    response: Message
    if signal == "traces":
        response = ExportTraceServiceResponse(
            partial_success=ExportTracePartialSuccess(rejected_spans=rejected, error_message=error_message)
        )
    elif signal == "metrics":
        response = ExportMetricsServiceResponse(
            partial_success=ExportMetricsPartialSuccess(rejected_data_points=rejected, error_message=error_message)
        )
    elif signal == "logs":
        response = ExportLogsServiceResponse(
            partial_success=ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=error_message)
        )
    else:
        raise ValueError(f"unknown signal {signal!r}")
    return _serialize(response, fmt)


def encode_status(code: int, message: str, fmt: WireFormat) -> bytes:
    """Serialize a ``google.rpc.Status`` with a gRPC status ``code`` and ``message`` as ``fmt``.

    OTLP/HTTP answers a failed request with this body in the request's own format; ``code`` is a
    ``google.rpc.Code`` value (e.g. 3 INVALID_ARGUMENT), not the HTTP status.
    """
    return _serialize(Status(code=code, message=_utf8_safe(message)), fmt)


def encode_request_json(signal: Signal, request: Message) -> bytes:
    """Serialize a request as OTLP/JSON, for exporters configured with ``encoding: json``.

    Differs from ``json_format.MessageToJson`` where OTLP/JSON does: enums are integers and
    trace/span ids are hex (lower case). ``decode_request(signal, ..., "json")`` reads it back
    to an equal message.
    """
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    convert_ids(signal, document, _base64_id_to_hex)
    return orjson.dumps(document)


def _utf8_safe(text: str) -> str:
    """``text``, with lone surrogates escaped: protobuf strings must be UTF-8, and an error answer must not fail.

    Reasons can carry text from outside (a downstream's answer, a header aiohttp decoded with
    ``surrogateescape``); without this, one such character turned a 4xx answer into a 500.
    """
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def _serialize(message: Message, fmt: WireFormat) -> bytes:
    if fmt == "protobuf":
        serialized: bytes = message.SerializeToString()
        return serialized
    if fmt == "json":
        # MessageToDict emits exactly what MessageToJson does (camelCase, int64 as strings);
        # orjson then writes it compactly.
        return orjson.dumps(json_format.MessageToDict(message))
    raise ValueError(f"unknown wire format {fmt!r}")


def _base64_id_to_hex(value: Any, size: int) -> Any:
    # MessageToDict writes bytes fields as standard base64 and omits empty ones.
    return base64.b64decode(value).hex() if isinstance(value, str) else value
