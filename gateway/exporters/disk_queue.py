"""A write-ahead export queue on disk: what a receiver acknowledged survives a crash or a restart.

Layout of ``queue.directory`` (one directory per exporter, held with an exclusive ``flock``)::

    .lock                       flock'ed while a gateway uses the directory
    00000000000000000007.seg    append-only segment: header, then records
    00000000000000000007.ack    append-only: 8-byte ids acknowledged (or dispatched) in segment 7

Segment header: ``b"OAGWAL"`` + format version (2 bytes). Record framing (little endian)::

    magic  4 bytes  b"\\xa5OQR"   lets recovery find the next record after a damaged one
    length u32      length of body
    crc    u32      CRC-32 of the length field and body (zlib.crc32)
    body   id u64 | signal u8 (1 traces, 2 metrics, 3 logs) | items u32 | payload (the request bytes)

Ack file: u64 per entry; the id itself once the entry is done (delivered or given up), the id with
bit 63 set when it is handed to a sender (so a restart knows what may be delivered twice).

Durability (``fsync: true``, the default) — group commit: ``put`` appends the record to a pending
list and waits; one I/O job writes every pending record with one ``writev`` and one ``fdatasync``
(and fsyncs the directory when it created a segment), then all those ``put`` calls return and the
receivers answer the senders. Records written while a sync runs go in the next one, so throughput
grows with concurrency instead of paying one sync per request. With ``fsync: false`` records
reach the kernel before the ack (survives the process being killed, not a power loss).
Acknowledgement and dispatch marks are written without sync: losing one only means an entry may
be sent again (at-least-once), never lost. A segment is deleted once it is no longer the one being
written and every entry in it is acknowledged (deletion is not synced either: a deleted segment
that comes back after a power loss is resent, never lost).

Recovery (``open``): every segment is read and checked. A torn last record (the write of a request
that was never acknowledged) is ignored. Any other damage (bad magic, length or CRC) is skipped up to
the next valid record, logged once with the segment and offset, and counted
(``gateway_exporter_queue_corrupt_records_total``); the valid entries of a damaged segment are
copied into a fresh segment and the damaged file deleted, so the same damage is never met twice and
a bad file can never make the gateway crash-loop.

I/O runs in one dedicated thread (writes, syncs, deletions, in order) plus one for reads, so an
``fdatasync`` never stalls the event loop; see docs/exporters.md for the measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gateway.errors import RetryableError, ShuttingDownError
from gateway.exporters.queue import Entry, QueueIndex, Recovery
from gateway.log import get_logger
from gateway.validation import KIB, MIB
from proto_handlers import Signal

SEGMENT_HEADER: Final = b"OAGWAL\x00\x01"
RECORD_MAGIC: Final = b"\xa5OQR"
_RECORD_HEADER: Final = struct.Struct("<4sII")  # magic, body length, crc
_BODY_HEADER: Final = struct.Struct("<QBI")  # id, signal code, items
_LENGTH: Final = struct.Struct("<I")
_ACK: Final = struct.Struct("<Q")
DISPATCHED_FLAG: Final = 1 << 63
_SIGNAL_CODES: Final[dict[Signal, int]] = {"traces": 1, "metrics": 2, "logs": 3}
_CODE_SIGNALS: Final[dict[int, Signal]] = {code: signal for signal, code in _SIGNAL_CODES.items()}
_MAX_RECORD: Final = 1 << 31
_SEG_SUFFIX: Final = ".seg"
_ACK_SUFFIX: Final = ".ack"
DEFAULT_RESIDENT_BYTES: Final = 32 * MIB
"""Payloads kept in memory as well as on disk (sent without a read); past it they are read back."""


def segment_size_for(capacity: int) -> int:
    """Segments of an eighth of the queue, between 64 KiB and 16 MiB: small enough to free space
    soon after delivery, large enough that rotation (one extra sync) is rare."""
    return max(64 * KIB, min(16 * MIB, capacity // 8))


def frame_record(entry_id: int, signal: Signal, items: int, payload: bytes) -> bytes:
    """One record as written to a segment (exposed for tests and tools)."""
    body_header = _BODY_HEADER.pack(entry_id, _SIGNAL_CODES[signal], items)
    length = len(body_header) + len(payload)
    length_bytes = _LENGTH.pack(length)
    crc = zlib.crc32(payload, zlib.crc32(body_header, zlib.crc32(length_bytes)))
    return _RECORD_HEADER.pack(RECORD_MAGIC, length, crc) + body_header + payload


@dataclass(slots=True)
class _Record:
    id: int
    signal: Signal
    items: int
    offset: int  # of the record (magic) in the segment
    length: int  # of the whole record
    payload_size: int


@dataclass(slots=True)
class _Scan:
    records: list[_Record] = field(default_factory=list)
    corrupt: list[tuple[int, int]] = field(default_factory=list)  # (offset, bytes skipped)
    torn_tail: int | None = None  # offset of an incomplete last record


def _parse_record(data: bytes, pos: int) -> _Record | str:
    """The record at ``pos``, or why not: "torn" (cut short by the end of data) or "bad"."""
    size = len(data)
    if size - pos < _RECORD_HEADER.size:
        return "torn" if data[pos : pos + 4] == RECORD_MAGIC[: min(4, size - pos)] else "bad"
    magic, length, crc = _RECORD_HEADER.unpack_from(data, pos)
    if magic != RECORD_MAGIC or length < _BODY_HEADER.size or length > _MAX_RECORD:
        return "bad"
    body_start = pos + _RECORD_HEADER.size
    end = body_start + length
    if end > size:
        return "torn"
    body = memoryview(data)[body_start:end]
    if zlib.crc32(body, zlib.crc32(_LENGTH.pack(length))) != crc:
        return "bad"
    entry_id, code, items = _BODY_HEADER.unpack_from(data, body_start)
    signal = _CODE_SIGNALS.get(code)
    if signal is None:
        return "bad"
    return _Record(entry_id, signal, items, pos, end - pos, length - _BODY_HEADER.size)


def scan_segment(data: bytes) -> _Scan:
    """Every valid record of a segment's bytes, the damaged regions skipped, and a torn tail."""
    scan = _Scan()
    pos = len(SEGMENT_HEADER)
    if data[:pos] != SEGMENT_HEADER:
        pos = 0  # damaged header: look for records from the start
        found = _next_valid(data, 0)
        scan.corrupt.append((0, (found if found is not None else len(data))))
        if found is None:
            return scan
        pos = found
    size = len(data)
    while pos < size:
        parsed = _parse_record(data, pos)
        if isinstance(parsed, _Record):
            scan.records.append(parsed)
            pos += parsed.length
            continue
        following = _next_valid(data, pos + 1)
        if following is None:
            if parsed == "torn":
                scan.torn_tail = pos
            else:
                scan.corrupt.append((pos, size - pos))
            break
        scan.corrupt.append((pos, following - pos))
        pos = following
    return scan


