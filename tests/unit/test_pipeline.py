"""The pipeline: exporters first, then derivation after the sender is answered, in slices, settled on demand."""

from __future__ import annotations

import asyncio

import pytest

from gateway.component import Batch
from gateway.derive.config import GenAIConfig
from gateway.derive.genai import GenAIProcessor
from gateway.errors import QueueFullError
from gateway.metrics.store import MetricStore
from gateway.pipeline import SLICE_SPANS, SLICE_SPANS_SATURATED, Pipeline, slices
from tests.support.genai_spans import make_batch, make_span

CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 10,
    "gen_ai.usage.output_tokens": 2,
}
LABELS = ("chatbot", "", "chat", "openai", "gpt-4o-mini", "", "input")


def spans_batch(count: int) -> Batch:
    return make_batch([make_span(CHAT, span_id=n.to_bytes(8, "big"), name=f"s{n}") for n in range(1, count + 1)])


class Recorder:
    """A processor that records the span names of every batch (slice) it is given."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...

    def process(self, batch: Batch) -> None:
        self.seen.append(
            [span.name for rs in batch.request.resource_spans for ss in rs.scope_spans for span in ss.spans]
        )


class Refusing:
    name = "full"

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...

    def ready(self) -> bool:
        return True

    async def export(self, batch: Batch) -> None:
        raise QueueFullError("queue full", 1.0)


def pipeline(processors: list[object], exporters: list[object] | None = None) -> Pipeline:
    store = MetricStore()
    failures = store.counter("gateway_processor_failed_batches", "", ("processor",))
    return Pipeline("traces", processors, exporters or [], store, failures)  # type: ignore[arg-type]


def test_slices_cover_every_span_once_in_order() -> None:
    """A 300-span batch is derived as slices of 128, 128 and 44 spans, in order, with the same raw bytes."""
    batch = spans_batch(300)
    parts = list(slices(batch, 128))
    names = [
        [span.name for rs in p.request.resource_spans for ss in rs.scope_spans for span in ss.spans] for p in parts
    ]
    assert ([128, 128, 44], [f"s{n}" for n in range(1, 301)], {batch.raw}) == (
        [p.items for p in parts],
        [name for part in names for name in part],
        {p.raw for p in parts},
    )


def test_a_small_batch_is_its_own_slice() -> None:
    batch = spans_batch(3)
    assert [batch] == list(slices(batch, 128))


async def test_consume_answers_before_derivation_and_settled_waits_for_it() -> None:
    """The sender is answered once exporters took the batch; settled() returns once it is derived."""
    store = MetricStore()
    genai = GenAIProcessor(GenAIConfig(), store)
    failures = store.counter("gateway_processor_failed_batches", "", ("processor",))
    line = Pipeline("traces", [genai], [], store, failures)
    await line.consume(spans_batch(200))
    before = genai.tokens.value(LABELS)
    await line.settled()
    assert (0.0, 2000.0) == (before, genai.tokens.value(LABELS))


async def test_derivation_yields_to_the_event_loop_between_slices() -> None:
    """Another task runs between the slices of one big batch's derivation."""
    recorder = Recorder()
    line = pipeline([recorder])
    turns: list[int] = []

    async def other_sender() -> None:
        while len(recorder.seen) < 3:
            turns.append(len(recorder.seen))
            await asyncio.sleep(0)

    other = asyncio.create_task(other_sender())
    await line.consume(spans_batch(300))
    await line.settled()
    await other
    assert {1, 2} <= set(turns)


async def test_below_saturation_a_batch_is_derived_in_small_slices() -> None:
    """Each slice is short, so the senders the loop serves in between wait little."""
    recorder = Recorder()
    line = pipeline([recorder])
    await line.consume(spans_batch(150))
    await line.settled()
    assert [SLICE_SPANS, SLICE_SPANS, 150 - 2 * SLICE_SPANS] == [len(names) for names in recorder.seen]


async def test_a_batch_of_up_to_two_slices_is_derived_in_one() -> None:
    """A 100-span request (the collector testbed's) is not cut into 64 + 36: one turn of the loop fewer."""
    recorder = Recorder()
    line = pipeline([recorder])
    await line.consume(spans_batch(2 * SLICE_SPANS))
    await line.settled()
    assert [2 * SLICE_SPANS] == [len(names) for names in recorder.seen]


async def test_with_the_backlog_half_full_batches_are_derived_in_large_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """At saturation, fewer and larger slices: each slice's fixed cost is paid less often.

    Three 600-span batches accepted at once with saturation at 1,000 spans: derivation of the first
    starts with 1,800 spans in the backlog, the second with 1,200, the last with 600."""
    monkeypatch.setattr("gateway.pipeline.SATURATED_BACKLOG_ITEMS", 1000)
    recorder = Recorder()
    line = pipeline([recorder])
    await asyncio.gather(*(line.consume(spans_batch(600)) for _ in range(3)))
    await line.settled()
    large = [SLICE_SPANS_SATURATED, 600 - SLICE_SPANS_SATURATED]
    small = [SLICE_SPANS] * (600 // SLICE_SPANS) + [600 % SLICE_SPANS]
    assert [*large, *large, *small] == [len(names) for names in recorder.seen]


async def test_a_batch_every_exporter_refused_is_not_derived() -> None:
    """429 / RESOURCE_EXHAUSTED: the sender retries, so counting this batch would count it twice."""
    recorder = Recorder()
    line = pipeline([recorder], [Refusing()])
    with pytest.raises(QueueFullError):
        await line.consume(spans_batch(2))
    await line.settled()
    assert [] == recorder.seen


async def test_senders_past_the_backlog_bound_wait_and_are_derived_in_arrival_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With room for 2 spans not yet derived, five 2-span senders queue up, first come first derived."""
    monkeypatch.setattr("gateway.pipeline.MAX_BACKLOG_ITEMS", 2)
    recorder = Recorder()
    line = pipeline([recorder])
    batches = [make_batch([make_span(CHAT, name=f"b{n}-1"), make_span(CHAT, name=f"b{n}-2")]) for n in range(5)]
    await asyncio.gather(*(line.consume(batch) for batch in batches))
    await line.settled()
    assert [[f"b{n}-1", f"b{n}-2"] for n in range(5)] == recorder.seen


async def test_senders_past_the_backlog_batch_bound_wait_however_few_spans_they_carry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With room for 2 batches, of four one-span senders the first two are answered at once and the
    other two wait for derivation; all four are derived, in arrival order."""
    monkeypatch.setattr("gateway.pipeline.MAX_BACKLOG_BATCHES", 2)
    recorder = Recorder()
    line = pipeline([recorder])
    senders = [asyncio.create_task(line.consume(make_batch([make_span(CHAT, name=f"b{n}")]))) for n in range(4)]
    await asyncio.sleep(0)  # every sender has run once; derivation has not started yet
    assert [True, True, False, False] == [sender.done() for sender in senders]
    await asyncio.gather(*senders)
    await line.settled()
    assert [["b0"], ["b1"], ["b2"], ["b3"]] == recorder.seen


async def test_settled_does_not_wait_for_batches_accepted_after_it_was_called() -> None:
    """Under continuous load the backlog never empties; a scrape still gets its answer."""
    recorder = Recorder()
    line = pipeline([recorder])
    stop = asyncio.Event()

    async def sender() -> None:
        while not stop.is_set():
            await line.consume(spans_batch(200))

    task = asyncio.create_task(sender())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(line.settled(), timeout=5)
    stop.set()
    await task
