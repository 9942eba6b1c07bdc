"""One measurement: start a target, drive it with the load generator, read its CPU and memory.

The numbers that matter are taken around the measured window only (after warm-up):
``spans_per_s`` is what the client got acknowledged, ``spans_per_cpu_s`` divides those spans by the
CPU seconds the target's whole process tree used in the same window, which stays meaningful when
the target is not saturated or the machine is shared. Peak RSS is the kernel's high-water mark
(``VmHWM``) over the target's life, so it includes start-up and warm-up.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import procstat
from benchmarks.loadgen import LoadSpec, Transport
from benchmarks.targets import CorePlan, GatewayCaps, RunningTarget, TargetSpec, start_target
from benchmarks.workload import Workload

_REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


@dataclass(slots=True)
class Measurement:
    """One row of the report; ``status`` is ``ok``, ``pending: ...`` or ``failed: ...``."""

    target: str
    transport: str
    batch_size: int
    workload: str
    mode: str  # "max" (closed loop) or "rate" (open loop at rate_rps)
    concurrency: int
    rate_rps: float | None = None
    status: str = "ok"
    window_s: float = 0.0
    spans_per_s: float = 0.0
    cpu_seconds: float = 0.0
    cpu_util: float = 0.0  # CPU seconds per wall second, 1.0 = one core
    spans_per_cpu_s: float = 0.0
    peak_rss_mib: float = 0.0
    mean_rss_mib: float = 0.0
    max_rss_mib: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    failed_calls: int = 0
    skipped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    sent_ok_spans: int = 0
    target_counted_spans: int | None = None
    backlog_spans: int | None = None  # forwarding gateway: accepted but not yet sent at window end
    forwarded_spans_per_s: float | None = None  # forwarding gateway: spans its exporter sent, in the window
    request_bytes: float = 0.0
    profile: str | None = None
    # Latency rows only: /metrics fetched every this many seconds during the window, as Prometheus
    # would, and what those scrapes cost (the body is the whole exposition).
    scrape_every_s: float | None = None
    scrapes: int = 0
    scrape_mib: float = 0.0
    scrape_max_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Measurement:
        return Measurement(**data)


class _Scraper:
    """Fetches the whole /metrics every ``every_s`` seconds during the window, like a Prometheus."""

    def __init__(self, url: str, every_s: float) -> None:
        self._url = url
        self._every_s = every_s
        self._stop = threading.Event()
        self.durations: list[float] = []
        self.sizes: list[int] = []
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            started = time.monotonic()
            with contextlib.suppress(OSError), urllib.request.urlopen(self._url, timeout=30) as response:
                self.sizes.append(len(response.read()))
                self.durations.append(time.monotonic() - started)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _RssSampler:
    """Samples the target tree's RSS twice a second during the window (testbed-style mean/max)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self.samples: list[int] = []
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append(procstat.rss_bytes(self._pid))

    def start(self) -> None:
        self.samples.append(procstat.rss_bytes(self._pid))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(procstat.rss_bytes(self._pid))


def scrape_sums(metrics_url: str, names: tuple[str, ...]) -> dict[str, float]:
    """Sum of every sample of each of ``names`` on the gateway's /metrics (all label sets).

    A line scan, not prometheus_client's parser: with thousands of derived series the full parse
    takes a CPU-second, which would land on a core the measurement is watching.
    """
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode("utf-8")
    totals = dict.fromkeys(names, 0.0)
    prefixes = tuple(names)
    for line in text.splitlines():
        if not line.startswith(prefixes):
            continue
        name_end = min(i for i in (line.find("{"), line.find(" ")) if i >= 0)
        name = line[:name_end]
        if name in totals:
            # ``name{labels} value`` or ``name value``; label values may hold spaces, the value never.
            after_labels = line[line.rindex("}") + 1 :] if "{" in line[: name_end + 1] else line[name_end:]
            totals[name] += float(after_labels.split()[0])
    return totals


ACCEPTED = "gateway_receiver_accepted_spans_total"
SENT = "gateway_exporter_sent_spans_total"


