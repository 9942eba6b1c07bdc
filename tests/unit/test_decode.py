"""proto_handlers.decode: OTLP protobuf and OTLP/JSON bodies -> request messages, and item counts."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Exemplar,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from proto_handlers import SIGNALS, DecodeError, Signal, count_items, decode_request
from proto_handlers.raw_attributes import status_code

EXAMPLES = Path(__file__).parent.parent / "data" / "otlp_json"

TRACE_ID = bytes.fromhex("5B8EFFF798038103D269B633813FC60C")
SPAN_ID = bytes.fromhex("EEE19B7EC3C1B174")
PARENT_SPAN_ID = bytes.fromhex("EEE19B7EC3C1B173")


def string_attribute(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def example_resource() -> Resource:
    return Resource(attributes=[string_attribute("service.name", "my.service")])


def example_scope() -> InstrumentationScope:
    return InstrumentationScope(
        name="my.library",
        version="1.0.0",
        attributes=[string_attribute("my.scope.attribute", "some scope attribute")],
    )


def trace_request(*span_names: str) -> ExportTraceServiceRequest:
    spans = [Span(trace_id=TRACE_ID, span_id=SPAN_ID, name=name) for name in span_names]
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=example_resource(), scope_spans=[ScopeSpans(spans=spans)])]
    )


def json_body(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)


def span_json(**span: Any) -> bytes:
    """An OTLP/JSON traces body holding one span with the given fields."""
    return json_body({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


def decoded_span(body: bytes) -> Span:
    request = decode_request("traces", body, "json")
    span: Span = request.resource_spans[0].scope_spans[0].spans[0]
    return span


def example_requests() -> dict[Signal, Any]:
    """One request per signal with every kind of content, for protobuf round trips."""
    return {
        "traces": trace_request("a", "b"),
        "metrics": ExportMetricsServiceRequest(
            resource_metrics=[
                ResourceMetrics(
                    resource=example_resource(),
                    scope_metrics=[
                        ScopeMetrics(metrics=[Metric(name="m", gauge=Gauge(data_points=[NumberDataPoint(as_int=7)]))])
                    ],
                )
            ]
        ),
        "logs": ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(
                    resource=example_resource(),
                    scope_logs=[ScopeLogs(log_records=[LogRecord(body=AnyValue(string_value="hi"))])],
                )
            ]
        ),
    }


# --- protobuf ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
def test_protobuf_body_decodes_to_the_request_it_was_serialized_from(signal: Signal) -> None:
    """decode_request(protobuf) is the inverse of SerializeToString for every signal."""
    request = example_requests()[signal]
    assert request == decode_request(signal, request.SerializeToString(), "protobuf")


@pytest.mark.parametrize(
    ("signal", "request_type"),
    [
        ("traces", ExportTraceServiceRequest),
        ("metrics", ExportMetricsServiceRequest),
        ("logs", ExportLogsServiceRequest),
    ],
)
def test_empty_protobuf_body_is_an_empty_request_of_the_signal(signal: Signal, request_type: type) -> None:
    """Zero bytes are a valid protobuf message with no resources."""
    assert request_type() == decode_request(signal, b"", "protobuf")


def test_invalid_protobuf_raises_decode_error_naming_the_request_type() -> None:
    """Bytes that are not a request give a 400 reason that says what was expected."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", b"\x0a\xff\xff\xff", "protobuf")
    assert caught.value.reason.startswith("invalid protobuf ExportTraceServiceRequest: ")


def test_unknown_wire_format_is_a_programming_error() -> None:
    """Only "protobuf" and "json" exist; anything else is a bug in the caller, not bad input."""
    with pytest.raises(ValueError, match="unknown wire format 'xml'"):
        decode_request("traces", b"", "xml")  # type: ignore[call-overload]


# --- OTLP/JSON: the spec's examples ------------------------------------------------------------


def test_spec_trace_example_decodes_to_the_equivalent_request() -> None:
    """examples/trace.json of opentelemetry-proto: hex ids, int64 as strings, enum as int."""
    expected = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=example_resource(),
                scope_spans=[
                    ScopeSpans(
                        scope=example_scope(),
                        spans=[
                            Span(
                                trace_id=TRACE_ID,
                                span_id=SPAN_ID,
                                parent_span_id=PARENT_SPAN_ID,
                                name="I'm a server span",
                                start_time_unix_nano=1544712660000000000,
                                end_time_unix_nano=1544712661000000000,
                                kind=Span.SPAN_KIND_SERVER,
                                attributes=[string_attribute("my.span.attr", "some value")],
                            )
                        ],
                    )
                ],
            )
        ]
    )
    assert expected == decode_request("traces", (EXAMPLES / "trace.json").read_bytes(), "json")


