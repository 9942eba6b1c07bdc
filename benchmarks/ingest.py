"""``python -m benchmarks.ingest``: the gateway against rotel, side by side, on the same load.

Scenarios:

* ``matrix`` (default): every target x transport (gRPC, HTTP) x batch size (1, 64, 512 spans per
  request), closed loop, then latency at 50 % of each target's measured capacity (open loop);
* ``trace10kSPS``: the collector testbed's fixed-rate scenario (10k spans/s in requests of 100
  tiny spans over OTLP/gRPC) for 60 s, CPU % and RSS next to the published collector and rotel.
* ``soak``: ``--minutes`` (default 10) at half of ``--rate`` against a backend that goes down every
  30 s, sampling RSS, open fds and the exporter queue; see ``benchmarks/soak.py``.
* ``scaling``: gateway-full with ``workers: 1`` and ``workers: N`` (one per allowed core, at least
  2), closed loop at 512 spans/request over several connections (the kernel balances connections,
  not requests), plus one gRPC row over a single connection to show that it sticks to one worker.

Each measurement starts a fresh target pinned to its own core, warms up, measures a fixed window
and stops; see ``benchmarks/measure.py``. Results go to ``benchmarks/RESULTS.md`` (generated
sections only), ``benchmarks/ingest.png`` and ``benchmarks/results-<scenario>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks import procstat, report
from benchmarks.loadgen import Transport
from benchmarks.measure import Measurement, measure
from benchmarks.profile import summarise
from benchmarks.soak import run_soak, soak_table
from benchmarks.targets import ROTEL_AGENT, TARGETS, CorePlan, GatewayCaps, TargetSpec, probe_gateway, rotel_sink
from benchmarks.workload import Workload

HERE = Path(__file__).resolve().parent
DEFAULT_TARGETS = (
    "rotel-forward",
    "rotel-blackhole",
    "gateway-full",
    "gateway-full-uvloop",
    "gateway-derive",
    "gateway-forward",
    # Calibration: issue 6's bare Python loop, the floor for any Python forwarder, measured in the same run.
    "python-bare-forward",
    "python-bare",
)
HALF_LOAD_WINDOW_S = 20.0
"""Latency rows measure at least this long: at ~30 calls/s a 6 s window held ~160 calls, so its p99
was the second-slowest call and moved by 2x between runs."""
HALF_LOAD_SCRAPE_EVERY_S = 2.5
"""A forwarding gateway's latency is measured twice: without scrapes, and with /metrics fetched this
often (a short Prometheus interval: eight scrapes in a 20 s window)."""
HALF_LOAD_TARGETS = ("rotel-forward", "gateway-full", "gateway-full-uvloop", "gateway-derive")
TRACE10K_TARGETS = ("rotel-forward", "gateway-full", "gateway-derive", "python-bare-forward")
# Closed-loop calls in flight: enough to keep a one-core target busy without hiding its latency.
CONCURRENCY = {1: 32, 64: 16, 512: 8}
OPEN_LOOP_MAX_IN_FLIGHT = 64


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("matrix", "trace10kSPS", "soak", "scaling"), default="matrix")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak: how long (default 10)")
    parser.add_argument(
        "--rate",
        type=float,
        default=13_800.0,
        help="soak: spans/s whose half is sent (default 13800, gateway-full's gRPC capacity at 512 spans/request)",
    )
    parser.add_argument("--targets", help=f"comma-separated subset of: {', '.join(TARGETS)}")
    parser.add_argument("--transports", default="grpc,http", help="comma-separated: grpc, http")
    parser.add_argument("--batch-sizes", default="1,64,512", help="spans per request, comma-separated")
    parser.add_argument("--warmup", type=float, help="seconds of load before the window (default 3; trace10kSPS 5)")
    parser.add_argument("--duration", type=float, help="seconds measured per row (default 6; trace10kSPS 60)")
    parser.add_argument("--no-half-load", action="store_true", help="skip latency at 50%% of capacity")
    parser.add_argument(
        "--profile",
        metavar="TARGET[:TRANSPORT[:BATCH]]",
        help="after the scenario, profile a target with py-spy (default transport grpc, batch 512)",
    )
    parser.add_argument("--output-dir", type=Path, default=HERE, help="where RESULTS.md, the PNG and JSON go")
    parser.add_argument("--no-write", action="store_true", help="print the tables only; write no files")
    return parser


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _describe(row: Measurement) -> str:
    return (
        f"{row.target:20} {row.transport:4} batch={row.batch_size:<4} {row.mode:4} "
        f"spans/s={row.spans_per_s:>10,.0f} cpu={row.cpu_util:4.2f} spans/cpu-s={row.spans_per_cpu_s:>10,.0f} "
        f"rss={row.peak_rss_mib:5.0f}MiB p50={row.p50_ms:6.1f}ms p99={row.p99_ms:6.1f}ms {row.status}"
        + (f" scrapes={row.scrapes}x{row.scrape_mib:.1f}MiB" if row.scrape_every_s is not None else "")
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Bench:
    """What every measurement of one command shares: the cores, the gateway's capabilities, the rotel
    sink, the working directory and the measurement window."""

    plan: CorePlan
    caps: GatewayCaps
    sink: str
    workdir: Path
    warmup_s: float
    duration_s: float

    def measure(
        self,
        spec: TargetSpec,
        transport: Transport,
        batch: int,
        *,
        concurrency: int,
        rate_rps: float | None = None,
        workload: Workload = "genai",
        scrape_every_s: float | None = None,
        channels: int = 1,
        profile_to: Path | None = None,
        plan: CorePlan | None = None,
        warmup_s: float | None = None,
        duration_s: float | None = None,
    ) -> Measurement:
        """One row in this run's conditions; ``plan``, ``warmup_s`` and ``duration_s`` override them."""
        return measure(
            spec,
            transport,
            batch,
            plan=plan or self.plan,
            workdir=self.workdir,
            caps=self.caps,
            sink_address=self.sink,
            warmup_s=self.warmup_s if warmup_s is None else warmup_s,
            duration_s=self.duration_s if duration_s is None else duration_s,
            concurrency=concurrency,
            rate_rps=rate_rps,
            workload=workload,
            scrape_every_s=scrape_every_s,
            channels=channels,
            profile_to=profile_to,
        )