def _sent_spans(target: RunningTarget) -> dict[str, float] | None:
    """Accepted and forwarded span totals of a forwarding gateway; None for anything else."""
    if target.metrics_url is None or not target.spec.forward:
        return None
    try:
        return scrape_sums(target.metrics_url, (ACCEPTED, SENT))
    except OSError:
        return None


def _start_profiler(pid: int, duration_s: float, output: Path, cpus: frozenset[int]) -> subprocess.Popen[bytes] | None:
    """py-spy on the load core for the window, with native frames (grpc, upb) in the stacks.

    ``--native`` needs py-spy to pause the target for each sample, which slows it: the throughput
    of a profiled run is not reported, only where its time went.
    """
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return None
    command = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(duration_s))),
        "--rate",
        "100",
        "--native",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )


def measure(
    spec: TargetSpec,
    transport: Transport,
    batch_size: int,
    *,
    plan: CorePlan,
    workdir: Path,
    caps: GatewayCaps,
    sink_address: str | None,
    warmup_s: float,
    duration_s: float,
    concurrency: int,
    rate_rps: float | None = None,
    workload: Workload = "genai",
    profile_to: Path | None = None,
    channels: int = 1,
    scrape_every_s: float | None = None,
) -> Measurement:
    """Run one bounded measurement; never raises for a target problem, reports it in ``status``."""
    row = Measurement(
        target=spec.name,
        transport=transport,
        batch_size=batch_size,
        workload=workload,
        mode="max" if rate_rps is None else "rate",
        concurrency=concurrency,
        rate_rps=rate_rps,
        scrape_every_s=scrape_every_s,
    )
    if spec.uvloop and importlib.util.find_spec("uvloop") is None:
        row.status = "skipped: uvloop not installed (pip install -e '.[bench]')"
        return row
    pending = caps.pending(spec)
    try:
        target = start_target(spec, workdir, plan.target, sink_address, caps)
    except (RuntimeError, TimeoutError, OSError) as exc:
        row.status = f"failed: {exc}"[:300]
        return row
    try:
        _drive(target, row, plan, warmup_s, duration_s, profile_to, channels)
        if pending is not None and row.status == "ok":
            row.status = pending
    finally:
        code = target.stop()
        # The Python targets (gateway, bare loop) exit 0 on SIGTERM; anything else is a failure.
        if not row.status.startswith("failed") and target.spec.kind != "rotel" and code not in (0, None):
            row.status = f"failed: {target.spec.kind} exited {code}: " + " | ".join(list(target.log_tail)[-3:])
    return row


