"""Fuzzing proto_handlers: every input decodes or raises one of its three errors, and nothing else.

The properties, for protobuf, OTLP/JSON and gzip/zstd/deflate bodies: random bytes, valid
requests mutated (bit flips, truncations, wrong wire types, huge declared lengths), OTLP-shaped
JSON with wrong types in any field. An input either decodes or raises ``DecodeError`` /
``PayloadTooLargeError`` / ``UnsupportedEncodingError``: never another exception (a 500), never
a ``RecursionError``, never output past the decompression cap. Valid requests round-trip through
both encodings, and the OTLP/JSON decoder is checked against ``json_format.ParseDict`` (what it
replaced): whatever it accepts, ParseDict accepts too, as the same message.

The second half pins each bug fuzzing found to the input that triggered it (see docs/hardening.md).
Example counts keep the file under 30 s on two busy cores; ``HYPOTHESIS_PROFILE=fuzz`` runs
the same properties 50 times longer (see docs/hardening.md).
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import math
import os
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import zstandard
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
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

from proto_handlers import (
    SIGNALS,
    DecodeError,
    PayloadTooLargeError,
    Signal,
    UnsupportedEncodingError,
    compress,
    concat_requests,
    decode_request,
    decompress,
    encode_export_response,
    encode_request_json,
    encode_status,
    split_request,
)
from proto_handlers._json_ids import BadIdError, convert_ids
from tests.support.wire import nested_kvlist_protobuf

WIRE_ERRORS = (DecodeError, PayloadTooLargeError, UnsupportedEncodingError)
REQUEST_TYPES: dict[Signal, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}
ID_SIZES = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}
LIMIT = 64 * 1024
"""Decompression cap for the fuzzed bodies: small, so that bombs are cheap to refuse."""

_SCALE = 50 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 1


def fuzz(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis settings of this file: no deadline (busy CI cores), no example database."""
    return settings(
        max_examples=examples * _SCALE,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


signals = st.sampled_from(SIGNALS)
T = FieldDescriptor


# --- strategies: valid OTLP messages from the descriptors ---------------------------------------

_INT_RANGES = {
    T.TYPE_INT32: (-(2**31), 2**31 - 1),
    T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    T.TYPE_INT64: (-(2**63), 2**63 - 1),
    T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    T.TYPE_UINT32: (0, 2**32 - 1),
    T.TYPE_FIXED32: (0, 2**32 - 1),
    T.TYPE_UINT64: (0, 2**64 - 1),
    T.TYPE_FIXED64: (0, 2**64 - 1),
}


def _edge_integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.sampled_from([low, high, 0, -1 if low < 0 else 1]) | st.integers(low, high)


def scalar_values(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Valid Python values for a scalar field, edges included (int64 max, -1, inf, empty ids)."""
    kind = field.type
    if kind == T.TYPE_BYTES and field.name in ID_SIZES:
        size = ID_SIZES[field.name]
        return st.just(b"") | st.binary(min_size=size, max_size=size)
    if kind in _INT_RANGES:
        return _edge_integers(*_INT_RANGES[kind])
    if kind == T.TYPE_DOUBLE:
        return st.floats(allow_nan=False)  # inf included; NaN never equals itself, see the NaN tests
    if kind == T.TYPE_BOOL:
        return st.booleans()
    if kind == T.TYPE_STRING:
        return st.text(max_size=12)
    if kind == T.TYPE_BYTES:
        return st.binary(max_size=12)
    if kind == T.TYPE_ENUM:
        return st.sampled_from([value.number for value in field.enum_type.values]) | _edge_integers(-(2**31), 2**31 - 1)
    raise AssertionError(f"no strategy for {field.full_name}")


def _with_spine(fields: list[FieldDescriptor], descriptor: Descriptor, depth: int) -> list[FieldDescriptor]:
    """``fields`` without repeats, plus, in the top three levels, the list leading to the items.

    Without it most examples are nearly empty requests: resources -> scopes -> spans/metrics/logs.
    """
    if depth < 3:
        fields = [*fields, *(field for field in descriptor.fields if field.number == 2 or depth == 0)]
    unique = {field.number: field for field in fields}
    return list(unique.values())


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    """A valid message of ``descriptor``'s type with a random subset of fields set, nested up to 5 deep."""
    message = GetMessageClass(descriptor)()
    if depth > 5:
        return message
    fields = _with_spine(draw(st.lists(st.sampled_from(tuple(descriptor.fields)), max_size=3)), descriptor, depth)
    for field in fields:
        if field.type == T.TYPE_MESSAGE:
            if field.is_repeated:
                for _ in range(draw(st.integers(0, 2 if depth < 3 else 1))):
                    getattr(message, field.name).add().MergeFrom(draw(messages(field.message_type, depth + 1)))
            else:
                child = getattr(message, field.name)
                child.SetInParent()
                child.MergeFrom(draw(messages(field.message_type, depth + 1)))
        elif field.is_repeated:
            getattr(message, field.name).extend(draw(st.lists(scalar_values(field), max_size=3)))
        else:
            setattr(message, field.name, draw(scalar_values(field)))
    return message


def requests(signal: Signal) -> st.SearchStrategy[Message]:
    return messages(REQUEST_TYPES[signal].DESCRIPTOR)


signal_and_request = signals.flatmap(lambda signal: st.tuples(st.just(signal), requests(signal)))


# --- strategies: OTLP-shaped JSON with wrong types anywhere -----------------------------------

any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e3", "-0", "0x10", "", " 1", "1.5", "٣"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
"""Any JSON value, the wrong type almost anywhere it lands; big integers turn into doubles in orjson."""


def json_scalar(field: FieldDescriptor, noisy: bool) -> st.SearchStrategy[Any]:
    """What a sender might put in a scalar field: a valid JSON form of it or, when ``noisy``, near misses too."""
    kind = field.type
    right: st.SearchStrategy[Any]
    near: st.SearchStrategy[Any]
    if kind == T.TYPE_BYTES and field.name in ID_SIZES:
        size = ID_SIZES[field.name]
        hex_id = st.binary(min_size=size, max_size=size).map(bytes.hex)
        right = hex_id | hex_id.map(str.upper) | st.just("")
        near = st.text(alphabet="0123456789abcdefABCDEFxyz =", max_size=2 * size + 2) | st.binary(
            min_size=size, max_size=size
        ).map(_b64)
    elif kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        numbers = _edge_integers(low, high)
        right = numbers | numbers.map(str) | st.sampled_from(["1e3", "-0", "+7", 2.0])
        near = st.sampled_from([low - 1, high + 1, str(high + 1), "1.5", 1.5, "1_0", "0x10", "", float(2**64)])
    elif kind == T.TYPE_DOUBLE:
        right = (
            st.floats(allow_nan=False, allow_infinity=False)
            | st.integers(-(2**63), 2**64 - 1)
            | st.sampled_from(["NaN", "Infinity", "-Infinity", "2.5", "-0", "1e-3"])
        )
        near = st.sampled_from(["nan", "inf", "1e400", "", "x", True])
    elif kind == T.TYPE_BOOL:
        right = st.booleans()
        near = st.sampled_from(["true", 0, 1])
    elif kind == T.TYPE_STRING:
        right = st.text(max_size=12)
        near = st.integers() | st.booleans()
    elif kind == T.TYPE_BYTES:
        right = st.binary(max_size=12).map(_b64) | st.binary(max_size=12).map(_b64url)
        near = st.text(max_size=8)
    elif kind == T.TYPE_ENUM:
        right = st.sampled_from([value.name for value in field.enum_type.values]) | _edge_integers(-(2**31), 2**31 - 1)
        near = st.sampled_from(["NOPE", "2", 1.5, 2**31])
    else:
        raise AssertionError(f"no strategy for {field.full_name}")
    return right | near | any_json if noisy else right


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@st.composite
def json_messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0, noisy: bool | None = None) -> Any:
    """An OTLP/JSON object for ``descriptor``: camelCase or proto keys, unknown keys and, when noisy, wrong types.

    Half the examples are noisy (about one field in five holds a near miss or any JSON value), so
    the other half are valid documents, which the comparison with ParseDict needs.
    """
    if noisy is None:
        noisy = draw(st.booleans())
    document: dict[str, Any] = {}
    if depth > 5:
        return document
    fields = _with_spine(draw(st.lists(st.sampled_from(tuple(descriptor.fields)), max_size=3)), descriptor, depth)
    if not noisy:  # one member per oneof: two are refused
        oneofs = {field.containing_oneof.name: field for field in reversed(fields) if field.containing_oneof}
        fields = [
            field for field in fields if not field.containing_oneof or oneofs[field.containing_oneof.name] is field
        ]
    for field in fields:
        key = draw(st.sampled_from([field.json_name, field.name]))
        if noisy and draw(st.integers(0, 9)) == 0:
            document[key] = draw(any_json)
        elif field.type == T.TYPE_MESSAGE:
            child = json_messages(field.message_type, depth + 1, noisy)
            document[key] = draw(st.lists(child, max_size=2 if depth < 3 else 1) if field.is_repeated else child)
        elif field.is_repeated:
            document[key] = draw(st.lists(json_scalar(field, noisy), max_size=3))
        else:
            document[key] = draw(json_scalar(field, noisy))
    if draw(st.integers(0, 4)) == 0:
        document[draw(st.text(max_size=6))] = draw(any_json)  # unknown fields are ignored
    return document


signal_and_json = signals.flatmap(
    lambda signal: st.tuples(st.just(signal), json_messages(REQUEST_TYPES[signal].DESCRIPTOR))
)


def parse_dict_oracle(signal: Signal, document: dict[str, Any]) -> Message:
    """The OTLP/JSON decoding the gateway used before: hex ids to base64, then ``json_format.ParseDict``."""

    def hex_to_base64(value: Any, size: int) -> Any:
        if value is None or value == "":
            return value
        if not isinstance(value, str) or len(value) != 2 * size:
            raise BadIdError("bad id")
        raw = bytes.fromhex(value)
        if len(raw) != size:
            raise BadIdError("bad id")
        return base64.b64encode(raw).decode()

    document = copy.deepcopy(document)
    convert_ids(signal, document, hex_to_base64)
    message = REQUEST_TYPES[signal]()
    json_format.ParseDict(document, message, ignore_unknown_fields=True)
    return message


# --- strategies: mutations of valid bytes -----------------------------------------------------

HUGE_LENGTHS = [b"\xff\xff\xff\xff\x0f", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x80\x80\x80\x80\x10"]


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after 1-3 of: a bit flip, a cut, a deleted or inserted run, a wire type swapped, a huge length."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        operation = draw(st.sampled_from(["flip", "truncate", "delete", "insert", "wire_type", "huge_length"]))
        position = draw(st.integers(0, len(out)))
        if operation == "flip" and out:
            index = min(position, len(out) - 1)
            out[index] ^= 1 << draw(st.integers(0, 7))
        elif operation == "truncate":
            del out[position:]
        elif operation == "delete":
            del out[position : position + draw(st.integers(1, 8))]
        elif operation == "insert":
            out[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif operation == "wire_type" and out:
            index = min(position, len(out) - 1)
            out[index] = (out[index] & 0xF8) | draw(st.integers(0, 7))
        elif operation == "huge_length":
            # After a LEN tag byte, the varint that follows is the declared length: make it huge.
            tag = draw(st.sampled_from([0x0A, 0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x4A]))
            out[position:position] = bytes([tag]) + draw(st.sampled_from(HUGE_LENGTHS))
    return bytes(out)


def decodes_or_decode_error(signal: Signal, body: bytes, fmt: Any) -> Message | None:
    try:
        return decode_request(signal, body, fmt)
    except DecodeError as error:
        assert error.reason
        assert len(error.reason) < 4096  # a reason is a sentence and a path, never the payload
        return None


# --- protobuf ---------------------------------------------------------------------------------


@fuzz(300)
@given(signals, st.binary(max_size=512))
def test_random_bytes_decode_as_protobuf_or_raise_decode_error(signal: Signal, body: bytes) -> None:
    """Any bytes at all: a request (protobuf is permissive) or a DecodeError, never another exception."""
    decodes_or_decode_error(signal, body, "protobuf")


@fuzz(150)
@given(signal_and_request.flatmap(lambda pair: st.tuples(st.just(pair[0]), mutations(pair[1].SerializeToString()))))
def test_mutated_protobuf_requests_decode_or_raise_decode_error(case: tuple[Signal, bytes]) -> None:
    """Bit flips, cuts, inserted runs, wrong wire types and huge lengths in a valid request."""
    signal, body = case
    decodes_or_decode_error(signal, body, "protobuf")


@fuzz(100)
@given(signal_and_request.flatmap(lambda pair: st.tuples(st.just(pair[0]), mutations(pair[1].SerializeToString()))))
def test_split_request_of_mutated_bytes_splits_losslessly_or_raises_decode_error(case: tuple[Signal, bytes]) -> None:
    """The framing walk of batching never crashes, and the chunks it returns concatenate back to the input."""
    signal, body = case
    try:
        chunks = split_request(signal, body, 16)
    except DecodeError:
        return
    assert body == concat_requests(chunks)


@fuzz(80)
@given(signal_and_request)
def test_valid_requests_round_trip_through_protobuf(case: tuple[Signal, Message]) -> None:
    """Every field type, edge values included, decodes back to the request it was serialized from."""
    signal, request = case
    assert request == decode_request(signal, request.SerializeToString(), "protobuf")


# --- OTLP/JSON --------------------------------------------------------------------------------


@fuzz(80)
@given(signal_and_request)
def test_valid_requests_round_trip_through_otlp_json(case: tuple[Signal, Message]) -> None:
    """encode_request_json then decode_request gives the request back: every field type, int64 and ids included."""
    signal, request = case
    assert request == decode_request(signal, encode_request_json(signal, request), "json")


@fuzz(150)
@given(signal_and_json)
def test_otlp_shaped_json_decodes_as_parse_dict_would_or_raises_decode_error(case: tuple[Signal, Any]) -> None:
    """Wrong types in any field: a DecodeError, or the very message ParseDict makes of it (never more lenient)."""
    signal, document = case
    body = json.dumps(document).encode()
    decoded = decodes_or_decode_error(signal, body, "json")
    if decoded is not None:
        assert parse_dict_oracle(signal, orjson.loads(body)) == decoded


@fuzz(200)
@given(signals, st.binary(max_size=256) | any_json.map(lambda value: json.dumps(value).encode()))
def test_random_bytes_and_json_values_decode_as_otlp_json_or_raise_decode_error(signal: Signal, body: bytes) -> None:
    """Not even OTLP-shaped: garbage, arrays, scalars, invalid UTF-8."""
    decodes_or_decode_error(signal, body, "json")


@fuzz(100)
@given(signal_and_json.flatmap(lambda pair: st.tuples(st.just(pair[0]), mutations(json.dumps(pair[1]).encode()))))
def test_mutated_otlp_json_decodes_or_raises_decode_error(case: tuple[Signal, bytes]) -> None:
    """Byte-level damage to OTLP/JSON: broken syntax, invalid UTF-8, lone surrogate escapes."""
    signal, body = case
    decodes_or_decode_error(signal, body, "json")


# --- compression ------------------------------------------------------------------------------

ENCODINGS = ["gzip", "zstd", "deflate", "identity"]


def decompresses_within_the_cap(body: bytes, encoding: str) -> bytes | None:
    try:
        out = decompress(body, encoding, LIMIT)
    except WIRE_ERRORS:
        return None
    assert len(out) <= LIMIT
    return out


@fuzz(300)
@given(st.binary(max_size=512), st.sampled_from(ENCODINGS))
def test_random_bodies_decompress_within_the_cap_or_raise_a_wire_error(body: bytes, encoding: str) -> None:
    """Random bytes in any encoding: output within the cap, or one of the three errors."""
    decompresses_within_the_cap(body, encoding)


@fuzz(300)
@given(
    st.binary(max_size=2048) | st.integers(0, 4 * LIMIT).map(bytes),
    st.sampled_from(["gzip", "zstd", "deflate"]),
    st.data(),
)
def test_mutated_compressed_bodies_decompress_within_the_cap_or_raise(payload: bytes, encoding: str, data: Any) -> None:
    """A valid body inflates to its payload (or 413 past the cap); damaged, it never escapes as another error."""
    body = compress(payload, encoding)
    expected = payload if len(payload) <= LIMIT else None
    assert expected == decompresses_within_the_cap(body, encoding)
    decompresses_within_the_cap(data.draw(mutations(body)), encoding)


@fuzz(100)
@given(st.text(max_size=12))
def test_any_encoding_name_is_known_or_unsupported(encoding: str) -> None:
    """Content-Encoding values from the wire: an encoding, or UnsupportedEncodingError naming it."""
    try:
        decompress(b"", encoding, LIMIT)
    except UnsupportedEncodingError as error:
        assert encoding == error.encoding
    except (DecodeError, PayloadTooLargeError):
        pass


# --- answers ----------------------------------------------------------------------------------


@fuzz(100)
@given(st.text(st.characters(codec=None), max_size=20), st.sampled_from(["protobuf", "json"]))
def test_error_answers_encode_any_reason(reason: str, fmt: Any) -> None:
    """A reason with lone surrogates (decoded from outside with surrogateescape) still makes a 4xx body."""
    assert encode_status(3, reason, fmt)
    assert encode_export_response("traces", fmt, 1, reason)


# --- regressions: each bug found, with the input that triggered it ----------------------------


def nested_json_lists(depth: int) -> bytes:
    return b'{"resourceSpans":' + b"[" * depth + b"]" * depth + b"}"


def test_json_lists_nested_where_messages_belong_raise_decode_error_not_recursion_error() -> None:
    """Bug: 1000 nested arrays in resourceSpans raised RecursionError out of json_format (a 500)."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", nested_json_lists(1000), "json")
    assert "resourceSpans[0]: expected an object, got an array" in caught.value.reason


def test_json_nested_deeper_than_orjson_allows_raises_decode_error() -> None:
    """10k nested arrays stop at orjson's own depth limit (1024), before any walk."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", nested_json_lists(10_000), "json")
    assert caught.value.reason.startswith("invalid JSON: ")


def test_json_error_reason_does_not_echo_the_payload() -> None:
    """Bug: ParseDict put the offending value in its message: a 100 KB string in, a 100 KB reason out."""
    body = orjson.dumps({"resourceSpans": "x" * 100_000})
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", body, "json")
    assert "invalid OTLP/JSON ExportTraceServiceRequest: resourceSpans: expected an array, got a string" == (
        caught.value.reason
    )


def test_json_array_of_strings_where_a_message_belongs_is_refused() -> None:
    """ParseDict iterated the array as if it were an object's keys, ignored them as unknown, and accepted it."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", orjson.dumps({"resourceSpans": [["x" * 1000]]}), "json")
    assert caught.value.reason.endswith("resourceSpans[0]: expected an object, got an array")


def test_json_error_reason_stays_small_however_deep_and_big_the_bad_value() -> None:
    """Bug: ParseDict formatted the bad sub-document with repr(): 10 KB under 500 arrays came back whole."""
    bad = b"[" * 500 + b'"' + b"y" * 10_000 + b'"' + b"]" * 500
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", b'{"resourceSpans": [{"scopeSpans": ' + bad + b"}]}", "json")
    assert caught.value.reason.endswith("resourceSpans[0].scopeSpans[0]: expected an object, got an array")


def test_json_body_where_a_message_holds_a_string_is_refused() -> None:
    """ParseDict read a string where a message belongs as an object with no known keys, and accepted it."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", b'{"resourceSpans": ["scopeSpans"]}', "json")
    assert caught.value.reason.endswith("resourceSpans[0]: expected an object, got a string")


def test_json_same_field_twice_under_both_names_is_refused() -> None:
    """traceId and trace_id in one object are one field given twice; ParseDict kept the last silently."""
    span = {"traceId": "11" * 16, "trace_id": "22" * 16}
    body = orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", body, "json")
    assert caught.value.reason.endswith("spans[0].trace_id: field given twice")


def test_json_invalid_base64_bytes_value_is_refused() -> None:
    """ParseDict's base64 skipped characters outside the alphabet ("!!!" decoded to nothing)."""
    attribute = {"key": "k", "value": {"bytesValue": "!!!"}}
    body = orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [attribute]}]}]}]})
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", body, "json")
    assert caught.value.reason.endswith(
        "attributes[0].value.bytesValue: expected base64 (standard or URL-safe alphabet)"
    )


