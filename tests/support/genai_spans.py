"""Hand-built OTLP protobuf spans for GenAI derivation tests (what a receiver hands the pipeline)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

from gateway.component import Batch
from proto_handlers import decode_request
from proto_handlers.raw_attributes import RawAttributesSpan

START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
TRACE_ID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN_ID = bytes.fromhex("b7ad6b7169203331")

AttributeValue = str | bool | int | float | bytes | Sequence[str]


def any_value(value: AttributeValue) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    out = AnyValue()
    out.array_value.values.extend(AnyValue(string_value=item) for item in value)
    return out


def key_values(attributes: Mapping[str, AttributeValue]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attributes.items()]


def make_span(
    attributes: Mapping[str, AttributeValue],
    *,
    name: str = "span",
    duration_s: float = 1.5,
    error: bool = False,
    events: Iterable[tuple[str, float, Mapping[str, AttributeValue]]] = (),
    trace_id: bytes = TRACE_ID,
    span_id: bytes = SPAN_ID,
    start_ns: int = START_NS,
) -> Span:
    """A span starting at ``start_ns``; ``events`` are (name, seconds after start, attributes)."""
    span = Span(
        trace_id=trace_id,
        span_id=span_id,
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + round(duration_s * 1e9),
        attributes=key_values(attributes),
    )
    if error:
        span.status.code = Status.STATUS_CODE_ERROR
    for event_name, offset_s, event_attributes in events:
        span.events.add(
            name=event_name,
            time_unix_nano=start_ns + round(offset_s * 1e9),
            attributes=key_values(event_attributes),
        )
    return span


def as_received(span: Span) -> Any:
    """The span as derivation reads it: decoded from its bytes into ``RawAttributesSpan``."""
    return RawAttributesSpan.FromString(span.SerializeToString())


def make_request(
    spans: Sequence[Span], resource: Mapping[str, AttributeValue] | None = None
) -> ExportTraceServiceRequest:
    resource_spans = ResourceSpans()
    resource_spans.resource.attributes.extend(key_values({"service.name": "chatbot"} if resource is None else resource))
    resource_spans.scope_spans.add().spans.extend(spans)
    return ExportTraceServiceRequest(resource_spans=[resource_spans])


def make_batch(
    spans: Sequence[Span], resource: Mapping[str, AttributeValue] | None = None, tenant: str | None = None
) -> Batch:
    raw = make_request(spans, resource).SerializeToString()
    return Batch(
        signal="traces",
        raw=raw,
        request=decode_request("traces", raw, "protobuf", indexed=True),  # what a receiver hands over
        items=len(spans),
        transport="test",
        tenant=tenant,
    )