def _drive(
    target: RunningTarget,
    row: Measurement,
    plan: CorePlan,
    warmup_s: float,
    duration_s: float,
    profile_to: Path | None,
    channels: int = 1,
) -> None:
    load = LoadSpec(
        transport=row.transport,  # type: ignore[arg-type]
        address=target.address(row.transport),
        workload=row.workload,  # type: ignore[arg-type]
        batch_size=row.batch_size,
        concurrency=row.concurrency,
        warmup_s=warmup_s,
        duration_s=duration_s,
        rate_rps=row.rate_rps,
        channels=channels,
    )
    cpus = plan.load
    stderr_path = target.workdir / "loadgen.stderr"
    with open(stderr_path, "wb") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.loadgen", load.to_json()],
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            cwd=_REPO,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        )
    # The load generator stops by itself; this only guards against a hang (e.g. a wedged target).
    watchdog = threading.Timer(warmup_s + duration_s + load.drain_s + 60.0, process.kill)
    watchdog.start()
    sampler = _RssSampler(target.pid)
    # A latency row (open loop) reads no counters inside its window: a scrape of a large exposition
    # would delay the very calls it measures. Only what ``scrape_every_s`` asks for is scraped then.
    count_forwarded = row.mode == "max"
    scraper = (
        _Scraper(target.metrics_url, row.scrape_every_s)
        if row.scrape_every_s is not None and target.metrics_url is not None
        else None
    )
    profiler: subprocess.Popen[bytes] | None = None
    cpu_start = cpu_end = None
    sent_start = sent_end = None
    wall_start = wall_end = 0.0
    summary: dict[str, Any] | None = None
    assert process.stdout is not None
    try:
        for raw in process.stdout:
            event = json.loads(raw)
            name = event["event"]
            if name == "window_start":
                # CPU first: a scrape of a saturated gateway can take a second, and must not shift
                # the CPU window against the load generator's window.
                cpu_start, wall_start = procstat.cpu_seconds(target.pid), time.monotonic()
                sent_start = _sent_spans(target) if count_forwarded else None
                sampler.start()
                if scraper is not None:
                    scraper.start()
                if profile_to is not None:
                    profiler = _start_profiler(target.pid, duration_s, profile_to, plan.load)
            elif name == "window_end":
                cpu_end, wall_end = procstat.cpu_seconds(target.pid), time.monotonic()
                sampler.stop()
                if scraper is not None:
                    scraper.stop()
                sent_end = _sent_spans(target) if count_forwarded else None
            elif name == "done":
                summary = event["summary"]
        process.wait(30)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        if profiler is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(duration_s + 30)
            if profiler.poll() is None:
                profiler.kill()
                profiler.wait()
    if summary is None or cpu_start is None or cpu_end is None:
        stderr = stderr_path.read_text(encoding="utf-8", errors="replace")
        row.status = f"failed: load generator: {stderr.strip()[-300:]}"
        return
    wall = wall_end - wall_start
    cpu = cpu_end.total - cpu_start.total
    row.window_s = summary["window_seconds"] or wall
    row.spans_per_s = summary["window_spans"] / row.window_s if row.window_s else 0.0
    row.cpu_seconds = cpu
    row.cpu_util = cpu / wall if wall else 0.0
    spans = summary["window_spans"]
    if sent_start is not None and sent_end is not None:
        # A forwarding gateway acknowledges once a batch is queued: count what it really sent on, so a
        # growing queue (a sink that cannot keep up) never inflates the figure.
        # What the exporter did not keep up with is the growth of its backlog (accepted - sent) over the
        # window. Both counters come from the same scrape, and a scrape of a saturated gateway can take
        # seconds (it waits for derivation, then yields between chunks): comparing the sent counter's
        # delta with the window's length instead would take that delay for a slow exporter.
        backlog_start = int(sent_start[ACCEPTED] - sent_start[SENT])
        row.backlog_spans = int(sent_end[ACCEPTED] - sent_end[SENT])
        behind = max(0, row.backlog_spans - backlog_start)
        spans = max(0, spans - behind)
        row.forwarded_spans_per_s = spans / row.window_s if row.window_s else 0.0
    row.spans_per_cpu_s = spans / cpu if cpu > 0 else 0.0
    row.peak_rss_mib = procstat.peak_rss_bytes(target.pid) / MIB
    row.mean_rss_mib = sum(sampler.samples) / len(sampler.samples) / MIB if sampler.samples else 0.0
    row.max_rss_mib = max(sampler.samples) / MIB if sampler.samples else 0.0
    row.p50_ms = summary["latency_ms"]["p50"]
    row.p99_ms = summary["latency_ms"]["p99"]
    row.failed_calls = summary["window_failed_calls"]
    row.skipped = summary["skipped"]
    row.errors = summary["errors"]
    row.sent_ok_spans = summary["total_ok_spans"]
    row.request_bytes = summary["request_bytes"]
    if scraper is not None and scraper.sizes:
        row.scrapes = len(scraper.sizes)
        row.scrape_mib = max(scraper.sizes) / MIB
        row.scrape_max_s = max(scraper.durations)
    if profile_to is not None and profile_to.exists():
        row.profile = str(profile_to)
    if target.metrics_url is not None:
        try:
            row.target_counted_spans = int(scrape_sums(target.metrics_url, (ACCEPTED,))[ACCEPTED])
        except OSError as exc:
            row.status = f"failed: cannot scrape the gateway: {exc}"