def any_value_in_arrays(levels: int) -> AnyValue:
    value = AnyValue(string_value="leaf")
    for _ in range(levels):
        outer = AnyValue()
        outer.array_value.values.append(value)
        value = outer
    return value


def span_with_attribute(value: AnyValue) -> ExportTraceServiceRequest:
    span = Span(attributes=[KeyValue(key="deep", value=value)])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])


@pytest.mark.parametrize(("levels", "accepted"), [(47, True), (48, False)])
def test_json_and_protobuf_agree_on_the_nesting_limit(levels: int, accepted: bool) -> None:
    """Messages 100 levels below the request decode in both encodings (upb's limit), 101 in neither.

    47 arrays put the innermost AnyValue 99 levels below the request, 48 put it at 101. The JSON
    walk enforces the limit itself, so that JSON it accepts re-encodes to protobuf that upb, here
    or downstream, accepts too.
    """
    request = span_with_attribute(any_value_in_arrays(levels))
    protobuf = request.SerializeToString()
    as_json = encode_request_json("traces", ExportTraceServiceRequest.FromString(protobuf) if accepted else request)
    for body, fmt in ((protobuf, "protobuf"), (as_json, "json")):
        if accepted:
            assert request == decode_request("traces", body, fmt)  # type: ignore[arg-type]
        else:
            with pytest.raises(DecodeError):
                decode_request("traces", body, fmt)  # type: ignore[arg-type]


