"""The benchmark harness works: tiny measurements against a real gateway process and the bare loop.

This checks the benchmark code (process start, pinning, load generator protocol, /proc sampling,
report rendering), never the gateway's speed: there is no timing assertion here, timings live in
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.loadgen import Transport
from benchmarks.measure import Measurement, measure
from benchmarks.targets import TARGETS, CorePlan, probe_gateway, rotel_sink

BATCH = 16
RATE_RPS = 20.0  # x 16 spans x ~2 s = a few hundred spans
SCRAPE_EVERY_S = 0.5  # a Prometheus in the 1.5 s window: two or three scrapes


def _tiny_measurement(workdir: Path) -> Measurement:
    return measure(
        TARGETS["gateway-derive"],
        "grpc",
        BATCH,
        plan=CorePlan.detect(),
        workdir=workdir,
        caps=probe_gateway(),
        sink_address=None,
        warmup_s=0.5,
        duration_s=1.5,
        concurrency=4,
        rate_rps=RATE_RPS,
        scrape_every_s=SCRAPE_EVERY_S,
    )


def test_tiny_measurement_reports_and_gateway_counts_every_span(tmp_path: Path) -> None:
    """A ~2 s run yields a complete row, and the gateway's accepted-spans counter equals the spans sent."""
    row = _tiny_measurement(tmp_path)

    assert not row.status.startswith("failed"), row.status
    assert ("gateway-derive", "grpc", BATCH, "rate") == (row.target, row.transport, row.batch_size, row.mode)
    assert 0 == row.failed_calls
    assert {} == row.errors
    assert 0 == row.sent_ok_spans % BATCH
    assert 200 <= row.sent_ok_spans <= 1000
    assert row.sent_ok_spans == row.target_counted_spans
    assert row.window_s > 0 and row.spans_per_s > 0 and row.cpu_seconds > 0 and row.spans_per_cpu_s > 0
    assert row.peak_rss_mib > 0 and row.max_rss_mib > 0
    assert 0 < row.p50_ms <= row.p99_ms

    assert row.scrapes >= 1 and row.scrape_mib > 0 and row.scrape_max_s > 0

    table = report.latency_table([row])
    assert 3 == len(table.splitlines())
    offered = f"{BATCH * RATE_RPS:,.0f}"
    assert table.splitlines()[2].startswith(f"| gateway-derive | grpc | {BATCH} | {offered} | every 0.5 s: ")


@pytest.mark.parametrize(("target", "transport"), [("python-bare-forward", "http"), ("python-bare", "grpc")])
def test_bare_loop_target_measures_a_row_with_a_rotel_sink(tmp_path: Path, target: str, transport: Transport) -> None:
    """The bare-loop calibration targets start, take real load (with a real rotel sink) and yield an ok row."""
    plan = CorePlan.detect()
    with rotel_sink(tmp_path, plan.load) as sink:
        row = measure(
            TARGETS[target],
            transport,
            BATCH,
            plan=plan,
            workdir=tmp_path,
            caps=probe_gateway(),
            sink_address=sink,
            warmup_s=0.5,
            duration_s=1.5,
            concurrency=4,
            rate_rps=RATE_RPS,
        )

    assert "ok" == row.status
    assert (target, transport, BATCH, "rate") == (row.target, row.transport, row.batch_size, row.mode)
    assert 0 == row.failed_calls
    assert {} == row.errors
    assert 200 <= row.sent_ok_spans <= 1000
    assert row.window_s > 0 and row.spans_per_s > 0 and row.cpu_seconds > 0 and row.spans_per_cpu_s > 0
    assert row.peak_rss_mib > 0
    assert 0 < row.p50_ms <= row.p99_ms
    # No /metrics, like rotel: nothing counted by the target, no forwarded-spans correction.
    assert row.target_counted_spans is None
    assert row.forwarded_spans_per_s is None
