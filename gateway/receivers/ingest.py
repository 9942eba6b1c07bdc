"""What both receivers do with a request body once transport concerns are settled.

Admit it (the memory limiter), bound its items, decode once, count, hand a ``Batch`` to the
signal's pipeline, and keep the receiver self-metrics. Transport-specific work (compression,
content types, status codes) stays in the receivers.

Two defences run before decoding (docs/hardening.md). A protobuf body longer than twice
``max_items_per_request`` bytes (an OTLP/JSON body: the protobuf it is turned into) is walked first
(``count_entries``: tags and lengths only, stopping past the limit), because every entry takes at
least two bytes on the wire and up to ~176 bytes once decoded: a shorter body cannot hold more
entries than the limit, and a longer one that does is refused before upb allocates for it. The
walk's count also tells the memory limiter what the body will decode to. And OTLP/JSON bodies from
256 KiB up are converted and decoded on a worker thread, so the event loop keeps serving (health
checks, scrapes, other requests) meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TypeVar

from gateway.component import Batch
from gateway.errors import GatewayError, QueueFullError, ShuttingDownError, TooManyItemsError
from gateway.metrics.store import CounterFamily, MetricStore
from gateway.pipeline import Pipeline
from gateway.receivers.limiter import InflightLimiter
from gateway.resource import apply_resource_attributes
from gateway.settings import AttributeValue
from proto_handlers import SIGNALS, Signal, WireFormat, count_items, decode_request, json_to_protobuf
from proto_handlers.prescan import count_entries

_T = TypeVar("_T")

ITEM_NAMES: Mapping[Signal, str] = {"traces": "spans", "metrics": "metric_points", "logs": "log_records"}
ITEM_WORDS: Final[Mapping[Signal, str]] = {"traces": "spans", "metrics": "data points", "logs": "log records"}

DEFAULT_MAX_ITEMS: Final = 500_000  # limits.max_items_per_request's default (gateway/settings.py)
MIN_WIRE_ENTRY_BYTES: Final = 2
"""The fewest bytes an entry (item or container) takes on the wire: a one-byte tag and a zero length."""
DECODED_ENTRY_BYTES: Final = 176
"""What upb allocates for an empty span, the largest of any entry (log record 135, metric 97, resource
or scope 60-65): the estimate of a walked body's decoded size is at least its entries (items and the
other fields walked) times this."""
JSON_THREAD_BYTES: Final = 256 * 1024
"""OTLP/JSON bodies from this size up are decoded on a worker thread (about 16 ms of decoding on the
loop at most below it, for a 0.1 ms hand-off above it; docs/hardening.md)."""


class ReceiverTelemetry:
    """The receivers' self-metrics, named as the collector's obsreport names them."""

    def __init__(self, store: MetricStore) -> None:
        self.accepted: dict[Signal, CounterFamily] = {}
        self.refused: dict[Signal, CounterFamily] = {}
        for signal in SIGNALS:
            item = ITEM_NAMES[signal]
            readable = item.replace("_", " ")
            self.accepted[signal] = store.counter(
                f"gateway_receiver_accepted_{item}",
                f"Number of {readable} successfully received and passed to the pipeline.",
                ("transport",),
                expires=False,
            )
            self.refused[signal] = store.counter(
                f"gateway_receiver_refused_{item}",
                f"Number of {readable} decoded but refused (the sender was told why and may retry).",
                ("transport", "reason"),
                expires=False,
            )
        self.refused_requests = store.counter(
            "gateway_receiver_refused_requests",
            "Requests refused before their items could be counted (undecodable, too large, unsupported).",
            ("transport", "signal", "reason"),
            expires=False,
        )
        for signal in SIGNALS:  # series present from the start, so rate() has a zero to start from
            for transport in ("grpc", "http"):
                self.accepted[signal].inc((transport,), 0.0)

    def refuse_request(self, transport: str, signal: str, reason: str) -> None:
        self.refused_requests.inc((transport, signal, reason))


def refusal_reason(error: GatewayError) -> str:
    if isinstance(error, QueueFullError):
        return "queue_full"
    if isinstance(error, ShuttingDownError):
        return "shutting_down"
    return "refused"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What to answer: ``rejected`` > 0 (with ``message``) is an OTLP partial success."""

    items: int
    rejected: int = 0
    message: str = ""