def _next_valid(data: bytes, start: int) -> int | None:
    pos = data.find(RECORD_MAGIC, start)
    while pos >= 0:
        if isinstance(_parse_record(data, pos), _Record):
            return pos
        pos = data.find(RECORD_MAGIC, pos + 1)
    return None


def read_ack_file(data: bytes) -> tuple[set[int], set[int]]:
    """(acknowledged ids, dispatched ids) of an ack file; a torn last value is ignored."""
    acked: set[int] = set()
    dispatched: set[int] = set()
    usable = len(data) - len(data) % _ACK.size
    for (value,) in _ACK.iter_unpack(data[:usable]):
        if value & DISPATCHED_FLAG:
            dispatched.add(value & ~DISPATCHED_FLAG)
        else:
            acked.add(value)
    return acked, dispatched


@dataclass(slots=True)
class _Pending:
    id: int
    signal: Signal
    items: int
    payload: bytes
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Placement:
    segment: int
    offset: int
    length: int


@dataclass(slots=True)
class _CommitResult:
    placements: list[_Placement]
    sealed: list[int]


@dataclass(slots=True)
class _RecoveredEntry:
    id: int
    signal: Signal
    items: int
    segment: int
    offset: int
    length: int
    payload_size: int
    dispatched: bool


@dataclass(slots=True)
class _Recovered:
    entries: list[_RecoveredEntry]
    live_segments: list[int]  # sealed segments that still hold live entries
    corrupt: list[tuple[str, int, int]]  # (file, offset, bytes skipped)
    torn: list[tuple[str, int]]
    removed_segments: int
    next_id: int


