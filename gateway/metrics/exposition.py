"""/metrics rendered straight from the store, in chunks, without stalling ingest.

prometheus_client's ``generate_latest`` builds a ``Sample`` (a namedtuple with a label dict) per
line, sorts and escapes every label set on every scrape, and does it in one blocking call: at 100k
series that is over a second during which the event loop receives nothing (numbers in
``benchmarks/SCRAPE.md``). Here:

- a series' label text is escaped and joined once, when first rendered, and cached on the series
  (label values never change for a series);
- lines are written by plain f-strings from the store's numbers, in chunks of ``CHUNK_LINES``;
- ``write_to`` gives the event loop a turn whenever a chunk took longer than ``budget`` seconds,
  so receivers keep answering while Prometheus downloads a large exposition;
- staleness is applied on the way (a stale series is skipped, then deleted), not by a separate scan.

The output is the Prometheus text format 0.0.4 or OpenMetrics 1.0.0 (with exemplars), whichever
``prometheus_client.exposition.choose_encoder`` picked for the scraper's Accept header. Families
that other components add as prometheus_client sources (``StoreCollector.add_source``) are rendered
by prometheus_client itself, after ours.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar, cast

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from gateway.metrics.otlp_translate import (
    OtlpFamily,
    OtlpHistogramSeries,
    OtlpSummarySeries,
)
from gateway.metrics.prom_names import escape_help, escape_label_value, go_float
from gateway.metrics.store import (
    OVERFLOW_KEY,
    OVERFLOW_LABEL,
    CounterFamily,
    ExemplarSlot,
    GaugeFamily,
    HistogramFamily,
    MetricStore,
    resolve_exemplar,
)

CHUNK_LINES = 500
_SPECIAL = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}
_OVERFLOW_TEXT = f'{OVERFLOW_LABEL}="true"'


class NativeSource(Protocol):
    """A producer of families the exposition renders itself (the OTLP metrics translator)."""

    def expire(self) -> int: ...

    def render_families(self) -> Iterable[OtlpFamily]: ...


def _value(number: float) -> str:
    text = repr(number)
    return _SPECIAL.get(text, text)


def _store_labels(names: tuple[str, ...], key: tuple[object, ...]) -> str:
    """A store series' label text (its key is a tuple of values in ``labelnames`` order)."""
    if key == OVERFLOW_KEY:
        return _OVERFLOW_TEXT
    return ",".join(f'{name}="{escape_label_value(str(value))}"' for name, value in zip(names, key, strict=True))


def _exemplar(slot: ExemplarSlot) -> str:
    exemplar = resolve_exemplar(slot)
    if exemplar is None:
        return ""
    return (
        f' # {{trace_id="{exemplar.trace_id}",span_id="{exemplar.span_id}"}} '
        f"{_value(exemplar.value)} {_value(exemplar.timestamp)}"
    )


def _header(name: str, documentation: str, kind: str, openmetrics: bool) -> str:
    return f"# HELP {name} {escape_help(documentation, openmetrics)}\n# TYPE {name} {kind}\n"


