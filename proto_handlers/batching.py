"""Join and split serialized OTLP requests without decoding or re-encoding them.

Every ``Export*ServiceRequest`` has exactly one field: ``repeated Resource* resource_* = 1``. In
the protobuf wire format a message is a sequence of (tag, value) records, a parser merges records
as they come, and merging a repeated field appends. So:

* the concatenation of serialized requests *is* a serialized request whose ``resource_*`` holds
  all their entries, in order (the protobuf encoding spec: "concatenating two messages merges
  them"), and
* any run of consecutive top-level records is a valid request on its own.

This is what lets the gateway batch and forward the bytes it received, untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from proto_handlers._messages import request_name
from proto_handlers.errors import DecodeError
from proto_handlers.signals import Signal

_WIRE_VARINT: Final = 0
_WIRE_I64: Final = 1
_WIRE_LEN: Final = 2
_WIRE_I32: Final = 5
_MAX_VARINT_BYTES: Final = 10


def concat_requests(parts: Sequence[bytes]) -> bytes:
    """Merge serialized requests of one signal into one request holding all their resources.

    Valid because field 1 is a repeated message and concatenating serialized messages merges
    them (see the module docstring); nothing is parsed, so the cost is one copy. Parts must all be
    requests of the same signal: bytes of another signal would parse, as the wrong message type.
    """
    return b"".join(parts)


def split_request(signal: Signal, request_bytes: bytes, max_bytes: int) -> list[bytes]:
    """Cut a serialized request into requests of at most ``max_bytes`` each, where possible.

    Cuts fall only between top-level records (one ``resource_*`` entry each), found by reading
    tags and lengths, so no entry is decoded or re-encoded and the chunks concatenate back to
    ``request_bytes``. An entry larger than ``max_bytes`` becomes a chunk of its own. A request
    that already fits is returned as is, unparsed; an empty one gives no chunks.
    Raises ``DecodeError`` if the top-level framing is broken.
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
    if not request_bytes:
        return []
    if len(request_bytes) <= max_bytes:
        return [request_bytes]
    chunks: list[bytes] = []
    chunk_start = 0
    chunk_end = 0
    for record_start, record_end in _top_level_records(signal, request_bytes):
        if record_end - chunk_start > max_bytes and chunk_end > chunk_start:
            chunks.append(request_bytes[chunk_start:chunk_end])
            chunk_start = record_start
        chunk_end = record_end
    chunks.append(request_bytes[chunk_start:chunk_end])
    return chunks


def _top_level_records(signal: Signal, data: bytes) -> list[tuple[int, int]]:
    """The ``(start, end)`` byte range of every top-level record, tag included, in order.

    Requests only hold field 1, but any other well-formed record is kept as a unit too, so
    splitting never drops bytes. Groups (wire types 3 and 4, deprecated since proto2) cannot
    occur in OTLP and are refused rather than skipped blindly.
    """
    records: list[tuple[int, int]] = []
    size = len(data)
    pos = 0
    while pos < size:
        start = pos
        tag, pos = _read_varint(signal, data, pos)
        wire_type = tag & 0x07
        if tag >> 3 == 0:
            raise _invalid(signal, f"field number 0 at byte {start}")
        if wire_type == _WIRE_LEN:
            length, pos = _read_varint(signal, data, pos)
            pos += length
        elif wire_type == _WIRE_VARINT:
            _, pos = _read_varint(signal, data, pos)
        elif wire_type == _WIRE_I64:
            pos += 8
        elif wire_type == _WIRE_I32:
            pos += 4
        else:
            raise _invalid(signal, f"unsupported wire type {wire_type} at byte {start}")
        if pos > size:
            raise _invalid(signal, f"truncated field at byte {start}")
        records.append((start, pos))
    return records


def _read_varint(signal: Signal, data: bytes, pos: int) -> tuple[int, int]:
    """Read a base-128 varint at ``pos``: returns its value and the position after it."""
    result = 0
    shift = 0
    end = min(len(data), pos + _MAX_VARINT_BYTES)
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    if pos >= len(data):
        raise _invalid(signal, f"truncated varint at byte {pos}")
    raise _invalid(signal, f"varint longer than {_MAX_VARINT_BYTES} bytes at byte {pos}")


def _invalid(signal: Signal, detail: str) -> DecodeError:
    return DecodeError(f"invalid protobuf {request_name(signal)}: {detail}")
