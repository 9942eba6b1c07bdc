"""The narrow interfaces stages meet through (the collector's component and consumer model).

Every stage has ``async start()`` and ``async shutdown()``; shutdown is idempotent and safe without
start. Data moves one way, as a ``Batch``: receivers -> pipeline -> processors (derivation, in place,
synchronous) and exporters (``async export``, which only has to get the batch into a bounded queue).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from proto_handlers import Signal


@dataclass(frozen=True, slots=True)
class Batch:
    """One received export request: the original serialized protobuf and its one decoding.

    ``raw`` is forwarded as is (OTLP requests concatenate into a valid batch, so forwarding never
    re-encodes); ``request`` is the decoded message derivation reads; ``items`` counts spans, data
    points or log records; ``tenant`` is set when an API key binds the sender to a tenant.
    """

    signal: Signal
    raw: bytes
    request: Any
    items: int
    transport: str
    tenant: str | None = None


class Component(Protocol):
    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...


class Processor(Component, Protocol):
    """A derivation stage: reads a batch, updates the metric store, never changes the batch.

    ``process`` runs on the event loop and must not raise; it counts its own failures. A big traces
    batch arrives in slices (``pipeline.slices``): the same ``raw``, a ``request`` holding part of
    the spans (read through ``resource_spans`` / ``scope_spans`` / ``spans`` only) and its ``items``.
    """

    def process(self, batch: Batch) -> None: ...


class Exporter(Component, Protocol):
    """Sends batches downstream. ``export`` returns once the batch is safely queued (or sent);
    it raises ``QueueFullError`` to push back on the sender and ``PermanentError`` for refusals."""

    name: str

    async def export(self, batch: Batch) -> None: ...

    def ready(self) -> bool: ...