class Exposition:
    """Renders the store, the native sources and the collector's extra sources, in that order."""

    def __init__(
        self,
        store: MetricStore,
        native: Sequence[NativeSource] = (),
        extra: Callable[[], Iterable[Callable[[], Iterable[Metric]]]] = tuple,
    ) -> None:
        self._store = store
        self._native = list(native)
        self._extra = extra
        self._le_cache: dict[tuple[float, ...], tuple[str, ...]] = {}
        # Native sources' expire() scans shadow states and families: a tenth of the expiration is soon enough.
        self._expire_every = min(store.series_expiration / 10, 10.0)
        self._expired_at = -math.inf

    def add_native(self, source: NativeSource) -> None:
        self._native.append(source)

    def render(self, openmetrics: bool = False) -> str:
        """The whole exposition at once (tests, benchmarks); /metrics uses ``write_to``."""
        return "".join(self.chunks(openmetrics))

    async def write_to(
        self, write: Callable[[bytes], Awaitable[None]], openmetrics: bool, budget: float = 0.002
    ) -> None:
        """Send the exposition chunk by chunk, yielding to the event loop every ``budget`` seconds."""
        deadline = time.perf_counter() + budget
        for chunk in self.chunks(openmetrics):
            await write(chunk.encode())
            if time.perf_counter() >= deadline:
                await asyncio.sleep(0)
                deadline = time.perf_counter() + budget

    def chunks(self, openmetrics: bool) -> Iterator[str]:
        """The exposition as text chunks of about ``CHUNK_LINES`` lines.

        Staleness is applied while rendering: a series not updated within ``series_expiration`` is
        skipped and deleted, which costs one comparison per series instead of a separate scan.
        Native sources' own ``expire()`` (shadow states, empty families) runs every tenth of the
        expiration at most.
        """
        now = self._store.tick()
        deadline = now - self._store.series_expiration
        if now - self._expired_at >= self._expire_every:
            self._expired_at = now
            for source in self._native:
                source.expire()
        out: list[str] = []
        for family in self._store.families():
            yield from self._family(family, openmetrics, out, deadline if family.expires else -math.inf)
        for source in self._native:
            for otlp_family in source.render_families():
                yield from self._family(otlp_family, openmetrics, out, deadline)
        if out:
            yield "".join(out)
            out.clear()
        for extra in self._extra():
            yield self._generic(extra(), openmetrics)
        if openmetrics:
            yield "# EOF\n"

    @staticmethod
    def _generic(metrics: Iterable[Metric], openmetrics: bool) -> str:
        if openmetrics:
            body: bytes = generate_openmetrics(_Families(metrics))  # type: ignore[no-untyped-call]
            return body.decode().removesuffix("# EOF\n")
        return generate_latest(_Families(metrics)).decode()

    def _le(self, bounds: tuple[float, ...]) -> tuple[str, ...]:
        labels = self._le_cache.get(bounds)
        if labels is None:
            if len(self._le_cache) > 4096:
                self._le_cache.clear()
            labels = self._le_cache[bounds] = (*(go_float(b, openmetrics=True) for b in bounds), "+Inf")
        return labels

    def _family(
        self,
        family: CounterFamily | GaugeFamily | HistogramFamily | OtlpFamily,
        om: bool,
        out: list[str],
        deadline: float,
    ) -> Iterator[str]:
        """Append a family's lines to ``out``, yielding a joined chunk whenever ``out`` is full.

        The series are snapshotted as two lists (keys, values): ingest may add series while a chunked
        scrape waits for its turn, and ``list(dict.items())`` would allocate a tuple per series, which
        at 100k series makes the garbage collector cost more than the rendering. Series found stale
        are deleted afterwards, unless ingest updated them in the meantime. An OTLP family's ``kind``
        fixes the class of all its series, hence the casts.
        """
        rows = _Rows(
            () if isinstance(family, OtlpFamily) else family.labelnames,
            list(family.series),
            list(family.series.values()),
            deadline,
        )
        doc = family.documentation
        if family.kind == "counter":
            yield from _counters(family.name, doc, rows, om, out)
        elif family.kind == "gauge":
            yield from _gauges(family.name, doc, rows, om, out)
        elif family.kind == "histogram":
            family_le = self._le(family.buckets) if isinstance(family, HistogramFamily) else None
            yield from self._histograms(family.name, doc, family_le, rows, om, out)
        else:
            yield from _summaries(family.name, doc, rows, om, out)
        series: dict[Any, Any] = family.series
        deleted = False
        for key in rows.stale:
            current = series.get(key)
            if current is not None and current.updated < deadline:
                del series[key]
                deleted = True
        if deleted and not isinstance(family, OtlpFamily):
            self._store.generation += 1  # references derivation keeps to these series are stale now

    def _histograms(
        self,
        name: str,
        documentation: str,
        family_le: tuple[str, ...] | None,
        rows: _Rows,
        om: bool,
        out: list[str],
    ) -> Iterator[str]:
        out.append(_header(name, documentation, "histogram", om))
        bucket, count_name, sum_name = name + "_bucket", name + "_count", name + "_sum"
        lines = 0
        for text, series in rows.live(cast(Sequence[_HistogramLike], rows.values)):
            les = family_le if family_le is not None else self._le(cast(OtlpHistogramSeries, series).bounds)
            prefix = f'{bucket}{{{text},le="' if text else f'{bucket}{{le="'
            labels = f"{{{text}}}" if text else ""
            counts = series.counts
            exemplars = series.exemplars if om else None
            if exemplars and any(exemplars):
                cumulative = 0
                for le, count, exemplar in zip(les, counts, exemplars, strict=True):
                    cumulative += count
                    tail = _exemplar(exemplar) if exemplar is not None else ""
                    out.append(f'{prefix}{le}"}} {cumulative}{tail}\n')
            else:
                out.append(
                    "".join(
                        [
                            f'{prefix}{le}"}} {cumulative}\n'
                            for le, cumulative in zip(les, itertools.accumulate(counts), strict=True)
                        ]
                    )
                )
            out.append(f"{count_name}{labels} {series.count}\n{sum_name}{labels} {_value(series.sum)}\n")
            lines += len(counts) + 2
            if lines >= CHUNK_LINES:
                yield "".join(out)
                out.clear()
                lines = 0


