"""The default export queue: entries in memory, bounded by bytes. A restart loses what it holds
(counted as ``reason="shutdown"`` when the drain deadline passes); use ``queue.directory`` for a
queue that survives restarts."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.exporters.queue import Entry, QueueIndex, Recovery
from proto_handlers import Signal


class MemoryQueue:
    def __init__(self, capacity: int, retry_after: float = 1.0) -> None:
        self.index = QueueIndex(capacity)
        self._retry_after = retry_after
        self._next_id = 1

    @property
    def durable(self) -> bool:
        return False

    async def open(self) -> Recovery:
        return Recovery()

    async def put(self, signal: Signal, items: int, payload: bytes) -> None:
        self.index.reserve(len(payload), self._retry_after)
        entry = Entry(self._next_id, signal, items, len(payload), payload)
        self._next_id += 1
        self.index.push(entry)

    async def payloads(self, entries: Sequence[Entry]) -> list[bytes | None]:
        return [entry.payload for entry in entries]

    async def dispatched(self, entries: Sequence[Entry]) -> None:
        return None

    def ack(self, entries: Sequence[Entry]) -> None:
        self.index.settle(entries)

    async def close(self) -> None:
        return None
