"""The merge behind the supervisor's ``/metrics``: N workers' snapshots -> one exposition.

Every worker derives from the spans *it* received, so most numbers are parts of a total:

- store counters, histogram buckets, sums and counts: summed per label set; exemplars: the newest;
- store gauges: summed (all of the gateway's are additive: queue bytes and capacity, in-flight
  bytes), except ``*_info`` families (taken once: every worker says the same) and those in
  ``GAUGE_MIN`` (``gateway_budget_store_up``: up only if every worker reaches the store);
- OTLP metrics from services: an SDK exports the same *cumulative* series over whichever connection
  it has, which may land on any worker, so copies are not parts: the one with the newest point
  time wins. Series a worker accumulated from *delta* points are parts, and are summed (exponential
  histograms exactly, in their own buckets); gauges and summaries: the newest;
- prometheus_client sources (the budget gauges, global through Redis with ``workers > 1``): taken
  once, from the first worker that has them.

The series cap (``prometheus.max_series_per_metric``) is applied again after the merge, since N
workers may each hold ``max_series`` different label sets: label sets beyond the cap are folded into
the ``otel_metric_overflow="true"`` series. Label sets that had their own series at the previous
scrape keep it, so a counter does not move into the overflow series (and appear to reset) just
because another worker reported first.

Counter monotonicity across a worker restart: the last snapshot of a worker that exited is
*retired*: its counters and histograms (and OTLP series) stay in the merge as an offset, so the
merged counter never goes down while the new worker counts from zero. What the dead worker received
after the last scrape is lost, as it would be for a single process that crashed. A retired series
leaves once no worker has updated its label set for ``series_expiration``.

The result is rendered by the single-process code (``Exposition`` over a ``MetricStore`` and the
OTLP families), so text, OpenMetrics and exemplars are byte-for-byte the same shapes.
"""

from __future__ import annotations

import bisect
import functools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeAlias

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from gateway.metrics.exposition import Exposition
from gateway.metrics.otlp_translate import (
    OVERFLOW_PAIRS,
    OtlpCounterSeries,
    OtlpFamily,
    OtlpGaugeSeries,
    OtlpHistogramSeries,
    OtlpSummarySeries,
    labels_text,
)
from gateway.metrics.store import (
    OVERFLOW_KEY,
    CounterSeries,
    Family,
    GaugeSeries,
    HistogramSeries,
    MetricStore,
)
from gateway.workers.snapshot import Snapshot, exemplar_from, exponential_from, exponential_row

GAUGE_MIN = frozenset({"gateway_budget_store_up"})
"""Gauges that are 1 only if every worker says 1 (a per-worker health bit, not an amount)."""

StoreKey: TypeAlias = tuple[str, ...] | None  # None: a worker's overflow series
OtlpKey: TypeAlias = tuple[tuple[str, str], ...]
Row: TypeAlias = list[Any]

# Index of ``updated`` in each row shape (snapshot.py documents the rows).
_STORE_UPDATED = {"counter": 2, "gauge": 2, "histogram": 4}
_OTLP_UPDATED = {"counter": 3, "gauge": 3, "histogram": 6, "summary": 5}
_OTLP_TIME = {"counter": 2, "gauge": 2, "histogram": 5, "summary": 4}


class _StoreFamily:
    __slots__ = ("header", "rows")

    def __init__(self, header: dict[str, Any]) -> None:
        self.header = {k: v for k, v in header.items() if k != "series"}
        self.rows: dict[StoreKey, Row] = {}


class _OtlpFamily:
    __slots__ = ("doc", "kind", "name", "rows")

    def __init__(self, name: str, doc: str, kind: str) -> None:
        self.name = name
        self.doc = doc
        self.kind = kind
        self.rows: dict[OtlpKey, Row] = {}