def test_protobuf_kvlist_nested_10k_deep_raises_decode_error() -> None:
    """upb stops at 100 levels: 10k nested kvlistValues are a DecodeError, not a crash."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", nested_kvlist_protobuf(10_000), "protobuf")
    assert "MaxDepth" in caught.value.reason


def test_protobuf_string_field_with_invalid_utf8_raises_decode_error() -> None:
    """upb checks UTF-8 in proto3 strings: an invalid span name is a DecodeError."""
    span = b"\x2a\x02\xff\xfe"  # Span.name (field 5) = b"\xff\xfe"
    body = b"\x0a\x08\x12\x06\x12\x04" + span
    with pytest.raises(DecodeError):
        decode_request("traces", body, "protobuf")


@pytest.mark.parametrize(
    ("request_", "path"),
    [
        (
            ExportTraceServiceRequest(
                resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[Span(), Span(trace_id=b"x" * 15)])])]
            ),
            "resource_spans[0].scope_spans[0].spans[1].trace_id: a trace id is 16 bytes (or empty), got 15",
        ),
        (
            ExportTraceServiceRequest(
                resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[Span(parent_span_id=b"x" * 16)])])]
            ),
            "resource_spans[0].scope_spans[0].spans[0].parent_span_id: a span id is 8 bytes (or empty), got 16",
        ),
        (
            ExportTraceServiceRequest(
                resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[Span(links=[Span.Link(span_id=b"x")])])])]
            ),
            "resource_spans[0].scope_spans[0].spans[0].links[0].span_id: a span id is 8 bytes (or empty), got 1",
        ),
        (
            ExportLogsServiceRequest(
                resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(trace_id=b"x" * 32)])])]
            ),
            "resource_logs[0].scope_logs[0].log_records[0].trace_id: a trace id is 16 bytes (or empty), got 32",
        ),
        (
            ExportMetricsServiceRequest(
                resource_metrics=[
                    ResourceMetrics(
                        scope_metrics=[
                            ScopeMetrics(
                                metrics=[
                                    Metric(
                                        gauge=Gauge(
                                            data_points=[NumberDataPoint(exemplars=[Exemplar(span_id=b"x" * 7)])]
                                        )
                                    )
                                ]
                            )
                        ]
                    )
                ]
            ),
            "resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].exemplars[0].span_id:"
            " a span id is 8 bytes (or empty), got 7",
        ),
    ],
)
def test_protobuf_id_of_the_wrong_length_raises_decode_error_naming_it(request_: Message, path: str) -> None:
    """Ids are 16/8 bytes or empty, as the collector's pdata requires; upb alone accepted any length."""
    signal: Signal = {
        ExportTraceServiceRequest: "traces",
        ExportLogsServiceRequest: "logs",
        ExportMetricsServiceRequest: "metrics",
    }[type(request_)]  # type: ignore[assignment]
    with pytest.raises(DecodeError) as caught:
        decode_request(signal, request_.SerializeToString(), "protobuf")
    assert f"invalid protobuf {type(request_).__name__}: {path}" == caught.value.reason


