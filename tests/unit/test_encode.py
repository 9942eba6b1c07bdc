"""proto_handlers.encode: export responses, error Status bodies and OTLP/JSON for exporters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Exemplar,
    Histogram,
    HistogramDataPoint,
    Metric,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.proto.trace.v1.trace_pb2 import Status as SpanStatus

from proto_handlers import (
    SIGNALS,
    Signal,
    decode_request,
    encode_export_response,
    encode_request_json,
    encode_status,
)

EXAMPLES = Path(__file__).parent.parent / "data" / "otlp_json"

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")
PARENT_SPAN_ID = bytes.fromhex("eee19b7ec3c1b173")

REJECTED_FIELD = {"traces": "rejectedSpans", "metrics": "rejectedDataPoints", "logs": "rejectedLogRecords"}


def partial_success_response(signal: Signal, rejected: int, message: str) -> Any:
    if signal == "traces":
        return ExportTraceServiceResponse(
            partial_success=ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
        )
    if signal == "metrics":
        return ExportMetricsServiceResponse(
            partial_success=ExportMetricsPartialSuccess(rejected_data_points=rejected, error_message=message)
        )
    return ExportLogsServiceResponse(
        partial_success=ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
    )


def full_requests() -> dict[Signal, Any]:
    """A request per signal with ids in every place OTLP/JSON puts them, enums and int64s."""
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="checkout"))])
    span = Span(
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        parent_span_id=PARENT_SPAN_ID,
        name="chat gpt-4o",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1544712660000000000,
        end_time_unix_nano=1544712661000000000,
        status=SpanStatus(code=SpanStatus.STATUS_CODE_ERROR, message="boom"),
        links=[Span.Link(trace_id=TRACE_ID, span_id=PARENT_SPAN_ID)],
        attributes=[KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=1234))],
    )
    histogram = Histogram(
        aggregation_temporality=2,
        data_points=[
            HistogramDataPoint(
                count=2,
                sum=3.5,
                bucket_counts=[1, 1],
                explicit_bounds=[1.0],
                exemplars=[Exemplar(trace_id=TRACE_ID, span_id=SPAN_ID, as_double=2.5, time_unix_nano=1)],
            )
        ],
    )
    return {
        "traces": ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=[span])])]
        ),
        "metrics": ExportMetricsServiceRequest(
            resource_metrics=[
                ResourceMetrics(
                    resource=resource,
                    scope_metrics=[ScopeMetrics(metrics=[Metric(name="latency", histogram=histogram)])],
                )
            ]
        ),
        "logs": ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(
                    resource=resource,
                    scope_logs=[
                        ScopeLogs(
                            log_records=[
                                LogRecord(
                                    trace_id=TRACE_ID,
                                    span_id=SPAN_ID,
                                    severity_number=9,
                                    body=AnyValue(bytes_value=b"\x00\x01"),
                                )
                            ]
                        )
                    ],
                )
            ]
        ),
    }


# --- Export*ServiceResponse ------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
def test_full_success_is_an_empty_protobuf_response(signal: Signal) -> None:
    """Without rejections or message, partial_success is left unset: zero bytes."""
    assert b"" == encode_export_response(signal, "protobuf")


@pytest.mark.parametrize("signal", SIGNALS)
def test_full_success_is_an_empty_json_object(signal: Signal) -> None:
    """The OTLP/JSON form of the empty response is {}."""
    assert b"{}" == encode_export_response(signal, "json")


@pytest.mark.parametrize("signal", SIGNALS)
def test_rejections_set_partial_success_in_the_signal_unit(signal: Signal) -> None:
    """rejected fills rejected_spans / rejected_data_points / rejected_log_records."""
    body = encode_export_response(signal, "protobuf", rejected=3, error_message="over budget")
    response = partial_success_response(signal, 3, "over budget")
    assert response == type(response).FromString(body)


@pytest.mark.parametrize("signal", SIGNALS)
def test_json_partial_success_has_camel_case_keys_and_int64_as_a_string(signal: Signal) -> None:
    """The JSON response follows OTLP/JSON: lowerCamelCase keys, int64 as a decimal string."""
    body = encode_export_response(signal, "json", rejected=3, error_message="over budget")
    expected = f'{{"partialSuccess":{{"{REJECTED_FIELD[signal]}":"3","errorMessage":"over budget"}}}}'
    assert expected.encode() == body


@pytest.mark.parametrize("signal", SIGNALS)
def test_json_response_is_what_message_to_json_produces(signal: Signal) -> None:
    """Same JSON value as protobuf's own MessageToJson, only compact."""
    response = partial_success_response(signal, 7, "")
    assert orjson.loads(json_format.MessageToJson(response)) == orjson.loads(
        encode_export_response(signal, "json", rejected=7)
    )


