"""count_entries counts a request's items on the wire as upb would decode them, and stops past its limit."""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.protobuf.message import DecodeError as ProtobufDecodeError
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
from opentelemetry.proto.metrics.v1.metrics_pb2 import Sum as SumData

from proto_handlers import Signal, count_items
from proto_handlers.prescan import WireCount, count_entries
from tests.integration.test_hostile_corpus import ENTRIES, Entry
from tests.unit.test_fuzz_proto_handlers import REQUEST_TYPES, fuzz, mutations, signal_and_request

UNLIMITED = 10**12


def wire_fields(message: Any, *skipped: str) -> int:
    """How many fields ``message`` puts on the wire (each element of a repeated message field is one),
    leaving out the fields named ``skipped``."""
    return sum(
        len(value) if field.is_repeated else 1 for field, value in message.ListFields() if field.name not in skipped
    )


def others(signal: Signal, request: Any) -> int:
    """The fields the walk steps over on a canonically serialized request: every field at the levels
    above the items, containers included (the decoded request's view of the wire)."""
    resources, scopes, items = LEVELS[signal]
    total = wire_fields(request)
    for resource in getattr(request, resources):
        total += wire_fields(resource)
        for scope in getattr(resource, scopes):
            total += wire_fields(scope, items)
            for metric in scope.metrics if signal == "metrics" else ():
                kind = metric.WhichOneof("data")
                total += wire_fields(metric, *([kind] if kind else []))
                if kind:
                    total += wire_fields(getattr(metric, kind), "data_points")
    return total


LEVELS: dict[Signal, tuple[str, str, str]] = {
    "traces": ("resource_spans", "scope_spans", "spans"),
    "metrics": ("resource_metrics", "scope_metrics", ""),  # metric entries are stepped over: counted
    "logs": ("resource_logs", "scope_logs", "log_records"),
}


def decoded_by_upb(signal: Signal, body: bytes) -> object | None:
    try:
        return REQUEST_TYPES[signal].FromString(body)
    except ProtobufDecodeError:
        return None


@fuzz(200)
@given(signal_and_request)
def test_valid_requests_count_as_count_items(case: tuple[Signal, object]) -> None:
    """On any valid request, the walk finds count_items' items, and steps over every other field above them."""
    signal, request = case
    body = request.SerializeToString()  # type: ignore[attr-defined]
    assert WireCount(count_items(signal, request), others(signal, request)) == count_entries(  # type: ignore[arg-type]
        signal, body, UNLIMITED
    )


@fuzz(200)
@given(signal_and_request, st.integers(0, 6))
def test_a_limited_walk_is_over_the_limit_exactly_when_the_request_is(case: tuple[Signal, object], limit: int) -> None:
    """With a small limit: over it when the full count is, otherwise the full count (no bypass, no false refusal)."""
    signal, request = case
    body = request.SerializeToString()  # type: ignore[attr-defined]
    full = count_entries(signal, body, UNLIMITED)
    limited = count_entries(signal, body, limit)
    if full.items > limit or full.others > limit:
        assert limited.items > limit or limited.others > limit, (full, limited)
    else:
        assert full == limited


@fuzz(300)
@given(signal_and_request.flatmap(lambda pair: st.tuples(st.just(pair[0]), mutations(pair[1].SerializeToString()))))
def test_damaged_bodies_never_raise_nor_count_fewer_items_than_upb_decodes(case: tuple[Signal, bytes]) -> None:
    """Bit flips, cuts, inserted runs, wrong wire types, huge lengths: no exception, and whatever upb
    accepts is never undercounted (more is possible: a metric with two data fields, see the module)."""
    signal, body = case
    count = count_entries(signal, body, UNLIMITED)
    request = decoded_by_upb(signal, body)
    if request is not None:
        assert count.items >= count_items(signal, request)  # type: ignore[arg-type]