class _Families(Collector):
    """Already-built families in the shape prometheus_client's encoders take."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


class _Series(Protocol):
    labels_text: str | None
    updated: float


class _CounterLike(_Series, Protocol):
    value: float
    exemplar: ExemplarSlot


class _GaugeLike(_Series, Protocol):
    value: float


class _HistogramLike(_Series, Protocol):
    counts: list[int]
    exemplars: list[ExemplarSlot]
    sum: float
    count: int


_S = TypeVar("_S", bound=_Series)


class _Rows:
    """One family's snapshot: keys and series side by side, the stale ones collected on the way."""

    __slots__ = ("deadline", "keys", "names", "stale", "values")

    def __init__(self, names: tuple[str, ...], keys: list[Any], values: list[Any], deadline: float) -> None:
        self.names = names
        self.keys = keys
        self.values = values
        self.deadline = deadline
        self.stale: list[Any] = []

    def live(self, values: Sequence[_S]) -> Iterator[tuple[str, _S]]:
        """(label text, series) of the series still fresh; a store series gets its label text the
        first time it is rendered (OTLP series have theirs from creation)."""
        deadline = self.deadline
        names = self.names
        stale = self.stale
        for key, series in zip(self.keys, values, strict=True):
            if series.updated < deadline:
                stale.append(key)
                continue
            text = series.labels_text
            if text is None:
                text = series.labels_text = _store_labels(names, key)
            yield text, series


def _counters(name: str, documentation: str, rows: _Rows, om: bool, out: list[str]) -> Iterator[str]:
    total = name + "_total"
    out.append(_header(name if om else total, documentation, "counter", om))
    special = _SPECIAL
    for text, series in rows.live(cast(Sequence[_CounterLike], rows.values)):
        value = repr(series.value)
        if value in special:
            value = special[value]
        line = f"{total}{{{text}}} {value}" if text else f"{total} {value}"
        if om and series.exemplar is not None:
            line += _exemplar(series.exemplar)
        out.append(line + "\n")
        if len(out) >= CHUNK_LINES:
            yield "".join(out)
            out.clear()


def _gauges(name: str, documentation: str, rows: _Rows, om: bool, out: list[str]) -> Iterator[str]:
    out.append(_header(name, documentation, "gauge", om))
    special = _SPECIAL
    for text, series in rows.live(cast(Sequence[_GaugeLike], rows.values)):
        value = repr(series.value)
        if value in special:
            value = special[value]
        out.append(f"{name}{{{text}}} {value}\n" if text else f"{name} {value}\n")
        if len(out) >= CHUNK_LINES:
            yield "".join(out)
            out.clear()


def _summaries(name: str, documentation: str, rows: _Rows, om: bool, out: list[str]) -> Iterator[str]:
    out.append(_header(name, documentation, "summary", om))
    for text, series in rows.live(cast(Sequence[OtlpSummarySeries], rows.values)):
        prefix = f'{name}{{{text},quantile="' if text else f'{name}{{quantile="'
        labels = f"{{{text}}}" if text else ""
        for quantile, value in series.quantiles:
            out.append(f'{prefix}{go_float(quantile, openmetrics=True)}"}} {_value(value)}\n')
        out.append(f"{name}_count{labels} {series.count}\n{name}_sum{labels} {_value(series.sum)}\n")
        if len(out) >= CHUNK_LINES:
            yield "".join(out)
            out.clear()
