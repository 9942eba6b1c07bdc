"""Protobuf wire bytes built by hand, for requests no message class would produce (storms, depth)."""

from __future__ import annotations


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 127:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag (wire type 2), length, payload."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def traces_request(spans: bytes) -> bytes:
    """An ExportTraceServiceRequest of one resource and one scope whose spans field holds ``spans``
    (already-encoded ``ScopeSpans.spans`` entries, e.g. ``b"\\x12\\x00" * n`` for n empty spans)."""
    return length_delimited(1, length_delimited(2, spans))


def nested_kvlist_protobuf(levels: int) -> bytes:
    """A traces request whose one attribute nests ``levels`` kvlistValues, built as bytes (no recursion)."""
    value = length_delimited(1, b"leaf")  # AnyValue.string_value
    for _ in range(levels):
        # AnyValue.kvlist_value(6) -> KeyValueList.values(1) -> KeyValue{key(1), value(2)}
        value = length_delimited(6, length_delimited(1, length_delimited(1, b"k") + length_delimited(2, value)))
    attribute = length_delimited(1, b"deep") + length_delimited(2, value)
    return length_delimited(1, length_delimited(2, length_delimited(2, length_delimited(9, attribute))))
