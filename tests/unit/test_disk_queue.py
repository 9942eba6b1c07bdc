"""The on-disk write-ahead queue: what was put survives a reopen, acknowledged entries and segments go,
damage is skipped and counted, and the byte bound is enforced."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.errors import QueueFullError
from gateway.exporters.disk_queue import SEGMENT_HEADER, DiskQueue, frame_record
from gateway.exporters.queue import Entry, Recovery
from proto_handlers import Signal

PAYLOADS = [bytes([n]) * (100 + n) for n in range(1, 31)]


async def put_all(queue: DiskQueue, payloads: Sequence[bytes], signal: Signal = "traces") -> None:
    await asyncio.gather(*(queue.put(signal, index + 1, p) for index, p in enumerate(payloads)))


def take_all(queue: DiskQueue) -> list[Entry]:
    index = queue.index
    taken: list[Entry] = []
    for signal in ("traces", "metrics", "logs"):
        while index.pending[signal]:
            taken.extend(index.take(signal, 10**9, 10**12))
    return sorted(taken, key=lambda e: e.id)


async def reopen(directory: Path, **kwargs: object) -> tuple[DiskQueue, Recovery]:
    queue = DiskQueue(directory, 1 << 20, **kwargs)  # type: ignore[arg-type]
    recovery = await queue.open()
    return queue, recovery


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


async def test_entries_survive_a_reopen_with_their_bytes_signal_and_count(tmp_path: Path) -> None:
    """Everything put is read back after a reopen, in order, byte for byte."""
    queue, _ = await reopen(tmp_path)
    await put_all(queue, PAYLOADS[:5])
    await queue.put("logs", 9, b"log-request")
    await queue.close()
    queue, recovery = await reopen(tmp_path)
    entries = take_all(queue)
    payloads = await queue.payloads(entries)
    await queue.close()
    assert (6, sum(map(len, PAYLOADS[:5])) + 11) == (recovery.entries, recovery.bytes)
    assert [*PAYLOADS[:5], b"log-request"] == payloads
    assert [("traces", 1), ("traces", 2), ("traces", 3), ("traces", 4), ("traces", 5), ("logs", 9)] == [
        (e.signal, e.items) for e in entries
    ]


async def test_acknowledged_entries_are_not_recovered(tmp_path: Path) -> None:
    """An ack is final: only entries never acknowledged come back."""
    queue, _ = await reopen(tmp_path)
    await put_all(queue, PAYLOADS[:4])
    entries = take_all(queue)
    queue.ack(entries[:3])
    await queue.close()
    queue, recovery = await reopen(tmp_path)
    payloads = await queue.payloads(take_all(queue))
    await queue.close()
    assert (1, [PAYLOADS[3]]) == (recovery.entries, payloads)


async def test_fully_acknowledged_segments_are_deleted(tmp_path: Path) -> None:
    """With small segments, acknowledging everything leaves only the segment being written."""
    queue, _ = await reopen(tmp_path, segment_bytes=600)
    await put_all(queue, PAYLOADS)
    assert len(segments(tmp_path)) > 5
    queue.ack(take_all(queue))
    await queue.put("traces", 1, b"one more")  # a commit after the acks: deletions have been done
    await queue.close()
    assert 1 == len(segments(tmp_path))
    assert not [p for p in tmp_path.glob("*.ack") if not p.with_suffix(".seg").exists()]


async def test_dispatched_but_unacknowledged_entries_are_reported_as_redelivered(tmp_path: Path) -> None:
    """Entries handed to a sender before a crash are resent and counted as possible duplicates."""
    queue, _ = await reopen(tmp_path)
    await put_all(queue, PAYLOADS[:3])
    entries = take_all(queue)
    await queue.dispatched(entries[:2])
    queue.ack(entries[:1])
    await queue.close()
    queue, recovery = await reopen(tmp_path)
    await queue.close()
    assert (2, {"traces": 2}) == (recovery.entries, recovery.redelivered)


async def test_a_torn_last_record_is_ignored_without_counting_corruption(tmp_path: Path) -> None:
    """A crash mid-write leaves a partial record that was never acknowledged: dropped quietly."""
    queue, _ = await reopen(tmp_path)
    await put_all(queue, PAYLOADS[:3])
    await queue.close()
    segment = segments(tmp_path)[-1]
    with segment.open("ab") as file:
        file.write(frame_record(99, "traces", 1, b"x" * 500)[:200])
    queue, recovery = await reopen(tmp_path)
    await queue.close()
    assert (3, 0) == (recovery.entries, recovery.corrupt_records)


async def test_a_damaged_record_is_skipped_counted_and_never_met_again(tmp_path: Path) -> None:
    """A flipped byte loses that record only; the rest is kept, and a second start sees no damage."""
    queue, _ = await reopen(tmp_path)
    await put_all(queue, PAYLOADS[:5])
    await queue.close()
    segment = segments(tmp_path)[-1]
    data = bytearray(segment.read_bytes())
    data[data.index(PAYLOADS[2])] ^= 0xFF
    segment.write_bytes(bytes(data))
    queue, recovery = await reopen(tmp_path)
    payloads = await queue.payloads(take_all(queue))
    await queue.close()
    queue, second = await reopen(tmp_path)
    again = await queue.payloads(take_all(queue))
    await queue.close()
    expected = [PAYLOADS[0], PAYLOADS[1], PAYLOADS[3], PAYLOADS[4]]
    assert (1, expected) == (recovery.corrupt_records, payloads)
    assert (0, expected) == (second.corrupt_records, again)


async def test_a_segment_of_garbage_is_skipped_and_removed(tmp_path: Path) -> None:
    """A file that is not a segment at all is counted once and removed; the queue still opens."""
    queue, _ = await reopen(tmp_path)
    await put_all(queue, PAYLOADS[:2])
    await queue.close()
    (tmp_path / "00000000000000000000.seg").write_bytes(b"\x00garbage" * 100)
    queue, recovery = await reopen(tmp_path)
    await queue.close()
    assert (2, 1) == (recovery.entries, recovery.corrupt_records)
    assert not (tmp_path / "00000000000000000000.seg").exists()


async def test_a_damaged_header_keeps_the_valid_records_after_it(tmp_path: Path) -> None:
    """Recovery resynchronises on the record marker, so a bad header loses no entries."""
    queue, _ = await reopen(tmp_path)
    await put_all(queue, PAYLOADS[:3])
    await queue.close()
    segment = segments(tmp_path)[-1]
    data = segment.read_bytes()
    segment.write_bytes(b"XXXXXXXX" + data[len(SEGMENT_HEADER) :])
    queue, recovery = await reopen(tmp_path)
    payloads = await queue.payloads(take_all(queue))
    await queue.close()
    assert (1, PAYLOADS[:3]) == (recovery.corrupt_records, payloads)


async def test_put_past_capacity_raises_queue_full_until_an_ack_frees_room(tmp_path: Path) -> None:
    """The bound is in payload bytes, in flight included; an ack makes room again."""
    queue = DiskQueue(tmp_path, 1000)
    await queue.open()
    await queue.put("traces", 1, b"a" * 600)
    with pytest.raises(QueueFullError):
        await queue.put("traces", 1, b"b" * 600)
    queue.ack(take_all(queue))
    await queue.put("traces", 1, b"c" * 600)
    await queue.close()
    assert 600 == queue.index.size


async def test_payloads_beyond_the_resident_budget_are_read_back_from_disk(tmp_path: Path) -> None:
    """With no memory budget every payload is read from its segment, and still byte-identical."""
    queue, _ = await reopen(tmp_path, resident_bytes=0)
    await put_all(queue, PAYLOADS[:4])
    entries = take_all(queue)
    assert [None] * 4 == [e.payload for e in entries]
    payloads = await queue.payloads(entries)
    await queue.close()
    assert PAYLOADS[:4] == payloads


async def test_a_directory_in_use_is_refused(tmp_path: Path) -> None:
    """Two queues (two exporters or two gateways) can never share a directory."""
    first, _ = await reopen(tmp_path)
    second = DiskQueue(tmp_path, 1 << 20)
    with pytest.raises(OSError, match="in use"):
        await second.open()
    await first.close()


async def test_without_fsync_entries_still_survive_a_reopen(tmp_path: Path) -> None:
    """fsync: false still writes to the kernel before put returns (a killed process loses nothing)."""
    queue, _ = await reopen(tmp_path, fsync=False)
    await put_all(queue, PAYLOADS[:3])
    await queue.close()
    queue, recovery = await reopen(tmp_path, fsync=False)
    await queue.close()
    assert 3 == recovery.entries