def test_spec_metrics_example_decodes_to_the_equivalent_request() -> None:
    """examples/metrics.json: a sum, a gauge, a histogram and an exponential histogram."""
    start = time = 1544712660300000000
    expected = ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=example_resource(),
                scope_metrics=[
                    ScopeMetrics(
                        scope=example_scope(),
                        metrics=[
                            Metric(
                                name="my.counter",
                                unit="1",
                                description="I am a Counter",
                                sum=Sum(
                                    aggregation_temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA,
                                    is_monotonic=True,
                                    data_points=[
                                        NumberDataPoint(
                                            as_double=5,
                                            start_time_unix_nano=start,
                                            time_unix_nano=time,
                                            attributes=[string_attribute("my.counter.attr", "some value")],
                                        )
                                    ],
                                ),
                            ),
                            Metric(
                                name="my.gauge",
                                unit="1",
                                description="I am a Gauge",
                                gauge=Gauge(
                                    data_points=[
                                        NumberDataPoint(
                                            as_double=10,
                                            time_unix_nano=time,
                                            attributes=[string_attribute("my.gauge.attr", "some value")],
                                        )
                                    ]
                                ),
                            ),
                            Metric(
                                name="my.histogram",
                                unit="1",
                                description="I am a Histogram",
                                histogram=Histogram(
                                    aggregation_temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA,
                                    data_points=[
                                        HistogramDataPoint(
                                            start_time_unix_nano=start,
                                            time_unix_nano=time,
                                            count=2,
                                            sum=2,
                                            bucket_counts=[1, 1],
                                            explicit_bounds=[1],
                                            min=0,
                                            max=2,
                                            attributes=[string_attribute("my.histogram.attr", "some value")],
                                        )
                                    ],
                                ),
                            ),
                            Metric(
                                name="my.exponential.histogram",
                                unit="1",
                                description="I am an Exponential Histogram",
                                exponential_histogram=ExponentialHistogram(
                                    aggregation_temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA,
                                    data_points=[
                                        ExponentialHistogramDataPoint(
                                            start_time_unix_nano=start,
                                            time_unix_nano=time,
                                            count=3,
                                            sum=10,
                                            scale=0,
                                            zero_count=1,
                                            positive=ExponentialHistogramDataPoint.Buckets(
                                                offset=1, bucket_counts=[0, 2]
                                            ),
                                            min=0,
                                            max=5,
                                            zero_threshold=0,
                                            attributes=[
                                                string_attribute("my.exponential.histogram.attr", "some value")
                                            ],
                                        )
                                    ],
                                ),
                            ),
                        ],
                    )
                ],
            )
        ]
    )
    assert expected == decode_request("metrics", (EXAMPLES / "metrics.json").read_bytes(), "json")


def test_spec_logs_example_decodes_to_the_equivalent_request() -> None:
    """examples/logs.json: hex trace context on a log record and every AnyValue kind."""
    expected = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=example_resource(),
                scope_logs=[
                    ScopeLogs(
                        scope=example_scope(),
                        log_records=[
                            LogRecord(
                                time_unix_nano=1544712660300000000,
                                observed_time_unix_nano=1544712660300000000,
                                severity_number=10,  # SEVERITY_NUMBER_INFO2
                                severity_text="Information",
                                trace_id=TRACE_ID,
                                span_id=SPAN_ID,
                                body=AnyValue(string_value="Example log record"),
                                attributes=[
                                    string_attribute("string.attribute", "some string"),
                                    KeyValue(key="boolean.attribute", value=AnyValue(bool_value=True)),
                                    KeyValue(key="int.attribute", value=AnyValue(int_value=10)),
                                    KeyValue(key="double.attribute", value=AnyValue(double_value=637.704)),
                                    KeyValue(
                                        key="array.attribute",
                                        value=AnyValue(
                                            array_value=ArrayValue(
                                                values=[AnyValue(string_value="many"), AnyValue(string_value="values")]
                                            )
                                        ),
                                    ),
                                    KeyValue(
                                        key="map.attribute",
                                        value=AnyValue(
                                            kvlist_value=KeyValueList(
                                                values=[string_attribute("some.map.key", "some value")]
                                            )
                                        ),
                                    ),
                                ],
                            )
                        ],
                    )
                ],
            )
        ]
    )
    assert expected == decode_request("logs", (EXAMPLES / "logs.json").read_bytes(), "json")


