"""Span RED metrics with the spanmetrics connector's names, labels, buckets and exemplars (hand-built spans)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from gateway.component import Batch
from gateway.derive.spanmetrics import Dimension, SpanMetricsProcessor, SpanMetricsSettings
from gateway.metrics.exposition import Exposition
from gateway.metrics.store import MetricStore
from gateway.settings import ConfigError, parse_settings
from proto_handlers import decode_request

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN = bytes.fromhex("b7ad6b7169203331")
SERVER_OK = 'service_name="checkout",span_name="GET /cart",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"'


def span(
    name: str = "GET /cart",
    duration_ms: float = 5.0,
    kind: int = Span.SPAN_KIND_SERVER,
    status: int = Status.STATUS_CODE_UNSET,
    attributes: Mapping[str, str] | None = None,
    trace_id: bytes = TRACE,
) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=SPAN,
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + int(duration_ms * MS),
        status=Status(code=status),  # type: ignore[arg-type]
        attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in (attributes or {}).items()],
    )


def batch(spans: Sequence[Span], resource: Mapping[str, str] | None = None) -> Batch:
    message = ExportTraceServiceRequest()
    resource_spans = message.resource_spans.add()
    for key, value in ({"service.name": "checkout"} if resource is None else resource).items():
        resource_spans.resource.attributes.add(key=key, value=AnyValue(string_value=value))
    resource_spans.scope_spans.add().spans.extend(spans)
    raw = message.SerializeToString()
    return Batch("traces", raw, decode_request("traces", raw, "protobuf", indexed=True), len(spans), "test")


class SpanMetrics:
    def __init__(self, dimensions: Sequence[Dimension] = (), max_series: int = 2000) -> None:
        self.store = MetricStore(max_series=max_series)
        self.processor = SpanMetricsProcessor(self.store, SpanMetricsSettings(dimensions=tuple(dimensions)))
        self.exposition = Exposition(self.store)

    def lines(self, prefix: str, openmetrics: bool = False) -> list[str]:
        text = self.exposition.render(openmetrics)
        return [line for line in text.splitlines() if line.startswith(prefix)]


def test_calls_are_counted_per_service_span_kind_and_status() -> None:
    """``traces_span_metrics_calls_total`` counts spans per (service, span name, kind, status)."""
    metrics = SpanMetrics()
    metrics.processor.process(batch([span(), span(), span(name="POST /pay")]))
    assert [
        f"traces_span_metrics_calls_total{{{SERVER_OK}}} 2.0",
        'traces_span_metrics_calls_total{service_name="checkout",span_name="POST /pay",'
        'span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"} 1.0',
    ] == metrics.lines("traces_span_metrics_calls_total")


def test_kind_and_status_use_the_connector_spelling() -> None:
    """Kinds and statuses are proto enum names (``SPAN_KIND_CLIENT``, ``STATUS_CODE_ERROR``), as Jaeger queries them."""
    metrics = SpanMetrics()
    metrics.processor.process(batch([span(kind=Span.SPAN_KIND_CLIENT, status=Status.STATUS_CODE_ERROR)]))
    assert [
        'traces_span_metrics_calls_total{service_name="checkout",span_name="GET /cart",'
        'span_kind="SPAN_KIND_CLIENT",status_code="STATUS_CODE_ERROR"} 1.0'
    ] == metrics.lines("traces_span_metrics_calls_total")


def test_duration_histogram_uses_the_connector_buckets_in_milliseconds() -> None:
    """A 5 ms and a 1.2 s span fall in the ``le="6.0"`` and ``le="1400.0"`` buckets; the sum is in ms."""
    metrics = SpanMetrics()
    metrics.processor.process(batch([span(duration_ms=5), span(duration_ms=1200)]))
    buckets = metrics.lines("traces_span_metrics_duration_milliseconds_bucket")
    assert [
        ("2.0", "0"), ("4.0", "0"), ("6.0", "1"), ("8.0", "1"), ("10.0", "1"), ("50.0", "1"), ("100.0", "1"),
        ("200.0", "1"), ("400.0", "1"), ("800.0", "1"), ("1000.0", "1"), ("1400.0", "2"), ("2000.0", "2"),
        ("5000.0", "2"), ("10000.0", "2"), ("15000.0", "2"), ("+Inf", "2"),
    ] == [(line.split('le="')[1].split('"')[0], line.rsplit(" ", 1)[1]) for line in buckets]  # fmt: skip


def test_duration_sum_and_count_are_in_milliseconds() -> None:
    """``_sum`` adds durations in milliseconds; ``_count`` equals the calls."""
    metrics = SpanMetrics()
    metrics.processor.process(batch([span(duration_ms=5), span(duration_ms=1200)]))
    assert [
        f"traces_span_metrics_duration_milliseconds_count{{{SERVER_OK}}} 2",
        f"traces_span_metrics_duration_milliseconds_sum{{{SERVER_OK}}} 1205.0",
    ] == metrics.lines("traces_span_metrics_duration_milliseconds_count") + metrics.lines(
        "traces_span_metrics_duration_milliseconds_sum"
    )


def test_span_ending_before_it_starts_counts_as_zero_duration() -> None:
    """As the connector: an end before the start is a 0 ms span, not a negative one."""
    metrics = SpanMetrics()
    broken = span()
    broken.end_time_unix_nano = T0 - MS
    metrics.processor.process(batch([broken]))
    assert [f"traces_span_metrics_duration_milliseconds_sum{{{SERVER_OK}}} 0.0"] == metrics.lines(
        "traces_span_metrics_duration_milliseconds_sum"
    )


def test_resource_without_service_name_is_skipped() -> None:
    """The connector ignores spans whose resource has no ``service.name``; so does the gateway."""
    metrics = SpanMetrics()
    metrics.processor.process(batch([span()], resource={"host.name": "a"}))
    assert [] == metrics.lines("traces_span_metrics_calls_total")


def test_exemplar_is_the_last_span_of_its_bucket() -> None:
    """The duration bucket carries the trace and span id of its last span (OpenMetrics only)."""
    metrics = SpanMetrics()
    metrics.processor.process(batch([span(duration_ms=5)]))
    assert (
        f'traces_span_metrics_duration_milliseconds_bucket{{{SERVER_OK},le="6.0"}} 1 '
        '# {trace_id="0af7651916cd43dd8448eb211c80319c",span_id="b7ad6b7169203331"} 5.0 1700000000.005'
    ) in metrics.lines("traces_span_metrics_duration_milliseconds_bucket", openmetrics=True)


def test_span_without_trace_id_gives_no_exemplar() -> None:
    """A span with no trace id has nothing to link to, so its bucket has no exemplar."""
    metrics = SpanMetrics()
    metrics.processor.process(batch([span(duration_ms=5, trace_id=b"")]))
    assert [] == [
        line for line in metrics.lines("traces_span_metrics_duration_milliseconds", openmetrics=True) if " # {" in line
    ]


def test_dimension_comes_from_span_then_resource_then_default() -> None:
    """An extra dimension reads the span attribute, else the resource attribute, else its default."""
    metrics = SpanMetrics([Dimension("http.method"), Dimension("region", "eu"), Dimension("tier")])
    metrics.processor.process(
        batch(
            [span(attributes={"http.method": "GET", "tier": "gold"})],
            resource={"service.name": "checkout", "tier": "x"},
        )
    )
    assert [
        f'traces_span_metrics_calls_total{{{SERVER_OK},http_method="GET",region="eu",tier="gold"}} 1.0'
    ] == metrics.lines("traces_span_metrics_calls_total")


def test_missing_dimension_without_default_is_empty() -> None:
    """With no value and no default the label is empty, which Prometheus reads as absent (the connector omits it)."""
    metrics = SpanMetrics([Dimension("http.method")])
    metrics.processor.process(batch([span()]))
    assert [f'traces_span_metrics_calls_total{{{SERVER_OK},http_method=""}} 1.0'] == metrics.lines(
        "traces_span_metrics_calls_total"
    )


def test_three_thousand_span_names_give_limit_plus_one_series() -> None:
    """The cardinality cap holds for span metrics too: 3000 names, limit 2000 -> 2001 series."""
    metrics = SpanMetrics(max_series=2000)
    metrics.processor.process(batch([span(name=f"GET /item/{i}") for i in range(3000)]))
    assert 2001 == len(metrics.lines("traces_span_metrics_calls_total"))


def test_spans_past_the_cap_are_counted_as_overflow_per_span() -> None:
    """Past the cap every span goes to the overflow series and counts once in the overflow counter."""
    metrics = SpanMetrics(max_series=2)
    metrics.processor.process(batch([span(name="a"), span(name="b"), span(name="c"), span(name="c"), span(name="d")]))
    assert [
        'traces_span_metrics_calls_total{otel_metric_overflow="true"} 3.0',
    ] == [line for line in metrics.lines("traces_span_metrics_calls_total") if "overflow" in line]
    assert [
        'gateway_metric_series_overflow_total{metric="traces_span_metrics_calls"} 3.0',
        'gateway_metric_series_overflow_total{metric="traces_span_metrics_duration_milliseconds"} 3.0',
    ] == metrics.lines("gateway_metric_series_overflow_total")


def test_series_deleted_by_expiry_are_created_again_by_the_next_span() -> None:
    """Series references kept across batches are dropped when the store deletes series."""
    metrics = SpanMetrics()
    metrics.processor.process(batch([span()]))
    metrics.store.now += 10_000.0
    assert 2 == metrics.store.expire()
    metrics.processor.process(batch([span()]))
    assert [f"traces_span_metrics_calls_total{{{SERVER_OK}}} 1.0"] == metrics.lines("traces_span_metrics_calls_total")


def test_dimensions_are_read_from_config() -> None:
    """``spanmetrics.dimensions`` takes attribute names or ``{name, default}`` mappings."""
    settings = parse_settings("spanmetrics:\n  dimensions: [http.method, {name: region, default: eu}]\n", {})
    assert SpanMetricsSettings(dimensions=(Dimension("http.method"), Dimension("region", "eu"))) == settings.spanmetrics


def test_span_metrics_are_on_by_default() -> None:
    """With no ``spanmetrics`` section every span is counted, with no extra dimension."""
    assert SpanMetricsSettings(enabled=True, dimensions=()) == parse_settings("{}", {}).spanmetrics


@pytest.mark.parametrize(
    ("yaml", "path"),
    [
        ("spanmetrics: {dimensions: [span.name]}", "spanmetrics.dimensions[0]"),
        ("spanmetrics: {dimensions: [le]}", "spanmetrics.dimensions[0]"),
        ("spanmetrics: {dimensions: [http.method, http_method]}", "spanmetrics.dimensions[1]"),
        ("spanmetrics: {dimensions: [{default: x}]}", "spanmetrics.dimensions[0].name"),
        ("spanmetrics: {dimensions: [{name: a, colour: b}]}", "spanmetrics.dimensions[0].colour"),
        ("spanmetrics: {dimensions: http.method}", "spanmetrics.dimensions"),
        ("spanmetrics: {enabled: 1}", "spanmetrics.enabled"),
        ("spanmetrics: {buckets: [1]}", "spanmetrics.buckets"),
    ],
)
def test_bad_spanmetrics_config_names_the_key(yaml: str, path: str) -> None:
    """Reserved or colliding label names, malformed entries and unknown keys are refused with their key path."""
    with pytest.raises(ConfigError) as error:
        parse_settings(yaml, {})
    assert path == error.value.path


def test_histogram_unit_accepts_ms_and_s_only() -> None:
    """spanmetrics.histogram.unit is the connector's ms (default) or s; anything else names the key."""
    from gateway.derive.spanmetrics import SpanMetricsSettings
    from gateway.validation import ConfigError

    assert "s" == SpanMetricsSettings.from_mapping({"histogram": {"unit": "s"}}).histogram_unit
    assert "ms" == SpanMetricsSettings.from_mapping({}).histogram_unit
    with pytest.raises(ConfigError, match=r"^spanmetrics\.histogram\.unit: expected ms or s"):
        SpanMetricsSettings.from_mapping({"histogram": {"unit": "us"}})