def run_matrix(
    targets: Sequence[str], transports: Sequence[Transport], batch_sizes: Sequence[int], bench: Bench, half_load: bool
) -> list[Measurement]:
    """Capacity of every combination, interleaving targets so rotel and the gateway share conditions."""
    rows: list[Measurement] = []
    for transport in transports:
        for batch in batch_sizes:
            for name in targets:
                row = bench.measure(TARGETS[name], transport, batch, concurrency=CONCURRENCY.get(batch, 8))
                _log(_describe(row))
                rows.append(row)
    if half_load:
        rows += _half_load(rows, targets, bench)
    return rows


def _half_load(capacity: Sequence[Measurement], targets: Sequence[str], bench: Bench) -> list[Measurement]:
    """Latency at half of the measured capacity, for the largest batch size measured."""
    rows: list[Measurement] = []
    largest = max((r.batch_size for r in capacity), default=0)
    for base in capacity:
        if base.batch_size != largest or base.target not in HALF_LOAD_TARGETS or base.target not in targets:
            continue
        if base.spans_per_s <= 0:
            continue
        rate = 0.5 * base.spans_per_s / base.batch_size
        spec = TARGETS[base.target]
        # A forwarding gateway is measured again with a Prometheus scraping the whole exposition.
        scrapes = (None, HALF_LOAD_SCRAPE_EVERY_S) if spec.kind == "gateway" and spec.forward else (None,)
        for scrape_every_s in scrapes:
            row = bench.measure(
                spec,
                base.transport,  # type: ignore[arg-type]
                base.batch_size,
                concurrency=OPEN_LOOP_MAX_IN_FLIGHT,
                rate_rps=rate,
                scrape_every_s=scrape_every_s,
                duration_s=max(bench.duration_s, HALF_LOAD_WINDOW_S),
            )
            _log(_describe(row))
            rows.append(row)
    return rows


