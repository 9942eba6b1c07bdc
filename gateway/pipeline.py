"""The one place a received batch meets every processor and every exporter of its signal.

The batch is offered to each exporter first; processors run once it is accepted (by every exporter,
or as a partial success), so metrics count exactly what was accepted: a batch refused with 429 /
RESOURCE_EXHAUSTED is not derived, and the sender's retry is not counted twice. Derivation runs
after the sender is answered, from a bounded backlog, in slices with a turn of the event loop
between them: a 512-span request no longer holds the loop (and every other sender) for the ~10-15
ms its derivation takes. Slices are ``SLICE_SPANS`` spans (a few ms; a batch of up to twice that is
one slice), except when the backlog is half full (``SATURATED_BACKLOG_ITEMS``): senders then wait
for derivation anyway, and a whole batch per slice pays each slice's fixed cost (merging into the
store) less often. ``settled()`` waits for the backlog, so /metrics and shutdown see every accepted
batch derived. A processor that fails on a batch is counted and skipped (the batch is still
forwarded); an exporter that pushes back makes the pipeline raise, so the receiver answers 429 /
RESOURCE_EXHAUSTED and the sender retries rather than anything being dropped silently.

With several exporters, a refusal by some but not all is answered as OTLP partial success
(``rejected_<items>`` = the batch, and a message naming who refused), not as a retryable error:
asking for a retry would duplicate the batch into every exporter that took it, and would let one
dead backend (its queue full) stall delivery to all the healthy ones. The items the sender is told
were rejected are exactly the ones some destination will never get; the message says which.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from gateway.component import Batch, Exporter, Processor
from gateway.errors import GatewayError, PermanentError, QueueFullError, RetryableError
from gateway.log import get_logger
from gateway.metrics.store import CounterFamily, MetricStore
from proto_handlers import Signal


class Pipeline:
    def __init__(
        self,
        signal: Signal,
        processors: Sequence[Processor],
        exporters: Sequence[Exporter],
        store: MetricStore,
        processor_failures: CounterFamily,
    ) -> None:
        self.signal = signal
        self.processors = tuple(processors)
        self.exporters = tuple(exporters)
        self._store = store
        self._processor_failures = processor_failures
        self._log = get_logger(f"pipeline/{signal}")
        self._backlog: deque[Batch] = deque()  # the first one is being derived
        self._backlog_items = 0
        self._waiting: deque[tuple[Batch, asyncio.Future[None]]] = deque()  # senders past the bound, in order
        self._accepted = 0  # batches handed to derivation, and derived: what settled() compares
        self._derived = 0
        self._worker: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()  # set (and replaced) each time a batch has been derived

    async def consume(self, batch: Batch) -> PartialDelivery | None:
        """Hand the batch to every exporter, then queue it for derivation unless every exporter refused it.

        Returns None when every exporter took the batch and a ``PartialDelivery`` when only some did;
        raises when all refused (the most retryable refusal, so that a retry can succeed).
        """
        partial = await self._export(batch)
        if self.processors:
            await self._queue_for_derivation(batch)
        return partial

    async def settled(self) -> None:
        """Return once every batch accepted before this call has been derived (a scrape, shutdown).

        Only those: under continuous load the backlog never empties, and a scrape must not wait for
        batches that arrive while it waits.
        """
        target = self._accepted
        while self._derived < target:
            await self._progress.wait()

    async def _queue_for_derivation(self, batch: Batch) -> None:
        """Derivation runs after the sender is answered, in slices that let other requests in.

        The backlog is bounded in items (``MAX_BACKLOG_ITEMS``) and in batches
        (``MAX_BACKLOG_BATCHES``; a batch alone always fits): past either the sender waits, first
        come first served, until derivation has made room, so derivation never falls behind
        unbounded and the decoded batches it holds stay few.
        """
        self._accepted += 1
        if self._waiting or not self._fits(batch):
            admitted = asyncio.get_running_loop().create_future()
            self._waiting.append((batch, admitted))
            await admitted  # the worker appended the batch for us, in arrival order
            return
        self._append(batch)

    def _fits(self, batch: Batch) -> bool:
        return not self._backlog or (
            self._backlog_items + batch.items <= MAX_BACKLOG_ITEMS and len(self._backlog) < MAX_BACKLOG_BATCHES
        )

    def _append(self, batch: Batch) -> None:
        self._backlog.append(batch)
        self._backlog_items += batch.items
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._derive_backlog())

    async def _derive_backlog(self) -> None:
        while self._backlog:
            batch = self._backlog[0]
            if self._backlog_items >= SATURATED_BACKLOG_ITEMS:
                size = SLICE_SPANS_SATURATED
            elif batch.items <= 2 * SLICE_SPANS:
                size = batch.items  # one short request: one slice, no extra turn of the loop for its tail
            else:
                size = SLICE_SPANS
            try:
                for part in slices(batch, size):
                    self._derive(part)
                    await asyncio.sleep(0)  # requests waiting for the loop get it between slices
            finally:
                self._backlog.popleft()
                self._backlog_items -= batch.items
                self._derived += 1
                while self._waiting and self._fits(self._waiting[0][0]):
                    waiting, admitted = self._waiting.popleft()
                    self._backlog.append(waiting)
                    self._backlog_items += waiting.items
                    if not admitted.done():
                        admitted.set_result(None)
                self._progress.set()
                self._progress = asyncio.Event()

    def _derive(self, batch: Batch) -> None:
        self._store.tick()
        for processor in self.processors:
            try:
                processor.process(batch)
            except Exception as exc:  # one bad batch must not stop ingest: count, log once per kind
                self._processor_failures.inc((type(processor).__name__,))
                self._log.warning("processor_failed", processor=type(processor).__name__, error=repr(exc))

    async def _export(self, batch: Batch) -> PartialDelivery | None:
        if not self.exporters:
            return None
        if len(self.exporters) == 1:
            await self.exporters[0].export(batch)
            return None
        results = await asyncio.gather(*(e.export(batch) for e in self.exporters), return_exceptions=True)
        refusals: list[tuple[Exporter, GatewayError]] = []
        for exporter, result in zip(self.exporters, results, strict=True):
            if result is None:
                continue
            if isinstance(result, GatewayError):
                refusals.append((exporter, result))
            elif isinstance(result, Exception):  # an exporter bug refuses for that exporter only
                self._log.error("exporter_export_failed", exporter=exporter.name, error=repr(result))
                refusals.append((exporter, PermanentError(f"internal error: {type(result).__name__}")))
            else:
                raise result
        if not refusals:
            return None
        if len(refusals) == len(self.exporters):
            raise _most_retryable([error for _, error in refusals])
        who = "; ".join(f"{exporter.name}: {error.reason}" for exporter, error in refusals)
        return PartialDelivery(
            rejected=batch.items,
            message=(
                f"{len(refusals)} of {len(self.exporters)} exporters refused these items and will not "
                f"forward them ({who}); the others accepted them, so a retry would duplicate them there"
            ),
        )


MAX_BACKLOG_ITEMS: Final = 8_192
"""Spans (items) accepted and not yet derived, beyond which senders wait: 16 SDK batches of 512,
~0.2 s of derivation at saturation. Each waiting span holds its raw bytes and its upb view; at
16,384 the gateway's peak RSS under saturation was 149-155 MiB (gRPC/HTTP, 512 spans a request),
at 8,192 146-148 MiB, spans per CPU-second unchanged (two interleaved pairs each, 2026-12-06)."""
MAX_BACKLOG_BATCHES: Final = 1_024
"""Batches accepted and not yet derived, beyond which senders wait, whatever their size: a decoded
request costs ~5.4 KiB even for one span (its upb arena and the raw bytes), so 16,384 one-span
requests under ``MAX_BACKLOG_ITEMS`` alone held 85 MiB (measured; peak RSS 194-197 MiB in the
benchmark's 1-span HTTP rows). 1,024 is eight times the batches of a full backlog of 64-span
requests, so it binds only tiny ones."""
SLICE_SPANS: Final = 64
"""Spans derived between two turns of the event loop: ~1-2 ms of CPU (2-4 ms measured in the gateway,
next to the gRPC thread). Measured in-process, CPU per span at 64 is within noise of 128, and 32
costs ~10 % more (benchmarks/RESULTS.md)."""
SATURATED_BACKLOG_ITEMS: Final = MAX_BACKLOG_ITEMS // 2
"""A backlog from which derivation is what senders wait for: then ``SLICE_SPANS_SATURATED``."""
SLICE_SPANS_SATURATED: Final = 512
"""Spans per slice at saturation: ~7 % less CPU per span than 64 (fewer store merges)."""


@dataclass(slots=True)
class _ScopeSlice:
    spans: Sequence[Any]


@dataclass(slots=True)
class _ResourceSlice:
    resource: Any
    scope_spans: list[_ScopeSlice]


@dataclass(slots=True)
class _RequestSlice:
    """Part of a traces request, shaped as processors read one (resource_spans -> scope_spans -> spans)."""

    resource_spans: list[_ResourceSlice]


def slices(batch: Batch, size: int) -> Iterator[Batch]:
    """The batch itself, or for a traces batch of more than ``size`` spans, batches of about ``size``
    spans each over the same decoded request (no copy: spans are shared, each resource kept with its
    spans). ``raw`` stays the whole request's."""
    if batch.signal != "traces" or batch.items <= size:
        yield batch
        return
    pending: list[_ResourceSlice] = []
    count = 0
    for resource_spans in batch.request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            spans = scope_spans.spans
            for start in range(0, len(spans), size):
                part = spans[start : start + size]
                pending.append(_ResourceSlice(resource_spans.resource, [_ScopeSlice(part)]))
                count += len(part)
                if count >= size:
                    yield replace(batch, request=_RequestSlice(pending), items=count)
                    pending, count = [], 0
    if pending:
        yield replace(batch, request=_RequestSlice(pending), items=count)


@dataclass(frozen=True, slots=True)
class PartialDelivery:
    """Some exporters of the pipeline took the batch and some refused: what to tell the sender."""

    rejected: int
    message: str


def _most_retryable(errors: Sequence[GatewayError]) -> GatewayError:
    """A full queue first (429: retry later), then any retryable error, else the first refusal."""
    for kind in (QueueFullError, RetryableError):
        for error in errors:
            if isinstance(error, kind):
                return error
    return errors[0]
