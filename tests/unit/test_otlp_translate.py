"""OTLP metrics -> Prometheus families, checked on hand-built protobufs and the rendered exposition."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Exemplar,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    SummaryDataPoint,
)

from gateway.component import Batch
from gateway.metrics.exposition import Exposition
from gateway.metrics.otlp_translate import OtlpMetricsProcessor
from gateway.metrics.store import MetricStore
from gateway.settings import ConfigError, parse_settings

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND
RESOURCE = {"service.name": "checkout"}
BASE = 'job="checkout",otel_scope_name="meter",otel_scope_version="1.0"'


class FakeClock:
    """A clock the test moves by hand, so staleness is tested without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def any_value(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        result = AnyValue()
        result.array_value.values.extend(any_value(item) for item in value)
        return result
    return AnyValue(string_value=str(value))


def attributes(values: Mapping[str, object]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in values.items()]


def number(
    value: float, attrs: Mapping[str, object] | None = None, start: int = T0, time: int = T0 + SECOND
) -> NumberDataPoint:
    point = NumberDataPoint(attributes=attributes(attrs or {}), start_time_unix_nano=start, time_unix_nano=time)
    if isinstance(value, int):
        point.as_int = value
    else:
        point.as_double = value
    return point


def sum_metric(
    name: str,
    points: Sequence[NumberDataPoint],
    *,
    monotonic: bool = True,
    temporality: int = CUMULATIVE,
    unit: str = "",
) -> Metric:
    metric = Metric(name=name, unit=unit, description=f"{name} help")
    metric.sum.is_monotonic = monotonic
    metric.sum.aggregation_temporality = temporality  # type: ignore[assignment]
    metric.sum.data_points.extend(points)
    return metric


def gauge_metric(name: str, points: Sequence[NumberDataPoint], unit: str = "") -> Metric:
    metric = Metric(name=name, unit=unit, description=f"{name} help")
    metric.gauge.data_points.extend(points)
    return metric


def histogram_point(
    bounds: Sequence[float],
    counts: Sequence[int],
    total: float,
    *,
    start: int = T0,
    time: int = T0 + SECOND,
    exemplars: Iterable[Exemplar] = (),
) -> HistogramDataPoint:
    return HistogramDataPoint(
        start_time_unix_nano=start,
        time_unix_nano=time,
        count=sum(counts),
        sum=total,
        explicit_bounds=list(bounds),
        bucket_counts=list(counts),
        exemplars=list(exemplars),
    )


def histogram_metric(
    name: str, points: Sequence[HistogramDataPoint], temporality: int = CUMULATIVE, unit: str = "s"
) -> Metric:
    metric = Metric(name=name, unit=unit, description=f"{name} help")
    metric.histogram.aggregation_temporality = temporality  # type: ignore[assignment]
    metric.histogram.data_points.extend(points)
    return metric


def exponential_metric(
    name: str, points: Sequence[ExponentialHistogramDataPoint], temporality: int = CUMULATIVE
) -> Metric:
    metric = Metric(name=name, unit="ms", description=f"{name} help")
    metric.exponential_histogram.aggregation_temporality = temporality  # type: ignore[assignment]
    metric.exponential_histogram.data_points.extend(points)
    return metric


def request(
    metrics: Sequence[Metric],
    resource: Mapping[str, object] = RESOURCE,
    scope_attributes: Mapping[str, object] | None = None,
) -> ExportMetricsServiceRequest:
    message = ExportMetricsServiceRequest()
    resource_metrics = message.resource_metrics.add()
    resource_metrics.resource.attributes.extend(attributes(resource))
    scope_metrics = resource_metrics.scope_metrics.add()
    scope_metrics.scope.name = "meter"
    scope_metrics.scope.version = "1.0"
    scope_metrics.scope.attributes.extend(attributes(scope_attributes or {}))
    scope_metrics.metrics.extend(metrics)
    return message


class Translator:
    """A processor over its own store, fed protobufs, read back as exposition lines."""

    def __init__(self, max_series: int = 2000, promote: Sequence[str] = (), expiration: float = 300.0) -> None:
        self.clock = FakeClock()
        self.store = MetricStore(max_series=max_series, series_expiration=expiration, clock=self.clock)
        self.processor = OtlpMetricsProcessor(self.store, promote)
        self.exposition = Exposition(self.store, [self.processor])

    def send(self, *metrics: Metric, resource: Mapping[str, object] = RESOURCE, **kwargs: object) -> None:
        self.store.tick()
        message = request(metrics, resource, **kwargs)  # type: ignore[arg-type]
        self.processor.process(Batch("metrics", b"", message, 0, "test"))

    def lines(self, prefix: str, openmetrics: bool = False) -> list[str]:
        """Sample lines whose metric name starts with ``prefix`` (no HELP/TYPE)."""
        text = self.exposition.render(openmetrics)
        return [line for line in text.splitlines() if line.startswith(prefix) and not line.startswith("#")]

    def value(self, line_start: str) -> float:
        matches = [line for line in self.lines(line_start.split("{")[0]) if line.startswith(line_start)]
        return float(matches[0].rsplit(" ", 1)[1]) if matches else 0.0


def test_cumulative_monotonic_sum_is_a_counter_with_total() -> None:
    """A cumulative monotonic sum is served as ``<name>_total`` with its value, scope, job and attributes."""
    translator = Translator()
    translator.send(sum_metric("http.requests", [number(7, {"route": "/a"})], unit="{request}"))
    assert [f'http_requests_total{{{BASE},route="/a"}} 7.0'] == translator.lines("http_requests")


def test_counter_family_type_lines_follow_each_format() -> None:
    """Text names the counter family ``x_total``; OpenMetrics names it ``x`` and keeps ``_total`` on samples."""
    translator = Translator()
    translator.send(sum_metric("jobs", [number(1)]))
    text = translator.exposition.render()
    openmetrics = translator.exposition.render(openmetrics=True)
    assert ("# TYPE jobs_total counter" in text, "# TYPE jobs counter" in openmetrics) == (True, True)


def test_delta_sums_are_accumulated() -> None:
    """Contiguous delta points add up to the cumulative value Prometheus expects."""
    translator = Translator()
    translator.send(sum_metric("jobs", [number(2, start=T0, time=T0 + SECOND)], temporality=DELTA))
    translator.send(sum_metric("jobs", [number(3, start=T0 + SECOND, time=T0 + 2 * SECOND)], temporality=DELTA))
    assert [f"jobs_total{{{BASE}}} 5.0"] == translator.lines("jobs_total")


def test_overlapping_delta_point_is_dropped_and_counted() -> None:
    """A delta point starting before the previous one ended (a replay) is refused, not double counted."""
    translator = Translator()
    translator.send(sum_metric("jobs", [number(2, start=T0, time=T0 + 2 * SECOND)], temporality=DELTA))
    translator.send(sum_metric("jobs", [number(3, start=T0 + SECOND, time=T0 + 3 * SECOND)], temporality=DELTA))
    assert (2.0, 1.0) == (
        translator.value(f"jobs_total{{{BASE}}}"),
        translator.value('gateway_otlp_metric_points_dropped_total{reason="delta_overlap"}'),
    )


def test_cumulative_sum_takes_the_latest_value_even_after_a_reset() -> None:
    """A cumulative counter shows exactly what the service reports; Prometheus handles the reset."""
    translator = Translator()
    translator.send(sum_metric("jobs", [number(10, time=T0 + SECOND)]))
    translator.send(sum_metric("jobs", [number(3, start=T0 + 5 * SECOND, time=T0 + 6 * SECOND)]))
    assert [f"jobs_total{{{BASE}}} 3.0"] == translator.lines("jobs_total")


def test_out_of_order_cumulative_point_is_dropped() -> None:
    """An older point arriving after a newer one does not move the series back."""
    translator = Translator()
    translator.send(sum_metric("jobs", [number(10, time=T0 + 2 * SECOND)]))
    translator.send(sum_metric("jobs", [number(4, time=T0 + SECOND)]))
    assert (10.0, 1.0) == (
        translator.value(f"jobs_total{{{BASE}}}"),
        translator.value('gateway_otlp_metric_points_dropped_total{reason="out_of_order"}'),
    )


def test_non_monotonic_sum_is_a_gauge_without_ratio() -> None:
    """An up-down counter is a gauge; unit ``1`` gets no ``_ratio`` (the collector adds it to gauges only)."""
    translator = Translator()
    translator.send(sum_metric("queue.size", [number(-4)], monotonic=False, unit="1"))
    assert [f"queue_size{{{BASE}}} -4.0"] == translator.lines("queue_size")


def test_delta_non_monotonic_sum_is_dropped_and_counted() -> None:
    """The spec says delta up-down sums MUST be dropped: nothing is served, the points are counted."""
    translator = Translator()
    translator.send(sum_metric("queue.size", [number(1), number(2, {"a": "b"})], monotonic=False, temporality=DELTA))
    assert ([], 2.0) == (
        translator.lines("queue_size"),
        translator.value('gateway_otlp_metric_points_dropped_total{reason="delta_non_monotonic"}'),
    )


def test_gauge_with_unit_one_gets_ratio() -> None:
    """A gauge of unit ``1`` is a ratio: ``system_cpu_utilization_ratio``."""
    translator = Translator()
    translator.send(gauge_metric("system.cpu.utilization", [number(0.25)], unit="1"))
    assert [f"system_cpu_utilization_ratio{{{BASE}}} 0.25"] == translator.lines("system_cpu")


def test_explicit_histogram_is_served_cumulatively_with_unit_suffix() -> None:
    """Per-bucket OTLP counts become cumulative ``le`` buckets, plus ``_count`` and ``_sum``."""
    translator = Translator()
    translator.send(histogram_metric("http.server.duration", [histogram_point([0.1, 1.0], [2, 3, 1], 4.5)]))
    assert [
        f'http_server_duration_seconds_bucket{{{BASE},le="0.1"}} 2',
        f'http_server_duration_seconds_bucket{{{BASE},le="1.0"}} 5',
        f'http_server_duration_seconds_bucket{{{BASE},le="+Inf"}} 6',
        f"http_server_duration_seconds_count{{{BASE}}} 6",
        f"http_server_duration_seconds_sum{{{BASE}}} 4.5",
    ] == translator.lines("http_server_duration")


def test_delta_histograms_are_accumulated() -> None:
    """Delta histogram points with the same bounds add up bucket by bucket."""
    translator = Translator()
    first = histogram_point([1.0], [1, 0], 0.5, start=T0, time=T0 + SECOND)
    second = histogram_point([1.0], [2, 1], 3.0, start=T0 + SECOND, time=T0 + 2 * SECOND)
    translator.send(histogram_metric("latency", [first], DELTA))
    translator.send(histogram_metric("latency", [second], DELTA))
    assert [
        f'latency_seconds_bucket{{{BASE},le="1.0"}} 3',
        f'latency_seconds_bucket{{{BASE},le="+Inf"}} 4',
        f"latency_seconds_count{{{BASE}}} 4",
        f"latency_seconds_sum{{{BASE}}} 3.5",
    ] == translator.lines("latency_seconds")


def test_exponential_histogram_becomes_classic_buckets() -> None:
    """Scale 0 buckets (2^i, 2^(i+1)] get ``le`` 2^(i+1); the zero bucket's ``le`` is the zero threshold."""
    translator = Translator()
    point = ExponentialHistogramDataPoint(
        start_time_unix_nano=T0, time_unix_nano=T0 + SECOND, count=6, sum=11.0, scale=0, zero_count=1
    )
    point.positive.offset = 0  # index 0 holds (1, 2], index 1 holds (2, 4]
    point.positive.bucket_counts.extend([3, 2])
    translator.send(exponential_metric("queue.wait", [point]))
    assert [
        f'queue_wait_milliseconds_bucket{{{BASE},le="0.0"}} 1',
        f'queue_wait_milliseconds_bucket{{{BASE},le="2.0"}} 4',
        f'queue_wait_milliseconds_bucket{{{BASE},le="4.0"}} 6',
        f'queue_wait_milliseconds_bucket{{{BASE},le="+Inf"}} 6',
        f"queue_wait_milliseconds_count{{{BASE}}} 6",
        f"queue_wait_milliseconds_sum{{{BASE}}} 11.0",
    ] == translator.lines("queue_wait")


def test_exponential_negative_buckets_come_first() -> None:
    """Negative bucket i holds [-2^(i+1), -2^i): served below zero with ``le`` -2^i, most negative first."""
    translator = Translator()
    point = ExponentialHistogramDataPoint(start_time_unix_nano=T0, time_unix_nano=T0 + SECOND, count=3, sum=-7.0)
    point.negative.offset = 0
    point.negative.bucket_counts.extend([1, 2])
    translator.send(exponential_metric("offset", [point]))
    assert [
        f'offset_milliseconds_bucket{{{BASE},le="-2.0"}} 2',
        f'offset_milliseconds_bucket{{{BASE},le="-1.0"}} 3',
        f'offset_milliseconds_bucket{{{BASE},le="0.0"}} 3',
        f'offset_milliseconds_bucket{{{BASE},le="+Inf"}} 3',
    ] == translator.lines("offset_milliseconds_bucket")


def test_delta_exponential_histograms_merge_at_the_coarser_scale() -> None:
    """A scale-1 delta point merged into a scale-0 state is downscaled first, so no count is lost."""
    translator = Translator()
    first = ExponentialHistogramDataPoint(start_time_unix_nano=T0, time_unix_nano=T0 + SECOND, count=1, sum=1.5)
    first.positive.bucket_counts.extend([1])  # scale 0, index 0: (1, 2]
    second = ExponentialHistogramDataPoint(
        start_time_unix_nano=T0 + SECOND, time_unix_nano=T0 + 2 * SECOND, count=2, sum=6.0, scale=1
    )
    second.positive.offset = 3  # scale 1, indexes 3 and 4: (2.83, 4] and (4, 5.66] -> scale 0 indexes 1 and 2
    second.positive.bucket_counts.extend([1, 1])
    translator.send(exponential_metric("wait", [first], DELTA))
    translator.send(exponential_metric("wait", [second], DELTA))
    assert [
        f'wait_milliseconds_bucket{{{BASE},le="0.0"}} 0',
        f'wait_milliseconds_bucket{{{BASE},le="2.0"}} 1',
        f'wait_milliseconds_bucket{{{BASE},le="4.0"}} 2',
        f'wait_milliseconds_bucket{{{BASE},le="8.0"}} 3',
        f'wait_milliseconds_bucket{{{BASE},le="+Inf"}} 3',
    ] == translator.lines("wait_milliseconds_bucket")


def test_summary_is_served_with_quantiles() -> None:
    """A summary keeps its quantiles (``quantile`` label), ``_count`` and ``_sum``."""
    translator = Translator()
    metric = Metric(name="rpc.latency", unit="s", description="RPC latency")
    point = metric.summary.data_points.add()
    point.CopyFrom(SummaryDataPoint(time_unix_nano=T0, count=10, sum=2.5))
    point.quantile_values.add(quantile=0.99, value=0.9)
    point.quantile_values.add(quantile=0.5, value=0.2)
    translator.send(metric)
    assert [
        f'rpc_latency_seconds{{{BASE},quantile="0.5"}} 0.2',
        f'rpc_latency_seconds{{{BASE},quantile="0.99"}} 0.9',
        f"rpc_latency_seconds_count{{{BASE}}} 10",
        f"rpc_latency_seconds_sum{{{BASE}}} 2.5",
    ] == translator.lines("rpc_latency")


def test_resource_becomes_target_info_with_job_and_instance() -> None:
    """One ``target_info`` per resource: its other attributes, ``job`` = namespace/name, ``instance`` = instance id."""
    translator = Translator()
    resource = {
        "service.name": "checkout",
        "service.namespace": "shop",
        "service.instance.id": "pod-7",
        "k8s.namespace.name": "prod",
        "host.cpus": 4,
    }
    translator.send(sum_metric("jobs", [number(1)]), resource=resource)
    assert [
        'target_info{host_cpus="4",instance="pod-7",job="shop/checkout",k8s_namespace_name="prod"} 1.0'
    ] == translator.lines("target_info")


def test_every_series_carries_job_and_instance() -> None:
    """Series of a resource carry its ``job`` and ``instance``, as the collector's exporter adds them."""
    translator = Translator()
    resource = {"service.name": "checkout", "service.namespace": "shop", "service.instance.id": "pod-7"}
    translator.send(sum_metric("jobs", [number(1)]), resource=resource)
    assert [
        'jobs_total{instance="pod-7",job="shop/checkout",otel_scope_name="meter",otel_scope_version="1.0"} 1.0'
    ] == (translator.lines("jobs_total"))


def test_promoted_resource_attribute_is_copied_onto_series() -> None:
    """``promote_resource_attributes`` copies a resource attribute onto every translated series."""
    translator = Translator(promote=["k8s.namespace.name"])
    translator.send(
        sum_metric("jobs", [number(1)]), resource={"service.name": "checkout", "k8s.namespace.name": "prod"}
    )
    assert [
        'jobs_total{job="checkout",k8s_namespace_name="prod",otel_scope_name="meter",otel_scope_version="1.0"} 1.0'
    ] == translator.lines("jobs_total")


def test_scope_attributes_become_otel_scope_labels() -> None:
    """Scope attributes are labels prefixed ``otel_scope_``, next to the scope name and version."""
    translator = Translator()
    translator.send(sum_metric("jobs", [number(1)]), scope_attributes={"library.mascot": "bear"})
    assert [
        'jobs_total{job="checkout",otel_scope_library_mascot="bear",'
        'otel_scope_name="meter",otel_scope_version="1.0"} 1.0'
    ] == translator.lines("jobs_total")


def test_attribute_values_are_written_as_the_collector_writes_them() -> None:
    """Ints, bools, doubles and arrays become strings as pcommon's AsString() writes them."""
    translator = Translator()
    attrs = {"code": 200, "ok": True, "ratio": 0.5, "tags": ["a", "b"]}
    translator.send(sum_metric("jobs", [number(1, attrs)]))
    assert [
        'jobs_total{code="200",job="checkout",ok="true",otel_scope_name="meter",otel_scope_version="1.0",'
        'ratio="0.5",tags="[\\"a\\",\\"b\\"]"} 1.0'
    ] == translator.lines("jobs_total")


def test_colliding_attribute_keys_are_joined_in_key_order() -> None:
    """``a.b`` and ``a_b`` both become ``a_b``: the values are joined with ``;`` in the order of the keys."""
    translator = Translator()
    translator.send(sum_metric("jobs", [number(1, {"a_b": "second", "a.b": "first"})]))
    assert [f'jobs_total{{a_b="first;second",{BASE}}} 1.0'] == translator.lines("jobs_total")


def test_empty_attribute_values_are_left_out() -> None:
    """An empty value is no label for Prometheus, so it is not served (it could only create a duplicate)."""
    translator = Translator()
    translator.send(sum_metric("jobs", [number(1, {"route": ""})]))
    assert [f"jobs_total{{{BASE}}} 1.0"] == translator.lines("jobs_total")


def test_unwritable_attribute_names_are_left_out() -> None:
    """An empty key has no label name and ``__name__`` is Prometheus' own: neither reaches the exposition."""
    translator = Translator()
    translator.send(sum_metric("jobs", [number(1, {"": "x", "__name__": "y"})]))
    assert [f"jobs_total{{{BASE}}} 1.0"] == translator.lines("jobs_total")


def test_histogram_with_infinite_bound_is_dropped() -> None:
    """Explicit bounds must be finite and increasing (an ``le="+Inf"`` twice would break the scrape)."""
    translator = Translator()
    translator.send(histogram_metric("latency", [histogram_point([1.0, float("inf")], [1, 0, 0], 0.5)]))
    assert ([], 1.0) == (
        translator.lines("latency_seconds"),
        translator.value('gateway_otlp_metric_points_dropped_total{reason="invalid"}'),
    )


def test_exponential_range_is_capped_by_downscaling() -> None:
    """Delta points 25000 scale-8 buckets apart are downscaled to scale 0 (98 buckets), not served as 25001 ``le``."""
    translator = Translator()
    near = ExponentialHistogramDataPoint(start_time_unix_nano=T0, time_unix_nano=T0 + SECOND, count=1, sum=1.0, scale=8)
    near.positive.bucket_counts.extend([1])
    far = ExponentialHistogramDataPoint(
        start_time_unix_nano=T0 + SECOND, time_unix_nano=T0 + 2 * SECOND, count=1, sum=1e30, scale=8
    )
    far.positive.offset = 25_000
    far.positive.bucket_counts.extend([1])
    translator.send(exponential_metric("wait", [near], DELTA))
    translator.send(exponential_metric("wait", [far], DELTA))
    buckets = translator.lines("wait_milliseconds_bucket")
    assert (100, f'wait_milliseconds_bucket{{{BASE},le="3.1691265005705735e+29"}} 2') == (len(buckets), buckets[-2])


def test_histogram_exemplars_land_in_the_bucket_of_their_value() -> None:
    """An exemplar goes to the first bucket whose ``le`` holds its value, with hex trace and span ids."""
    translator = Translator()
    exemplar = Exemplar(
        trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
        span_id=bytes.fromhex("b7ad6b7169203331"),
        as_double=0.4,
        time_unix_nano=T0,
    )
    translator.send(histogram_metric("latency", [histogram_point([0.1, 1.0], [0, 1, 0], 0.4, exemplars=[exemplar])]))
    assert (
        f'latency_seconds_bucket{{{BASE},le="1.0"}} 1 '
        '# {trace_id="0af7651916cd43dd8448eb211c80319c",span_id="b7ad6b7169203331"} 0.4 1700000000.0'
    ) in translator.lines("latency_seconds_bucket", openmetrics=True)


def test_no_recorded_value_flag_removes_the_series() -> None:
    """A point flagged "no recorded value" (the stream ended) removes its series right away."""
    translator = Translator()
    translator.send(gauge_metric("temperature", [number(21.5)]))
    gone = number(0.0, time=T0 + 2 * SECOND)
    gone.flags = 1
    translator.send(gauge_metric("temperature", [gone]))
    assert [] == translator.lines("temperature")


def test_type_change_is_refused_and_counted() -> None:
    """A name first seen as a gauge and then as a histogram keeps the gauge; the histogram is counted as a conflict."""
    translator = Translator()
    translator.send(gauge_metric("latency", [number(1.0)], unit="s"))
    translator.send(histogram_metric("latency", [histogram_point([1.0], [1, 0], 0.5)]))
    assert ([f"latency_seconds{{{BASE}}} 1.0"], 1.0) == (
        translator.lines("latency_seconds"),
        translator.value('gateway_otlp_metric_conflicts_total{metric="latency_seconds"}'),
    )


def test_counter_and_gauge_of_one_base_name_conflict() -> None:
    """``jobs`` as a counter (``jobs_total``) and ``jobs`` as a gauge share an OpenMetrics family name: refused."""
    translator = Translator()
    translator.send(sum_metric("jobs", [number(1)]))
    translator.send(gauge_metric("jobs", [number(2)]))
    assert ([f"jobs_total{{{BASE}}} 1.0"], 1.0) == (
        translator.lines("jobs"),
        translator.value('gateway_otlp_metric_conflicts_total{metric="jobs"}'),
    )


def test_name_of_a_gateway_family_is_refused() -> None:
    """An OTLP metric cannot take over a name the gateway serves itself (two TYPE lines would break the scrape)."""
    translator = Translator()
    translator.send(sum_metric("gateway.otlp.metric.conflicts", [number(5)]))
    assert 1.0 == translator.value('gateway_otlp_metric_conflicts_total{metric="gateway_otlp_metric_conflicts"}')


def test_three_thousand_attribute_values_give_limit_plus_one_series() -> None:
    """With a cap of 2000, 3000 distinct values give 2000 series plus one overflow series."""
    translator = Translator(max_series=2000)
    translator.send(sum_metric("calls", [number(1, {"model": f"m-{i}"}) for i in range(3000)]))
    assert 2001 == len(translator.lines("calls_total"))


def test_overflow_series_sums_what_the_capped_streams_add() -> None:
    """Streams past the cap add their increments to ``otel_metric_overflow="true"``, never their totals twice."""
    translator = Translator(max_series=1)
    translator.send(sum_metric("calls", [number(5, {"model": "a"}), number(7, {"model": "b"})]))
    translator.send(sum_metric("calls", [number(10, {"model": "b"}, time=T0 + 2 * SECOND)]))
    assert (10.0, 2.0) == (
        translator.value('calls_total{otel_metric_overflow="true"}'),
        translator.value('gateway_metric_series_overflow_total{metric="calls"}'),
    )


def test_stale_series_expire_and_free_the_name() -> None:
    """After ``series_expiration`` without points a series and its family go, so the name may return as another type."""
    translator = Translator(expiration=60)
    translator.send(gauge_metric("jobs", [number(3)]))
    translator.exposition.render()
    translator.clock.now += 61
    translator.send(sum_metric("jobs", [number(1)]))
    assert [f"jobs_total{{{BASE}}} 1.0"] == translator.lines("jobs")


def test_stale_series_are_deleted_at_scrape() -> None:
    """A series without points for longer than ``series_expiration`` is gone from the next scrape."""
    translator = Translator(expiration=60)
    translator.send(gauge_metric("jobs", [number(3, {"worker": "old"})]))
    translator.clock.now += 30
    translator.send(gauge_metric("jobs", [number(4, {"worker": "new"}, time=T0 + 2 * SECOND)]))
    translator.clock.now += 31
    assert [f'jobs{{{BASE},worker="new"}} 4.0'] == translator.lines("jobs")


def test_fresh_series_survive_expiry() -> None:
    """A series updated within ``series_expiration`` stays served."""
    translator = Translator(expiration=60)
    translator.send(gauge_metric("jobs", [number(3)]))
    translator.clock.now += 59
    assert [f"jobs{{{BASE}}} 3.0"] == translator.lines("jobs")


def test_promote_resource_attributes_is_read_from_config() -> None:
    """``prometheus.promote_resource_attributes`` is a list of resource attribute keys."""
    settings = parse_settings("prometheus:\n  promote_resource_attributes: [k8s.namespace.name, cloud.region]\n", {})
    assert ("k8s.namespace.name", "cloud.region") == settings.prometheus.promote_resource_attributes


@pytest.mark.parametrize(
    ("yaml", "path"),
    [
        ("prometheus: {promote_resource_attributes: [service.name]}", "prometheus.promote_resource_attributes[0]"),
        ("prometheus: {promote_resource_attributes: [a, a]}", "prometheus.promote_resource_attributes[1]"),
        ("prometheus: {promote_resource_attributes: a}", "prometheus.promote_resource_attributes"),
    ],
)
def test_bad_promote_resource_attributes_name_the_key(yaml: str, path: str) -> None:
    """Job/instance keys, duplicates and non-lists are refused with the key path."""
    with pytest.raises(ConfigError) as error:
        parse_settings(yaml, {})
    assert path == error.value.path