def run_trace10k(targets: Sequence[str], bench: Bench) -> list[Measurement]:
    """10,000 spans/s as 100 requests/s of 100 spans over OTLP/gRPC, as the testbed sends them."""
    rows = []
    for name in targets:
        row = bench.measure(
            TARGETS[name], "grpc", 100, concurrency=OPEN_LOOP_MAX_IN_FLIGHT, rate_rps=100.0, workload="trace10k"
        )
        _log(_describe(row))
        rows.append(row)
    return rows


SCALING_BATCH = 512
SCALING_CONCURRENCY = 16  # calls in flight: enough for two busy workers
SCALING_CHANNELS = 8  # gRPC connections (HTTP: up to SCALING_CONCURRENCY keep-alive connections)


def scaling_plans(plan: CorePlan) -> list[tuple[int, CorePlan]]:
    """(workers, cores) per row: 1 worker on the usual target core; N workers on N cores, which on a
    2-core machine includes the load generator's and the sink's core (said in the report)."""
    cpus = sorted(plan.target | plan.load)  # this process already moved itself to the load's cores
    widest = max(2, len(cpus))
    plans = [(1, plan)]
    plans.append((widest, CorePlan(frozenset(cpus[:widest]), plan.load)))
    return plans


def run_scaling(transports: Sequence[Transport], bench: Bench) -> list[tuple[int, int, Measurement]]:
    """gateway-full at 1 and N workers (rows: workers, connections, measurement), same load each."""
    rows: list[tuple[int, int, Measurement]] = []
    base = TARGETS["gateway-full"]
    for transport in transports:
        channels = SCALING_CHANNELS if transport == "grpc" else SCALING_CONCURRENCY
        runs = [(workers, cores, channels) for workers, cores in scaling_plans(bench.plan)]
        if transport == "grpc":
            runs.append((runs[-1][0], runs[-1][1], 1))  # one connection: the caveat, measured
        for workers, cores, connections in runs:
            spec = dataclasses.replace(base, name=f"gateway-full-w{workers}", workers=workers)
            row = bench.measure(
                spec,
                transport,
                SCALING_BATCH,
                plan=cores,
                concurrency=SCALING_CONCURRENCY,
                channels=connections if transport == "grpc" else 1,
            )
            _log(f"workers={workers} connections={connections} cores={sorted(cores.target)} " + _describe(row))
            rows.append((workers, connections, row))
    return rows


def scaling_table(rows: Sequence[tuple[int, int, Measurement]]) -> str:
    lines = [
        "| transport | workers | connections | spans/s | forwarded spans/s | gateway CPU (cores) "
        "| spans per CPU-second | speed-up vs 1 worker | p99 ms | peak RSS MiB (tree) | status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    single = {row.transport: row.spans_per_s for workers, _, row in rows if workers == 1}
    for workers, connections, row in rows:
        base = single.get(row.transport) or 0.0
        speedup = f"{row.spans_per_s / base:.2f}x" if base else "-"
        lines.append(
            f"| {row.transport} | {workers} | {connections} | {row.spans_per_s:,.0f} "
            f"| {row.forwarded_spans_per_s:,.0f} | {row.cpu_util:.2f} | {row.spans_per_cpu_s:,.0f} | {speedup} "
            f"| {row.p99_ms:.0f} "
            f"| {row.peak_rss_mib:.0f} | {row.status} |"
        )
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    from google.protobuf.internal import api_implementation  # type: ignore[import-untyped, unused-ignore]

    versions = {"python": platform.python_version(), "protobuf_backend": api_implementation.Type()}
    for package in ("grpcio", "protobuf", "aiohttp", "uvloop", "rotel"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    try:
        out = subprocess.run([str(ROTEL_AGENT), "--version"], capture_output=True, text=True, timeout=10, check=False)
        versions["rotel-agent"] = out.stdout.strip()
    except OSError:
        pass
    return versions


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _header(
    command: str,
    nproc: int,
    plan: CorePlan,
    caps: GatewayCaps,
    load_before: str,
    load_after: str,
    warmup_s: float,
    duration_s: float,
) -> str:
    machine = procstat.machine_description(nproc)
    versions = _versions()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"- **date**: {now}",
            f"- **command**: `{command}`",
            f"- **machine**: nproc={machine['nproc']}, CPU model: {machine['cpu_model']}, {machine['kernel']}",
            f"- **pinning**: process under test on CPU {sorted(plan.target)}, load generator and rotel sink on "
            f"CPU {sorted(plan.load)}",
            f"- **window**: {warmup_s:g} s warm-up, then {duration_s:g} s measured; a fresh target per row",
            f"- **load average** before/after: {load_before} / {load_after} (anything else running on the "
            "machine shows here; spans per CPU-second is robust to it, spans/s and latency less so)",
            "- **versions**: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
            f"- **gateway capabilities in this tree**: exporters {sorted(caps.exporter_types)}, "
            f"trace processors wired: {list(caps.trace_processors)}, switches: genai.enabled={caps.genai_switch}, "
            f"spanmetrics.enabled={caps.spanmetrics_switch}",
        ]
    )


