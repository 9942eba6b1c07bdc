"""Request, error and duration (RED) metrics for every span, named as the collector's spanmetrics connector.

Jaeger's Monitor tab and the dashboards written for the collector query
``traces_span_metrics_calls_total`` and ``traces_span_metrics_duration_milliseconds_*`` by
``service_name``, ``span_name``, ``span_kind`` and ``status_code``: the connector's default
namespace (``traces.span.metrics``) and explicit buckets (2 ms ... 15 s), translated by the
collector's Prometheus exporter. Serving the same names and labels means pointing Jaeger or
Grafana at the gateway instead of a collector changes nothing for them.

As in the connector: resources without ``service.name`` are skipped; a negative duration counts as
0; extra ``dimensions`` are looked up in the span's attributes, then the resource's, then their
``default`` (a dimension with none of these gets an empty value, which Prometheus reads as "no
label", as the connector omits it); exemplars (the span's trace and span ids) go on the duration
buckets only.

Hot path: one pass over the spans of a batch into a local dict keyed by the span's raw label
values (one ``bisect`` and three list operations per span), then one merge per key into the two
series it updates, found through references kept per key across batches (``_SeriesPair``; dropped
when the store deletes series, as ``MetricStore.generation`` tells). A merge is one pass over the
buckets; exemplars are the raw ids of the last span of each bucket (hex-encoded only if a scrape
shows them). Past the series cap, each span sent to the overflow series is counted as overflow.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from gateway.component import Batch
from gateway.derive.attributes import AttributeCache
from gateway.metrics.otlp_translate import attribute_string
from gateway.metrics.prom_names import label_name
from gateway.metrics.store import CounterSeries, ExemplarSlot, HistogramSeries, LabelKey, MetricStore
from gateway.validation import ConfigError, expect_mapping, read_bool, read_str, reject_unknown
from proto_handlers.raw_attributes import status_code

CALLS = "traces_span_metrics_calls"
DURATION = "traces_span_metrics_duration_milliseconds"
DURATION_SECONDS = "traces_span_metrics_duration_seconds"
BUCKETS_MS: tuple[float, ...] = (2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000)
BASE_LABELS = ("service_name", "span_name", "span_kind", "status_code")
RESERVED_LABELS = frozenset({*BASE_LABELS, "le", "otel_metric_overflow", "job", "instance"})
SPAN_KINDS = {
    0: "SPAN_KIND_UNSPECIFIED",
    1: "SPAN_KIND_INTERNAL",
    2: "SPAN_KIND_SERVER",
    3: "SPAN_KIND_CLIENT",
    4: "SPAN_KIND_PRODUCER",
    5: "SPAN_KIND_CONSUMER",
}
STATUS_CODES = {0: "STATUS_CODE_UNSET", 1: "STATUS_CODE_OK", 2: "STATUS_CODE_ERROR"}


@dataclass(frozen=True, slots=True)
class Dimension:
    """An extra label: the attribute ``name`` (span first, then resource), else ``default``."""

    name: str
    default: str | None = None


@dataclass(frozen=True, slots=True)
class SpanMetricsSettings:
    """The ``spanmetrics`` config section."""

    enabled: bool = True
    dimensions: tuple[Dimension, ...] = ()
    histogram_unit: str = "ms"  # the connector's default; "s" gives a promtool-clean _seconds histogram

    @staticmethod
    def from_mapping(raw: Mapping[str, Any], path: str = "spanmetrics") -> SpanMetricsSettings:
        """Read and validate: every dimension must become a distinct label that is not one of ours."""
        reject_unknown(raw, ("enabled", "dimensions", "histogram"), path)
        histogram = expect_mapping(raw.get("histogram"), f"{path}.histogram")
        reject_unknown(histogram, ("unit",), f"{path}.histogram")
        unit = read_str(histogram.get("unit", "ms"), f"{path}.histogram.unit")
        if unit not in ("ms", "s"):
            raise ConfigError(
                f"{path}.histogram.unit", f"expected ms or s (as the spanmetrics connector), got {unit!r}"
            )
        enabled = read_bool(raw["enabled"], f"{path}.enabled") if "enabled" in raw else True
        entries = raw.get("dimensions") or []
        if not isinstance(entries, list):
            raise ConfigError(f"{path}.dimensions", "expected a list of attribute names or {name, default}")
        dimensions: list[Dimension] = []
        labels: dict[str, str] = {}
        for index, entry in enumerate(entries):
            where = f"{path}.dimensions[{index}]"
            if isinstance(entry, str):
                dimension = Dimension(read_str(entry, where))
            else:
                item = expect_mapping(entry, where)
                reject_unknown(item, ("name", "default"), where)
                default = read_str(item["default"], f"{where}.default", allow_empty=True) if "default" in item else None
                dimension = Dimension(read_str(item.get("name"), f"{where}.name"), default)
            label = label_name(dimension.name)
            if label in RESERVED_LABELS:
                raise ConfigError(where, f"{dimension.name!r} would become the label {label!r}, which is reserved")
            if label in labels:
                raise ConfigError(where, f"{dimension.name!r} and {labels[label]!r} would both become {label!r}")
            labels[label] = dimension.name
            dimensions.append(dimension)
        return SpanMetricsSettings(enabled=enabled, dimensions=tuple(dimensions), histogram_unit=unit)


class _Aggregate:
    """One label set's share of a batch: per-bucket counts, sum, and the last span per bucket."""

    __slots__ = ("counts", "last", "total")

    def __init__(self, width: int) -> None:
        self.counts = [0] * width
        self.last: list[Any] = [None] * width
        self.total = 0.0


