"""The one place a received batch meets every processor and every exporter of its signal.

Processors run first, synchronously, so metrics reflect exactly what was accepted; then the batch is
offered to each exporter. A processor that fails on a batch is counted and skipped (the batch is still
forwarded); an exporter that pushes back makes the pipeline raise, so the receiver answers 429 /
RESOURCE_EXHAUSTED and the sender retries rather than anything being dropped silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.component import Batch, Exporter, Processor
from gateway.errors import GatewayError
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

    async def consume(self, batch: Batch) -> None:
        """Derive, then hand the batch to every exporter; raise the first exporter's push-back."""
        self._store.tick()
        for processor in self.processors:
            try:
                processor.process(batch)
            except Exception as exc:  # one bad batch must not stop ingest: count, log once per kind
                self._processor_failures.inc((type(processor).__name__,))
                self._log.warning("processor_failed", processor=type(processor).__name__, error=repr(exc))
        if not self.exporters:
            return
        if len(self.exporters) == 1:
            await self.exporters[0].export(batch)
            return
        results = await asyncio.gather(*(e.export(batch) for e in self.exporters), return_exceptions=True)
        for result in results:
            if isinstance(result, GatewayError):
                raise result
            if isinstance(result, BaseException):
                raise result