def test_a_message_without_rejections_is_a_warning() -> None:
    """The spec allows partial_success with rejected 0 and a message, to warn the sender."""
    assert b'{"partialSuccess":{"errorMessage":"attribute truncated"}}' == encode_export_response(
        "traces", "json", error_message="attribute truncated"
    )


def test_negative_rejected_count_is_a_programming_error() -> None:
    """A count cannot be negative."""
    with pytest.raises(ValueError, match="rejected must be >= 0"):
        encode_export_response("traces", "protobuf", rejected=-1)


# --- google.rpc.Status -----------------------------------------------------------------------


def test_status_as_protobuf_is_a_google_rpc_status() -> None:
    """OTLP/HTTP error bodies are google.rpc.Status messages."""
    body = encode_status(3, "invalid protobuf ExportTraceServiceRequest", "protobuf")
    assert Status(code=3, message="invalid protobuf ExportTraceServiceRequest") == Status.FromString(body)


def test_status_as_json_uses_the_proto3_json_mapping() -> None:
    """A JSON request gets its error as JSON: code as a number, message as a string."""
    assert b'{"code":8,"message":"queue full"}' == encode_status(8, "queue full", "json")


def test_status_json_escapes_the_message() -> None:
    """Reasons may quote client input; the body stays valid JSON."""
    body = encode_status(3, 'bad "traceId"\n', "json")
    assert {"code": 3, "message": 'bad "traceId"\n'} == orjson.loads(body)


# --- OTLP/JSON requests ----------------------------------------------------------------------


def test_request_json_writes_ids_as_lower_case_hex_and_enums_as_integers() -> None:
    """OTLP/JSON differs from the protobuf JSON mapping in ids (hex) and enums (integers)."""
    document = orjson.loads(encode_request_json("traces", full_requests()["traces"]))
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173",
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1234"}}],
        "links": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b173"}],
        "status": {"message": "boom", "code": 2},
    } == span


def test_request_json_writes_exemplar_and_log_ids_as_hex() -> None:
    """Exemplars and log records carry hex ids as well."""
    metrics = orjson.loads(encode_request_json("metrics", full_requests()["metrics"]))
    logs = orjson.loads(encode_request_json("logs", full_requests()["logs"]))
    exemplar = metrics["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["histogram"]["dataPoints"][0][
        "exemplars"
    ][0]
    record = logs["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174") == (exemplar["traceId"], exemplar["spanId"])
    assert ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "AAE=") == (
        record["traceId"],
        record["spanId"],
        record["body"]["bytesValue"],
    )


@pytest.mark.parametrize("signal", SIGNALS)
def test_request_json_round_trips_through_decode_request(signal: Signal) -> None:
    """What an exporter writes as OTLP/JSON, a receiver reads back to the same request."""
    request = full_requests()[signal]
    assert request == decode_request(signal, encode_request_json(signal, request), "json")


def test_spec_trace_example_is_written_back_as_the_same_document() -> None:
    """Decoding the spec's trace example and encoding it again gives the same JSON (ids lower-cased)."""
    example = (EXAMPLES / "trace.json").read_bytes()
    expected = orjson.loads(example.replace(b"5B8EFFF798038103D269B633813FC60C", TRACE_ID.hex().encode()))
    span = expected["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["spanId"], span["parentSpanId"] = SPAN_ID.hex(), PARENT_SPAN_ID.hex()
    assert expected == orjson.loads(encode_request_json("traces", decode_request("traces", example, "json")))


@pytest.mark.parametrize("signal", SIGNALS)
def test_empty_request_is_an_empty_json_object(signal: Signal) -> None:
    """An empty request has no fields to write."""
    assert b"{}" == encode_request_json(signal, decode_request(signal, b"", "protobuf"))