# --- OTLP/JSON: ids are hex ------------------------------------------------------------------


def test_json_span_ids_are_read_as_hex_in_either_case() -> None:
    """Hex digits may be upper or lower case."""
    span = decoded_span(span_json(traceId=TRACE_ID.hex(), spanId=SPAN_ID.hex().upper()))
    assert (TRACE_ID, SPAN_ID) == (span.trace_id, span.span_id)


def test_json_link_ids_are_read_as_hex() -> None:
    """Links carry a trace id and span id of their own, also hex."""
    span = decoded_span(span_json(links=[{"traceId": TRACE_ID.hex(), "spanId": SPAN_ID.hex()}]))
    assert (TRACE_ID, SPAN_ID) == (span.links[0].trace_id, span.links[0].span_id)


def test_json_log_record_ids_are_read_as_hex() -> None:
    """Log records carry the trace context they were emitted in."""
    body = json_body(
        {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": TRACE_ID.hex(), "spanId": SPAN_ID.hex()}]}]}]}
    )
    record = decode_request("logs", body, "json").resource_logs[0].scope_logs[0].log_records[0]
    assert (TRACE_ID, SPAN_ID) == (record.trace_id, record.span_id)


@pytest.mark.parametrize("data", ["gauge", "sum", "histogram", "exponentialHistogram"])
def test_json_exemplar_ids_are_read_as_hex_in_every_metric_type_with_exemplars(data: str) -> None:
    """Exemplars link a data point to the span it was measured in."""
    exemplar = {"traceId": TRACE_ID.hex(), "spanId": SPAN_ID.hex(), "asDouble": 1.5}
    metric = {"name": "m", data: {"dataPoints": [{"exemplars": [exemplar]}]}}
    body = json_body({"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]})
    decoded = decode_request("metrics", body, "json").resource_metrics[0].scope_metrics[0].metrics[0]
    points = getattr(decoded, decoded.WhichOneof("data")).data_points
    assert Exemplar(trace_id=TRACE_ID, span_id=SPAN_ID, as_double=1.5) == points[0].exemplars[0]


def test_json_base64_trace_id_raises_decode_error_naming_trace_id() -> None:
    """Base64 is the protobuf JSON default, but OTLP/JSON ids are hex: a base64 id is refused."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", span_json(traceId=base64.b64encode(TRACE_ID).decode()), "json")
    assert (
        "resourceSpans[0].scopeSpans[0].spans[0].traceId: a trace id must be 32 hex digits"
        " (16 bytes; OTLP/JSON ids are hex, not base64), got 24 characters"
    ) == caught.value.reason


def test_json_id_of_the_right_length_but_not_hex_raises_decode_error() -> None:
    """Non-hex characters are refused even when the length is right."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", span_json(spanId="EEE19B7EC3C1B17G"), "json")
    assert (
        "resourceSpans[0].scopeSpans[0].spans[0].spanId: a span id must be 16 hex digits"
        " (OTLP/JSON ids are hex, not base64)"
    ) == caught.value.reason


def test_json_id_with_spaces_raises_decode_error() -> None:
    """bytes.fromhex would skip spaces; an id must be exactly its hex digits."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", span_json(spanId="EEE19B7 C3C1B174"), "json")
    assert caught.value.reason.startswith("resourceSpans[0].scopeSpans[0].spans[0].spanId: ")


def test_json_error_path_names_the_entry_and_the_field() -> None:
    """The reason locates the bad id by index, down to links."""
    link = {"traceId": TRACE_ID.hex(), "spanId": "abcd"}
    body = json_body({"resourceSpans": [{}, {"scopeSpans": [{"spans": [{}, {"links": [{}, link]}]}]}]})
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", body, "json")
    assert (
        "resourceSpans[1].scopeSpans[0].spans[1].links[1].spanId: a span id must be 16 hex digits"
        " (8 bytes; OTLP/JSON ids are hex, not base64), got 4 characters"
    ) == caught.value.reason


def test_json_wrong_length_parent_span_id_raises_decode_error() -> None:
    """A span id is 8 bytes: a 16-byte value in parentSpanId is refused."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", span_json(parentSpanId=TRACE_ID.hex()), "json")
    assert caught.value.reason.startswith("resourceSpans[0].scopeSpans[0].spans[0].parentSpanId: ")


def test_json_id_that_is_not_a_string_raises_decode_error() -> None:
    """Ids are strings in OTLP/JSON."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", span_json(traceId=12), "json")
    assert (
        "resourceSpans[0].scopeSpans[0].spans[0].traceId: a trace id must be a hex string, not a number"
    ) == caught.value.reason


def test_json_empty_and_null_ids_mean_no_id() -> None:
    """An empty id (a root span has no parent) and null are both "not set"."""
    span = decoded_span(span_json(traceId=TRACE_ID.hex(), spanId=SPAN_ID.hex(), parentSpanId="", links=None))
    assert (b"", 0) == (span.parent_span_id, len(span.links))
    assert b"" == decoded_span(span_json(parentSpanId=None)).parent_span_id


def test_json_snake_case_field_names_are_accepted_ids_included() -> None:
    """The original proto field names are accepted too, including for ids."""
    body = json_body(
        {
            "resource_spans": [
                {"scope_spans": [{"spans": [{"trace_id": TRACE_ID.hex(), "parent_span_id": SPAN_ID.hex()}]}]}
            ]
        }
    )
    span = decode_request("traces", body, "json").resource_spans[0].scope_spans[0].spans[0]
    assert (TRACE_ID, SPAN_ID) == (span.trace_id, span.parent_span_id)


# --- OTLP/JSON: the rest of the mapping ------------------------------------------------------


def test_json_enum_names_are_accepted_as_well_as_integers() -> None:
    """Enums are integers in OTLP/JSON; names are accepted too."""
    span = decoded_span(span_json(kind="SPAN_KIND_CLIENT", status={"code": 2}))
    assert (Span.SPAN_KIND_CLIENT, 2) == (span.kind, span.status.code)


def test_json_int64_may_be_a_number_or_a_string() -> None:
    """64-bit integers come as decimal strings per the spec, but numbers are accepted."""
    span = decoded_span(span_json(startTimeUnixNano=1544712660000000000, endTimeUnixNano="1544712661000000000"))
    assert (1544712660000000000, 1544712661000000000) == (span.start_time_unix_nano, span.end_time_unix_nano)


def test_json_unknown_fields_are_ignored_at_every_level() -> None:
    """Receivers MUST ignore fields they do not know: newer senders may add some."""
    body = json_body(
        {
            "future": 1,
            "resourceSpans": [{"unknown": [1], "scopeSpans": [{"spans": [{"name": "s", "newField": {"a": 1}}]}]}],
        }
    )
    expected = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[Span(name="s")])])]
    )
    assert expected == decode_request("traces", body, "json")


def test_json_bytes_attribute_values_stay_base64() -> None:
    """Only ids are hex: bytesValue keeps the standard base64 mapping."""
    span = decoded_span(span_json(attributes=[{"key": "k", "value": {"bytesValue": "AAEC"}}]))
    assert b"\x00\x01\x02" == span.attributes[0].value.bytes_value


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[]", "invalid OTLP/JSON: the body must be a JSON object, not an array"),
        (b'"resourceSpans"', "invalid OTLP/JSON: the body must be a JSON object, not a string"),
        (b"null", "invalid OTLP/JSON: the body must be a JSON object, not null"),
    ],
)
def test_json_body_that_is_not_an_object_raises_decode_error(body: bytes, reason: str) -> None:
    """A request is a JSON object."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", body, "json")
    assert reason == caught.value.reason


