"""The gateway's own metric state: plain dicts of label tuples -> numbers, read by one Collector.

Why not prometheus_client's Counter/Histogram objects: derivation creates series from span data
(models, tenants, services) at a rate of hundreds of thousands of observations a second, and a child
object per label set with a lock per increment costs more than the arithmetic. Here a series is a
small list, updated in place on the event loop (one thread, no locks), and exposition builds the
families only when Prometheus scrapes.

Two protections the collector's spanmetrics lacks by default:
- a cardinality cap per metric: past ``max_series`` label sets, new ones go to a single overflow
  series labelled ``otel_metric_overflow="true"`` (the OTel SDK's rule) and
  ``gateway_metric_series_overflow_total{metric}`` counts them;
- staleness: series not updated for ``series_expiration`` seconds are deleted, so a model or tenant
  that stopped sending leaves /metrics (families created with ``expires=False`` keep their series,
  e.g. the gateway's own counters).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeAlias, TypeVar

LabelKey: TypeAlias = tuple[str, ...]
Kind = Literal["counter", "gauge", "histogram"]
OVERFLOW_LABEL = "otel_metric_overflow"
OVERFLOW_KEY: LabelKey = ("\x00overflow",)


@dataclass(slots=True)
class Exemplar:
    """The trace behind an observation: lowercase hex ids, the observed value, unix seconds."""

    trace_id: str
    span_id: str
    value: float
    timestamp: float


SpanRef: TypeAlias = tuple[bytes, bytes, float]
"""A span's raw trace id, span id and time (unix seconds): what derivation keeps for an exemplar."""

ExemplarSlot: TypeAlias = "Exemplar | tuple[SpanRef, float] | None"
"""What a series keeps as its exemplar: an ``Exemplar``, or a span and the value it observed.

Derivation stores the second form (one tuple per observation): a scrape shows one exemplar per
series and bucket out of thousands of observations, so ids are hex-encoded by ``resolve_exemplar``
only for the ones shown.
"""


def resolve_exemplar(slot: ExemplarSlot) -> Exemplar | None:
    """The ``Exemplar`` of a series' slot; a span without a trace id links to nothing."""
    if slot is None or isinstance(slot, Exemplar):
        return slot
    (trace_id, span_id, timestamp), value = slot
    if not trace_id:
        return None
    return Exemplar(trace_id.hex(), span_id.hex(), value, timestamp)


class CounterSeries:
    __slots__ = ("exemplar", "labels_text", "overflow", "updated", "value")

    def __init__(self, now: float) -> None:
        self.value = 0.0
        self.exemplar: ExemplarSlot = None
        self.updated = now
        self.labels_text: str | None = None  # rendered once by the exposition: label values never change
        # On a family's overflow series only: the gateway_metric_series_overflow series of that family.
        self.overflow: CounterSeries | None = None


class GaugeSeries:
    __slots__ = ("labels_text", "overflow", "updated", "value")

    def __init__(self, now: float) -> None:
        self.value = 0.0
        self.updated = now
        self.labels_text: str | None = None
        self.overflow: CounterSeries | None = None


class HistogramSeries:
    """Per-bucket (not cumulative) counts, the last bucket being +Inf; cumulated at exposition."""

    __slots__ = ("count", "counts", "exemplars", "labels_text", "overflow", "sum", "updated")

    def __init__(self, n_buckets: int, now: float) -> None:
        self.counts = [0] * (n_buckets + 1)
        self.exemplars: list[ExemplarSlot] = [None] * (n_buckets + 1)
        self.sum = 0.0
        self.count = 0
        self.updated = now
        self.labels_text: str | None = None
        self.overflow: CounterSeries | None = None


_S = TypeVar("_S", CounterSeries, GaugeSeries, HistogramSeries)