@pytest.mark.parametrize(
    "value",
    [
        AnyValue(int_value=2**63 - 1),
        AnyValue(int_value=-1),
        AnyValue(int_value=-(2**63)),
        AnyValue(double_value=math.nan),
        AnyValue(double_value=math.inf),
        AnyValue(double_value=-math.inf),
        AnyValue(double_value=1e300),
        AnyValue(string_value="12"),
    ],
    ids=["int64-max", "minus-one", "int64-min", "nan", "inf", "-inf", "1e300", "string"],
)
@pytest.mark.parametrize("fmt", ["protobuf", "json"])
def test_weird_token_counts_are_valid_otlp(value: AnyValue, fmt: Any) -> None:
    """gen_ai.usage.* with NaN, -1 or int64 max is valid OTLP: decoded as sent, left to derivation to judge."""
    request = span_with_attribute(value)
    request.resource_spans[0].scope_spans[0].spans[0].attributes[0].key = "gen_ai.usage.input_tokens"
    body = request.SerializeToString() if fmt == "protobuf" else encode_request_json("traces", request)
    decoded = decode_request("traces", body, fmt).resource_spans[0].scope_spans[0].spans[0].attributes[0]
    # NaN != NaN, so compare the encoding: the same bits came through.
    assert value.SerializeToString() == decoded.value.SerializeToString()