def _ratios(rows: Sequence[Measurement]) -> str:
    lines = []
    for row in rows:
        if row.mode != "max" or not row.target.startswith("gateway-full"):
            continue
        base = report.baseline_for(row, rows)
        if base is None or not row.spans_per_cpu_s:
            continue
        lines.append(
            f"- {row.target} / rotel-forward, {row.transport}, {row.batch_size} spans/request: "
            f"**{row.spans_per_cpu_s / base.spans_per_cpu_s:.2f}x** spans per CPU-second"
            + (f" ({row.status})" if row.status != "ok" else "")
        )
    return "\n".join(lines)


def _profile(spec: str, bench: Bench, output_dir: Path | None) -> str:
    """Profile ``TARGET[:transport[:batch]]`` (default gRPC, 512 spans/request) under closed-loop load."""
    target, _, rest = spec.partition(":")
    transport_text, _, batch_text = rest.partition(":")
    transport: Transport = "http" if transport_text == "http" else "grpc"
    batch = int(batch_text) if batch_text else 512
    raw = bench.workdir / f"profile-{target}-{transport}-{batch}.raw"
    row = bench.measure(
        TARGETS[target], transport, batch, warmup_s=2.0, concurrency=CONCURRENCY.get(batch, 8), profile_to=raw
    )
    duration_s = bench.duration_s
    if row.profile is None:
        return f"profile of {spec} failed: {row.status}\n"
    text = (
        f"py-spy --native, {target}, OTLP/{transport}, {batch} spans/request, {duration_s:g} s under closed-loop load\n"
    )
    text += summarise(raw)
    if output_dir is not None:
        (output_dir / "profiles").mkdir(parents=True, exist_ok=True)
        (output_dir / "profiles" / f"{target}-{transport}-{batch}.txt").write_text(text, encoding="utf-8")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = " ".join(["python -m benchmarks.ingest", shlex.join(argv if argv is not None else sys.argv[1:])]).rstrip()
    plan = CorePlan.detect()
    nproc = len(os.sched_getaffinity(0))
    # This process reads /proc and /metrics while the target runs: keep it off the target's core.
    os.sched_setaffinity(0, plan.load)
    caps = probe_gateway()
    scenario: str = args.scenario
    default_targets = TRACE10K_TARGETS if scenario == "trace10kSPS" else DEFAULT_TARGETS
    targets = _csv(args.targets) if args.targets else list(default_targets)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        _log(f"unknown target(s) {unknown}; known: {', '.join(TARGETS)}")
        return 2
    duration_s: float = args.duration or (60.0 if scenario == "trace10kSPS" else 6.0)
    warmup_s: float = args.warmup if args.warmup is not None else (5.0 if scenario == "trace10kSPS" else 3.0)
    load_before = _loadavg()
    _log(f"cores: target {sorted(plan.target)}, load {sorted(plan.load)}; gateway: {caps}")
    if scenario == "soak":
        return _soak(args, command, nproc, plan, caps, load_before)
    with tempfile.TemporaryDirectory(prefix="otel-ai-bench-") as tmp, rotel_sink(Path(tmp), plan.load) as sink:
        bench = Bench(plan, caps, sink, Path(tmp), warmup_s, duration_s)
        if scenario == "matrix":
            wanted = _csv(args.transports)
            transports: list[Transport] = [t for t in ("grpc", "http") if t in wanted]
            batch_sizes = [int(b) for b in _csv(args.batch_sizes)]
            rows = run_matrix(targets, transports, batch_sizes, bench, half_load=not args.no_half_load)
        elif scenario == "scaling":
            wanted = _csv(args.transports)
            scaling = run_scaling([t for t in ("grpc", "http") if t in wanted], bench)
            rows = [row for _, _, row in scaling]
        else:
            rows = run_trace10k(targets, bench)
        profile_text = ""
        if args.profile:
            profiled = dataclasses.replace(bench, duration_s=min(duration_s, 10.0))
            profile_text = _profile(args.profile, profiled, None if args.no_write else args.output_dir)
    load_after = _loadavg()
    header = _header(command, nproc, plan, caps, load_before, load_after, warmup_s, duration_s)
    if scenario == "matrix":
        body = "\n\n".join(
            [
                header,
                "**Capacity** (closed loop; spans per CPU-second = acknowledged spans / CPU seconds of the target's "
                "process tree in the window; p50/p99 are export-call latencies at saturation):",
                report.matrix_table(rows),
                "**Ratio to rotel** (spans per CPU-second):",
                _ratios(rows) or "- no gateway-full row measured",
                f"**Latency at 50 % of capacity** (open loop at half of the rate measured above; each row "
                f"measures {max(duration_s, HALF_LOAD_WINDOW_S):g} s):",
                report.latency_table(rows),
            ]
        )
        sections = {"matrix": body}
    elif scenario == "scaling":
        cores = sorted(scaling_plans(plan)[-1][1].target)
        note = (
            f"1 worker runs on CPU {sorted(plan.target)} as in the matrix; {len(cores)} workers run on CPU {cores}, "
            f"which includes CPU {sorted(plan.load)} where the load generator and the rotel sink run: on a 2-core "
            "machine the second worker competes with them, so the speed-up is a lower bound. Gateway CPU and RSS "
            "are the whole process tree (supervisor + workers); spans per CPU-second counts forwarded spans."
        )
        sections = {"scaling": header + "\n- **cores**: " + note + "\n\n" + scaling_table(scaling)}
    else:
        sections = {"trace10ksps": header + "\n\n" + report.trace10k_table(rows)}
    print("\n\n".join(sections.values()))
    if profile_text:
        print("\n" + profile_text)
    if args.no_write:
        return 0
    output_dir: Path = args.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    report.update_results(output_dir / "RESULTS.md", sections)
    (output_dir / f"results-{scenario}.json").write_text(
        json.dumps({"command": command, "rows": [r.to_dict() for r in rows]}, indent=1) + "\n", encoding="utf-8"
    )
    if scenario == "matrix" and not report.chart(rows, output_dir / "ingest.png"):
        _log("matplotlib not installed (pip install -e '.[bench]'): no chart written")
    return 0


def _soak(
    args: argparse.Namespace, command: str, nproc: int, plan: CorePlan, caps: GatewayCaps, load_before: str
) -> int:
    with tempfile.TemporaryDirectory(prefix="otel-ai-soak-") as tmp:
        result = run_soak(rate_spans_per_s=args.rate, minutes=args.minutes, plan=plan, caps=caps, workdir=Path(tmp))
    machine = procstat.machine_description(nproc)
    header = "\n".join(
        [
            f"- **date**: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- **command**: `{command}`",
            f"- **machine**: nproc={machine['nproc']}, CPU model: {machine['cpu_model']}, {machine['kernel']}",
            f"- **pinning**: gateway on CPU {sorted(plan.target)}, load generator and rotel sink on "
            f"CPU {sorted(plan.load)}",
            f"- **load average** before/after: {load_before} / {_loadavg()}",
            "- **versions**: " + ", ".join(f"{k} {v}" for k, v in _versions().items()),
        ]
    )
    body = header + "\n\n" + soak_table(result)
    print(body)
    if not args.no_write:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        report.update_results(args.output_dir / "RESULTS.md", {"soak": body})
    return 0 if result.status == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