class _Family(Generic[_S]):
    """What every metric family shares: identity, label names, the series dict and the cap."""

    kind: Kind

    def __init__(
        self, store: MetricStore, name: str, documentation: str, labelnames: Sequence[str], expires: bool
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.expires = expires
        self._store = store
        self.series: dict[LabelKey, _S] = {}
        self.capped = True  # False only for the overflow counter itself: one series per capped family

    def series_count(self) -> int:
        return len(self.series)

    def _new_series(self, key: LabelKey) -> _S:
        series = self._make_series()
        if key is OVERFLOW_KEY:
            series.overflow = self._store.overflow_series(self.name)
        return series

    def _make_series(self) -> _S:
        raise NotImplementedError

    def series_for(self, labels: LabelKey) -> _S:
        """The series of a label set (past the cap: the overflow series), for a caller to keep.

        Derivation keeps these references per label set across batches and updates them in place
        (one dict lookup per span instead of one per observation). A reference is valid until
        ``MetricStore.generation`` changes (series were deleted). Unlike ``inc``/``observe``, this
        does not count overflow: a caller updating a series whose ``overflow`` is set adds one to
        that counter series per observation.
        """
        series = self.series.get(labels)
        if series is None:
            key = labels if self._has_room(labels) else OVERFLOW_KEY
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = self._new_series(key)
        return series

    def _series(self, labels: LabelKey) -> _S:
        """The series of a label set, created on first use (under the cap, else the overflow series)."""
        series = self.series.get(labels)
        if series is None:
            key = self._admit(labels)
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = self._new_series(key)
        return series

    def _admit(self, labels: LabelKey) -> LabelKey:
        """The key a new label set is stored under: itself, or the overflow key past the cap."""
        if self._has_room(labels):
            return labels
        self._store.count_overflow(self.name)
        return OVERFLOW_KEY

    def _has_room(self, labels: LabelKey) -> bool:
        """Whether a new label set gets its own series (raises on a wrong number of label values)."""
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected {len(self.labelnames)} label values, got {len(labels)}")
        series = self.series
        return not self.capped or len(series) - (OVERFLOW_KEY in series) < self._store.max_series


class CounterFamily(_Family[CounterSeries]):
    kind: Kind = "counter"

    def _make_series(self) -> CounterSeries:
        return CounterSeries(self._store.now)

    def inc(self, labels: LabelKey, amount: float = 1.0, exemplar: ExemplarSlot = None) -> None:
        """Add a non-negative amount; NaN, infinities and negatives are refused, never stored."""
        if not (0.0 <= amount < math.inf):
            raise ValueError(f"{self.name}: counter increment must be finite and >= 0, got {amount}")
        series = self._series(labels)
        series.value += amount
        series.updated = self._store.now
        if exemplar is not None:
            series.exemplar = exemplar

    def value(self, labels: LabelKey) -> float:
        series = self.series.get(labels)
        return 0.0 if series is None else series.value


class GaugeFamily(_Family[GaugeSeries]):
    kind: Kind = "gauge"

    def _make_series(self) -> GaugeSeries:
        return GaugeSeries(self._store.now)

    def _get(self, labels: LabelKey) -> GaugeSeries:
        series = self._series(labels)
        series.updated = self._store.now
        return series

    def set(self, labels: LabelKey, value: float) -> None:
        self._get(labels).value = value

    def inc(self, labels: LabelKey, amount: float = 1.0) -> None:
        self._get(labels).value += amount

    def remove(self, labels: LabelKey) -> None:
        if self.series.pop(labels, None) is not None:
            self._store.generation += 1

    def value(self, labels: LabelKey) -> float:
        series = self.series.get(labels)
        return 0.0 if series is None else series.value


class HistogramFamily(_Family[HistogramSeries]):
    kind: Kind = "histogram"

    def __init__(
        self,
        store: MetricStore,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        expires: bool,
    ) -> None:
        super().__init__(store, name, documentation, labelnames, expires)
        bounds = [float(b) for b in buckets]
        if not bounds or bounds != sorted(set(bounds)) or not all(math.isfinite(b) for b in bounds):
            raise ValueError(f"{name}: buckets must be finite, strictly increasing and non-empty")
        self.buckets = tuple(bounds)

    def _make_series(self) -> HistogramSeries:
        return HistogramSeries(len(self.buckets), self._store.now)

    def observe(self, labels: LabelKey, value: float, exemplar: ExemplarSlot = None) -> None:
        """Count a finite value in its bucket (upper bounds inclusive, as Prometheus' ``le``)."""
        if not math.isfinite(value):
            raise ValueError(f"{self.name}: observation must be finite, got {value}")
        series = self._series(labels)
        index = bisect.bisect_left(self.buckets, value)
        series.counts[index] += 1
        series.sum += value
        series.count += 1
        series.updated = self._store.now
        if exemplar is not None:
            series.exemplars[index] = exemplar


Family = CounterFamily | GaugeFamily | HistogramFamily
_F = TypeVar("_F", CounterFamily, GaugeFamily, HistogramFamily)


class MetricStore:
    """All families the gateway serves, by name; the only metric registry the gateway owns.

    ``now`` is refreshed once per batch (``tick()``) rather than read per observation: staleness
    needs seconds, not nanoseconds, and a clock call per span is measurable on the hot path.
    """

    def __init__(
        self,
        *,
        max_series: int = 2000,
        series_expiration: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_series < 1:
            raise ValueError("max_series must be >= 1")
        self.max_series = max_series
        self.series_expiration = series_expiration
        self._clock = clock
        self.now = clock()
        # Bumped whenever series are deleted: references from ``series_for`` are then stale.
        self.generation = 0
        self._families: dict[str, Family] = {}
        self._overflow = CounterFamily(
            self,
            "gateway_metric_series_overflow",
            "Observations sent to the otel_metric_overflow series because a metric reached its series limit.",
            ("metric",),
            expires=False,
        )
        self._overflow.capped = False
        self._families[self._overflow.name] = self._overflow

    def tick(self) -> float:
        """Refresh ``now`` from the clock; called once per batch and before each scrape."""
        self.now = self._clock()
        return self.now

    def counter(
        self, name: str, documentation: str, labelnames: Sequence[str], *, expires: bool = True
    ) -> CounterFamily:
        """A counter family; ``name`` is given without ``_total``, which exposition appends."""
        if name.endswith("_total"):
            raise ValueError(f"{name}: give counter names without the _total suffix")
        return self._add(CounterFamily(self, name, documentation, labelnames, expires))

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str], *, expires: bool = True) -> GaugeFamily:
        return self._add(GaugeFamily(self, name, documentation, labelnames, expires))

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        *,
        expires: bool = True,
    ) -> HistogramFamily:
        return self._add(HistogramFamily(self, name, documentation, labelnames, buckets, expires))

    def _add(self, family: _F) -> _F:
        if family.name in self._families:
            raise ValueError(f"metric family {family.name!r} is already registered")
        self._families[family.name] = family
        return family

    def family(self, name: str) -> Family:
        return self._families[name]

    def families(self) -> Iterator[Family]:
        return iter(list(self._families.values()))

    def count_overflow(self, metric: str) -> None:
        self._overflow.inc((metric,))

    def overflow_series(self, metric: str) -> CounterSeries:
        """The series counting ``metric``'s observations sent to its overflow series."""
        return self._overflow.series_for((metric,))

    def expire(self) -> int:
        """Delete series of expiring families not updated within ``series_expiration``; returns how many."""
        deadline = self.now - self.series_expiration
        removed = 0
        for family in self._families.values():
            if not family.expires:
                continue
            series: dict[LabelKey, CounterSeries | GaugeSeries | HistogramSeries] = family.series  # type: ignore[assignment]
            stale = [key for key, s in series.items() if s.updated < deadline]
            for key in stale:
                del series[key]
            removed += len(stale)
        if removed:
            self.generation += 1
        return removed
