"""QueuedExporter: a bounded queue, a batcher and sender tasks with retry, over any transport.

The transport is a small ``Sender`` (``OtlpGrpcSender``, ``OtlpHttpSender``): ``send(signal, body)``
returns a ``SendResult`` or raises ``RetryableError`` / ``PermanentError``. Everything else is here:

* ``export`` only puts the received bytes in the queue (memory, or disk with ``queue.directory``)
  and returns; a full queue raises ``QueueFullError`` so the receiver pushes back (429 /
  RESOURCE_EXHAUSTED). Nothing is acknowledged before it is queued.
* ``queue.num_consumers`` sender tasks each take a batch: requests of one signal, concatenated as
  received (valid protobuf, never re-encoded), until ``batch.max_spans`` items or
  ``batch.max_bytes``, or ``batch.timeout`` after the first was queued. A single request larger than
  ``max_bytes`` is cut between its resource entries (``split_request``).
* Retries follow ``gateway.exporters.retry``; a batch is acknowledged (removed) once delivered,
  refused for good, or out of retries, and each outcome is counted.
* Shutdown stops taking data, sends what is queued until ``queue.drain_timeout``, then stops: a
  disk queue keeps the rest for the next start, a memory queue counts it as lost.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Final, Literal, Protocol, runtime_checkable

from gateway.component import Batch
from gateway.errors import PermanentError, RetryableError, ShuttingDownError
from gateway.exporters.config import BatchConfig
from gateway.exporters.disk_queue import DiskQueue
from gateway.exporters.memory_queue import MemoryQueue
from gateway.exporters.queue import Entry, ExportQueue, QueueConfig
from gateway.exporters.response import SendResult
from gateway.exporters.retry import Backoff, RetryConfig
from gateway.log import get_logger
from gateway.metrics.store import CounterFamily, GaugeFamily, MetricStore
from proto_handlers import (
    SIGNALS,
    DecodeError,
    Signal,
    concat_requests,
    count_items,
    decode_request,
    split_request,
)

ITEM_NAMES: Final[dict[Signal, str]] = {"traces": "spans", "metrics": "metric_points", "logs": "log_records"}
FailureReason = Literal["permanent", "retries_exhausted", "rejected", "shutdown", "queue_corrupt", "internal_error"]
_LOG_INTERVAL: Final = 10.0


class Sender(Protocol):
    """One transport: sends one serialized request body of one signal."""

    endpoint: str

    async def start(self) -> None: ...

    async def send(self, signal: Signal, body: bytes) -> SendResult:
        """Deliver ``body``; raise ``RetryableError`` (with ``retry_after`` if the server said) or
        ``PermanentError``."""
        ...

    async def shutdown(self) -> None: ...


@runtime_checkable
class SelfObserving(Protocol):
    """An exporter that keeps self-metrics in the gateway's store (bound once, before start)."""

    def bind_metrics(self, store: MetricStore) -> None: ...


def _counter(store: MetricStore, name: str, documentation: str, labels: Sequence[str]) -> CounterFamily:
    try:
        family = store.family(name)
    except KeyError:
        return store.counter(name, documentation, labels, expires=False)
    assert isinstance(family, CounterFamily)
    return family


def _gauge(store: MetricStore, name: str, documentation: str, labels: Sequence[str]) -> GaugeFamily:
    try:
        family = store.family(name)
    except KeyError:
        return store.gauge(name, documentation, labels, expires=False)
    assert isinstance(family, GaugeFamily)
    return family