def test_many_empty_gzip_members_are_refused_quickly() -> None:
    """Bug: each member copied the rest of the body (zlib's unused_data): 100k empty members (2 MB) took minutes."""
    body = gzip.compress(b"") * 100_000
    started = time.perf_counter()
    with pytest.raises(DecodeError) as caught:
        decompress(body, "gzip", 20 << 20)
    assert "gzip body refused: more than 65536 members" == caught.value.reason
    assert time.perf_counter() - started < 5  # was minutes; a generous bound for busy CI


def test_thousands_of_gzip_members_still_decompress_to_their_concatenation() -> None:
    """The member limit is far above what cat-ed bodies hold: 5000 members decode."""
    assert b"ab" * 5000 == decompress(gzip.compress(b"ab") * 5000, "gzip", LIMIT)


def test_zero_padding_after_gzip_is_skipped_in_linear_time() -> None:
    """20 MiB of zero padding after a member is tolerated, found with one scan."""
    assert b"x" == decompress(gzip.compress(b"x") + bytes(20 << 20), "gzip", 20 << 20)


def empty_zstd_blocks(count: int) -> bytes:
    """One zstd frame of ``count`` empty raw blocks and an empty last block: 3 bytes per block, no output."""
    frame_header = (0xFD2FB528).to_bytes(4, "little") + b"\x00\x00"  # no checksum, no content size, 1 KiB window
    return frame_header + b"\x00\x00\x00" * count + b"\x01\x00\x00"


