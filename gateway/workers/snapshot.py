"""A worker's metric state as plain data, for the supervisor to merge (``workers: N``).

Why data and not exposition text: the supervisor must add counters and histogram buckets per label
set, keep the newest copy of a service's cumulative OTLP series and sum the delta-accumulated ones.
Text would have to be parsed back (prometheus_client's parser is slow, benchmarks/SCRAPE.md) and has
already lost what the merge needs: whether an OTLP series was accumulated from delta points, the
point time of a cumulative one, and an exponential histogram's own buckets. So a worker serves its
store, its OTLP families and its prometheus_client sources as one orjson document on its private
loopback endpoint (``/internal/state``), and the merge (``merge.py``) reads it back.

The rows are positional lists (one per series) because a large store holds 100k series: a dict per
series would triple the size of the document and the time to build it.

Store rows (``key`` is the list of label values, ``null`` for the overflow series):

- counter: ``[key, value, updated, exemplar]``
- gauge: ``[key, value, updated]``
- histogram: ``[key, counts (per bucket, +Inf last), sum, count, updated, exemplars | null]``

OTLP rows (``pairs`` is the list of ``[label, value]``):

- counter: ``[pairs, value, time, updated, exemplar, delta]``
- gauge: ``[pairs, value, time, updated]``
- histogram: ``[pairs, bounds, counts, sum, count, time, updated, exemplars | null, delta, exponential | null]``
  where ``exponential`` is ``[scale, zero_threshold, zero_count, [[index, count], ...] positive, ... negative]``
- summary: ``[pairs, [[quantile, value], ...], sum, count, time, updated]``

An exemplar is ``[trace_id, span_id, value, timestamp]`` or ``null``. ``updated`` is the worker's
``time.monotonic()``, which on Linux is one clock for every process of the machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeAlias

import orjson
from prometheus_client.metrics_core import Metric

from gateway.metrics.otlp_translate import (
    ExponentialState,
    OtlpCounterSeries,
    OtlpGaugeSeries,
    OtlpHistogramSeries,
    OtlpMetricsProcessor,
    OtlpSummarySeries,
)
from gateway.metrics.store import (
    OVERFLOW_KEY,
    CounterFamily,
    Exemplar,
    ExemplarSlot,
    GaugeFamily,
    HistogramFamily,
    MetricStore,
    resolve_exemplar,
)

Snapshot: TypeAlias = dict[str, Any]
"""One worker's state as decoded from its ``/internal/state`` document (wire data: rows are lists)."""
SNAPSHOT_VERSION = 1


CHUNK_ROWS = 2000


def state_of(
    store: MetricStore,
    otlp: OtlpMetricsProcessor | None,
    extra: Iterable[Callable[[], Iterable[Metric]]] = (),
) -> Snapshot:
    """The state as data, at once (tests, the supervisor's own store)."""
    state: Snapshot = {}
    for _ in _build(store, otlp, extra, state):
        pass
    return state


async def dump_state(
    store: MetricStore,
    otlp: OtlpMetricsProcessor | None,
    extra: Iterable[Callable[[], Iterable[Metric]]] = (),
    budget: float = 0.004,
) -> bytes:
    """The ``/internal/state`` body of a worker, built in chunks of ``CHUNK_ROWS`` series with a
    turn of the event loop whenever ``budget`` seconds passed: as the chunked exposition, a large
    store must not hold the worker's receivers (100k series take ~0.4 s to convert)."""
    state: Snapshot = {}
    deadline = time.perf_counter() + budget
    for _ in _build(store, otlp, extra, state):
        if time.perf_counter() >= deadline:
            await asyncio.sleep(0)
            deadline = time.perf_counter() + budget
    return orjson.dumps(state)


