"""``python -m benchmarks.ingest --scenario soak``: the gateway for minutes against a flapping backend.

Open-loop load at half of ``--rate`` (spans/s) over OTLP/gRPC, in requests of 512 GenAI spans, into
``gateway-full`` pinned to its core, forwarding to a rotel sink (blackhole exporter) that is stopped
for ``DOWN_S`` seconds every ``FLAP_PERIOD_S`` and restarted on the same ports. Every ``SAMPLE_S``
seconds: the gateway's RSS, its open file descriptors (``/proc/<pid>/fd``), its exporter queue
(``gateway_exporter_queue_size_bytes``) and its accepted / sent span counters. What to look for:
RSS and fds flat over time (no leak per outage), the queue back near zero after each outage.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import procstat
from benchmarks.loadgen import LoadSpec
from benchmarks.measure import ACCEPTED, MIB, SENT, scrape_sums
from benchmarks.targets import (
    TARGETS,
    CorePlan,
    GatewayCaps,
    _start_rotel,
    _stop,
    _wait_listening,
    free_port,
    start_target,
)

QUEUE = "gateway_exporter_queue_size_bytes"
REFUSED = "gateway_receiver_refused_spans_total"
TARGET = "gateway-full"
BATCH = 512
FLAP_PERIOD_S = 30.0
DOWN_S = 10.0
SAMPLE_S = 5.0
_REPO = Path(__file__).resolve().parent.parent


@dataclass(slots=True)
class Sample:
    t_s: float
    sink_up: bool
    rss_mib: float
    fds: int
    queue_mib: float
    accepted: int
    sent: int
    refused: int


@dataclass(slots=True)
class SoakResult:
    rate_spans_per_s: float
    minutes: float
    samples: list[Sample] = field(default_factory=list)
    flaps: int = 0
    peak_rss_mib: float = 0.0
    load: dict[str, object] = field(default_factory=dict)
    status: str = "ok"


class FlappingSink:
    """A rotel sink on fixed loopback ports, stopped for ``down_s`` every ``period_s`` and restarted."""

    def __init__(self, workdir: Path, cpus: frozenset[int], period_s: float, down_s: float) -> None:
        self._workdir, self._cpus, self._period, self._down = workdir, cpus, period_s, down_s
        self._ports = (free_port(), free_port())
        self.address = f"127.0.0.1:{self._ports[0]}"
        self._process: subprocess.Popen[bytes] | None = None
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flapping-sink", daemon=True)
        self.up = False
        self.flaps = 0

    def _start(self) -> None:
        self._process = _start_rotel(self._workdir, *self._ports, ["--exporter", "blackhole"], self._cpus)
        _wait_listening(self._process, list(self._ports), "flapping rotel sink")
        self.up = True

    def _halt(self) -> None:
        self.up = False
        if self._process is not None:
            _stop(self._process)
            self._process = None

    def _run(self) -> None:
        while not self._stop_event.wait(self._period - self._down):
            self._halt()
            self.flaps += 1
            if self._stop_event.wait(self._down):
                return
            self._start()

    def __enter__(self) -> FlappingSink:
        self._start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self._thread.join(60)
        self._halt()


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def run_soak(
    *, rate_spans_per_s: float, minutes: float, plan: CorePlan, caps: GatewayCaps, workdir: Path
) -> SoakResult:
    """Bounded: the load generator stops by itself after ``minutes``; a watchdog kills it if it hangs."""
    result = SoakResult(rate_spans_per_s, minutes)
    duration_s = minutes * 60.0
    with FlappingSink(workdir / "flapping-sink", plan.load, FLAP_PERIOD_S, DOWN_S) as sink:
        target = start_target(TARGETS[TARGET], workdir, plan.target, sink.address, caps)
        try:
            load = LoadSpec(
                transport="grpc",
                address=target.grpc_address,
                batch_size=BATCH,
                concurrency=64,
                warmup_s=0.0,
                duration_s=duration_s,
                rate_rps=0.5 * rate_spans_per_s / BATCH,
            )
            out_path, err_path = workdir / "soak-loadgen.out", workdir / "soak-loadgen.err"
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                process = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.loadgen", load.to_json()],
                    stdout=out,
                    stderr=err,
                    cwd=_REPO,
                    preexec_fn=lambda: os.sched_setaffinity(0, plan.load),
                )
            watchdog = threading.Timer(duration_s + load.drain_s + 60.0, process.kill)
            watchdog.start()
            started = time.monotonic()
            try:
                while process.poll() is None:
                    result.samples.append(_sample(target.pid, target.metrics_url, sink.up, time.monotonic() - started))
                    print(_row(result.samples[-1]), file=sys.stderr, flush=True)
                    deadline = time.monotonic() + SAMPLE_S
                    while process.poll() is None and time.monotonic() < deadline:
                        time.sleep(0.2)
                result.samples.append(_sample(target.pid, target.metrics_url, sink.up, time.monotonic() - started))
            finally:
                watchdog.cancel()
                if process.poll() is None:
                    process.kill()
                process.wait()
            result.peak_rss_mib = procstat.peak_rss_bytes(target.pid) / MIB
            result.flaps = sink.flaps
            for line in out_path.read_text(encoding="utf-8").splitlines():
                event = json.loads(line)
                if event.get("event") == "done":
                    result.load = event["summary"]
            if not result.load:
                result.status = "failed: load generator: " + err_path.read_text(errors="replace").strip()[-300:]
        finally:
            code = target.stop()
            if code not in (0, None) and result.status == "ok":
                result.status = f"failed: gateway exited {code}"
    return result


def _sample(pid: int, metrics_url: str | None, sink_up: bool, t_s: float) -> Sample:
    sums = dict.fromkeys((QUEUE, ACCEPTED, SENT, REFUSED), -1.0)
    if metrics_url is not None:
        with contextlib.suppress(OSError):
            sums = scrape_sums(metrics_url, (QUEUE, ACCEPTED, SENT, REFUSED))
    return Sample(
        t_s=t_s,
        sink_up=sink_up,
        rss_mib=procstat.rss_bytes(pid) / MIB,
        fds=_fds(pid),
        queue_mib=sums[QUEUE] / MIB if sums[QUEUE] >= 0 else -1.0,
        accepted=int(sums[ACCEPTED]),
        sent=int(sums[SENT]),
        refused=int(sums[REFUSED]),
    )


def _row(s: Sample) -> str:
    return (
        f"| {s.t_s:.0f} | {'up' if s.sink_up else 'down'} | {s.rss_mib:.0f} | {s.fds} | {s.queue_mib:.1f} "
        f"| {s.accepted:,} | {s.sent:,} | {s.refused:,} |"
    )


def soak_table(result: SoakResult) -> str:
    """The samples over time, then the min and max of each numeric column."""
    lines = [
        f"Load: {0.5 * result.rate_spans_per_s:,.0f} spans/s (half of --rate {result.rate_spans_per_s:,.0f}) over "
        f"OTLP/gRPC, {BATCH} GenAI spans per request, open loop, {result.minutes:g} min, into {TARGET} forwarding "
        f"to a rotel sink stopped for {DOWN_S:g} s every {FLAP_PERIOD_S:g} s ({result.flaps} outages). "
        f"Status: {result.status}. Peak RSS (VmHWM): {result.peak_rss_mib:.0f} MiB.",
    ]
    load = result.load
    if load:
        lines[0] += (
            f" Client: {load.get('total_ok_spans', 0):,} spans acknowledged, {load.get('total_failed_spans', 0):,} "
            f"refused or failed, errors {load.get('errors', {})}."
        )
    lines += [
        "",
        "| t s | sink | RSS MiB | open fds | queue MiB | accepted spans | sent spans | refused spans |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_row(s) for s in result.samples]
    if result.samples:
        columns = {
            "RSS MiB": [s.rss_mib for s in result.samples],
            "open fds": [float(s.fds) for s in result.samples],
            "queue MiB": [s.queue_mib for s in result.samples],
        }
        lines += ["", "| column | min | max |", "|---|---:|---:|"]
        lines += [f"| {name} | {min(values):.1f} | {max(values):.1f} |" for name, values in columns.items()]
    return "\n".join(lines)