class _SeriesPair:
    """The calls and duration series of one key (the overflow series past the cap)."""

    __slots__ = ("calls", "duration")

    def __init__(self, calls: CounterSeries, duration: HistogramSeries) -> None:
        self.calls = calls
        self.duration = duration


class SpanMetricsProcessor:
    """The traces pipeline's RED metrics, into two store families with the same label names."""

    def __init__(self, store: MetricStore, settings: SpanMetricsSettings) -> None:
        self._dimensions = settings.dimensions
        labelnames = (*BASE_LABELS, *(label_name(d.name) for d in settings.dimensions))
        self._calls = store.counter(
            CALLS, "Spans seen, by service, span name, kind and status (spanmetrics connector compatible).", labelnames
        )
        seconds = settings.histogram_unit == "s"
        self._buckets = tuple(b / 1000 for b in BUCKETS_MS) if seconds else BUCKETS_MS
        self._nanos_per_unit = 1e9 if seconds else 1e6
        self._duration = store.histogram(
            DURATION_SECONDS if seconds else DURATION,
            f"Span duration in {'seconds' if seconds else 'milliseconds'}, by service, span name, kind and status "
            "(spanmetrics connector compatible).",
            labelnames,
            self._buckets,
        )
        self._store = store
        self._generation = store.generation
        self._pairs: dict[tuple[Any, ...], _SeriesPair] = {}
        self._index = {d.name: i for i, d in enumerate(settings.dimensions)}
        self._dimension_values: AttributeCache[tuple[int, str] | None] = AttributeCache(_dimension_reader(self._index))
        self._defaults = tuple(d.default or "" for d in settings.dimensions)

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    def process(self, batch: Batch) -> None:
        buckets = self._buckets
        width = len(buckets) + 1
        per_unit = self._nanos_per_unit
        index = self._index
        dimensions = self._dimension_values
        aggregates: dict[tuple[Any, ...], _Aggregate] = {}
        for resource_spans in batch.request.resource_spans:
            service, resource_values = self._resource(resource_spans.resource.attributes)
            if service is None:
                continue
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    start = span.start_time_unix_nano
                    end = span.end_time_unix_nano
                    duration = (end - start) / per_unit if end > start else 0.0
                    # kind (a number) and status (its serialized bytes) are named at the merge, once per key
                    if index:
                        values = list(resource_values)
                        for position, text in filter(None, map(dimensions.__getitem__, span.attributes)):
                            values[position] = text
                        key: tuple[Any, ...] = (service, span.name, span.kind, span.status, *values)
                    else:
                        key = (service, span.name, span.kind, span.status)
                    aggregate = aggregates.get(key)
                    if aggregate is None:
                        aggregate = aggregates[key] = _Aggregate(width)
                    bucket = bisect.bisect_left(buckets, duration)
                    aggregate.counts[bucket] += 1
                    aggregate.total += duration
                    aggregate.last[bucket] = span
        store = self._store
        if store.generation != self._generation or len(self._pairs) >= _PAIR_LIMIT:
            self._pairs.clear()
            self._generation = store.generation
        pairs = self._pairs
        now = store.now
        for key, aggregate in aggregates.items():
            pair = pairs.get(key)
            if pair is None:
                pair = pairs[key] = self._pair(key)
            self._merge(aggregate, pair, now)

    def _pair(self, key: tuple[Any, ...]) -> _SeriesPair:
        """The series of a batch key ``(service, name, kind number, status bytes, *dimension values)``."""
        service, name, kind, status, *values = key
        labels: LabelKey = (
            service,
            name,
            SPAN_KINDS.get(kind, "SPAN_KIND_UNSPECIFIED"),
            STATUS_CODES.get(status_code(status), "STATUS_CODE_UNSET"),
            *values,
        )
        return _SeriesPair(self._calls.series_for(labels), self._duration.series_for(labels))

    def _merge(self, aggregate: _Aggregate, pair: _SeriesPair, now: float) -> None:
        """Add a key's share of the batch to its series: one pass over the buckets."""
        series = pair.duration
        counts = series.counts
        exemplars = series.exemplars
        per_unit = self._nanos_per_unit
        spans = 0
        for index, span in enumerate(aggregate.last):
            if span is not None:  # a bucket with a last span is a bucket with spans
                count = aggregate.counts[index]
                counts[index] += count
                spans += count
                exemplars[index] = _exemplar(span, per_unit)
        series.sum += aggregate.total
        series.count += spans
        series.updated = now
        calls = pair.calls
        calls.value += spans
        calls.updated = now
        for overflow in (calls.overflow, series.overflow):
            if overflow is not None:
                overflow.value += spans
                overflow.updated = now

    def _resource(self, attributes: Any) -> tuple[str | None, tuple[str, ...]]:
        """The resource's service name and the dimension values it provides (else the defaults)."""
        service: str | None = None
        values = list(self._defaults)
        for kv in attributes:
            if kv.key == "service.name":
                service = attribute_string(kv.value)
            position = self._index.get(kv.key)
            if position is not None:
                values[position] = attribute_string(kv.value)
        return service, tuple(values)


def _dimension_reader(index: Mapping[str, int]) -> Callable[[bytes], tuple[int, str] | None]:
    """Serialized span attribute -> (dimension position, label value), or ``None`` for other keys."""

    def read(raw: bytes) -> tuple[int, str] | None:
        kv = KeyValue.FromString(raw)
        position = index.get(kv.key)
        return None if position is None else (position, attribute_string(kv.value))

    return read


def _exemplar(span: Any, nanos_per_unit: float) -> ExemplarSlot:
    """A span as its bucket's exemplar: raw ids (hex-encoded only if a scrape shows them) and duration."""
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    duration = (end - start) / nanos_per_unit if end > start else 0.0
    # The timestamp in milliseconds, what Prometheus stores; nanoseconds / 1e9 would print 0.0049999.
    return ((span.trace_id, span.span_id, end // 1_000_000 / 1e3), duration)


_PAIR_LIMIT = 20_000
"""Keys whose series references are kept; cleared when reached (a key is resolved again on its next batch)."""