def _newer(a: Sequence[Any] | None, b: Sequence[Any] | None) -> Sequence[Any] | None:
    """The exemplar with the later timestamp (index 3)."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b[3] > a[3] else a


def _newer_each(a: Sequence[Any] | None, b: Sequence[Any] | None) -> list[Any] | None:
    if a is None:
        return None if b is None else list(b)
    if b is None or len(a) != len(b):
        return list(a)
    return [_newer(x, y) for x, y in zip(a, b, strict=True)]


class MergedState:
    """Families folded from any number of snapshots; rows are never mutated in place once stored
    elsewhere (a fold builds new lists), so the retired state can be folded into every scrape."""

    def __init__(self) -> None:
        self.store: dict[str, _StoreFamily] = {}
        self.otlp: dict[str, _OtlpFamily] = {}
        self.extra: dict[str, dict[str, Any]] = {}

    # -- folding --

    def add(self, snapshot: Snapshot, *, live: bool = True) -> None:
        """Fold one worker's snapshot in; ``live=False`` (a retired worker) keeps only what must stay
        monotonic or is the service's own data: store gauges and budget gauges describe a process."""
        for family in snapshot.get("store", ()):
            kind = family["kind"]
            if kind == "gauge" and not live:
                continue
            target = self.store.get(family["name"])
            if target is None:
                target = self.store[family["name"]] = _StoreFamily(family)
            elif target.header["kind"] != kind or target.header["labels"] != family["labels"]:
                continue  # a worker of another version: its family cannot be merged
            width = len(family["labels"])
            for row in family["series"]:
                key = None if row[0] is None else tuple(row[0])
                if key is not None and len(key) != width:
                    continue
                self._fold_store(target, key, row)
        for family in snapshot.get("otlp", ()):
            otlp = self.otlp.get(family["name"])
            if otlp is None:
                otlp = self.otlp[family["name"]] = _OtlpFamily(family["name"], family["doc"], family["kind"])
            elif otlp.kind != family["kind"]:
                continue  # two workers saw the name with different types: the first one wins
            for row in family["series"]:
                self._fold_otlp(otlp, tuple((str(k), str(v)) for k, v in row[0]), row)
        if live:
            for metric in snapshot.get("extra", ()):
                self.extra.setdefault(metric["name"], metric)

    def add_state(self, other: MergedState) -> None:
        """Fold another merged state (the retired workers') in, without changing it."""
        for name, family in other.store.items():
            target = self.store.get(name)
            if target is None:
                target = self.store[name] = _StoreFamily(family.header)
            for key, row in family.rows.items():
                self._fold_store(target, key, row)
        for name, otlp in other.otlp.items():
            mine = self.otlp.get(name)
            if mine is None:
                mine = self.otlp[name] = _OtlpFamily(otlp.name, otlp.doc, otlp.kind)
            elif mine.kind != otlp.kind:
                continue
            for pairs, row in otlp.rows.items():
                self._fold_otlp(mine, pairs, row)
        for name, metric in other.extra.items():
            self.extra.setdefault(name, metric)

    @staticmethod
    def _fold_store(family: _StoreFamily, key: StoreKey, row: Sequence[Any]) -> None:
        rows = family.rows
        mine = rows.get(key)
        if mine is None:
            rows[key] = list(row)
            return
        kind = family.header["kind"]
        if kind == "counter":
            rows[key] = [key, mine[1] + row[1], max(mine[2], row[2]), _newer(mine[3], row[3])]
        elif kind == "gauge":
            rows[key] = [key, _gauge(family.header["name"], mine[1], row[1]), max(mine[2], row[2])]
        elif len(mine[1]) == len(row[1]):
            rows[key] = [
                key,
                [a + b for a, b in zip(mine[1], row[1], strict=True)],
                mine[2] + row[2],
                mine[3] + row[3],
                max(mine[4], row[4]),
                _newer_each(mine[5], row[5]),
            ]

    @staticmethod
    def _fold_otlp(family: _OtlpFamily, pairs: OtlpKey, row: Sequence[Any]) -> None:
        rows = family.rows
        mine = rows.get(pairs)
        if mine is None:
            rows[pairs] = list(row)
            return
        rows[pairs] = _otlp_combined(family.kind, pairs == OVERFLOW_PAIRS, mine, row)

    # -- retired state upkeep --

    def refresh_from(self, merged: MergedState) -> None:
        """Give every retired row the newest ``updated`` of its label set in ``merged``: a label set
        that live workers still update must not lose its offset to expiry."""
        for name, family in self.store.items():
            live = merged.store.get(name)
            if live is None:
                continue
            index = _STORE_UPDATED[family.header["kind"]]
            for key, row in family.rows.items():
                other = live.rows.get(key)
                if other is not None and other[index] > row[index]:
                    family.rows[key] = [*row[:index], other[index], *row[index + 1 :]]
        for name, otlp in self.otlp.items():
            live_otlp = merged.otlp.get(name)
            if live_otlp is None:
                continue
            index = _OTLP_UPDATED[otlp.kind]
            for pairs, row in otlp.rows.items():
                other = live_otlp.rows.get(pairs)
                if other is not None and other[index] > row[index]:
                    otlp.rows[pairs] = [*row[:index], other[index], *row[index + 1 :]]

    def expire(self, deadline: float) -> None:
        """Drop rows not updated since ``deadline`` (store families that never expire keep theirs)."""
        for name, family in list(self.store.items()):
            if family.header["expires"]:
                index = _STORE_UPDATED[family.header["kind"]]
                family.rows = {k: r for k, r in family.rows.items() if r[index] >= deadline}
            if not family.rows:
                del self.store[name]
        for name, otlp in list(self.otlp.items()):
            index = _OTLP_UPDATED[otlp.kind]
            otlp.rows = {k: r for k, r in otlp.rows.items() if r[index] >= deadline}
            if not otlp.rows:
                del self.otlp[name]