class ExporterTelemetry:
    """One exporter's series in the families every exporter shares (created on first use)."""

    def __init__(self, store: MetricStore, exporter: str) -> None:
        self._key = (exporter,)
        self._sent: dict[Signal, CounterFamily] = {}
        self._failed: dict[Signal, CounterFamily] = {}
        self._enqueue_failed: dict[Signal, CounterFamily] = {}
        self._redelivered: dict[Signal, CounterFamily] = {}
        for signal in SIGNALS:
            item = ITEM_NAMES[signal]
            readable = item.replace("_", " ")
            self._sent[signal] = _counter(
                store,
                f"gateway_exporter_sent_{item}",
                f"Number of {readable} successfully sent to the destination.",
                ("exporter",),
            )
            self._failed[signal] = _counter(
                store,
                f"gateway_exporter_send_failed_{item}",
                f"Number of {readable} the exporter gave up on (dropped), by reason.",
                ("exporter", "reason"),
            )
            self._enqueue_failed[signal] = _counter(
                store,
                f"gateway_exporter_enqueue_failed_{item}",
                f"Number of {readable} refused because the export queue was full or closing (pushed back).",
                ("exporter",),
            )
            self._redelivered[signal] = _counter(
                store,
                f"gateway_exporter_redelivered_{item}",
                f"Number of {readable} found on disk at start that had been sent without acknowledgement "
                "(sent again: possible duplicates).",
                ("exporter",),
            )
            self._sent[signal].inc(self._key, 0.0)
        self._retries = _counter(
            store,
            "gateway_exporter_retries",
            "Number of export attempts retried after a retryable error.",
            ("exporter",),
        )
        self._corrupt = _counter(
            store,
            "gateway_exporter_queue_corrupt_records",
            "Damaged records skipped in the on-disk queue (their content is lost).",
            ("exporter",),
        )
        self._size = _gauge(
            store,
            "gateway_exporter_queue_size_bytes",
            "Bytes held by the export queue (waiting and in flight).",
            ("exporter",),
        )
        self._capacity = _gauge(
            store, "gateway_exporter_queue_capacity_bytes", "Capacity of the export queue in bytes.", ("exporter",)
        )
        self._retries.inc(self._key, 0.0)

    def sent(self, signal: Signal, items: int) -> None:
        self._sent[signal].inc(self._key, items)

    def failed(self, signal: Signal, reason: FailureReason, items: int) -> None:
        self._failed[signal].inc((self._key[0], reason), items)

    def enqueue_failed(self, signal: Signal, items: int) -> None:
        self._enqueue_failed[signal].inc(self._key, items)

    def redelivered(self, signal: Signal, items: int) -> None:
        self._redelivered[signal].inc(self._key, items)

    def retried(self) -> None:
        self._retries.inc(self._key)

    def corrupt(self, records: int) -> None:
        self._corrupt.inc(self._key, records)

    def queue(self, size: int, capacity: int) -> None:
        self._size.set(self._key, size)
        self._capacity.set(self._key, capacity)


class _LogLimiter:
    """At most one log line per key per interval; the rest are counted into the next line."""

    def __init__(self, interval: float = _LOG_INTERVAL) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None to stay quiet, else how many lines were suppressed since the last one."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


class _GiveUp(Exception):
    """Draining, and the next retry would end after the drain deadline: leave the batch queued."""


State = Literal["new", "running", "stopping", "stopped"]


