"""The load generator: a separate process that sends pre-serialized OTLP requests for a fixed time.

Run as ``python -m benchmarks.loadgen '<LoadSpec as JSON>'``. It is its own process (pinned by the
parent to the core that is *not* under test) so that its CPU never counts against the target, and
so that the target sees real sockets, as in production.

Two modes:

* closed loop (``rate_rps`` unset): ``concurrency`` calls in flight at all times, each one sent as
  soon as the previous one returns: this finds capacity;
* open loop (``rate_rps`` set): requests leave at a fixed rate whatever the answers, with at most
  ``concurrency`` in flight (a request that finds no free slot is counted as ``skipped``): this is
  how latency at a given load, and the Trace10kSPS scenario, are measured.

Protocol with the parent, one JSON object per stdout line: ``ready`` once connected, then
``window_start`` when the warm-up ends, ``window_end`` when the measured window ends, then
``done`` with the summary. The parent samples the target's CPU counters on the two window events.
The run always stops by itself: warm-up + duration, plus at most ``drain_s`` to let calls finish.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import cycle
from typing import Any, Literal

from benchmarks.workload import LOAD_CACHE_DIR, Workload, prepare

Transport = Literal["grpc", "http"]
TRACE_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_MAX_MESSAGE = 64 * 1024 * 1024
_CALL_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Everything one load-generator run needs; travels to the child process as JSON."""

    transport: Transport
    address: str  # host:port of the receiver under test
    workload: Workload = "genai"
    batch_size: int = 512
    concurrency: int = 8
    warmup_s: float = 2.0
    duration_s: float = 6.0
    rate_rps: float | None = None  # requests per second; None = closed loop (as fast as answered)
    pool: int | None = None  # requests in the load's pool; None: workload.default_pool
    drain_s: float = 10.0
    # gRPC: channels (TCP connections) the calls are spread over; one long-lived connection sticks
    # to one process of a ``workers: N`` gateway (HTTP already uses up to ``concurrency`` connections).
    channels: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> LoadSpec:
        return LoadSpec(**json.loads(text))


@dataclass(slots=True)
class LoadSummary:
    """What the client saw. ``window_*`` counts only calls that completed inside the window."""

    window_calls: int = 0
    window_spans: int = 0
    window_failed_calls: int = 0
    window_seconds: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    total_ok_spans: int = 0
    total_failed_spans: int = 0
    skipped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    request_bytes: float = 0.0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100.0 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


Sender = Callable[[bytes], Awaitable[str | None]]  # returns None on success, else an error code


class _Recorder:
    """Counts and latencies; a call belongs to the window if it *completes* inside it."""

    def __init__(self, spans_per_request: int) -> None:
        self.spans_per_request = spans_per_request
        self.window_open = False
        self.latencies: list[float] = []
        self.window_failed = 0
        self.total_ok = 0
        self.total_failed = 0
        self.errors: Counter[str] = Counter()

    def record(self, started: float, error: str | None) -> None:
        if error is None:
            self.total_ok += 1
            if self.window_open:
                self.latencies.append(time.perf_counter() - started)
        else:
            self.total_failed += 1
            self.errors[error] += 1
            if self.window_open:
                self.window_failed += 1