PROTOBUF_ENTRIES = [
    entry
    for entry in ENTRIES
    # 10M empty spans would take upb 1.8 GB to decode: test_ten_million_empty_spans_... covers it.
    if entry.fmt == "protobuf" and entry.encoding is None and entry.name != "gen/empty_spans_10m.pb"
]


@pytest.mark.parametrize("entry", PROTOBUF_ENTRIES, ids=lambda entry: entry.name)
def test_hostile_corpus_entries_count_as_upb_decodes_them(entry: Entry) -> None:
    """Unknown fields, groups, known fields of the wrong wire type, 1M empty spans: the same items as upb's decode."""
    signal: Signal = entry.signal  # type: ignore[assignment]
    body = entry.body()
    count = count_entries(signal, body, UNLIMITED)
    request = decoded_by_upb(signal, body)
    if request is not None:
        assert count_items(signal, request) == count.items  # type: ignore[arg-type]


def _field(number: int, payload: bytes) -> bytes:
    length = len(payload)
    varint = bytearray()
    while length > 127:
        varint.append(length & 0x7F | 0x80)
        length >>= 7
    varint.append(length)
    return bytes([number << 3 | 2]) + bytes(varint) + payload


def test_ten_million_empty_spans_stop_the_walk_just_past_the_limit() -> None:
    """19 MiB of empty spans: the walk stops at the 1001st span, the rest unread (well under a second)."""
    body = _field(1, _field(2, b"\x12\x00" * 10_000_000))
    started = time.perf_counter()
    count = count_entries("traces", body, 1000)
    elapsed = time.perf_counter() - started
    assert WireCount(1001, 2) == count
    assert elapsed < 0.5, elapsed


def test_ten_million_empty_resources_stop_the_walk_just_past_the_limit() -> None:
    """Containers cost memory too (60 bytes per empty resource): they are counted and stop the walk alike."""
    assert WireCount(0, 1001) == count_entries("logs", b"\x0a\x00" * 10_000_000, 1000)


@pytest.mark.parametrize(
    "body",
    [
        b"\x10\x00" * 10_000_000,  # field 2, a varint: unknown in the request
        _field(1, _field(2, b"\x18\x00" * 10_000_000)),  # field 3, a varint, among the spans
        _field(1, _field(2, b"\x1b" + b"\x18\x00" * 10_000_000 + b"\x1c")),  # the same inside a group
    ],
    ids=["top_level", "among_spans", "in_a_group"],
)
def test_ten_million_unknown_fields_stop_the_walk_just_past_the_limit(body: bytes) -> None:
    """upb skips unknown fields in C; the walk steps over them one by one, so they count against the limit."""
    started = time.perf_counter()
    count = count_entries("traces", body, 1000)
    elapsed = time.perf_counter() - started
    assert (0, 1001) == (count.items, count.others)
    assert elapsed < 0.5, elapsed


def test_a_metric_with_two_data_fields_counts_the_points_of_both() -> None:
    """A gauge then a sum in one metric: upb parses both (and keeps the sum), the walk counts both."""
    gauge = Metric(gauge=Gauge(data_points=[NumberDataPoint(as_int=1)] * 3)).SerializeToString()
    total = Metric(sum=SumData(data_points=[NumberDataPoint(as_int=1)] * 2)).SerializeToString()
    scope = ScopeMetrics(metrics=[Metric.FromString(gauge + total)])
    body = _field(1, _field(2, _field(2, gauge + total)))
    request = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(scope_metrics=[scope])])
    assert (2, WireCount(5, 3)) == (count_items("metrics", request), count_entries("metrics", body, UNLIMITED))


def test_a_span_overrunning_its_scope_ends_the_walk_without_raising() -> None:
    """A last span declaring more bytes than its scope holds: the walk ends there, with the counts so far
    (upb refuses the body)."""
    body = _field(1, _field(2, b"\x12\x02\x08\x01" * 2 + b"\x12\x05\x08\x01"))
    assert decoded_by_upb("traces", body) is None
    assert WireCount(3, 2) == count_entries("traces", body, UNLIMITED)