class QueuedExporter:
    def __init__(
        self,
        name: str,
        type_name: str,
        sender: Sender,
        *,
        batch: BatchConfig,
        retry: RetryConfig,
        queue: QueueConfig,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.type_name = type_name
        self._sender = sender
        self._batch = batch
        self._retry = retry
        self._queue_config = queue
        self._rng = rng
        retry_after = min(max(1.0, retry.initial_interval), 30.0)
        self._queue: ExportQueue = (
            DiskQueue(
                queue.directory,
                queue.max_bytes,
                fsync=queue.fsync,
                retry_after=retry_after,
                component=f"exporter/{name}",
            )
            if queue.directory
            else MemoryQueue(queue.max_bytes, retry_after=retry_after)
        )
        self._telemetry = ExporterTelemetry(MetricStore(), name)
        self._log = get_logger(f"exporter/{name}")
        self._limiter = _LogLimiter()
        self._state: State = "new"
        self._tasks: list[asyncio.Task[None]] = []
        self._form_lock = asyncio.Lock()
        self._draining = False
        self._giving_up = False
        self._drain_deadline = 0.0

    # --- lifecycle ---------------------------------------------------------------------------

    def bind_metrics(self, store: MetricStore) -> None:
        self._telemetry = ExporterTelemetry(store, self.name)

    @property
    def queue(self) -> ExportQueue:
        return self._queue

    async def start(self) -> None:
        if self._state != "new":
            return
        recovery = await self._queue.open()
        try:
            await self._sender.start()
        except BaseException:
            await self._queue.close()
            raise
        for signal, items in (recovery.redelivered or {}).items():
            self._telemetry.redelivered(signal, items)
        if recovery.corrupt_records:
            self._telemetry.corrupt(recovery.corrupt_records)
        self._update_queue_gauges()
        self._state = "running"
        self._tasks = [
            asyncio.create_task(self._consume(), name=f"exporter-{self.name}-{n}")
            for n in range(self._queue_config.num_consumers)
        ]
        self._log.info(
            "exporter_started",
            type=self.type_name,
            endpoint=self._sender.endpoint,
            queue=self._queue_config.directory or "memory",
            queue_capacity_bytes=self._queue.index.capacity,
            recovered_entries=recovery.entries,
            recovered_bytes=recovery.bytes,
            redelivered_items=sum((recovery.redelivered or {}).values()),
        )

    def ready(self) -> bool:
        return self._state == "running"

    async def shutdown(self) -> None:
        """Stop taking data, drain within ``queue.drain_timeout``, then stop; idempotent."""
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopping"
        self._draining = True
        timeout = self._queue_config.drain_timeout
        self._drain_deadline = time.monotonic() + timeout
        self._queue.index.changed.set()
        done, pending = await asyncio.wait(self._tasks, timeout=timeout) if self._tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                self._log.error("exporter_task_failed", error=repr(task.exception()))
        self._tasks = []
        index = self._queue.index
        left_entries = index.pending_count + index.in_flight
        left_bytes = index.size
        if not self._queue.durable:
            dropped = index.drop_all_pending()
            for entry in dropped:
                self._telemetry.failed(entry.signal, "shutdown", entry.items)
            self._queue.ack(dropped)
            if dropped:
                self._log.warning("exporter_queue_dropped", entries=len(dropped), items=sum(e.items for e in dropped))
        elif left_entries:
            self._log.info("exporter_queue_kept_on_disk", entries=left_entries, bytes=left_bytes)
        await self._queue.close()
        self._update_queue_gauges()
        await self._sender.shutdown()
        self._state = "stopped"
        self._log.info("exporter_stopped", type=self.type_name)

    # --- the hot path: into the queue ------------------------------------------------------------

    async def export(self, batch: Batch) -> None:
        if self._state != "running":
            raise ShuttingDownError(f"exporter {self.name} is not running", retry_after=1.0)
        index = self._queue.index
        if len(batch.raw) > index.capacity:
            self._telemetry.enqueue_failed(batch.signal, batch.items)
            raise PermanentError(
                f"request of {len(batch.raw)} bytes exceeds the capacity of exporter {self.name}'s queue"
            )
        try:
            await self._queue.put(batch.signal, batch.items, batch.raw)
        except RetryableError:
            self._telemetry.enqueue_failed(batch.signal, batch.items)
            raise
        self._update_queue_gauges()

    def _update_queue_gauges(self) -> None:
        self._telemetry.queue(self._queue.index.size, self._queue.index.capacity)

    # --- sender tasks --------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            async with self._form_lock:
                entries = await self._next_batch()
            if entries is None:
                return
            try:
                await self._deliver(entries)
            except _GiveUp:
                self._giving_up = True
                self._queue.index.changed.set()
                if not self._queue.durable:
                    self._lost_at_shutdown(entries)
                return
            except asyncio.CancelledError:
                if not self._queue.durable:
                    self._lost_at_shutdown(entries)
                raise
            except Exception as exc:  # never lose a sender task: count the batch, log, go on
                for entry in entries:
                    self._telemetry.failed(entry.signal, "internal_error", entry.items)
                self._queue.ack(entries)
                self._update_queue_gauges()
                self._log_limited("export_dropped", level="error", reason="internal_error", error=repr(exc))

    def _lost_at_shutdown(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self._telemetry.failed(entry.signal, "shutdown", entry.items)
        self._queue.ack(entries)

    async def _next_batch(self) -> list[Entry] | None:
        index = self._queue.index
        batch = self._batch
        while True:
            if self._giving_up:
                return None
            signal = index.oldest_signal()
            if signal is None:
                if self._draining:
                    return None
                index.changed.clear()
                await index.changed.wait()
                continue
            deadline = index.pending[signal][0].enqueued + batch.timeout
            while (
                not self._draining
                and index.pending_items[signal] < batch.max_spans
                and index.pending_bytes[signal] < batch.max_bytes
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                index.changed.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await index.changed.wait()
                except TimeoutError:
                    break
            return index.take(signal, batch.max_spans, batch.max_bytes)

    async def _deliver(self, entries: list[Entry]) -> None:
        signal = entries[0].signal
        payloads = await self._queue.payloads(entries)
        bodies: list[bytes] = []
        good: list[Entry] = []
        corrupt = 0
        for entry, payload in zip(entries, payloads, strict=True):
            if payload is None:
                corrupt += 1
                self._telemetry.failed(signal, "queue_corrupt", entry.items)
            else:
                good.append(entry)
                bodies.append(payload)
        if corrupt:
            self._telemetry.corrupt(corrupt)
            self._log.warning("queue_corrupt_record_skipped", records=corrupt, phase="read")
        if good:
            await self._queue.dispatched(good)
            await self._send_batch(signal, concat_requests(bodies), sum(e.items for e in good))
        self._queue.ack(entries)
        self._update_queue_gauges()

    async def _send_batch(self, signal: Signal, body: bytes, items: int) -> None:
        limit = self._batch.max_bytes
        if len(body) <= limit:
            await self._send(signal, body, items)
            return
        try:
            chunks = split_request(signal, body, limit)
        except DecodeError:
            chunks = [body]
        if len(chunks) == 1:
            await self._send(signal, body, items)
            return
        for chunk in chunks:  # rare: one request over max_bytes; counting its parts needs a decode
            await self._send(signal, chunk, count_items(signal, decode_request(signal, chunk, "protobuf")))

    async def _send(self, signal: Signal, body: bytes, items: int) -> None:
        """Send one body until it is delivered, refused for good, or out of retries."""
        retry = self._retry
        backoff = Backoff(retry, self._rng)
        started = time.monotonic()
        while True:
            try:
                result = await self._sender.send(signal, body)
            except PermanentError as exc:
                self._drop(signal, "permanent", items, exc.reason)
                return
            except (RetryableError, OSError, TimeoutError) as exc:
                hint = exc.retry_after if isinstance(exc, RetryableError) else None
                error = exc.reason if isinstance(exc, RetryableError) else repr(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a transport bug must not kill the sender task: retry, bounded
                hint, error = None, repr(exc)
            else:
                rejected = min(max(result.rejected, 0), items)
                self._telemetry.sent(signal, items - rejected)
                if rejected:
                    self._telemetry.failed(signal, "rejected", rejected)
                    self._log_limited(
                        "export_partially_rejected", signal=signal, rejected=rejected, message=result.message
                    )
                return
            if not retry.enabled:
                self._drop(signal, "retries_exhausted", items, error)
                return
            delay = backoff.next_delay(hint)
            now = time.monotonic()
            if retry.max_elapsed_time > 0 and now - started + delay > retry.max_elapsed_time:
                self._drop(signal, "retries_exhausted", items, error)
                return
            if self._draining and now + delay > self._drain_deadline:
                raise _GiveUp
            self._telemetry.retried()
            self._log_limited("export_retrying", signal=signal, error=error, delay_s=round(delay, 3))
            await asyncio.sleep(delay)

    def _drop(self, signal: Signal, reason: FailureReason, items: int, error: str) -> None:
        self._telemetry.failed(signal, reason, items)
        self._log_limited("export_dropped", level="error", signal=signal, reason=reason, items=items, error=error)

    def _log_limited(self, event: str, level: str = "warning", **fields: object) -> None:
        suppressed = self._limiter.allow(f"{event}/{fields.get('reason', '')}")
        if suppressed is None:
            return
        if level == "error":
            self._log.error(event, suppressed=suppressed, **fields)
        else:
            self._log.warning(event, suppressed=suppressed, **fields)
