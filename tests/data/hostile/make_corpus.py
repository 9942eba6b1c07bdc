"""Write the committed hostile corpus (the small files of MANIFEST.md), byte for byte reproducibly.

Run ``.venv/bin/python tests/data/hostile/make_corpus.py`` after changing a recipe; the big
entries are not files but recipes in tests/integration/test_hostile_corpus.py.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import orjson
import zstandard
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Exemplar,
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

HERE = Path(__file__).parent
TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 127:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited record: tag, length, payload."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def in_one_span(span: bytes) -> bytes:
    """A traces request holding one span, given as the span's encoded fields."""
    return field(1, field(2, field(2, span)))


def traces(*spans: Span) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])])


def genai_span(name: str, **usage: AnyValue) -> Span:
    attributes = [
        KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="chat")),
        KeyValue(key="gen_ai.system", value=AnyValue(string_value="openai")),
        KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="gpt-4o-mini")),
    ]
    attributes += [KeyValue(key=f"gen_ai.usage.{key}", value=value) for key, value in usage.items()]
    return Span(
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_001_000_000_000,
        attributes=attributes,
    )


WEIRD_TOKENS = traces(
    genai_span("chat nan", input_tokens=AnyValue(double_value=float("nan")), output_tokens=AnyValue(int_value=5)),
    genai_span(
        "chat inf", input_tokens=AnyValue(double_value=float("inf")), output_tokens=AnyValue(double_value=-1e308)
    ),
    genai_span("chat -1", input_tokens=AnyValue(int_value=-1), output_tokens=AnyValue(int_value=-(2**63))),
    genai_span("chat max", input_tokens=AnyValue(int_value=2**63 - 1), output_tokens=AnyValue(int_value=2**63 - 1)),
    genai_span("chat str", input_tokens=AnyValue(string_value="12"), output_tokens=AnyValue(bool_value=True)),
    genai_span(
        "chat array",
        input_tokens=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)])),
        output_tokens=AnyValue(bytes_value=b"\x00"),
    ),
)


def nested_arrays_protobuf(levels: int) -> bytes:
    value = AnyValue(string_value="leaf")
    for _ in range(levels):
        outer = AnyValue()
        outer.array_value.values.append(value)
        value = outer
    return traces(Span(name="deep", attributes=[KeyValue(key="deep", value=value)])).SerializeToString()


