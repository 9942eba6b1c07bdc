"""Turn measurements into the tables of benchmarks/RESULTS.md, a PNG chart and a JSON record.

RESULTS.md mixes generated tables with hand-written analysis (the profile, what changed on the hot
path). The command only rewrites what sits between ``<!-- BEGIN GENERATED: name -->`` and
``<!-- END GENERATED: name -->``, so re-running the benchmark never erases the analysis.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from benchmarks.measure import Measurement

BASELINE = "rotel-forward"
# Published Trace10kSPS figures (OTLP/gRPC in, OTLP out; contrib testbed, 2026-02 runs).
PUBLISHED_TRACE10K = (("otel collector (Go, published)", 6.5, 64.0), ("rotel (published)", 5.3, 20.0))


def _fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def _fmt_ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _status_cell(row: Measurement) -> str:
    parts = [row.status]
    if row.target_counted_spans is not None and row.target_counted_spans != row.sent_ok_spans:
        parts.append(f"gateway counted {row.target_counted_spans} of {row.sent_ok_spans} acknowledged spans")
    if row.forwarded_spans_per_s is not None and row.forwarded_spans_per_s < 0.95 * row.spans_per_s:
        parts.append(
            f"forwarded only {row.forwarded_spans_per_s:,.0f} spans/s (sink-bound; spans per CPU-s counts forwarded"
            f" spans; backlog {row.backlog_spans:,} spans at window end)"
        )
    if row.failed_calls:
        parts.append(f"{row.failed_calls} failed calls {row.errors}")
    if row.skipped:
        parts.append(f"{row.skipped} requests skipped (no free slot)")
    return "; ".join(parts)


def baseline_for(row: Measurement, rows: Iterable[Measurement]) -> Measurement | None:
    """The rotel-forward row measured on the same transport, batch size and mode."""
    for other in rows:
        if (
            other.target == BASELINE
            and other.transport == row.transport
            and other.batch_size == row.batch_size
            and other.mode == "max"
            and other.spans_per_cpu_s > 0
        ):
            return other
    return None


def matrix_table(rows: Sequence[Measurement]) -> str:
    """Capacity rows (closed loop): throughput, efficiency vs rotel, memory, latency at saturation."""
    lines = [
        "| target | transport | batch | spans/s | CPU (cores) | spans per CPU-s | x rotel-forward "
        "| peak RSS MiB | p50 ms | p99 ms | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if row.mode != "max":
            continue
        base = baseline_for(row, rows)
        ratio = f"{row.spans_per_cpu_s / base.spans_per_cpu_s:.2f}" if base and row.spans_per_cpu_s else "-"
        lines.append(
            f"| {row.target} | {row.transport} | {row.batch_size} | {_fmt_int(row.spans_per_s)} "
            f"| {row.cpu_util:.2f} | {_fmt_int(row.spans_per_cpu_s)} | {ratio} | {row.peak_rss_mib:.0f} "
            f"| {_fmt_ms(row.p50_ms)} | {_fmt_ms(row.p99_ms)} | {_status_cell(row)} |"
        )
    return "\n".join(lines)


def latency_table(rows: Sequence[Measurement]) -> str:
    """Open-loop rows: export-call latency when the target runs at a fixed share of its capacity."""
    lines = [
        "| target | transport | batch | offered spans/s | /metrics scraped | CPU (cores) | p50 ms | p99 ms "
        "| peak RSS MiB | status |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if row.mode != "rate" or row.workload != "genai":
            continue
        offered = (row.rate_rps or 0.0) * row.batch_size
        lines.append(
            f"| {row.target} | {row.transport} | {row.batch_size} | {_fmt_int(offered)} | {_scrapes_cell(row)} "
            f"| {row.cpu_util:.2f} | {_fmt_ms(row.p50_ms)} | {_fmt_ms(row.p99_ms)} | {row.peak_rss_mib:.0f} "
            f"| {_status_cell(row)} |"
        )
    return "\n".join(lines)


def _scrapes_cell(row: Measurement) -> str:
    if row.scrape_every_s is None:
        return "no"
    if not row.scrapes:
        return f"every {row.scrape_every_s:g} s: none completed"
    return (
        f"every {row.scrape_every_s:g} s: {row.scrapes} x {row.scrape_mib:.1f} MiB, "
        f"longest {row.scrape_max_s * 1000:.0f} ms"
    )


def trace10k_table(rows: Sequence[Measurement]) -> str:
    """Trace10kSPS next to the published collector and rotel figures."""
    lines = [
        "| target | spans/s | CPU % of one core | mean RSS MiB | max RSS MiB | peak RSS (VmHWM) MiB "
        "| p50 ms | p99 ms | status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, cpu, ram in PUBLISHED_TRACE10K:
        lines.append(f"| {name} | 10,000 | {cpu:.1f} | - | {ram:.0f} | - | - | - | published |")
    for row in rows:
        if row.workload != "trace10k":
            continue
        lines.append(
            f"| {row.target} | {_fmt_int(row.spans_per_s)} | {row.cpu_util * 100:.1f} | {row.mean_rss_mib:.0f} "
            f"| {row.max_rss_mib:.0f} | {row.peak_rss_mib:.0f} | {_fmt_ms(row.p50_ms)} | {_fmt_ms(row.p99_ms)} "
            f"| {_status_cell(row)} |"
        )
    return "\n".join(lines)


def replace_section(document: str, name: str, body: str) -> str:
    """Replace the generated section ``name``; append it when the markers are not there yet."""
    begin, end = f"<!-- BEGIN GENERATED: {name} -->", f"<!-- END GENERATED: {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: block, document)
    return document.rstrip() + "\n\n" + block + "\n"


def update_results(path: Path, sections: dict[str, str]) -> None:
    document = path.read_text(encoding="utf-8") if path.exists() else "# Ingest benchmark results\n"
    for name, body in sections.items():
        document = replace_section(document, name, body)
    path.write_text(document, encoding="utf-8")


def chart(rows: Sequence[Measurement], path: Path) -> bool:
    """Grouped bars of spans per CPU-second, one panel per transport; False if matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    capacity = [r for r in rows if r.mode == "max" and r.workload == "genai" and r.spans_per_cpu_s > 0]
    transports = [t for t in ("grpc", "http") if any(r.transport == t for r in capacity)]
    if not transports:
        return False
    targets = list(dict.fromkeys(r.target for r in capacity))
    batches = sorted({r.batch_size for r in capacity})
    figure, axes = plt.subplots(1, len(transports), figsize=(6.5 * len(transports), 4.8), squeeze=False)
    width = 0.8 / max(1, len(targets))
    for axis, transport in zip(axes[0], transports, strict=True):
        for index, target in enumerate(targets):
            values = []
            for batch in batches:
                match = [
                    r for r in capacity if r.target == target and r.transport == transport and r.batch_size == batch
                ]
                values.append(match[0].spans_per_cpu_s if match else 0.0)
            positions = [b + (index - (len(targets) - 1) / 2) * width for b in range(len(batches))]
            hatch = "//" if target.startswith("rotel") else None
            axis.bar(positions, values, width, label=target, hatch=hatch)
        axis.set_yscale("log")
        axis.set_xticks(range(len(batches)), [f"{b} spans/request" for b in batches])
        axis.set_title(f"OTLP/{'gRPC' if transport == 'grpc' else 'HTTP'}: spans per CPU-second (one core)")
        axis.set_ylabel("spans per CPU-second (log)")
        axis.grid(axis="y", which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
