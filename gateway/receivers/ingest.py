"""What both receivers do with a request body once transport concerns are settled.

Decode once, count, hand a ``Batch`` to the signal's pipeline, and keep the receiver self-metrics.
Transport-specific work (compression, content types, status codes) stays in the receivers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.component import Batch
from gateway.errors import GatewayError, QueueFullError, ShuttingDownError
from gateway.metrics.store import CounterFamily, MetricStore
from gateway.pipeline import Pipeline
from gateway.receivers.limiter import InflightLimiter
from gateway.resource import apply_resource_attributes
from gateway.settings import AttributeValue
from proto_handlers import SIGNALS, Signal, WireFormat, count_items, decode_request

ITEM_NAMES: Mapping[Signal, str] = {"traces": "spans", "metrics": "metric_points", "logs": "log_records"}


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
    ) -> None:
        self._pipelines = pipelines
        self._limiter = limiter
        self.telemetry = telemetry
        self._closing = False
        self._resource_attributes = tuple(resource_attributes)

    def close(self) -> None:
        """Refuse new data from now on (retryable), while requests already in flight finish."""
        self._closing = True

    async def ingest(
        self, signal: Signal, payload: bytes, fmt: WireFormat, transport: str, tenant: str | None = None
    ) -> IngestResult:
        """Accept one uncompressed request body; returns the item count (and any partial rejection).

        Raises ``DecodeError`` for bad input and ``GatewayError`` subclasses when the pipeline
        refuses; each is counted here, by reason.
        """
        if self._limiter is None:
            return await self._ingest(signal, payload, fmt, transport, tenant)
        size = len(payload)
        try:
            self._limiter.acquire(size)
        except QueueFullError:
            self.telemetry.refuse_request(transport, signal, "memory_limit")
            raise
        try:
            return await self._ingest(signal, payload, fmt, transport, tenant)
        finally:
            self._limiter.release(size)

    async def _ingest(
        self, signal: Signal, payload: bytes, fmt: WireFormat, transport: str, tenant: str | None
    ) -> IngestResult:
        try:
            request = decode_request(signal, payload, fmt)
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
            raw = payload if fmt == "protobuf" else request.SerializeToString()
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