@pytest.mark.parametrize(
    "body",
    [
        zstandard.ZstdCompressor().compress(b"") * 100_000,
        empty_zstd_blocks(100_000),
        zstandard.ZstdCompressor().compress(b"x") + ((0x184D2A50).to_bytes(4, "little") + bytes(4)) * 100_000,
    ],
    ids=["empty-frames", "empty-blocks", "skippable-frames"],
)
def test_zstd_bodies_of_countless_empty_parts_are_refused(body: bytes) -> None:
    """Bug: the frame check walked every frame and block in Python: 20 MiB of empty blocks took 6 s."""
    with pytest.raises(DecodeError) as caught:
        decompress(body, "zstd", 20 << 20)
    assert "zstd body refused: more than 65536 frames and blocks" == caught.value.reason


def test_nested_gzip_is_inflated_once() -> None:
    """gzip inside gzip is one layer of Content-Encoding: the inner layer is the (undecodable) payload."""
    inner = gzip.compress(bytes(1 << 20))
    assert inner == decompress(gzip.compress(inner), "gzip", 20 << 20)
    with pytest.raises(DecodeError):
        decode_request("traces", inner, "protobuf")


def test_deflate_bomb_is_capped() -> None:
    """A zlib stream of 64 MiB of zeros (about 64 KiB) stops at the cap."""
    with pytest.raises(PayloadTooLargeError):
        decompress(zlib.compress(bytes(64 << 20), 9), "deflate", 20 << 20)