def test_invalid_json_raises_decode_error() -> None:
    """Syntax errors are client errors."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", b'{"resourceSpans": [', "json")
    assert caught.value.reason.startswith("invalid JSON: ")


def test_json_with_invalid_utf8_raises_decode_error() -> None:
    """OTLP/JSON is UTF-8; other bytes in a string are refused."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", b'{"resourceSpans": [{"x": "\xff"}]}', "json")
    assert caught.value.reason.startswith("invalid JSON: ")


def test_json_field_of_the_wrong_type_raises_decode_error_naming_the_message() -> None:
    """Type errors found by the protobuf JSON parser become DecodeErrors too."""
    with pytest.raises(DecodeError) as caught:
        decode_request("traces", span_json(startTimeUnixNano="yesterday"), "json")
    assert caught.value.reason.startswith("invalid OTLP/JSON ExportTraceServiceRequest: ")


_JSON_KEYS = st.sampled_from(
    ["resourceSpans", "scopeSpans", "spans", "links", "traceId", "spanId", "name", "kind", "attributes", "x"]
)
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(alphabet="0123456789abcdefABCDEF=+/ xyz", max_size=40),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_JSON_KEYS, children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, database=None, deadline=None)
@given(st.dictionaries(_JSON_KEYS, _JSON_VALUES, max_size=4))
def test_any_json_object_decodes_or_raises_decode_error(document: dict[str, Any]) -> None:
    """Whatever the shape, a JSON body never escapes as anything but DecodeError (never a 500)."""
    body = json.dumps(document).encode()
    try:
        decode_request("traces", body, "json")
    except DecodeError as error:
        assert error.reason


