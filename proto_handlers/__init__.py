"""The OTLP wire layer: pure functions from bytes to opentelemetry-proto messages and back.

No I/O and no asyncio, so receivers, exporters, tests and benchmarks all share it. Receivers map
its three errors to answers: ``DecodeError`` -> 400 / INVALID_ARGUMENT, ``PayloadTooLargeError``
-> 413 / RESOURCE_EXHAUSTED, ``UnsupportedEncodingError`` -> 415.
"""

from __future__ import annotations

from proto_handlers.batching import concat_requests, split_request
from proto_handlers.compression import compress, decompress
from proto_handlers.decode import count_items, decode_request, json_to_protobuf
from proto_handlers.encode import encode_export_response, encode_request_json, encode_status
from proto_handlers.errors import DecodeError, PayloadTooLargeError, UnsupportedEncodingError
from proto_handlers.signals import SIGNALS, Signal, WireFormat

__all__ = [
    "SIGNALS",
    "DecodeError",
    "PayloadTooLargeError",
    "Signal",
    "UnsupportedEncodingError",
    "WireFormat",
    "compress",
    "concat_requests",
    "count_items",
    "decode_request",
    "decompress",
    "encode_export_response",
    "encode_request_json",
    "encode_status",
    "json_to_protobuf",
    "split_request",
]