def _build(
    store: MetricStore,
    otlp: OtlpMetricsProcessor | None,
    extra: Iterable[Callable[[], Iterable[Metric]]],
    state: Snapshot,
) -> Iterator[None]:
    """Fill ``state``, yielding after every chunk of rows. Stale series are expired first, as a scrape
    of this worker would; each family's series are listed at once, so a family is one consistent
    view even when ingest adds series between chunks (values read later are only ever newer)."""
    now = store.tick()
    store.expire()
    state.update(version=SNAPSHOT_VERSION, pid=os.getpid(), now=now, store=[], otlp=[], extra=[])
    for family in store.families():
        header = _store_header(family)
        state["store"].append(header)
        items = list(family.series.items())
        for start in range(0, len(items), CHUNK_ROWS):
            header["series"].extend(_store_rows(family, items[start : start + CHUNK_ROWS]))
            yield
    if otlp is not None:
        otlp.expire()
        for otlp_family in list(otlp.render_families()):
            rows: list[list[Any]] = []
            state["otlp"].append(
                {"name": otlp_family.name, "doc": otlp_family.documentation, "kind": otlp_family.kind, "series": rows}
            )
            otlp_items = list(otlp_family.series.items())
            for start in range(0, len(otlp_items), CHUNK_ROWS):
                rows.extend(_otlp_rows(otlp_items[start : start + CHUNK_ROWS]))
                yield
    state["extra"] = [_extra(metric) for source in extra for metric in source()]


def exemplar_row(slot: ExemplarSlot) -> list[Any] | None:
    exemplar = resolve_exemplar(slot)
    if exemplar is None:
        return None
    return [exemplar.trace_id, exemplar.span_id, exemplar.value, exemplar.timestamp]


def exemplar_from(row: Sequence[Any] | None) -> Exemplar | None:
    if row is None:
        return None
    return Exemplar(str(row[0]), str(row[1]), float(row[2]), float(row[3]))


def _exemplars(slots: Sequence[ExemplarSlot]) -> list[Any] | None:
    if not any(slots):  # most buckets of most series: nothing to resolve
        return None
    rows = [exemplar_row(slot) for slot in slots]
    return rows if any(row is not None for row in rows) else None


def _store_header(family: CounterFamily | GaugeFamily | HistogramFamily) -> dict[str, Any]:
    return {
        "name": family.name,
        "doc": family.documentation,
        "kind": family.kind,
        "labels": list(family.labelnames),
        "expires": family.expires,
        "capped": family.capped,
        "buckets": list(family.buckets) if isinstance(family, HistogramFamily) else None,
        "series": [],
    }


def _store_rows(family: CounterFamily | GaugeFamily | HistogramFamily, items: Sequence[tuple[Any, Any]]) -> list[Any]:
    if isinstance(family, CounterFamily):
        return [[_key(key), s.value, s.updated, exemplar_row(s.exemplar)] for key, s in items]
    if isinstance(family, GaugeFamily):
        return [[_key(key), s.value, s.updated] for key, s in items]
    return [[_key(key), list(s.counts), s.sum, s.count, s.updated, _exemplars(s.exemplars)] for key, s in items]


def _key(key: tuple[str, ...]) -> list[str] | None:
    return None if key == OVERFLOW_KEY else list(key)


def exponential_row(state: ExponentialState | None) -> list[Any] | None:
    if state is None:
        return None
    return [
        state.scale,
        state.zero_threshold,
        state.zero_count,
        list(state.positive.items()),
        list(state.negative.items()),
    ]


def exponential_from(row: Sequence[Any] | None) -> ExponentialState | None:
    if row is None:
        return None
    state = ExponentialState(int(row[0]), float(row[1]))
    state.zero_count = int(row[2])
    state.positive = {int(index): int(count) for index, count in row[3]}
    state.negative = {int(index): int(count) for index, count in row[4]}
    return state


def _otlp_rows(items: Sequence[tuple[Any, Any]]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for pairs, series in items:
        key = [list(pair) for pair in pairs]
        if isinstance(series, OtlpCounterSeries):
            rows.append([key, series.value, series.time, series.updated, exemplar_row(series.exemplar), series.delta])
        elif isinstance(series, OtlpGaugeSeries):
            rows.append([key, series.value, series.time, series.updated])
        elif isinstance(series, OtlpHistogramSeries):
            rows.append(
                [
                    key,
                    list(series.bounds),
                    list(series.counts),
                    series.sum,
                    series.count,
                    series.time,
                    series.updated,
                    _exemplars(series.exemplars),
                    series.delta,
                    exponential_row(series.exponential),
                ]
            )
        else:
            assert isinstance(series, OtlpSummarySeries)
            rows.append(
                [key, [list(q) for q in series.quantiles], series.sum, series.count, series.time, series.updated]
            )
    return rows


def _extra(metric: Metric) -> dict[str, Any]:
    """A prometheus_client family (the budget gauges) with its samples; exemplars are not kept."""
    return {
        "name": metric.name,
        "doc": metric.documentation,
        "type": metric.type,
        "samples": [[sample.name, sample.labels, sample.value] for sample in metric.samples],
    }
