"""proto_handlers.batching: join and split serialized requests without re-encoding them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from proto_handlers import DecodeError, concat_requests, decode_request, split_request


def resource_spans(service: str, *span_names: str) -> ResourceSpans:
    return ResourceSpans(
        resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]),
        scope_spans=[ScopeSpans(spans=[Span(name=name) for name in span_names])],
    )


def trace_request(*resources: ResourceSpans) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=list(resources))


def entry_sizes(request: ExportTraceServiceRequest) -> list[int]:
    """Serialized size of each top-level resource_spans record (tag and length included)."""
    return [len(trace_request(entry).SerializeToString()) for entry in request.resource_spans]


THREE_SERVICES = trace_request(
    resource_spans("checkout", "a", "b"),
    resource_spans("cart", "c"),
    resource_spans("payment", "d", "e", "f"),
)


# --- concat_requests -------------------------------------------------------------------------


def test_concatenation_of_two_requests_decodes_to_the_union_of_their_resources() -> None:
    """Serialized requests concatenated are one request holding every resource, in order."""
    first = trace_request(resource_spans("checkout", "a", "b"))
    second = trace_request(resource_spans("cart", "c"), resource_spans("payment", "d"))
    joined = concat_requests([first.SerializeToString(), second.SerializeToString()])
    expected = trace_request(
        resource_spans("checkout", "a", "b"), resource_spans("cart", "c"), resource_spans("payment", "d")
    )
    assert expected == decode_request("traces", joined, "protobuf")


def test_concatenation_works_for_every_signal() -> None:
    """The layout is the same for metrics and logs: field 1 is the repeated resource entry."""
    part = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(severity_text="INFO")])])]
    ).SerializeToString()
    decoded = decode_request("logs", concat_requests([part, part, part]), "protobuf")
    assert 3 == len(decoded.resource_logs)


def test_concatenation_skips_nothing_for_empty_parts() -> None:
    """Empty requests contribute nothing."""
    part = THREE_SERVICES.SerializeToString()
    assert part == concat_requests([b"", part, b""])


def test_concatenation_of_no_parts_is_the_empty_request() -> None:
    """Zero requests join into the empty request."""
    assert b"" == concat_requests([])


# --- split_request ---------------------------------------------------------------------------


def test_request_that_fits_is_returned_whole() -> None:
    """Nothing is parsed or copied when the request is already small enough."""
    body = THREE_SERVICES.SerializeToString()
    assert [body] == split_request("traces", body, len(body))


def test_split_cuts_between_resources_into_chunks_within_the_limit() -> None:
    """Each chunk holds whole resource entries and is at most max_bytes long."""
    body = THREE_SERVICES.SerializeToString()
    first, second, third = entry_sizes(THREE_SERVICES)
    chunks = split_request("traces", body, first + second)
    assert [first + second, third] == [len(chunk) for chunk in chunks]


def test_split_chunks_concatenate_back_to_the_original_bytes() -> None:
    """Cutting on record boundaries loses and re-encodes nothing."""
    body = THREE_SERVICES.SerializeToString()
    assert body == b"".join(split_request("traces", body, max(entry_sizes(THREE_SERVICES))))


def test_each_chunk_decodes_to_consecutive_resources() -> None:
    """Every chunk is a valid request of its own."""
    body = THREE_SERVICES.SerializeToString()
    chunks = split_request("traces", body, max(entry_sizes(THREE_SERVICES)))
    expected = [trace_request(entry) for entry in THREE_SERVICES.resource_spans]
    assert expected == [decode_request("traces", chunk, "protobuf") for chunk in chunks]


def test_resource_larger_than_the_limit_becomes_a_chunk_of_its_own() -> None:
    """An entry cannot be cut on the wire, so an oversized one is sent alone."""
    big = resource_spans("big", *(f"span-{i}" for i in range(100)))
    request = trace_request(resource_spans("a", "x"), big, resource_spans("b", "y"))
    small, oversized, other = entry_sizes(request)
    chunks = split_request("traces", request.SerializeToString(), small + other)
    assert [small, oversized, other] == [len(chunk) for chunk in chunks]


def test_splitting_the_empty_request_gives_no_chunks() -> None:
    """Nothing to send means no request."""
    assert [] == split_request("traces", b"", 100)


def test_unknown_top_level_fields_are_kept_as_entries() -> None:
    """Fields requests do not define are carried along as entries of their own, never dropped."""
    unknown = bytes([(9 << 3) | 0, 0x96, 0x01])  # field 9, varint 150
    entries = [trace_request(entry).SerializeToString() for entry in THREE_SERVICES.resource_spans]
    chunks = split_request("traces", unknown + b"".join(entries), len(unknown) + len(entries[0]))
    assert [unknown + entries[0], entries[1], entries[2]] == chunks


def test_truncated_request_raises_decode_error_naming_the_request_type() -> None:
    """A length that runs past the end of the body is broken framing."""
    body = THREE_SERVICES.SerializeToString()
    with pytest.raises(DecodeError) as caught:
        split_request("traces", body[:-1], 10)
    last_entry_start = len(body) - entry_sizes(THREE_SERVICES)[-1]
    assert f"invalid protobuf ExportTraceServiceRequest: truncated field at byte {last_entry_start}" == (
        caught.value.reason
    )


def test_truncated_varint_raises_decode_error() -> None:
    """A tag cut in the middle of its varint is broken framing."""
    with pytest.raises(DecodeError) as caught:
        split_request("metrics", b"\x0a\x00" * 8 + b"\x80", 4)
    assert "invalid protobuf ExportMetricsServiceRequest: truncated varint at byte 17" == caught.value.reason


def test_group_wire_type_raises_decode_error() -> None:
    """Groups do not occur in OTLP and are refused rather than skipped blindly."""
    with pytest.raises(DecodeError) as caught:
        split_request("logs", b"\x0b" + b"\x0a\x00" * 8, 4)
    assert "invalid protobuf ExportLogsServiceRequest: unsupported wire type 3 at byte 0" == caught.value.reason


def test_non_positive_limit_is_a_programming_error() -> None:
    """A chunk must be allowed at least one byte."""
    with pytest.raises(ValueError, match="max_bytes must be > 0"):
        split_request("traces", THREE_SERVICES.SerializeToString(), 0)


@settings(max_examples=200, database=None, deadline=None)
@given(
    span_counts=st.lists(st.integers(min_value=0, max_value=20), max_size=12),
    max_bytes=st.integers(min_value=1, max_value=2000),
)
def test_split_then_concat_round_trips_and_respects_the_limit(span_counts: list[int], max_bytes: int) -> None:
    """For any request and limit, chunks join back to the input and only lone entries exceed the limit."""
    request = trace_request(
        *(resource_spans(f"svc-{i}", *(f"s{j}" for j in range(n))) for i, n in enumerate(span_counts))
    )
    body = request.SerializeToString()
    chunks = split_request("traces", body, max_bytes)
    assert body == concat_requests(chunks)
    for chunk in chunks:
        assert len(chunk) <= max_bytes or len(decode_request("traces", chunk, "protobuf").resource_spans) == 1