def nested_json(levels: int, member: str) -> bytes:
    """A traces body whose one attribute nests ``levels`` arrayValues or kvlistValues (as JSON text)."""
    opening = {
        "arrayValue": b'{"arrayValue":{"values":[',
        "kvlistValue": b'{"kvlistValue":{"values":[{"key":"k","value":',
    }[member]
    closing = {"arrayValue": b"]}}", "kvlistValue": b"}]}}"}[member]
    value = opening * levels + b'{"stringValue":"leaf"}' + closing * levels
    return (
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"deep","attributes":[{"key":"deep","value":'
        + value
        + b"}]}]}]}]}"
    )


def span_json(**span: object) -> bytes:
    return orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


def zstd_frame_window(window_log: int) -> bytes:
    """A zstd frame header asking for a ``2**window_log`` window, then an empty last block."""
    descriptor = 0x00  # no single segment, no checksum, no dictionary, no content size
    window = (window_log - 10) << 3
    return (0xFD2FB528).to_bytes(4, "little") + bytes([descriptor, window]) + b"\x01\x00\x00"


def zstd_rle_bomb(total: int) -> bytes:
    """One zstd frame of RLE blocks of 128 KiB each: 4 bytes of body per 128 KiB of zeros."""
    block = 128 * 1024
    header = (0xFD2FB528).to_bytes(4, "little") + bytes([0x00, (17 - 10) << 3])  # 128 KiB window
    count = total // block
    blocks = [
        ((block << 3) | (1 << 1) | (1 if index == count - 1 else 0)).to_bytes(3, "little") + b"\x00"
        for index in range(count)
    ]
    return header + b"".join(blocks)


def one_span() -> bytes:
    return traces(Span(trace_id=TRACE_ID, span_id=SPAN_ID, name="ok")).SerializeToString()


def corpus() -> dict[str, bytes]:
    """Every committed file, by path under tests/data/hostile/."""
    valid = one_span()
    files: dict[str, bytes] = {
        # protobuf framing
        "pb/empty.pb": b"",
        "pb/truncated_tag_varint.pb": b"\x80",
        "pb/truncated_length_varint.pb": b"\x0a\x80",
        "pb/overlong_varint_11_bytes.pb": b"\x0a" + b"\xff" * 10 + b"\x01",
        "pb/length_2_63.pb": b"\x0a" + b"\xff" * 9 + b"\x01",
        "pb/length_4_gib_short_body.pb": b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 8,
        "pb/truncated_fixed64.pb": in_one_span(b"\x39\x01\x02"),
        "pb/wire_type_6.pb": b"\x0e",
        "pb/field_number_0.pb": b"\x02\x00",
        "pb/field_number_2_29.pb": varint(2**29 << 3) + b"\x01",
        "pb/unmatched_end_group.pb": b"\x0c",
        "pb/wrong_wire_type_known_field.pb": b"\x08\x01" + valid,
        "pb/group_as_unknown_field.pb": b"\x0b\x0c" + valid,
        "pb/unknown_fields.pb": varint(99 << 3 | 2) + b"\x01x" + valid + varint(1000 << 3) + b"\x2a",
        "pb/oneof_two_members.pb": in_one_span(field(9, field(1, b"k") + field(2, field(1, b"s") + b"\x18\x05"))),
        "pb/packed_fixed64_bad_length.pb": field(1, field(2, field(2, field(9, field(1, field(6, b"12345")))))),
        # protobuf content
        "pb/invalid_utf8_span_name.pb": in_one_span(field(5, b"\xff\xfe")),
        "pb/nested_arrays_47_at_the_limit.pb": nested_arrays_protobuf(47),
        "pb/nested_arrays_48_over_the_limit.pb": nested_arrays_protobuf(48),
        "pb/trace_id_15_bytes.pb": traces(Span(trace_id=TRACE_ID[:15], span_id=SPAN_ID)).SerializeToString(),
        "pb/trace_id_8_bytes.pb": traces(Span(trace_id=TRACE_ID[:8], span_id=SPAN_ID)).SerializeToString(),
        "pb/span_id_16_bytes.pb": traces(Span(trace_id=TRACE_ID, span_id=TRACE_ID)).SerializeToString(),
        "pb/link_span_id_1_byte.pb": traces(
            Span(links=[Span.Link(trace_id=TRACE_ID, span_id=b"\x01")])
        ).SerializeToString(),
        "pb/empty_ids.pb": traces(Span(name="no ids")).SerializeToString(),
        "pb/all_zero_ids.pb": traces(Span(trace_id=bytes(16), span_id=bytes(8), name="zero ids")).SerializeToString(),
        "pb/log_record_trace_id_32_bytes.pb": ExportLogsServiceRequest(
            resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(trace_id=TRACE_ID * 2)])])]
        ).SerializeToString(),
        "pb/exemplar_span_id_7_bytes.pb": ExportMetricsServiceRequest(
            resource_metrics=[
                ResourceMetrics(
                    scope_metrics=[
                        ScopeMetrics(
                            metrics=[
                                Metric(
                                    name="m",
                                    gauge=Gauge(
                                        data_points=[NumberDataPoint(exemplars=[Exemplar(span_id=SPAN_ID[:7])])]
                                    ),
                                )
                            ]
                        )
                    ]
                )
            ]
        ).SerializeToString(),
        "pb/genai_weird_token_counts.pb": WEIRD_TOKENS.SerializeToString(),
        # OTLP/JSON
        "json/empty_body.json": b"",
        "json/not_an_object.json": b"[]",
        "json/bom.json": b"\xef\xbb\xbf{}",
        "json/invalid_utf8.json": b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\xff"}]}]}]}',
        "json/overlong_utf8.json": b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\xc0\xaf"}]}]}]}',
        "json/lone_surrogate.json": b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\\ud800"}]}]}]}',
        "json/nested_lists_1000.json": b'{"resourceSpans":' + b"[" * 1000 + b"]" * 1000 + b"}",
        "json/nested_arrays_47_at_the_limit.json": nested_json(47, "arrayValue"),
        "json/nested_arrays_48_over_the_limit.json": nested_json(48, "arrayValue"),
        "json/nested_kvlists_40.json": nested_json(40, "kvlistValue"),
        "json/string_where_a_message_belongs.json": b'{"resourceSpans":["scopeSpans"]}',
        "json/same_field_twice.json": span_json(traceId=TRACE_ID.hex(), trace_id=TRACE_ID.hex()),
        "json/oneof_two_members.json": span_json(
            attributes=[{"key": "k", "value": {"stringValue": "s", "intValue": 5}}]
        ),
        "json/null_everywhere.json": b'{"resourceSpans":[{"resource":null,"scopeSpans":[{"scope":null,'
        b'"spans":[{"name":null,"traceId":null,"attributes":null,"status":null,"kind":null}]}],"schemaUrl":null}]}',
        "json/null_in_an_array.json": b'{"resourceSpans":[null]}',
        "json/hex_id_wrong_length.json": span_json(traceId="abcd"),
        "json/hex_id_not_hex.json": span_json(spanId="EEE19B7EC3C1B17G"),
        "json/id_in_base64.json": span_json(traceId="W47/95gDgQPSabYzgT/GDA=="),
        "json/id_as_number.json": span_json(spanId=12),
        "json/base64_invalid.json": span_json(attributes=[{"key": "k", "value": {"bytesValue": "!!!"}}]),
        "json/numbers_in_every_form.json": span_json(
            traceId=TRACE_ID.hex().upper(),
            startTimeUnixNano="1e18",
            endTimeUnixNano=1_000_000_000_000_000_001,
            kind="SPAN_KIND_SERVER",
            droppedAttributesCount="7",
            attributes=[
                {"key": "i", "value": {"intValue": "-9223372036854775808"}},
                {"key": "d", "value": {"doubleValue": "-Infinity"}},
                {"key": "n", "value": {"doubleValue": "NaN"}},
                {"key": "e", "value": {"doubleValue": 1e-300}},
            ],
        ),
        "json/int64_overflow.json": span_json(attributes=[{"key": "k", "value": {"intValue": "9223372036854775808"}}]),
        "json/uint64_negative.json": span_json(startTimeUnixNano="-1"),
        "json/integer_with_fraction.json": span_json(kind=1.5),
        "json/timestamp_1e30.json": b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":1e30}]}]}]}',
        "json/integer_literal_5000_digits.json": b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":'
        + b"9" * 5000
        + b"}]}]}]}",
        "json/integer_string_5000_digits.json": span_json(startTimeUnixNano="9" * 5000),
        "json/unknown_fields.json": orjson.dumps(
            {
                "future": [1, {"x": None}],
                "resourceSpans": [{"newField": {}, "scopeSpans": [{"spans": [{"name": "s", "z": 1}]}]}],
            }
        ),
        "json/unknown_enum_name.json": span_json(kind="SPAN_KIND_FROM_THE_FUTURE"),
        "json/genai_weird_token_counts.json": orjson.dumps(
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {
                                "spans": [
                                    {
                                        "traceId": TRACE_ID.hex(),
                                        "spanId": SPAN_ID.hex(),
                                        "name": f"chat {index}",
                                        "attributes": [
                                            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                                            {"key": "gen_ai.usage.input_tokens", "value": value},
                                            {"key": "gen_ai.usage.output_tokens", "value": value},
                                        ],
                                    }
                                    for index, value in enumerate(
                                        [
                                            {"doubleValue": "NaN"},
                                            {"doubleValue": "Infinity"},
                                            {"doubleValue": "-Infinity"},
                                            {"intValue": "-1"},
                                            {"intValue": "9223372036854775807"},
                                            {"doubleValue": 1.7976931348623157e308},
                                            {"stringValue": "12"},
                                        ]
                                    )
                                ]
                            }
                        ]
                    }
                ]
            }
        ),
        # Content-Encoding (the payload is a valid one-span request unless said otherwise)
        "enc/gzip_truncated.pb.gz": gzip.compress(valid, mtime=0)[:-6],
        "enc/gzip_bad_crc.pb.gz": _bad_crc(gzip.compress(valid, mtime=0)),
        "enc/gzip_trailing_garbage.pb.gz": gzip.compress(valid, mtime=0) + b"garbage",
        "enc/gzip_zero_padding.pb.gz": gzip.compress(valid, mtime=0) + bytes(1024),
        "enc/gzip_two_members.pb.gz": gzip.compress(valid, mtime=0) * 2,
        "enc/gzip_not_gzip.pb.gz": valid,
        "enc/deflate_raw.pb.deflate": zlib.compress(valid)[2:-4],
        "enc/deflate_zlib.pb.deflate": zlib.compress(valid),
        "enc/zstd_truncated.pb.zst": zstandard.ZstdCompressor().compress(valid)[:-3],
        "enc/zstd_skippable_then_frame.pb.zst": (0x184D2A50).to_bytes(4, "little")
        + (3).to_bytes(4, "little")
        + b"abc"
        + zstandard.ZstdCompressor().compress(valid),
        "enc/zstd_window_2_gib.zst": zstd_frame_window(31),
        "enc/zstd_rle_bomb_64_mib.zst": zstd_rle_bomb(64 << 20),
        "enc/gzip_json.json.gz": gzip.compress(span_json(name="gzip json"), mtime=0),
    }
    return files


def _bad_crc(member: bytes) -> bytes:
    damaged = bytearray(member)
    damaged[-8] ^= 0xFF  # the CRC32 of the gzip trailer
    return bytes(damaged)


def main() -> None:
    for name, content in corpus().items():
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


if __name__ == "__main__":
    main()