class _SegmentState:
    __slots__ = ("live", "number", "sealed")

    def __init__(self, number: int, *, sealed: bool) -> None:
        self.number = number
        self.live = 0
        self.sealed = sealed


class _Files:
    """The file side of the queue; only ever used from the single I/O thread (reads excepted)."""

    def __init__(self, directory: Path, segment_bytes: int, fsync: bool) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.lock_fd: int | None = None
        self.active: int | None = None
        self.active_fd: int | None = None
        self.active_size = 0
        self.ack_fds: dict[int, int] = {}
        self.next_segment = 1

    def seg_path(self, number: int) -> Path:
        return self.directory / f"{number:020d}{_SEG_SUFFIX}"

    def ack_path(self, number: int) -> Path:
        return self.directory / f"{number:020d}{_ACK_SUFFIX}"

    # --- open and recover -----------------------------------------------------------------

    def lock(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OSError(f"queue directory {self.directory} is in use by another exporter or process") from None
        self.lock_fd = fd

    def recover(self) -> _Recovered:
        self.lock()
        numbers = sorted(int(p.name[: -len(_SEG_SUFFIX)]) for p in self.directory.glob(f"*{_SEG_SUFFIX}"))
        for ack in self.directory.glob(f"*{_ACK_SUFFIX}"):
            if int(ack.name[: -len(_ACK_SUFFIX)]) not in numbers:
                ack.unlink()
        self.next_segment = (numbers[-1] + 1) if numbers else 1
        recovered = _Recovered([], [], [], [], 0, 1)
        max_id = 0
        to_copy: list[tuple[int, list[_Record], bytes, set[int]]] = []
        for number in numbers:
            path = self.seg_path(number)
            data = path.read_bytes()
            scan = scan_segment(data)
            ack_path = self.ack_path(number)
            acked, dispatched = read_ack_file(ack_path.read_bytes()) if ack_path.exists() else (set(), set())
            for record in scan.records:
                max_id = max(max_id, record.id)
            live = [r for r in scan.records if r.id not in acked]
            if scan.torn_tail is not None:
                recovered.torn.append((path.name, scan.torn_tail))
            for offset, skipped in scan.corrupt:
                recovered.corrupt.append((path.name, offset, skipped))
            if scan.corrupt and live:
                to_copy.append((number, live, data, dispatched))
                continue
            if not live:
                self._delete(number)
                recovered.removed_segments += 1
                continue
            recovered.live_segments.append(number)
            for r in live:
                recovered.entries.append(
                    _RecoveredEntry(
                        r.id, r.signal, r.items, number, r.offset, r.length, r.payload_size, r.id in dispatched
                    )
                )
        recovered.next_id = max_id + 1
        self._open_segment()
        for number, live, data, dispatched in to_copy:
            # Copy the valid entries of a damaged segment into the active one, sync, then delete it.
            frames = [data[r.offset : r.offset + r.length] for r in live]
            sealed: list[int] = []
            placements = self._append(frames, sealed)
            self._sync_written()
            recovered.live_segments.extend(sealed)
            for r, placement in zip(live, placements, strict=True):
                recovered.entries.append(
                    _RecoveredEntry(
                        r.id,
                        r.signal,
                        r.items,
                        placement.segment,
                        placement.offset,
                        placement.length,
                        r.payload_size,
                        r.id in dispatched,
                    )
                )
            self._delete(number)
            recovered.removed_segments += 1
        recovered.entries.sort(key=lambda e: e.id)
        return recovered

    # --- writing -----------------------------------------------------------------------------

    def _open_segment(self) -> None:
        number = self.next_segment
        self.next_segment += 1
        fd = os.open(self.seg_path(number), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        os.write(fd, SEGMENT_HEADER)
        self.active, self.active_fd, self.active_size = number, fd, len(SEGMENT_HEADER)
        self._new_file = True

    _new_file = False

    def _seal(self) -> int:
        """Sync and close the active segment; returns its number."""
        assert self.active is not None and self.active_fd is not None
        if self.fsync:
            os.fdatasync(self.active_fd)
        os.close(self.active_fd)
        sealed = self.active
        self.active, self.active_fd = None, None
        return sealed

    def _append(self, frames: Sequence[bytes], sealed: list[int] | None = None) -> list[_Placement]:
        """Write frames to the active segment, rotating when it is full; no sync."""
        placements: list[_Placement] = []
        batch: list[bytes] = []
        batch_size = 0
        for frame in frames:
            assert self.active is not None
            if (
                self.active_size + batch_size > len(SEGMENT_HEADER)
                and self.active_size + batch_size + len(frame) > self.segment_bytes
            ):
                self._write(batch)
                batch, batch_size = [], 0
                done = self._seal()
                if sealed is not None:
                    sealed.append(done)
                self._open_segment()
            assert self.active is not None
            placements.append(_Placement(self.active, self.active_size + batch_size, len(frame)))
            batch.append(frame)
            batch_size += len(frame)
        self._write(batch)
        return placements

    def _write(self, frames: list[bytes]) -> None:
        if not frames:
            return
        assert self.active_fd is not None
        fd = self.active_fd
        before = self.active_size
        total = sum(len(f) for f in frames)
        try:
            written = os.writev(fd, frames)
            if written < total:  # a short write to a regular file: write the rest plainly
                rest = b"".join(frames)[written:]
                while rest:
                    n = os.write(fd, rest)
                    rest = rest[n:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)  # no half record for recovery to stumble on
            raise
        self.active_size = before + total

    def _sync_written(self) -> None:
        if not self.fsync:
            self._new_file = False
            return
        if self.active_fd is not None:
            os.fdatasync(self.active_fd)
        if self._new_file:
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._new_file = False

    def commit(
        self, records: list[tuple[int, Signal, int, bytes]], marks: list[tuple[int, int]], deletes: list[int]
    ) -> _CommitResult:
        """One group commit: records (written and synced), then marks, then deletions."""
        sealed: list[int] = []
        placements: list[_Placement] = []
        if records:
            frames = [frame_record(i, s, n, p) for i, s, n, p in records]
            placements = self._append(frames, sealed)
            self._sync_written()
        if marks:
            by_segment: dict[int, list[bytes]] = {}
            for segment, value in marks:
                by_segment.setdefault(segment, []).append(_ACK.pack(value))
            doomed = set(deletes)
            for segment, values in by_segment.items():
                if segment in doomed:
                    continue
                fd = self.ack_fds.get(segment)
                if fd is None:
                    fd = os.open(self.ack_path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                    self.ack_fds[segment] = fd
                os.write(fd, b"".join(values))
        for segment in deletes:
            self._delete(segment)
        return _CommitResult(placements, sealed)

    def _delete(self, number: int) -> None:
        fd = self.ack_fds.pop(number, None)
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self.seg_path(number).unlink()
        with contextlib.suppress(FileNotFoundError):
            self.ack_path(number).unlink()

    def close(self) -> None:
        if self.active_fd is not None:
            with contextlib.suppress(OSError):
                if self.fsync:
                    os.fdatasync(self.active_fd)
            os.close(self.active_fd)
            self.active_fd = None
        for fd in self.ack_fds.values():
            os.close(fd)
        self.ack_fds.clear()
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # releases the flock
            self.lock_fd = None

    # --- reading (reader thread) ------------------------------------------------------------

    def read(self, places: Sequence[tuple[int, int, int]]) -> list[bytes | None]:
        """Payloads at (segment, record offset, record length), checked again; None if damaged."""
        out: list[bytes | None] = []
        fds: dict[int, int] = {}
        try:
            for segment, offset, length in places:
                fd = fds.get(segment)
                if fd is None:
                    fd = fds[segment] = os.open(self.seg_path(segment), os.O_RDONLY)
                data = os.pread(fd, length, offset)
                parsed = _parse_record(data, 0)
                if isinstance(parsed, _Record) and parsed.length == length:
                    out.append(data[length - parsed.payload_size :])
                else:
                    out.append(None)
        finally:
            for fd in fds.values():
                os.close(fd)
        return out


class DiskQueue:
    """The durable ExportQueue (see the module docstring for the format and the sync policy)."""

    def __init__(
        self,
        directory: str | Path,
        capacity: int,
        *,
        fsync: bool = True,
        segment_bytes: int | None = None,
        resident_bytes: int = DEFAULT_RESIDENT_BYTES,
        retry_after: float = 1.0,
        component: str = "exporter/queue",
    ) -> None:
        self.index = QueueIndex(capacity)
        self.directory = Path(directory)
        self._files = _Files(self.directory, segment_bytes or segment_size_for(capacity), fsync)
        self._resident_limit = resident_bytes
        self._resident = 0
        self._retry_after = retry_after
        self._log = get_logger(component)
        self._segments: dict[int, _SegmentState] = {}
        self._next_id = 1
        self._records: list[_Pending] = []
        self._marks: list[tuple[int, int]] = []
        self._mark_waiters: list[asyncio.Future[None]] = []
        self._deletes: list[int] = []
        self._work = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._io: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._closing = False
        self._write_failures = 0

    @property
    def durable(self) -> bool:
        return True

    async def open(self) -> Recovery:
        """Lock the directory, recover what a previous run left, and start the committer."""
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"queue-io-{self.directory.name}")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix=f"queue-read-{self.directory.name}")
        loop = asyncio.get_running_loop()
        try:
            recovered = await loop.run_in_executor(self._io, self._files.recover)
        except BaseException:
            await self._stop_threads()
            raise
        self._next_id = recovered.next_id
        assert self._files.active is not None
        for number in recovered.live_segments:
            self._segments[number] = _SegmentState(number, sealed=True)
        self._segments[self._files.active] = _SegmentState(self._files.active, sealed=False)
        items: dict[Signal, int] = {}
        redelivered: dict[Signal, int] = {}
        total = 0
        for r in recovered.entries:
            state = self._segments.get(r.segment)
            if state is None:  # copied into the active segment during recovery
                state = self._segments[r.segment] = _SegmentState(r.segment, sealed=False)
            state.live += 1
            self.index.size += r.payload_size
            total += r.payload_size
            entry = Entry(
                r.id, r.signal, r.items, r.payload_size, None, segment=r.segment, offset=r.offset, length=r.length
            )
            self.index.push(entry)
            items[r.signal] = items.get(r.signal, 0) + r.items
            if r.dispatched:
                redelivered[r.signal] = redelivered.get(r.signal, 0) + r.items
        for name, offset in recovered.torn:
            self._log.info("queue_torn_record_ignored", segment=name, offset=offset)
        for name, offset, skipped in recovered.corrupt:
            self._log.warning("queue_corrupt_record_skipped", segment=name, offset=offset, skipped_bytes=skipped)
        self._committer = asyncio.create_task(self._commit_loop(), name=f"queue-commit-{self.directory.name}")
        return Recovery(
            entries=len(recovered.entries),
            bytes=total,
            items=items,
            redelivered=redelivered,
            corrupt_records=len(recovered.corrupt),
        )

    async def put(self, signal: Signal, items: int, payload: bytes) -> None:
        """Return once the record is written (and synced, with ``fsync``); then it is queued."""
        if self._closing:
            raise ShuttingDownError("the export queue is closing", retry_after=1.0)
        self.index.reserve(len(payload), self._retry_after)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._records.append(_Pending(self._next_id, signal, items, payload, future))
        self._next_id += 1
        self._work.set()
        try:
            await asyncio.shield(future)
        except OSError as exc:
            raise RetryableError(f"export queue write failed: {exc.strerror or exc}", retry_after=1.0) from exc

    async def payloads(self, entries: Sequence[Entry]) -> list[bytes | None]:
        missing = [e for e in entries if e.payload is None]
        if missing:
            assert self._reader is not None
            read = await asyncio.get_running_loop().run_in_executor(
                self._reader, self._files.read, [(e.segment, e.offset, e.length) for e in missing]
            )
            found = {e.id: data for e, data in zip(missing, read, strict=True)}
            return [e.payload if e.payload is not None else found[e.id] for e in entries]
        return [e.payload for e in entries]

    async def dispatched(self, entries: Sequence[Entry]) -> None:
        """Write the dispatch marks (no sync) before the entries go out: an entry that may have reached
        the backend is always known as such after a crash, so the redelivered count bounds duplicates."""
        if self._closing or self._committer is None:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks.extend((e.segment, e.id | DISPATCHED_FLAG) for e in entries)
        self._mark_waiters.append(future)
        self._work.set()
        await asyncio.shield(future)

    def ack(self, entries: Sequence[Entry]) -> None:
        self.index.settle(entries)
        for entry in entries:
            if entry.payload is not None:
                self._resident -= entry.size
                entry.payload = None
            state = self._segments.get(entry.segment)
            if state is None:  # already deleted: nothing left to mark
                continue
            state.live -= 1
            if state.sealed and state.live == 0:
                del self._segments[entry.segment]
                self._deletes.append(entry.segment)
            else:
                self._marks.append((entry.segment, entry.id))
        self._work.set()

    async def close(self) -> None:
        """Write what is pending (acks included), stop the threads, release the directory."""
        if self._io is None:
            return
        self._closing = True
        self._work.set()
        if self._committer is not None:
            await self._committer
            self._committer = None
        await self._stop_threads()

    async def _stop_threads(self) -> None:
        io, reader = self._io, self._reader
        self._io = self._reader = None
        loop = asyncio.get_running_loop()
        if io is not None:
            await loop.run_in_executor(io, self._files.close)
            io.shutdown(wait=True)
        if reader is not None:
            reader.shutdown(wait=True)

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not (self._records or self._marks or self._deletes):
                if self._closing:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            records, self._records = self._records, []
            marks, self._marks = self._marks, []
            waiters, self._mark_waiters = self._mark_waiters, []
            deletes, self._deletes = self._deletes, []
            job = [(p.id, p.signal, p.items, p.payload) for p in records]
            try:
                result = await loop.run_in_executor(self._io, self._files.commit, job, marks, deletes)
            except OSError as exc:
                self._fail(records, exc)
                continue
            finally:
                for waiter in waiters:  # marks are best effort: a failed write only loses a duplicate count
                    if not waiter.done():
                        waiter.set_result(None)
            self._apply(records, result)

    def _apply(self, records: list[_Pending], result: _CommitResult) -> None:
        for pending, place in zip(records, result.placements, strict=True):
            state = self._segments.get(place.segment)
            if state is None:
                state = self._segments[place.segment] = _SegmentState(place.segment, sealed=False)
            state.live += 1
            payload: bytes | None = None
            if self._resident + len(pending.payload) <= self._resident_limit:
                payload = pending.payload
                self._resident += len(payload)
            entry = Entry(
                pending.id,
                pending.signal,
                pending.items,
                len(pending.payload),
                payload,
                segment=place.segment,
                offset=place.offset,
                length=place.length,
            )
            self.index.push(entry)
            if not pending.future.done():
                pending.future.set_result(None)
        for number in result.sealed:
            state = self._segments.get(number)
            if state is None:
                continue
            state.sealed = True
            if state.live == 0:
                del self._segments[number]
                self._deletes.append(number)
                self._work.set()

    def _fail(self, records: list[_Pending], exc: OSError) -> None:
        self._write_failures += 1
        if self._write_failures == 1 or self._write_failures % 1000 == 0:
            self._log.error("queue_write_failed", error=str(exc), failures=self._write_failures)
        for pending in records:
            self.index.release(len(pending.payload))
            if not pending.future.done():
                pending.future.set_exception(exc)
                pending.future.exception()  # retrieved here too: a putter that went away must not leave it unread


def describe(queue: Any) -> str:
    """``memory`` or the directory, for the exporter's start log line."""
    return str(queue.directory) if isinstance(queue, DiskQueue) else "memory"
