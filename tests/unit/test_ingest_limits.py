"""Ingest walks big protobuf bodies before decoding them: over the item limit it refuses them unread,
otherwise it charges the memory limiter with what they will decode to."""

from __future__ import annotations

import asyncio

import pytest

from gateway.component import Batch
from gateway.errors import QueueFullError, TooManyItemsError
from gateway.metrics.store import MetricStore
from gateway.receivers.ingest import DECODED_ENTRY_BYTES, Ingest, ReceiverTelemetry
from gateway.receivers.limiter import InflightLimiter
from tests.support.wire import traces_request

MAX_ITEMS = 100_000


class HeldPipeline:
    """A pipeline whose exporters take each batch only when ``release`` is set (a queue awaiting its fsync)."""

    processors = ()  # forwarding only: batches are decoded with the real schema

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.batches: list[Batch] = []

    async def consume(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.entered.set()
        await self.release.wait()


def named_spans(count: int) -> bytes:
    """A request of ``count`` spans named "a": 5 bytes each, so 50 000 make a body walked before decoding."""
    return traces_request(b"\x12\x03\x2a\x01a" * count)


def make_ingest(limiter: InflightLimiter) -> tuple[Ingest, HeldPipeline]:
    store = MetricStore()
    pipeline = HeldPipeline()
    pipelines = {"traces": pipeline}
    ingest = Ingest(pipelines, ReceiverTelemetry(store), limiter=limiter, max_items=MAX_ITEMS)  # type: ignore[arg-type]
    return ingest, pipeline


async def test_a_walked_body_holds_its_estimated_decoded_size_until_done() -> None:
    """50 000 spans in a 250 KB body hold 50 002 entries x 176 bytes in the limiter while in the pipeline,
    then nothing."""
    limiter = InflightLimiter(max_bytes=64 * 2**20, max_requests=10)
    ingest, pipeline = make_ingest(limiter)
    body = named_spans(50_000)
    assert len(body) > 2 * MAX_ITEMS  # walked before decoding
    task = asyncio.create_task(ingest.ingest("traces", body, "protobuf", "grpc"))
    await pipeline.entered.wait()
    assert 50_002 * DECODED_ENTRY_BYTES == limiter.bytes
    pipeline.release.set()
    assert 50_000 == (await task).items
    assert (0, 0) == (limiter.bytes, limiter.requests)
    await ingest.shutdown()


async def test_a_second_walked_body_past_the_budget_is_refused_as_memory_limit() -> None:
    """With 16 MiB of budget, one 8.8 MB estimate fits and a second is refused (429), though both
    bodies (0.5 MB together) would."""
    limiter = InflightLimiter(max_bytes=16 * 2**20, max_requests=10)
    ingest, pipeline = make_ingest(limiter)
    body = named_spans(50_000)
    first = asyncio.create_task(ingest.ingest("traces", body, "protobuf", "http"))
    await pipeline.entered.wait()
    with pytest.raises(QueueFullError, match="memory limit"):
        await ingest.ingest("traces", body, "protobuf", "http")
    assert 1.0 == ingest.telemetry.refused_requests.value(("http", "traces", "memory_limit"))
    pipeline.release.set()
    await first
    assert (0, 0, 1) == (limiter.bytes, limiter.requests, len(pipeline.batches))
    await ingest.shutdown()


async def test_a_body_over_the_item_limit_is_refused_before_the_pipeline() -> None:
    """100 001 spans: TooManyItemsError naming the limit, counted, nothing handed on, nothing left held."""
    limiter = InflightLimiter(max_bytes=64 * 2**20, max_requests=10)
    ingest, pipeline = make_ingest(limiter)
    with pytest.raises(TooManyItemsError, match="more than 100000 spans"):
        await ingest.ingest("traces", named_spans(MAX_ITEMS + 1), "protobuf", "grpc")
    assert 1.0 == ingest.telemetry.refused_requests.value(("grpc", "traces", "too_many_items"))
    assert ([], 0, 0) == (pipeline.batches, limiter.bytes, limiter.requests)
    await ingest.shutdown()