# --- count_items -----------------------------------------------------------------------------


def test_count_items_counts_spans_across_resources_and_scopes() -> None:
    """Traces are counted in spans."""
    request = trace_request("a", "b")
    request.resource_spans.append(ResourceSpans(scope_spans=[ScopeSpans(spans=[Span()]), ScopeSpans()]))
    assert 3 == count_items("traces", request)


def test_count_items_counts_data_points_of_every_metric_type() -> None:
    """Metrics are counted in data points, as the collector does, whatever the metric type."""
    metrics = [
        Metric(gauge=Gauge(data_points=[NumberDataPoint()])),
        Metric(sum=Sum(data_points=[NumberDataPoint(), NumberDataPoint()])),
        Metric(histogram=Histogram(data_points=[HistogramDataPoint()] * 3)),
        Metric(exponential_histogram=ExponentialHistogram(data_points=[ExponentialHistogramDataPoint()] * 4)),
        Metric(summary=Summary(data_points=[SummaryDataPoint()] * 5)),
        Metric(name="no data"),
    ]
    request = ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=metrics)])]
    )
    assert 15 == count_items("metrics", request)


def test_count_items_counts_log_records() -> None:
    """Logs are counted in log records."""
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(), LogRecord()])]),
            ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord()])]),
        ]
    )
    assert 3 == count_items("logs", request)


@pytest.mark.parametrize(("signal", "items"), [("traces", 1), ("metrics", 4), ("logs", 1)])
def test_count_items_of_the_spec_examples(signal: Signal, items: int) -> None:
    """The spec examples hold one span, four data points and one log record."""
    name = {"traces": "trace", "metrics": "metrics", "logs": "logs"}[signal]
    request = decode_request(signal, (EXAMPLES / f"{name}.json").read_bytes(), "json")
    assert items == count_items(signal, request)


@pytest.mark.parametrize("signal", SIGNALS)
def test_count_items_of_an_empty_request_is_zero(signal: Signal) -> None:
    """An empty request carries no items."""
    assert 0 == count_items(signal, decode_request(signal, b"", "protobuf"))


# --- the derivation view (indexed=True) --------------------------------------------------------


def _error_span_request(value: AnyValue) -> ExportTraceServiceRequest:
    span = Span(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        name="chat gpt-4o",
        attributes=[KeyValue(key="gen_ai.operation.name", value=value)],
    )
    span.status.code = Status.STATUS_CODE_ERROR
    span.status.message = "boom"
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span)
    return request


def test_indexed_traces_keep_span_attributes_and_status_serialized() -> None:
    """Derivation gets each span attribute as its KeyValue bytes and the status as bytes; nothing else changes."""
    request = _error_span_request(AnyValue(string_value="chat"))
    body = request.SerializeToString()
    view = decode_request("traces", body, "protobuf", indexed=True)
    span = view.resource_spans[0].scope_spans[0].spans[0]
    assert (
        [KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="chat")).SerializeToString()],
        Status.STATUS_CODE_ERROR,
        "chat gpt-4o",
        body,
    ) == (list(span.attributes), status_code(span.status), span.name, view.SerializeToString())


def test_indexed_decode_validates_span_attributes_like_the_real_schema() -> None:
    """An attribute value that is not valid UTF-8 is refused even though the view keeps attributes as bytes."""
    body = _error_span_request(AnyValue(string_value="chat")).SerializeToString().replace(b"chat", b"ch\xffa", 1)
    with pytest.raises(DecodeError, match="invalid protobuf ExportTraceServiceRequest"):
        decode_request("traces", body, "protobuf", indexed=True)


@pytest.mark.parametrize(
    "status",
    [Status(), Status(code=Status.STATUS_CODE_OK), Status(code=Status.STATUS_CODE_ERROR), Status(message="only")],
    ids=["unset", "ok", "error", "message-only"],
)
def test_status_code_reads_a_serialized_status(status: Status) -> None:
    """The view keeps Span.status as bytes; its code reads the same as through the real message."""
    assert status.code == status_code(status.SerializeToString())
