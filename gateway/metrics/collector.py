"""One prometheus_client Collector over the MetricStore: families are built only when scraped.

The plain text format stays the default; with ``Accept: application/openmetrics-text`` the same
samples carry exemplars (trace_id, span_id) that link a latency or cost spike to its trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar as PromExemplar
from prometheus_client.samples import Sample

from gateway.metrics.prom_names import go_float
from gateway.metrics.store import (
    OVERFLOW_KEY,
    OVERFLOW_LABEL,
    CounterFamily,
    ExemplarSlot,
    GaugeFamily,
    HistogramFamily,
    LabelKey,
    MetricStore,
    resolve_exemplar,
)

_OVERFLOW_LABELS = {OVERFLOW_LABEL: "true"}


def _labels(names: tuple[str, ...], key: LabelKey) -> dict[str, str]:
    if key is OVERFLOW_KEY or key == OVERFLOW_KEY:
        return dict(_OVERFLOW_LABELS)
    return dict(zip(names, key, strict=True))


def _exemplar(slot: ExemplarSlot) -> PromExemplar | None:
    exemplar = resolve_exemplar(slot)
    if exemplar is None:
        return None
    return PromExemplar(
        {"trace_id": exemplar.trace_id, "span_id": exemplar.span_id}, exemplar.value, exemplar.timestamp
    )


def _format_bound(bound: float) -> str:
    """``le`` as the Go client writes it in OpenMetrics (``2.0``, ``0.005``, ``1e+06``): part of a
    series' identity, so the same here, in gateway/metrics/exposition.py and in OTLP translation."""
    return go_float(bound, openmetrics=True)


class NativeSource(Protocol):
    """A producer that /metrics renders itself (exposition.py) and that also yields Metric objects."""

    def collect(self) -> Iterable[Metric]: ...


class StoreCollector(Collector):
    """Exposes every family of a MetricStore, plus families from extra sources (OTLP metrics)."""

    def __init__(self, store: MetricStore, extra: Iterable[Callable[[], Iterable[Metric]]] = ()) -> None:
        self._store = store
        self._extra = list(extra)
        self._native: list[NativeSource] = []

    def add_source(self, source: Callable[[], Iterable[Metric]]) -> None:
        """Another producer of families, e.g. the translator of OTLP metrics sent by services."""
        self._extra.append(source)

    def add_native_source(self, source: NativeSource) -> None:
        """A producer with its own renderer for /metrics; ``collect()`` still yields its families."""
        self._native.append(source)

    def extra_sources(self) -> list[Callable[[], Iterable[Metric]]]:
        """The plain prometheus_client sources, which /metrics renders through prometheus_client."""
        return list(self._extra)

    def collect(self) -> Iterator[Metric]:
        self._store.tick()
        self._store.expire()
        for family in self._store.families():
            if isinstance(family, CounterFamily):
                yield self._counter(family)
            elif isinstance(family, GaugeFamily):
                yield self._gauge(family)
            else:
                yield self._histogram(family)
        for native in self._native:
            yield from native.collect()
        for source in self._extra:
            yield from source()

    @staticmethod
    def _counter(family: CounterFamily) -> Metric:
        metric = Metric(family.name, family.documentation, "counter")
        name = family.name + "_total"
        for key, series in list(family.series.items()):
            metric.samples.append(
                Sample(name, _labels(family.labelnames, key), series.value, None, _exemplar(series.exemplar))
            )
        return metric

    @staticmethod
    def _gauge(family: GaugeFamily) -> Metric:
        metric = Metric(family.name, family.documentation, "gauge")
        for key, series in list(family.series.items()):
            metric.samples.append(Sample(family.name, _labels(family.labelnames, key), series.value))
        return metric

    @staticmethod
    def _histogram(family: HistogramFamily) -> Metric:
        metric = Metric(family.name, family.documentation, "histogram")
        bucket_name, count_name, sum_name = family.name + "_bucket", family.name + "_count", family.name + "_sum"
        bounds = [_format_bound(b) for b in family.buckets] + ["+Inf"]
        samples = metric.samples
        for key, series in list(family.series.items()):
            labels = _labels(family.labelnames, key)
            cumulative = 0
            for bound, count, exemplar in zip(bounds, series.counts, series.exemplars, strict=True):
                cumulative += count
                samples.append(Sample(bucket_name, {**labels, "le": bound}, cumulative, None, _exemplar(exemplar)))
            samples.append(Sample(count_name, labels, series.count))
            samples.append(Sample(sum_name, labels, series.sum))
        return metric
