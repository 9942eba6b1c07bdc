"""OTLP metrics sent by services -> Prometheus families, as the collector's ``prometheus`` exporter shows them.

Services push OTLP metrics; Prometheus pulls. This processor keeps, per Prometheus series, the latest
cumulative state and serves it next to the gateway's own families, following the OpenTelemetry
"Prometheus and OpenMetrics compatibility" spec and the collector exporter's choices where the spec
leaves room:

- names and labels: ``gateway.metrics.prom_names`` (units as suffixes, ``_total``, ``_ratio``);
- monotonic sums -> counters; non-monotonic sums and gauges -> gauges; histograms -> histograms;
  summaries -> summaries; exponential histograms -> classic histograms whose ``le`` bounds are the
  exponential bucket boundaries (Prometheus 2.x cannot scrape native histograms from a text format);
- delta sums and histograms are accumulated to cumulative; delta non-monotonic sums and
  unspecified temporality are dropped (the spec's "MUST be dropped"), and counted;
- every series carries ``otel_scope_name`` / ``otel_scope_version`` and, from the resource,
  ``job`` (``service.namespace/service.name``) and ``instance`` (``service.instance.id``); the
  other resource attributes go to one ``target_info`` series per job/instance; resource attributes
  named in ``prometheus.promote_resource_attributes`` are copied onto every series;
- a metric whose Prometheus name is already taken by another type (an earlier export, or one of
  the gateway's own families) is refused as a whole and counted, never mixed into one family;
- the store's cardinality cap and staleness apply: past ``max_series`` label sets a family gets one
  ``otel_metric_overflow="true"`` series, and series not updated for ``series_expiration`` go away.

Differences from the collector (all deliberate, all in ``docs/metrics.md``): empty label values are
left out (Prometheus treats ``a=""`` as no label, so keeping them could only create duplicates), no
``_created`` samples (Prometheus 2.x would store them as extra series), delta points that are not
contiguous are added rather than treated as a reset, and ``target_info`` is served for every
resource that has attributes, not only for those with both ``service.name`` and ``service.instance.id``.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, TypeAlias

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import Exemplar as OtlpExemplar
from prometheus_client.metrics_core import Metric as PromMetric
from prometheus_client.samples import Exemplar as PromExemplar
from prometheus_client.samples import Sample

from gateway.component import Batch
from gateway.metrics.prom_names import NameKind, escape_label_value, go_float, label_name, metric_name
from gateway.metrics.store import OVERFLOW_LABEL, Exemplar, MetricStore

PromKind = Literal["counter", "gauge", "histogram", "summary"]
LabelPairs: TypeAlias = tuple[tuple[str, str], ...]
"""A series key: its Prometheus labels, sorted by name, empty values left out."""

OVERFLOW_PAIRS: LabelPairs = ((OVERFLOW_LABEL, "true"),)
TARGET_INFO = "target_info"
_NO_RECORDED_VALUE = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_RESOURCE_JOB_KEYS = frozenset({"service.name", "service.namespace", "service.instance.id"})
_SHADOW_FACTOR = 10
MAX_EXPONENTIAL_BUCKETS = 160
"""Per sign, as the SDK's default ``max_size``: a wider index range (merged delta points far apart,
or one huge point) is downscaled until it fits, so one stream can never become thousands of ``le``."""
_MIN_SCALE, _MAX_SCALE = -10, 20  # the OTLP data model's range
"""Streams past the cap still need their last cumulative state to turn it into overflow increments;
at most this many times ``max_series`` such shadow states are kept per family."""


# --- values ----------------------------------------------------------------------------------


def attribute_string(value: AnyValue) -> str:
    """An attribute value as the collector's ``pcommon.Value.AsString()`` writes it."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return str(value.string_value)
    if which == "int_value":
        return str(value.int_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "double_value":
        return go_float(value.double_value)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which in ("array_value", "kvlist_value"):
        return orjson.dumps(_raw(value)).decode("utf-8")
    return ""


def _raw(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_raw(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else go_float(number)
    if which is None:
        return None
    return getattr(value, which)


def _number(point: NumberDataPoint) -> float | None:
    which = point.WhichOneof("value")
    if which == "as_double":
        return float(point.as_double)
    if which == "as_int":
        return float(point.as_int)
    return None


def _exemplar(exemplar: OtlpExemplar) -> Exemplar | None:
    """An OTLP exemplar with a trace id, as the store's exemplar; others carry nothing to link to."""
    if not exemplar.trace_id:
        return None
    which = exemplar.WhichOneof("value")
    value = float(exemplar.as_int) if which == "as_int" else float(exemplar.as_double)
    timestamp = exemplar.time_unix_nano // 1_000_000 / 1e3  # milliseconds, what Prometheus stores
    return Exemplar(exemplar.trace_id.hex(), exemplar.span_id.hex(), value, timestamp)


def labels_text(pairs: LabelPairs) -> str:
    """The inside of ``{...}`` for a series, rendered once when the series is created."""
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs)


# --- series state ----------------------------------------------------------------------------


class OtlpCounterSeries:
    __slots__ = ("delta", "exemplar", "labels_text", "start", "time", "updated", "value")

    def __init__(self, text: str, now: float) -> None:
        self.value = 0.0
        self.exemplar: Exemplar | None = None
        self.start = 0
        self.time = 0
        # True when this process accumulated delta points: with ``workers: N`` each worker holds a
        # part of the total (summed on merge), while a cumulative stream's newest copy is the total.
        self.delta = False
        self.updated = now
        self.labels_text: str | None = text


class OtlpGaugeSeries:
    __slots__ = ("labels_text", "time", "updated", "value")

    def __init__(self, text: str, now: float) -> None:
        self.value = 0.0
        self.time = 0
        self.updated = now
        self.labels_text: str | None = text


class ExponentialState:
    """An exponential histogram kept in its own terms, so delta points can be merged exactly."""

    __slots__ = ("negative", "positive", "scale", "zero_count", "zero_threshold")

    def __init__(self, scale: int, zero_threshold: float) -> None:
        self.scale = scale
        self.zero_threshold = zero_threshold
        self.zero_count = 0
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = {}

    def downscale(self, scale: int) -> None:
        """Merge buckets down to a coarser ``scale`` (each step halves the resolution)."""
        if scale >= self.scale:
            return
        shift = self.scale - scale
        for name in ("positive", "negative"):
            merged: dict[int, int] = {}
            for index, count in getattr(self, name).items():
                merged[index >> shift] = merged.get(index >> shift, 0) + count
            setattr(self, name, merged)
        self.scale = scale

    def merge(self, other: ExponentialState) -> None:
        """Add another state's counts (a worker's share of a delta stream), at the coarser scale."""
        self.downscale(other.scale)
        shift = other.scale - self.scale
        self.zero_count += other.zero_count
        self.zero_threshold = max(self.zero_threshold, other.zero_threshold)
        for source, target in ((other.positive, self.positive), (other.negative, self.negative)):
            for index, count in source.items():
                target[index >> shift] = target.get(index >> shift, 0) + count

    def add(self, point: ExponentialHistogramDataPoint) -> None:
        self.downscale(point.scale)
        shift = point.scale - self.scale
        self.zero_count += point.zero_count
        self.zero_threshold = max(self.zero_threshold, point.zero_threshold)
        for buckets, target in ((point.positive, self.positive), (point.negative, self.negative)):
            offset = buckets.offset
            for position, count in enumerate(buckets.bucket_counts):
                if count:
                    index = (offset + position) >> shift
                    target[index] = target.get(index, 0) + count

    def explicit(self) -> tuple[tuple[float, ...], list[int]]:
        """Classic buckets: upper bounds (``le``) and per-bucket counts, the last being +Inf.

        Bucket ``i`` of the positive range holds (base**i, base**(i+1)], so its ``le`` is
        base**(i+1); negative buckets mirror that below zero; the zero bucket's ``le`` is the
        zero threshold. Every index between the lowest and highest populated one gets a bound, so
        the ``le`` set only grows as the range of observations does.
        """
        while self.scale > _MIN_SCALE and any(
            buckets and max(buckets) - min(buckets) >= MAX_EXPONENTIAL_BUCKETS
            for buckets in (self.positive, self.negative)
        ):
            self.downscale(self.scale - 1)
        bounds: list[float] = []
        counts: list[int] = []
        if self.negative:
            low, high = min(self.negative), max(self.negative)
            for index in range(high, low - 1, -1):
                bounds.append(-self._power(index))
                counts.append(self.negative.get(index, 0))
        bounds.append(self.zero_threshold)
        counts.append(self.zero_count)
        if self.positive:
            low, high = min(self.positive), max(self.positive)
            for index in range(low, high + 1):
                bounds.append(self._power(index + 1))
                counts.append(self.positive.get(index, 0))
        counts.append(0)
        return _strictly_increasing(bounds, counts)

    def _power(self, index: int) -> float:
        """base**index; beyond the float range it is infinite (and folded into +Inf later)."""
        try:
            if self.scale <= 0:
                return math.ldexp(1.0, index << -self.scale)
            return float(2.0 ** (index / (1 << self.scale)))
        except OverflowError:
            return math.inf if index > 0 else 0.0


def _strictly_increasing(bounds: list[float], counts: list[int]) -> tuple[tuple[float, ...], list[int]]:
    """Classic ``le`` bounds must be finite and increase: merge a bucket whose bound does not exceed
    the previous one (a zero threshold above the first positive bound), fold bounds beyond the
    float range into +Inf (positive) or into the next bucket (negative)."""
    out_bounds: list[float] = []
    out_counts: list[int] = []
    carry = 0
    overflow = counts[-1]
    for bound, count in zip(bounds, counts, strict=False):
        if bound == math.inf:
            overflow += count
        elif bound == -math.inf:
            carry += count
        elif out_bounds and bound <= out_bounds[-1]:
            out_counts[-1] += count
        else:
            out_bounds.append(bound)
            out_counts.append(count + carry)
            carry = 0
    out_counts.append(overflow + carry)
    return tuple(out_bounds), out_counts


class OtlpHistogramSeries:
    __slots__ = (
        "bounds",
        "count",
        "counts",
        "delta",
        "exemplars",
        "exponential",
        "labels_text",
        "start",
        "sum",
        "time",
        "updated",
    )

    def __init__(self, text: str, now: float) -> None:
        self.bounds: tuple[float, ...] = ()
        self.counts: list[int] = [0]
        self.exemplars: list[Exemplar | None] = [None]
        self.sum = 0.0
        self.count = 0
        self.start = 0
        self.time = 0
        self.exponential: ExponentialState | None = None
        self.delta = False  # as OtlpCounterSeries.delta
        self.updated = now
        self.labels_text: str | None = text

    def set_buckets(self, bounds: tuple[float, ...], counts: list[int]) -> None:
        if bounds != self.bounds:
            self.exemplars = [None] * (len(bounds) + 1)
        self.bounds = bounds
        self.counts = counts

    def add_exemplars(self, exemplars: Iterable[OtlpExemplar]) -> None:
        for otlp in exemplars:
            exemplar = _exemplar(otlp)
            if exemplar is not None:
                self.exemplars[bisect.bisect_left(self.bounds, exemplar.value)] = exemplar


class OtlpSummarySeries:
    __slots__ = ("count", "labels_text", "quantiles", "sum", "time", "updated")

    def __init__(self, text: str, now: float) -> None:
        self.quantiles: list[tuple[float, float]] = []
        self.sum = 0.0
        self.count = 0
        self.time = 0
        self.updated = now
        self.labels_text: str | None = text


OtlpSeries = OtlpCounterSeries | OtlpGaugeSeries | OtlpHistogramSeries | OtlpSummarySeries
_SERIES_TYPES: dict[PromKind, Callable[[str, float], OtlpSeries]] = {
    "counter": OtlpCounterSeries,
    "gauge": OtlpGaugeSeries,
    "histogram": OtlpHistogramSeries,
    "summary": OtlpSummarySeries,
}


class OtlpFamily:
    """One Prometheus family built from OTLP metrics: ``name`` has no ``_total``, as in the store.

    ``series`` holds the exposed series (the overflow one under ``OVERFLOW_PAIRS``); ``shadow``
    holds the last state of streams past the cap, only to turn their updates into increments.
    """

    __slots__ = ("documentation", "kind", "name", "series", "shadow")

    def __init__(self, name: str, documentation: str, kind: PromKind) -> None:
        self.name = name
        self.documentation = documentation
        self.kind: PromKind = kind
        self.series: dict[LabelPairs, OtlpSeries] = {}
        self.shadow: dict[LabelPairs, OtlpSeries] = {}


# --- the processor ---------------------------------------------------------------------------


class OtlpMetricsProcessor:
    """The ``metrics`` pipeline's processor: accumulate OTLP points, expose them on /metrics.

    Runs on the event loop like every processor, so the state needs no lock. The store provides the
    clock (``now``, ticked per batch), the cardinality cap, the expiration and the self-metrics.
    """

    def __init__(self, store: MetricStore, promote_resource_attributes: Sequence[str] = ()) -> None:
        self._store = store
        self._promote = {key: label_name(key) for key in promote_resource_attributes}
        self.families: dict[str, OtlpFamily] = {}
        self.targets = OtlpFamily(TARGET_INFO, "Target metadata", "gauge")
        self._target_index: dict[tuple[str, str], LabelPairs] = {}
        self._conflicts = store.counter(
            "gateway_otlp_metric_conflicts",
            "OTLP metrics refused because their Prometheus name is taken by a metric of another type.",
            ("metric",),
            expires=False,
        )
        self._dropped = store.counter(
            "gateway_otlp_metric_points_dropped",
            "OTLP data points not translated to Prometheus, by reason.",
            ("reason",),
            expires=False,
        )

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    # -- ingest --

    def process(self, batch: Batch) -> None:
        now = self._store.now
        for resource_metrics in batch.request.resource_metrics:
            resource = self._resource(resource_metrics.resource.attributes, now)
            for scope_metrics in resource_metrics.scope_metrics:
                scope = scope_metrics.scope
                fixed: dict[str, str] = {
                    "otel_scope_name": scope.name,
                    "otel_scope_version": scope.version,
                    "otel_scope_schema_url": scope_metrics.schema_url,
                }
                for kv in scope.attributes:
                    fixed[label_name("otel_scope_" + kv.key)] = attribute_string(kv.value)
                fixed.update(resource)
                for metric in scope_metrics.metrics:
                    self._metric(metric, fixed, now)

    def _resource(self, attributes: Sequence[KeyValue], now: float) -> dict[str, str]:
        """job/instance and promoted labels of a resource; refreshes its ``target_info`` series."""
        values = {kv.key: attribute_string(kv.value) for kv in attributes}
        labels: dict[str, str] = {}
        name = values.get("service.name")
        if name is not None:
            namespace = values.get("service.namespace")
            labels["job"] = f"{namespace}/{name}" if namespace else name
        if values.get("service.instance.id"):
            labels["instance"] = values["service.instance.id"]
        for key, label in self._promote.items():
            if values.get(key) and label not in labels:
                labels[label] = values[key]
        if values:
            info = _merge_attribute_labels((k, v) for k, v in values.items() if k not in _RESOURCE_JOB_KEYS)
            info.update((k, v) for k, v in labels.items() if k in ("job", "instance"))
            self._target_info(info, now)
        return labels

    def _target_info(self, info: dict[str, str], now: float) -> None:
        """One ``target_info`` series per job/instance; new attributes replace the old series."""
        identity = (info.get("job", ""), info.get("instance", ""))
        pairs = tuple(sorted((k, v) for k, v in info.items() if v))
        series = self.targets.series.get(pairs)
        if series is None:
            previous = self._target_index.get(identity)
            if previous is not None:
                self.targets.series.pop(previous, None)
            if self._full(self.targets):
                self._store.count_overflow(TARGET_INFO)
                return
            series = self.targets.series[pairs] = OtlpGaugeSeries(labels_text(pairs), now)
            series.value = 1.0
            self._target_index[identity] = pairs
        series.updated = now

    def _metric(self, metric: Metric, fixed: dict[str, str], now: float) -> None:
        which = metric.WhichOneof("data")
        if which is None:
            return
        data = getattr(metric, which)
        points = data.data_points
        name_kind: NameKind
        if which == "sum":
            name_kind = "counter" if data.is_monotonic else "updown"
            if data.aggregation_temporality not in (_DELTA, _CUMULATIVE):
                self._dropped.inc(("unspecified_temporality",), len(points))
                return
            if data.aggregation_temporality == _DELTA and not data.is_monotonic:
                self._dropped.inc(("delta_non_monotonic",), len(points))
                return
        elif which == "gauge":
            name_kind = "gauge"
        elif which in ("histogram", "exponential_histogram"):
            name_kind = "histogram"
            if data.aggregation_temporality not in (_DELTA, _CUMULATIVE):
                self._dropped.inc(("unspecified_temporality",), len(points))
                return
        else:
            name_kind = "summary"
        full_name = metric_name(metric.name, metric.unit, name_kind)
        kind: PromKind = "gauge" if name_kind == "updown" else name_kind
        base = full_name[: -len("_total")] if kind == "counter" else full_name
        # promtool flags an empty HELP; the collector leaves it empty, which Prometheus ignores anyway.
        unit = f" ({metric.unit})" if metric.unit else ""
        documentation = metric.description or f"OTLP metric {metric.name}{unit}"
        family = self._family(base, kind, documentation, len(points))
        if family is None:
            return
        delta = which != "gauge" and which != "summary" and data.aggregation_temporality == _DELTA
        reserved = "le" if kind == "histogram" else "quantile" if kind == "summary" else ""
        for point in points:
            key = _point_key(point.attributes, fixed, reserved)
            if point.flags & _NO_RECORDED_VALUE:
                family.series.pop(key, None)
                family.shadow.pop(key, None)
                continue
            self._point(family, which, key, point, delta, now)

    def _family(self, base: str, kind: PromKind, documentation: str, points: int) -> OtlpFamily | None:
        family = self.families.get(base)
        if family is None:
            if not base or base == TARGET_INFO or self._store_has(base):
                self._refuse(base or "<empty>", points)
                return None
            family = self.families[base] = OtlpFamily(base, documentation, kind)
        elif family.kind != kind:
            if not self._stale(family):
                self._refuse(base, points)
                return None
            # Every series of the old type has gone stale: the name is free again, as after expiry.
            family = self.families[base] = OtlpFamily(base, documentation, kind)
        return family

    def _stale(self, family: OtlpFamily) -> bool:
        deadline = self._store.now - self._store.series_expiration
        return all(s.updated < deadline for table in (family.series, family.shadow) for s in table.values())

    def _store_has(self, name: str) -> bool:
        try:
            self._store.family(name)
        except KeyError:
            return False
        return True

    def _refuse(self, name: str, points: int) -> None:
        self._conflicts.inc((name,))
        self._dropped.inc(("type_conflict",), points)

    def _full(self, family: OtlpFamily) -> bool:
        return len(family.series) - (OVERFLOW_PAIRS in family.series) >= self._store.max_series

    def _point(self, family: OtlpFamily, which: str, key: LabelPairs, point: Any, delta: bool, now: float) -> None:
        series = family.series.get(key)
        overflow = False
        if series is None:
            series = family.shadow.get(key)
            if series is None:
                if self._full(family):
                    if len(family.shadow) >= _SHADOW_FACTOR * self._store.max_series:
                        self._store.count_overflow(family.name)
                        self._dropped.inc(("overflow",))
                        return
                    series = family.shadow[key] = _SERIES_TYPES[family.kind]("", now)
                    overflow = True
                else:
                    series = family.series[key] = _SERIES_TYPES[family.kind](labels_text(key), now)
            else:
                overflow = True
        if overflow:
            self._store.count_overflow(family.name)
            self._overflow_update(family, which, series, point, delta, now)
            return
        if self._update(which, series, point, delta):
            series.updated = now
        elif series.time == 0:  # a series is never created by a point that was dropped
            del family.series[key]

    def _update(self, which: str, series: OtlpSeries, point: Any, delta: bool) -> bool:
        """Apply one point to a series; False (and counted) when the point is dropped."""
        time = point.time_unix_nano
        fresh = series.time == 0
        if not fresh and time < series.time and not delta:
            self._dropped.inc(("out_of_order",))
            return False
        if delta and not fresh and point.start_time_unix_nano < series.time:
            self._dropped.inc(("delta_overlap",))
            return False
        if which == "gauge" or which == "sum":
            value = _number(point)
            if value is None:
                self._dropped.inc(("no_value",))
                return False
            if isinstance(series, OtlpCounterSeries):
                series.value = series.value + value if delta and not fresh else value
                for otlp in point.exemplars:
                    series.exemplar = _exemplar(otlp) or series.exemplar
            else:
                assert isinstance(series, OtlpGaugeSeries)
                series.value = value
        elif which == "histogram":
            assert isinstance(series, OtlpHistogramSeries)
            if not self._histogram(series, point, delta and not fresh):
                return False
        elif which == "exponential_histogram":
            assert isinstance(series, OtlpHistogramSeries)
            if not self._exponential(series, point, delta and not fresh):
                return False
        else:
            assert isinstance(series, OtlpSummarySeries)
            series.quantiles = sorted((q.quantile, q.value) for q in point.quantile_values)
            series.sum = point.sum
            series.count = point.count
        if delta and not isinstance(series, OtlpGaugeSeries | OtlpSummarySeries):
            series.delta = True
        series.time = time
        return True

    def _histogram(self, series: OtlpHistogramSeries, point: HistogramDataPoint, accumulate: bool) -> bool:
        bounds = tuple(point.explicit_bounds)
        counts = list(point.bucket_counts)
        if not counts:
            counts = [point.count] if not bounds else [0] * len(bounds) + [point.count]
        if (
            len(counts) != len(bounds) + 1
            or any(b >= c for b, c in itertools.pairwise(bounds))
            or not all(math.isfinite(b) for b in bounds)
        ):
            self._dropped.inc(("invalid",))
            return False
        total = point.sum if point.HasField("sum") else 0.0
        if accumulate and bounds == series.bounds:
            series.counts = [a + b for a, b in zip(series.counts, counts, strict=True)]
            series.sum += total
            series.count += point.count
        else:
            series.set_buckets(bounds, counts)
            series.sum = total
            series.count = point.count
        series.add_exemplars(point.exemplars)
        return True

    def _exponential(self, series: OtlpHistogramSeries, point: ExponentialHistogramDataPoint, accumulate: bool) -> bool:
        if not _MIN_SCALE <= point.scale <= _MAX_SCALE or not math.isfinite(point.zero_threshold):
            self._dropped.inc(("invalid",))
            return False
        state = series.exponential
        if not accumulate or state is None:
            state = series.exponential = ExponentialState(point.scale, point.zero_threshold)
            series.sum = 0.0
            series.count = 0
        state.add(point)
        series.sum += point.sum if point.HasField("sum") else 0.0
        series.count += point.count
        bounds, counts = state.explicit()
        series.set_buckets(bounds, counts)
        series.add_exemplars(point.exemplars)
        return True

    def _overflow_update(
        self, family: OtlpFamily, which: str, shadow: OtlpSeries, point: Any, delta: bool, now: float
    ) -> None:
        """Fold a capped stream's update into the overflow series as an increment.

        The overflow series must only ever grow (Prometheus would read a drop as a counter reset),
        so it receives the difference between the stream's state after and before the point; a
        stream that went down was reset and contributes its whole new value. Gauges keep the last
        value written; summaries cannot be merged and are only counted.
        """
        before = _numbers(shadow)
        if not self._update(which, shadow, point, delta):
            return
        shadow.updated = now
        if isinstance(shadow, OtlpSummarySeries):
            self._dropped.inc(("overflow_summary",))
            return
        target = family.series.get(OVERFLOW_PAIRS)
        if target is None:
            target = _SERIES_TYPES[family.kind](labels_text(OVERFLOW_PAIRS), now)
            if isinstance(target, OtlpHistogramSeries) and isinstance(shadow, OtlpHistogramSeries):
                target.set_buckets(shadow.bounds, [0] * len(shadow.counts))
            family.series[OVERFLOW_PAIRS] = target
        target.updated = now
        target.time = max(target.time, shadow.time)
        if isinstance(target, OtlpGaugeSeries) and isinstance(shadow, OtlpGaugeSeries):
            target.value = shadow.value
            return
        after = _numbers(shadow)
        if isinstance(target, OtlpHistogramSeries) and isinstance(shadow, OtlpHistogramSeries):
            if shadow.bounds != target.bounds:
                self._dropped.inc(("overflow_bounds_differ",))
                return
            if len(before) != len(after):
                before = []
        increments = (
            after
            if not before or any(a < b for a, b in zip(after, before, strict=True))
            else [a - b for a, b in zip(after, before, strict=True)]
        )
        if isinstance(target, OtlpCounterSeries) and isinstance(shadow, OtlpCounterSeries):
            target.value += increments[0]
            target.exemplar = shadow.exemplar or target.exemplar
        elif isinstance(target, OtlpHistogramSeries) and isinstance(shadow, OtlpHistogramSeries):
            target.count += int(increments[0])
            target.sum += increments[1]
            target.counts = [t + int(i) for t, i in zip(target.counts, increments[2:], strict=True)]
            for index, exemplar in enumerate(shadow.exemplars):
                if exemplar is not None:
                    target.exemplars[index] = exemplar

    # -- staleness --

    def expire(self) -> int:
        """Delete series (and shadow states) not updated within ``series_expiration``, then empty
        families, so a name can come back later with another type. Returns how many series went."""
        deadline = self._store.now - self._store.series_expiration
        removed = 0
        for family in [*self.families.values(), self.targets]:
            for table in (family.series, family.shadow):
                stale = [key for key, series in table.items() if series.updated < deadline]
                for key in stale:
                    del table[key]
                if table is family.series:
                    removed += len(stale)
        for name in [name for name, family in self.families.items() if not family.series and not family.shadow]:
            del self.families[name]
        self._target_index = {k: v for k, v in self._target_index.items() if v in self.targets.series}
        return removed

    def render_families(self) -> Iterator[OtlpFamily]:
        """What the exposition renders: ``target_info`` first, then families in arrival order."""
        if self.targets.series:
            yield self.targets
        yield from list(self.families.values())

    def collect(self) -> Iterator[PromMetric]:
        """The same families as prometheus_client ``Metric`` objects (``StoreCollector`` source)."""
        self.expire()
        for family in self.render_families():
            yield to_prometheus_metric(family)


def _numbers(series: OtlpSeries) -> list[float]:
    """A stream's cumulative numbers, to diff before/after a point: [value] or [count, sum, *buckets].

    Empty for a stream that has not had a point yet (its first point is all increment).
    """
    if series.time == 0:
        return []
    if isinstance(series, OtlpCounterSeries | OtlpGaugeSeries):
        return [series.value]
    if isinstance(series, OtlpHistogramSeries):
        return [float(series.count), series.sum, *map(float, series.counts)]
    return []


def _merge_attribute_labels(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Attribute keys -> label names; keys that collide after sanitizing get their values joined
    with ``;`` in the order of the original keys (the spec's rule). Unwritable names are left out."""
    # An empty name cannot be written, and ``__``-prefixed names are Prometheus' own (``__name__``).
    named = [(name, key, value) for key, value in items if (name := label_name(key)) and not name.startswith("__")]
    labels = {name: value for name, _, value in named}
    if len(labels) != len(named):
        groups: dict[str, list[str]] = {}
        for name, _, value in sorted(named):
            groups.setdefault(name, []).append(value)
        labels = {name: ";".join(values) for name, values in groups.items()}
    return labels


def _point_key(attributes: Sequence[KeyValue], fixed: dict[str, str], reserved: str) -> LabelPairs:
    """A point's labels: its attributes, under the scope and resource labels (which win)."""
    if attributes:
        labels = _merge_attribute_labels((kv.key, attribute_string(kv.value)) for kv in attributes)
        labels.update(fixed)
        if reserved:
            labels.pop(reserved, None)
        labels.pop(OVERFLOW_LABEL, None)
    else:
        labels = fixed
    return tuple(sorted((k, v) for k, v in labels.items() if v))


# --- prometheus_client view --------------------------------------------------------------------


def _prom_exemplar(exemplar: Exemplar | None) -> PromExemplar | None:
    if exemplar is None:
        return None
    labels = {"trace_id": exemplar.trace_id, "span_id": exemplar.span_id}
    return PromExemplar(labels, exemplar.value, exemplar.timestamp)


def to_prometheus_metric(family: OtlpFamily) -> PromMetric:
    """One family as a prometheus_client ``Metric`` (for ``generate_latest`` and the unit tests)."""
    metric = PromMetric(family.name, family.documentation, family.kind)
    samples = metric.samples
    for key, series in list(family.series.items()):
        labels = dict(key)
        if isinstance(series, OtlpCounterSeries):
            samples.append(Sample(family.name + "_total", labels, series.value, None, _prom_exemplar(series.exemplar)))
        elif isinstance(series, OtlpGaugeSeries):
            samples.append(Sample(family.name, labels, series.value))
        elif isinstance(series, OtlpHistogramSeries):
            cumulative = 0
            bounds = [go_float(b, openmetrics=True) for b in series.bounds] + ["+Inf"]
            for bound, count, exemplar in zip(bounds, series.counts, series.exemplars, strict=True):
                cumulative += count
                samples.append(
                    Sample(family.name + "_bucket", {**labels, "le": bound}, cumulative, None, _prom_exemplar(exemplar))
                )
            samples.append(Sample(family.name + "_count", labels, series.count))
            samples.append(Sample(family.name + "_sum", labels, series.sum))
        else:
            for quantile, value in series.quantiles:
                samples.append(Sample(family.name, {**labels, "quantile": go_float(quantile, openmetrics=True)}, value))
            samples.append(Sample(family.name + "_count", labels, series.count))
            samples.append(Sample(family.name + "_sum", labels, series.sum))
    return metric
