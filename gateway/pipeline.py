"""The one place a received batch meets every processor and every exporter of its signal.

The batch is offered to each exporter first; processors run once it is accepted (by every exporter,
or as a partial success), synchronously, so metrics count exactly what was accepted: a batch refused
with 429 / RESOURCE_EXHAUSTED is not derived, and the sender's retry is not counted twice. A
processor that fails on a batch is counted and skipped (the batch is still forwarded); an exporter
that pushes back makes the pipeline raise, so the receiver answers 429 / RESOURCE_EXHAUSTED and the
sender retries rather than anything being dropped silently.

With several exporters, a refusal by some but not all is answered as OTLP partial success
(``rejected_<items>`` = the batch, and a message naming who refused), not as a retryable error:
asking for a retry would duplicate the batch into every exporter that took it, and would let one
dead backend (its queue full) stall delivery to all the healthy ones. The items the sender is told
were rejected are exactly the ones some destination will never get; the message says which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

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

    async def consume(self, batch: Batch) -> PartialDelivery | None:
        """Hand the batch to every exporter, then derive from it unless every exporter refused it.

        Returns None when every exporter took the batch and a ``PartialDelivery`` when only some did;
        raises when all refused (the most retryable refusal, so that a retry can succeed).
        """
        partial = await self._export(batch)
        self._derive(batch)
        return partial

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