class Ingest:
    """Decode -> Batch -> pipeline, shared by the gRPC and HTTP receivers."""

    def __init__(
        self,
        pipelines: Mapping[Signal, Pipeline],
        telemetry: ReceiverTelemetry,
        resource_attributes: Sequence[tuple[str, AttributeValue]] = (),
        limiter: InflightLimiter | None = None,
        max_items: int = DEFAULT_MAX_ITEMS,
    ) -> None:
        self._pipelines = pipelines
        # Only a pipeline with processors reads spans: forwarding alone needs no derivation view.
        self._derived = {signal: bool(pipeline.processors) for signal, pipeline in pipelines.items()}
        self._limiter = limiter
        self.telemetry = telemetry
        self._closing = False
        self._resource_attributes = tuple(resource_attributes)
        self.max_items = max_items
        self._walk_above = MIN_WIRE_ENTRY_BYTES * max_items
        # One thread: OTLP/JSON decoding holds the GIL, so more would not decode faster, and one at a
        # time bounds the memory of concurrent decodes. Started on first use.
        self._json_decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otlp-json-decode")

    def close(self) -> None:
        """Refuse new data from now on (retryable), while requests already in flight finish."""
        self._closing = True

    async def shutdown(self) -> None:
        """Stop the JSON decoding thread once the receivers are stopped; idempotent."""
        self._json_decoder.shutdown(wait=False, cancel_futures=True)

    async def ingest(
        self, signal: Signal, payload: bytes, fmt: WireFormat, transport: str, tenant: str | None = None
    ) -> IngestResult:
        """Accept one uncompressed request body; returns the item count (and any partial rejection).

        Raises ``DecodeError`` for bad input and ``GatewayError`` subclasses when the pipeline
        refuses; each is counted here, by reason.
        """
        limiter = self._limiter
        held = size = len(payload)
        if limiter is not None:
            try:
                limiter.acquire(size)
            except QueueFullError:
                self.telemetry.refuse_request(transport, signal, "memory_limit")
                raise
        try:
            # OTLP/JSON becomes the protobuf of the same request, then is walked and decoded as any.
            off_loop = fmt == "json" and size >= JSON_THREAD_BYTES
            wire = payload
            if fmt == "json":
                try:
                    if off_loop:
                        wire = await self._off_loop(json_to_protobuf, signal, payload)
                    else:
                        wire = json_to_protobuf(signal, payload)
                except ValueError:
                    self.telemetry.refuse_request(transport, signal, "invalid")
                    raise
            if len(wire) > self._walk_above:
                decoded = self._check_entries(signal, wire, transport)
                if limiter is not None and decoded > held:
                    try:
                        limiter.grow(held, decoded - held)
                    except QueueFullError:
                        self.telemetry.refuse_request(transport, signal, "memory_limit")
                        raise
                    held = decoded
            return await self._ingest(signal, wire, transport, tenant, off_loop)
        finally:
            if limiter is not None:
                limiter.release(held)

    def _check_entries(self, signal: Signal, wire: bytes, transport: str) -> int:
        """Refuse a body of more entries than the limit, unread; else estimate its decoded size."""
        count = count_entries(signal, wire, self.max_items)
        if count.items > self.max_items:
            self._refuse_too_many(signal, transport, ITEM_WORDS[signal])
        if count.others > self.max_items:  # resource, scope, metric entries, their fields, unknown fields
            self._refuse_too_many(signal, transport, f"fields besides its {ITEM_WORDS[signal]}")
        return max(len(wire), count.entries * DECODED_ENTRY_BYTES)

    def _refuse_too_many(self, signal: Signal, transport: str, what: str) -> NoReturn:
        self.telemetry.refuse_request(transport, signal, "too_many_items")
        raise TooManyItemsError(
            f"request holds more than {self.max_items} {what}, the limit per request "
            "(limits.max_items_per_request); send smaller batches"
        )

    async def _ingest(
        self, signal: Signal, wire: bytes, transport: str, tenant: str | None, off_loop: bool
    ) -> IngestResult:
        """Decode ``wire`` (the protobuf body as received, or made from OTLP/JSON) and hand it on."""
        try:
            if off_loop:
                request = await self._off_loop(
                    functools.partial(
                        decode_request, signal, wire, "protobuf", indexed=self._derived.get(signal, False)
                    )
                )
            else:
                request = decode_request(signal, wire, "protobuf", indexed=self._derived.get(signal, False))
        except ValueError:
            self.telemetry.refuse_request(transport, signal, "invalid")
            raise
        items = count_items(signal, request)
        if self._closing:
            self.telemetry.refused[signal].inc((transport, "shutting_down"), items)
            raise ShuttingDownError("the gateway is shutting down", retry_after=1.0)
        if self._resource_attributes:  # the one change made to forwarded data: serialized once, here
            apply_resource_attributes(signal, request, self._resource_attributes)
            raw = request.SerializeToString()
        else:
            raw = wire  # as received; for OTLP/JSON, its protobuf made once above
        batch = Batch(signal=signal, raw=raw, request=request, items=items, transport=transport, tenant=tenant)
        try:
            partial = await self._pipelines[signal].consume(batch)
        except GatewayError as exc:
            self.telemetry.refused[signal].inc((transport, refusal_reason(exc)), items)
            raise
        if partial is None:
            self.telemetry.accepted[signal].inc((transport,), items)
            return IngestResult(items)
        # As answered: what some exporter refused is counted refused, the rest accepted.
        self.telemetry.accepted[signal].inc((transport,), items - partial.rejected)
        self.telemetry.refused[signal].inc((transport, "exporter_refused"), partial.rejected)
        return IngestResult(items, partial.rejected, partial.message)

    async def _off_loop(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` on the JSON decoding thread."""
        return await asyncio.get_running_loop().run_in_executor(self._json_decoder, function, *args)