def _gauge(name: str, a: float, b: float) -> float:
    if name.endswith("_info"):
        return a
    if name in GAUGE_MIN:
        return min(a, b)
    return a + b


def _otlp_combined(kind: str, additive: bool, mine: Sequence[Any], row: Sequence[Any]) -> Row:
    """Two workers' copies of one OTLP series: summed when both hold delta-accumulated parts (or it is
    the overflow series, itself a sum of increments), otherwise the copy with the newest point."""
    if kind == "counter" and (additive or (mine[5] and row[5])):
        return [
            mine[0],
            mine[1] + row[1],
            max(mine[2], row[2]),
            max(mine[3], row[3]),
            _newer(mine[4], row[4]),
            mine[5] and row[5],
        ]
    if kind == "histogram" and (additive or (mine[8] and row[8])):
        combined = _histograms_summed(mine, row)
        if combined is not None:
            return combined
    at = _OTLP_TIME[kind]
    updated = _OTLP_UPDATED[kind]
    return list(row) if (row[at], row[updated]) > (mine[at], mine[updated]) else list(mine)


def _histograms_summed(mine: Sequence[Any], row: Sequence[Any]) -> Row | None:
    """Two delta-accumulated histogram parts added; ``None`` when their buckets cannot be aligned."""
    exemplars: list[Any] | None
    if mine[9] is not None and row[9] is not None:
        state = exponential_from(mine[9])
        other = exponential_from(row[9])
        assert state is not None and other is not None
        state.merge(other)
        bounds_tuple, counts = state.explicit()
        bounds: list[float] = list(bounds_tuple)
        placed: list[Any] = [None] * (len(bounds) + 1)
        for exemplar in [*(mine[7] or ()), *(row[7] or ())]:
            if exemplar is not None:
                index = bisect.bisect_left(bounds, exemplar[2])
                placed[index] = _newer(placed[index], exemplar)
        exemplars = placed if any(e is not None for e in placed) else None
        exponential = exponential_row(state)
    elif list(mine[1]) == list(row[1]) and len(mine[2]) == len(row[2]):
        bounds = list(mine[1])
        counts = [a + b for a, b in zip(mine[2], row[2], strict=True)]
        exemplars = _newer_each(mine[7], row[7])
        exponential = None
    else:
        return None
    return [
        mine[0],
        bounds,
        counts,
        mine[3] + row[3],
        mine[4] + row[4],
        max(mine[5], row[5]),
        max(mine[6], row[6]),
        exemplars,
        mine[8] and row[8],
        exponential,
    ]


