"""What both export queues share: the entry, the in-memory index the batcher reads, and the protocol.

An entry is one received request (the bytes a receiver acknowledged), never re-encoded. The index
keeps entries not yet handed to a sender in one FIFO per signal (a batch holds one signal) and
accounts every byte from ``put`` until ``ack``: entries being sent still hold their place, so the
bound covers what is in flight too. Everything here runs on the event loop; no locks.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import QueueFullError
from gateway.validation import (
    MIB,
    ConfigError,
    expect_mapping,
    read_bool,
    read_duration,
    read_int,
    read_size,
    read_str,
    reject_unknown,
)
from proto_handlers import SIGNALS, Signal

_QUEUE_KEYS = ("max_bytes", "directory", "fsync", "num_consumers", "drain_timeout")


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """``queue:``: a byte bound, and with ``directory`` a durable write-ahead queue on disk."""

    max_bytes: int = 256 * MIB
    directory: str | None = None
    fsync: bool = True
    num_consumers: int = 4
    drain_timeout: float = 5.0

    @staticmethod
    def from_mapping(options: Mapping[str, Any], path: str) -> QueueConfig:
        reject_unknown(options, _QUEUE_KEYS, path)
        base = QueueConfig()
        max_bytes = read_size(options["max_bytes"], f"{path}.max_bytes") if "max_bytes" in options else base.max_bytes
        if max_bytes < 1024:
            raise ConfigError(f"{path}.max_bytes", f"must be at least 1KiB, got {max_bytes}")
        directory = read_str(options["directory"], f"{path}.directory") if options.get("directory") else None
        fsync = read_bool(options["fsync"], f"{path}.fsync") if "fsync" in options else base.fsync
        if "fsync" in options and directory is None:
            raise ConfigError(f"{path}.fsync", "only applies to a queue with a directory")
        return QueueConfig(
            max_bytes=max_bytes,
            directory=directory,
            fsync=fsync,
            num_consumers=read_int(options["num_consumers"], f"{path}.num_consumers", minimum=1)
            if "num_consumers" in options
            else base.num_consumers,
            drain_timeout=read_duration(options["drain_timeout"], f"{path}.drain_timeout")
            if "drain_timeout" in options
            else base.drain_timeout,
        )


def queue_config(value: Any, path: str) -> QueueConfig:
    return QueueConfig.from_mapping(expect_mapping(value, path), path)


class Entry:
    """One queued request. ``payload`` is None while it lives only on disk (read back to send)."""

    __slots__ = ("enqueued", "id", "items", "length", "offset", "payload", "segment", "signal", "size")

    def __init__(
        self,
        id: int,
        signal: Signal,
        items: int,
        size: int,
        payload: bytes | None,
        *,
        segment: int = 0,
        offset: int = 0,
        length: int = 0,
        enqueued: float | None = None,
    ) -> None:
        self.id = id
        self.signal: Signal = signal
        self.items = items
        self.size = size
        self.payload = payload
        self.segment = segment  # disk queue: segment number; offset/length: where the payload is
        self.offset = offset
        self.length = length
        self.enqueued = time.monotonic() if enqueued is None else enqueued


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a queue found when it opened: entries carried over from a previous run."""

    entries: int = 0
    bytes: int = 0
    items: Mapping[Signal, int] | None = None
    redelivered: Mapping[Signal, int] | None = None  # sent (maybe received) but never acknowledged
    corrupt_records: int = 0


class QueueIndex:
    """Pending entries per signal (FIFO), their totals, and the bytes held from put to ack."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0  # bytes reserved, pending, and in flight
        self.pending: dict[Signal, deque[Entry]] = {signal: deque() for signal in SIGNALS}
        self.pending_items: dict[Signal, int] = dict.fromkeys(SIGNALS, 0)
        self.pending_bytes: dict[Signal, int] = dict.fromkeys(SIGNALS, 0)
        self.pending_count = 0
        self.in_flight = 0
        self.changed = asyncio.Event()
        """Set whenever an entry becomes pending (or the queue starts draining); waiters clear it."""

    def reserve(self, size: int, retry_after: float) -> None:
        """Claim room for ``size`` bytes or refuse with ``QueueFullError`` (the receiver's 429)."""
        if self.size + size > self.capacity:
            raise QueueFullError(
                f"export queue full ({self.size} of {self.capacity} bytes in use)", retry_after=retry_after
            )
        self.size += size

    def release(self, size: int) -> None:
        self.size -= size

    def push(self, entry: Entry) -> None:
        self.pending[entry.signal].append(entry)
        self.pending_items[entry.signal] += entry.items
        self.pending_bytes[entry.signal] += entry.size
        self.pending_count += 1
        self.changed.set()

    def oldest_signal(self) -> Signal | None:
        """The signal whose first pending entry was queued first (ids increase with time)."""
        best: Signal | None = None
        best_id = 0
        for signal, entries in self.pending.items():
            if entries and (best is None or entries[0].id < best_id):
                best, best_id = signal, entries[0].id
        return best

    def take(self, signal: Signal, max_items: int, max_bytes: int) -> list[Entry]:
        """Pop entries of ``signal`` while they fit the limits; always at least one."""
        entries = self.pending[signal]
        taken: list[Entry] = []
        items = 0
        size = 0
        while entries:
            entry = entries[0]
            if taken and (items + entry.items > max_items or size + entry.size > max_bytes):
                break
            entries.popleft()
            taken.append(entry)
            items += entry.items
            size += entry.size
        self.pending_items[signal] -= items
        self.pending_bytes[signal] -= size
        self.pending_count -= len(taken)
        self.in_flight += len(taken)
        return taken

    def drop_all_pending(self) -> list[Entry]:
        """Every pending entry, taken as ``take`` would (settle them next; the memory queue at shutdown)."""
        dropped: list[Entry] = []
        for signal in SIGNALS:
            dropped.extend(self.pending[signal])
            self.pending[signal].clear()
            self.pending_items[signal] = 0
            self.pending_bytes[signal] = 0
        self.pending_count = 0
        self.in_flight += len(dropped)
        return dropped

    def settle(self, entries: Sequence[Entry]) -> None:
        """Entries taken by ``take`` are done (sent or given up): free their bytes."""
        self.in_flight -= len(entries)
        self.size -= sum(entry.size for entry in entries)


class ExportQueue(Protocol):
    """A bounded queue of received requests; ``put`` returns once the entry is safely queued."""

    index: QueueIndex

    @property
    def durable(self) -> bool: ...

    async def open(self) -> Recovery: ...

    async def put(self, signal: Signal, items: int, payload: bytes) -> None: ...

    async def payloads(self, entries: Sequence[Entry]) -> list[bytes | None]:
        """The bytes of ``entries`` (read back from disk for those not held in memory); None for an
        entry whose record turned out damaged on disk."""
        ...

    async def dispatched(self, entries: Sequence[Entry]) -> None:
        """``entries`` are about to be sent: a restart from here on may deliver them twice."""
        ...

    def ack(self, entries: Sequence[Entry]) -> None:
        """``entries`` are done with (delivered or given up): remove them for good."""
        ...

    async def close(self) -> None: ...
