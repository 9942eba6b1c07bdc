"""``python -m benchmarks.export_queue``: what the export queues cost on the ingest path.

For each queue (memory; disk with ``fsync: true`` and ``false``) and each number of concurrent
senders, ``put`` is called as receivers call it (each put awaits its own acknowledgement) for a
fixed time, while a ticker task measures how late the event loop runs a 1 ms timer (the stall other
requests would see). The disk queue runs twice: as shipped (writes and ``fdatasync`` in its I/O
thread, group commit) and ``inline`` (the same commit function called on the event loop), to decide
whether the thread hop pays for itself. Results go to stdout as a table; see docs/exporters.md.
Run it from a directory on the disk the queue will use (temporary directories are made in ``.``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.exporters.disk_queue import DiskQueue
from gateway.exporters.memory_queue import MemoryQueue
from gateway.exporters.queue import Entry


class InlineDiskQueue(DiskQueue):
    """The shipped DiskQueue with its commit run on the event loop instead of the I/O thread."""

    async def _commit_loop(self) -> None:
        while True:
            if not (self._records or self._marks or self._deletes):
                if self._closing:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            records, self._records = self._records, []
            marks, self._marks = self._marks, []
            deletes, self._deletes = self._deletes, []
            job = [(p.id, p.signal, p.items, p.payload) for p in records]
            result = self._files.commit(job, marks, deletes)
            self._apply(records, result)
            await asyncio.sleep(0)  # let the acknowledged puts run before the next commit


async def _ticker(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - began - 0.001)


async def _drain(queue: Any, stop: asyncio.Event) -> None:
    """Acknowledge entries as they come (as a fast backend would), keeping the queue from filling."""
    index = queue.index
    while not stop.is_set():
        taken: list[Entry] = []
        for signal in ("traces",):
            while index.pending[signal]:
                taken.extend(index.take(signal, 10**9, 10**12))
        if taken:
            queue.ack(taken)
        index.changed.clear()
        try:
            async with asyncio.timeout(0.05):
                await index.changed.wait()
        except TimeoutError:
            pass


async def run(kind: str, concurrency: int, payload: bytes, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=".") as directory:
        queue: Any
        if kind == "memory":
            queue = MemoryQueue(1 << 30)
        else:
            cls = InlineDiskQueue if kind.endswith("inline") else DiskQueue
            queue = cls(Path(directory), 1 << 30, fsync="nofsync" not in kind)
        await queue.open()
        stop = asyncio.Event()
        lags: list[float] = []
        count = 0
        latencies: list[float] = []

        async def sender() -> None:
            nonlocal count
            while not stop.is_set():
                began = time.perf_counter()
                await queue.put("traces", 10, payload)
                latencies.append(time.perf_counter() - began)
                count += 1
                await asyncio.sleep(0)  # a receiver awaits its socket between requests

        tasks = [asyncio.create_task(sender()) for _ in range(concurrency)]
        ticker = asyncio.create_task(_ticker(lags, stop))
        drain = asyncio.create_task(_drain(queue, stop))
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks, ticker, drain)
        await queue.close()
    lags.sort()
    latencies.sort()
    return {
        "puts_per_s": count / seconds,
        "mib_per_s": count * len(payload) / seconds / (1 << 20),
        "p50_ack_ms": statistics.median(latencies) * 1e3,
        "p99_ack_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
        "loop_lag_p99_ms": lags[int(len(lags) * 0.99) - 1] * 1e3 if lags else 0.0,
        "loop_lag_max_ms": lags[-1] * 1e3 if lags else 0.0,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--sizes", default="2048,65536")
    parser.add_argument("--concurrency", default="1,16,128")
    parser.add_argument("--kinds", default="memory,disk,disk-inline,disk-nofsync,disk-nofsync-inline")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median run is shown")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    print(
        f"{'queue':<20} {'size':>6} {'conc':>5} {'puts/s':>9} {'MiB/s':>7} "
        f"{'ack p50 ms':>10} {'ack p99 ms':>10} {'lag p99 ms':>10} {'lag max ms':>10}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        payload = bytes(range(256)) * (size // 256)
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            for kind in kinds:
                runs = [await run(kind, concurrency, payload, args.seconds) for _ in range(args.repeat)]
                r = sorted(runs, key=lambda x: x["puts_per_s"])[len(runs) // 2]
                print(
                    f"{kind:<20} {size:>6} {concurrency:>5} {r['puts_per_s']:>9.0f} {r['mib_per_s']:>7.1f} "
                    f"{r['p50_ack_ms']:>10.2f} {r['p99_ack_ms']:>10.2f} {r['loop_lag_p99_ms']:>10.2f} "
                    f"{r['loop_lag_max_ms']:>10.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    asyncio.run(main())