class MergedOtlp:
    """The merged OTLP families in the shape ``Exposition`` renders (a ``NativeSource``)."""

    def __init__(self, families: list[OtlpFamily]) -> None:
        self.families = families

    def expire(self) -> int:
        return 0  # the merge already left out what expired

    def render_families(self) -> Iterator[OtlpFamily]:
        return iter(self.families)


class Merger:
    """The supervisor's merge state: the retired workers' offsets and who holds a series of their own.

    ``clock`` must be the workers' clock (``time.monotonic``): rows carry their ``updated`` times.
    """

    def __init__(self, max_series: int, series_expiration: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_series = max_series
        self.series_expiration = series_expiration
        self._clock = clock
        self.retired = MergedState()
        self._admitted: dict[str, dict[Any, None]] = {}

    def retire(self, snapshot: Snapshot) -> None:
        """Keep an exited worker's last snapshot as an offset (see the module docstring)."""
        self.retired.add(snapshot, live=False)

    def merge(self, snapshots: Iterable[Snapshot]) -> MergedState:
        """The retired offsets plus every live snapshot, in order (the first worker's families first)."""
        merged = MergedState()
        for snapshot in snapshots:
            merged.add(snapshot)
        self.retired.refresh_from(merged)
        self.retired.expire(self._clock() - self.series_expiration)
        merged.add_state(self.retired)
        return merged

    def exposition(self, snapshots: Iterable[Snapshot]) -> Exposition:
        """The merged state, capped, ready to render as text or OpenMetrics."""
        store, otlp, extra = self.build(self.merge(snapshots))
        return Exposition(store, [otlp], lambda: [lambda: extra])

    # -- building the rendered objects --

    def build(self, merged: MergedState) -> tuple[MetricStore, MergedOtlp, list[Metric]]:
        """A fresh store and OTLP view holding the merged, capped series (updated = now: the merge
        already dropped what expired, so the exposition must not expire anything again)."""
        store = MetricStore(max_series=self.max_series, series_expiration=math.inf)
        now = store.now
        for name, family in merged.store.items():
            rows = family.rows
            if family.header.get("capped", True):
                rows = self._capped(name, rows, functools.partial(_fold_overflow_store, family))
            target = _store_family(store, family.header)
            for key, row in rows.items():
                _store_series(target, OVERFLOW_KEY if key is None else key, row, now)
        otlp_families: list[OtlpFamily] = []
        for name, otlp in merged.otlp.items():
            kind = otlp.kind
            otlp_rows = self._capped(
                "otlp/" + name, otlp.rows, functools.partial(_fold_overflow_otlp, kind), OVERFLOW_PAIRS
            )
            out = OtlpFamily(name, otlp.doc, kind)  # type: ignore[arg-type]
            for pairs, row in otlp_rows.items():
                out.series[pairs] = _otlp_series(kind, pairs, row, now)
            otlp_families.append(out)
        extra = [_metric(data) for data in merged.extra.values()]
        return store, MergedOtlp(otlp_families), extra

    def _capped(
        self,
        name: str,
        rows: dict[Any, Row],
        fold: Callable[[Row | None, Sequence[Any]], Row],
        overflow_key: Any = None,
    ) -> dict[Any, Row]:
        """At most ``max_series`` label sets plus the overflow one; the ones admitted before go first."""
        regular = [key for key in rows if key != overflow_key]
        if len(regular) <= self.max_series:
            self._admitted[name] = dict.fromkeys(regular)
            return rows
        before = self._admitted.get(name, {})
        order = [key for key in before if key in rows and key != overflow_key]
        seen = set(order)
        order.extend(key for key in regular if key not in seen)
        kept = order[: self.max_series]
        self._admitted[name] = dict.fromkeys(kept)
        out = {key: rows[key] for key in kept}
        overflow = rows.get(overflow_key)
        for key in order[self.max_series :]:
            overflow = fold(overflow, rows[key])
        assert overflow is not None
        out[overflow_key] = overflow
        return out


def _fold_overflow_store(family: _StoreFamily, into: Row | None, row: Sequence[Any]) -> Row:
    holder = _StoreFamily(family.header)
    if into is not None:
        holder.rows[None] = into
    MergedState._fold_store(holder, None, [None, *row[1:]])
    return holder.rows[None]


def _fold_overflow_otlp(kind: str, into: Row | None, row: Sequence[Any]) -> Row:
    if into is None:
        return [list(map(list, OVERFLOW_PAIRS)), *row[1:]]
    return _otlp_combined(kind, True, into, row)


def _store_family(store: MetricStore, header: dict[str, Any]) -> Family:
    name, doc, labels, expires = header["name"], header["doc"], header["labels"], header["expires"]
    try:
        return store.family(name)  # gateway_metric_series_overflow: every store has it
    except KeyError:
        pass
    if header["kind"] == "counter":
        return store.counter(name, doc, labels, expires=expires)
    if header["kind"] == "gauge":
        return store.gauge(name, doc, labels, expires=expires)
    return store.histogram(name, doc, labels, header["buckets"], expires=expires)


def _store_series(family: Family, key: tuple[str, ...], row: Sequence[Any], now: float) -> None:
    if family.kind == "counter":
        counter = CounterSeries(now)
        counter.value = row[1]
        counter.exemplar = exemplar_from(row[3])
        family.series[key] = counter  # type: ignore[assignment]
    elif family.kind == "gauge":
        gauge = GaugeSeries(now)
        gauge.value = row[1]
        family.series[key] = gauge  # type: ignore[assignment]
    else:
        histogram = HistogramSeries(len(row[1]) - 1, now)
        histogram.counts = list(row[1])
        histogram.sum = row[2]
        histogram.count = row[3]
        if row[5] is not None:
            histogram.exemplars = [exemplar_from(e) for e in row[5]]
        family.series[key] = histogram  # type: ignore[assignment]


def _otlp_series(
    kind: str, pairs: OtlpKey, row: Sequence[Any], now: float
) -> OtlpCounterSeries | OtlpGaugeSeries | OtlpHistogramSeries | OtlpSummarySeries:
    text = labels_text(pairs)
    if kind == "counter":
        counter = OtlpCounterSeries(text, now)
        counter.value, counter.time, counter.exemplar = row[1], row[2], exemplar_from(row[4])
        return counter
    if kind == "gauge":
        gauge = OtlpGaugeSeries(text, now)
        gauge.value, gauge.time = row[1], row[2]
        return gauge
    if kind == "histogram":
        histogram = OtlpHistogramSeries(text, now)
        histogram.set_buckets(tuple(row[1]), list(row[2]))
        histogram.sum, histogram.count, histogram.time = row[3], row[4], row[5]
        if row[7] is not None and len(row[7]) == len(histogram.exemplars):
            histogram.exemplars = [exemplar_from(e) for e in row[7]]
        return histogram
    summary = OtlpSummarySeries(text, now)
    summary.quantiles = [(float(q), float(v)) for q, v in row[1]]
    summary.sum, summary.count, summary.time = row[2], row[3], row[4]
    return summary


def _metric(data: dict[str, Any]) -> Metric:
    metric = Metric(data["name"], data["doc"], data["type"])
    metric.samples = [Sample(name, dict(labels), float(value)) for name, labels, value in data["samples"]]
    return metric