async def _grpc_sender(address: str, channels: int = 1) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    import grpc

    options = [("grpc.max_send_message_length", _MAX_MESSAGE), ("grpc.max_receive_message_length", _MAX_MESSAGE)]
    if channels > 1:  # otherwise channels to one address share one subchannel, i.e. one connection
        options.append(("grpc.use_local_subchannel_pool", 1))
    opened = [grpc.aio.insecure_channel(address, options=options) for _ in range(channels)]
    await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in opened)), timeout=10.0)
    # No serializers: the request is the bytes we pre-serialized, the answer stays bytes.
    exports = [channel.unary_unary(TRACE_EXPORT_METHOD) for channel in opened]
    # Each call goes to the channel with the fewest calls in flight, as a sender with one consumer per
    # connection does: round robin would hold every connection to the pace of the slowest worker.
    in_flight = [0] * len(exports)

    async def send(request: bytes) -> str | None:
        index = in_flight.index(min(in_flight))
        in_flight[index] += 1
        try:
            await exports[index](request, timeout=_CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            return f"grpc_{exc.code().name}"
        finally:
            in_flight[index] -= 1
        return None

    async def close() -> None:
        await asyncio.gather(*(channel.close() for channel in opened))

    return send, close


async def _http_sender(address: str, concurrency: int) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=_CALL_TIMEOUT_S),
    )
    url = f"http://{address}/v1/traces"
    headers = {"Content-Type": "application/x-protobuf"}

    async def send(request: bytes) -> str | None:
        try:
            async with session.post(url, data=request, headers=headers) as response:
                await response.read()
                return None if response.status == 200 else f"http_{response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"http_{type(exc).__name__}"

    return send, session.close


async def run(spec: LoadSpec) -> LoadSummary:
    """Send load as ``spec`` says; emits the protocol lines and returns the summary."""
    load = prepare(spec.workload, spec.batch_size, pool=spec.pool, cache_dir=LOAD_CACHE_DIR)
    requests: Iterator[bytes] = cycle(load.requests)
    if spec.transport == "grpc":
        send, close = await _grpc_sender(spec.address, spec.channels)
    else:
        send, close = await _http_sender(spec.address, spec.concurrency)
    recorder = _Recorder(load.spans_per_request)
    _emit("ready", request_bytes=load.mean_request_bytes)

    loop = asyncio.get_running_loop()
    started_at = loop.time()
    window_start_at = started_at + spec.warmup_s
    stop_at = window_start_at + spec.duration_s
    window_bounds: list[float] = []

    async def window_clock() -> None:
        await asyncio.sleep(max(0.0, window_start_at - loop.time()))
        recorder.window_open = True
        window_bounds.append(time.perf_counter())
        _emit("window_start")
        await asyncio.sleep(max(0.0, stop_at - loop.time()))
        recorder.window_open = False
        window_bounds.append(time.perf_counter())
        _emit("window_end")

    async def one_call(request: bytes) -> None:
        started = time.perf_counter()
        error = await send(request)
        recorder.record(started, error)
        if error is not None:
            await asyncio.sleep(0.01)  # a refusing target must not turn the client into a busy loop

    skipped = 0
    clock = asyncio.create_task(window_clock())
    if spec.rate_rps is None:

        async def worker() -> None:
            while loop.time() < stop_at:
                await one_call(next(requests))

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    else:
        interval = 1.0 / spec.rate_rps
        in_flight: set[asyncio.Task[None]] = set()
        due = loop.time()
        while due < stop_at:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) < spec.concurrency:
                task = asyncio.create_task(one_call(next(requests)))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            else:
                skipped += 1
            due += interval
        if in_flight:
            await asyncio.wait(in_flight, timeout=spec.drain_s)
    await clock
    await close()

    latencies = sorted(recorder.latencies)
    window_seconds = window_bounds[1] - window_bounds[0] if len(window_bounds) == 2 else 0.0
    return LoadSummary(
        window_calls=len(latencies),
        window_spans=len(latencies) * load.spans_per_request,
        window_failed_calls=recorder.window_failed,
        window_seconds=window_seconds,
        latency_ms={
            "p50": percentile(latencies, 50) * 1000,
            "p90": percentile(latencies, 90) * 1000,
            "p99": percentile(latencies, 99) * 1000,
            "max": (latencies[-1] * 1000) if latencies else 0.0,
        },
        total_ok_spans=recorder.total_ok * load.spans_per_request,
        total_failed_spans=recorder.total_failed * load.spans_per_request,
        skipped=skipped,
        errors=dict(recorder.errors),
        request_bytes=load.mean_request_bytes,
    )


def main(argv: list[str]) -> int:
    spec = LoadSpec.from_json(argv[0])
    summary = asyncio.run(run(spec))
    _emit("done", summary=asdict(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
