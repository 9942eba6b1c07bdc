"""How much a /metrics scrape costs, and whether it stalls ingest: ``python -m benchmarks.scrape_bench``.

Two measurements, each for the prometheus_client path the gateway used before (``generate_latest``
over ``StoreCollector``, one blocking call in the request handler) and for ``Exposition`` (cached
label text, chunked, yielding to the event loop):

1. render time of the whole exposition, in-process, text and OpenMetrics, for 10k and 100k samples
   (Prometheus counts every sample line as a series: a histogram label set with 16 buckets is 19);
2. a running gateway on loopback with the same store content, scraped by ``curl`` four times while
   a separate process posts OTLP/HTTP trace requests back to back: the event loop's worst stall
   (a 1 ms ticker's oversleep) and the ingest requests' latencies during the scrapes.

Results go to stdout as Markdown; benchmarks/SCRAPE.md holds the latest run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from gateway.app import Gateway
from gateway.derive.spanmetrics import BUCKETS_MS, CALLS, DURATION
from gateway.metrics.collector import StoreCollector
from gateway.metrics.exposition import Exposition
from gateway.metrics.store import CounterFamily, Exemplar, HistogramFamily, MetricStore
from gateway.settings import (
    Endpoint,
    GrpcReceiverSettings,
    HttpReceiverSettings,
    PipelineSettings,
    PrometheusSettings,
    Settings,
)

MIXES = ("counters", "spanmetrics")

_INGEST_CLIENT = r"""
import json, sys, time, urllib.request
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
url, seconds = sys.argv[1], float(sys.argv[2])
request = ExportTraceServiceRequest()
spans = request.resource_spans.add()
kv = spans.resource.attributes.add(); kv.key = "service.name"; kv.value.string_value = "bench"
scope = spans.scope_spans.add()
for i in range(100):
    span = scope.spans.add()
    span.trace_id = i.to_bytes(16, "big"); span.span_id = (i + 1).to_bytes(8, "big")
    span.name = f"op-{i % 10}"; span.kind = 2
    span.start_time_unix_nano = 1_700_000_000_000_000_000
    span.end_time_unix_nano = span.start_time_unix_nano + i * 1_000_000
body = request.SerializeToString()
latencies = []
deadline = time.perf_counter() + seconds
while time.perf_counter() < deadline:
    started = time.perf_counter()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(req) as response:
        response.read()
    latencies.append(time.perf_counter() - started)
print(json.dumps(latencies))
"""


def fill(store: MetricStore, samples: int, mix: str) -> None:
    """Put ``samples`` sample lines' worth of series into the store (labels like real traffic)."""
    if mix == "counters":
        family = store.counter("bench_requests", "Requests.", ("service", "route", "code"))
        for index in range(samples):
            family.inc((f"svc-{index % 50}", f"/route/{index}", "200"), float(index))
        return
    labels = ("service_name", "span_name", "span_kind", "status_code")
    try:  # a Gateway's span metrics processor has registered them already
        calls, duration = store.family(CALLS), store.family(DURATION)
    except KeyError:
        calls = store.counter(CALLS, "Calls.", labels)
        duration = store.histogram(DURATION, "Duration.", labels, BUCKETS_MS)
    assert isinstance(calls, CounterFamily) and isinstance(duration, HistogramFamily)
    per_set = len(BUCKETS_MS) + 1 + 2 + 1  # buckets, count, sum, calls
    for index in range(samples // per_set):
        key = (f"svc-{index % 50}", f"GET /api/{index}", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET")
        calls.inc(key, 3.0)
        for value in (1.0, 45.0, 900.0):
            exemplar = Exemplar(f"{index:032x}", f"{index:016x}", value, 1_700_000_000.0)
            duration.observe(key, value, exemplar)


def _median_seconds(fn: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def render_times(samples: int, mix: str, repeat: int) -> dict[str, float]:
    store = MetricStore(max_series=10**7)
    fill(store, samples, mix)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    exposition = Exposition(store)
    exposition.render()  # the first render caches label text; scrapes after the first are what matter
    return {
        "before_text": _median_seconds(lambda: generate_latest(registry), repeat),
        "before_om": _median_seconds(lambda: generate_openmetrics(registry), repeat),  # type: ignore[no-untyped-call]
        "after_text": _median_seconds(lambda: exposition.render(False), repeat),
        "after_om": _median_seconds(lambda: exposition.render(True), repeat),
        "bytes": float(len(exposition.render(False))),
    }


async def render_stalls(samples: int, mix: str) -> dict[str, tuple[float, float]]:
    """In-process: (render seconds, worst loop stall ms) for the three ways to render on a loop,
    plus ``chunked_cpu``: the most CPU time the chunked renderer spent between two loop turns
    (thread CPU time, so other processes on a loaded machine do not inflate it).

    ``blocking`` calls generate_latest in the handler; ``thread`` runs it in ``asyncio.to_thread``
    (the loop thread only gets the GIL back every ``sys.getswitchinterval()``); ``chunked`` is
    ``Exposition.write_to``.
    """
    store = MetricStore(max_series=10**7)
    fill(store, samples, mix)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    exposition = Exposition(store)
    exposition.render()

    cpu_marks: list[float] = []

    async def sink(chunk: bytes) -> None:
        cpu_marks.append(time.thread_time())

    async def blocking() -> None:
        generate_openmetrics(registry)  # type: ignore[no-untyped-call]

    async def threaded() -> None:
        await asyncio.to_thread(generate_openmetrics, registry)

    async def chunked() -> None:
        cpu_marks.append(time.thread_time())
        await exposition.write_to(sink, openmetrics=True, budget=0.0)

    results: dict[str, tuple[float, float]] = {}
    for name, render in (("blocking", blocking), ("thread", threaded), ("chunked", chunked)):
        stop = asyncio.Event()
        stalls: list[float] = []
        ticker = asyncio.create_task(_ticker(stop, stalls))
        await asyncio.sleep(0.01)
        stalls.clear()
        started = time.perf_counter()
        await render()
        elapsed = time.perf_counter() - started
        stop.set()
        await ticker
        results[name] = (elapsed, max(stalls) * 1000)
    gaps = [b - a for a, b in itertools.pairwise(cpu_marks)]
    results["chunked_cpu"] = (sum(gaps), max(gaps) * 1000)
    return results


async def _ticker(stop: asyncio.Event, stalls: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(0.001)
        stalls.append(loop.time() - started - 0.001)


async def stall_run(samples: int, mix: str, chunked: bool | None, scrapes: int) -> dict[str, float]:
    """One gateway, ingest running; ``chunked`` None = no scrape at all (the baseline stall of ingest)."""
    loopback = Endpoint("127.0.0.1", 0)
    settings = dataclasses.replace(
        Settings(),
        grpc=GrpcReceiverSettings(endpoint=loopback),
        http=HttpReceiverSettings(endpoint=loopback),
        prometheus=PrometheusSettings(endpoint=loopback, max_series_per_metric=10**7),
        exporters=(),
        pipelines={signal: PipelineSettings() for signal in ("traces", "metrics", "logs")},
    )
    gateway = Gateway(settings)
    fill(gateway.store, samples, mix)
    if chunked is False:  # the previous handler: prometheus_client's encoder over the registry, blocking
        gateway.metrics_server._exposition = None
    await gateway.start()
    assert gateway.http is not None
    stop = asyncio.Event()
    stalls: list[float] = []
    ticker = asyncio.create_task(_ticker(stop, stalls))
    url = f"http://127.0.0.1:{gateway.metrics_server.port}/metrics"
    ingest_url = f"http://127.0.0.1:{gateway.http.port}/v1/traces"
    try:
        await _curl(url)  # warm the label cache, as every scrape but the first finds it
        stalls.clear()
        seconds = 1.5 + scrapes * (2.5 if chunked is False and samples >= 100_000 else 0.6)
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _INGEST_CLIENT, ingest_url, str(seconds), stdout=subprocess.PIPE
        )
        await asyncio.sleep(0.5)
        scrape_times = [0.0]
        if chunked is not None:
            scrape_times.clear()
            for _ in range(scrapes):
                started = time.perf_counter()
                await _curl(url)
                scrape_times.append(time.perf_counter() - started)
        output, _ = await client.communicate()
        latencies = json.loads(output)
    finally:
        stop.set()
        await ticker
        await gateway.shutdown()
    return {
        "scrape_s": statistics.median(scrape_times),
        "max_stall_ms": max(stalls) * 1000,
        "p99_stall_ms": statistics.quantiles(stalls, n=100)[98] * 1000,
        "ingest_p50_ms": statistics.median(latencies) * 1000,
        "ingest_max_ms": max(latencies) * 1000,
        "ingest_requests": float(len(latencies)),
    }


async def _curl(url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "curl", "-sf", "-o", "/dev/null", "-H", "Accept: application/openmetrics-text; version=1.0.0", url
    )
    if await process.wait() != 0:
        raise RuntimeError(f"scrape of {url} failed")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scrapes", type=int, default=4)
    args = parser.parse_args(argv)
    print("## Render time (median, seconds)\n")
    print("| samples | mix | bytes | before text | before OM | after text | after OM | speed-up (text) |")
    print("|---|---|---|---|---|---|---|---|")
    for samples in args.samples:
        for mix in MIXES:
            t = render_times(samples, mix, args.repeat)
            print(
                f"| {samples} | {mix} | {int(t['bytes'])} | {t['before_text']:.3f} | {t['before_om']:.3f} | "
                f"{t['after_text']:.3f} | {t['after_om']:.3f} | {t['before_text'] / t['after_text']:.1f}x |"
            )
    print("\n## Rendering on the event loop: blocking, in a thread, chunked (OpenMetrics, in-process)\n")
    print(
        "| samples | mix | blocking s / stall ms | thread s / stall ms | chunked s / stall ms "
        "| chunked: max CPU ms between loop turns |"
    )
    print("|---|---|---|---|---|---|")
    for samples in args.samples:
        for mix in MIXES:
            paths_seen = asyncio.run(render_stalls(samples, mix))
            cells = " | ".join(
                f"{paths_seen[k][0]:.3f} / {paths_seen[k][1]:.1f}" for k in ("blocking", "thread", "chunked")
            )
            print(f"| {samples} | {mix} | {cells} | {paths_seen['chunked_cpu'][1]:.2f} |")
    print("\n## Scraping a running gateway while it ingests (OpenMetrics, curl, 4 scrapes)\n")
    print(
        "| samples | mix | path | scrape (median s) | max loop stall ms | p99 stall ms "
        "| ingest p50 ms | ingest max ms | requests |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    paths: dict[bool | None, str] = {None: "no scrape (baseline)", False: "before (generate_latest)", True: "after"}
    for samples in args.samples:
        for mix in MIXES:
            for chunked in (None, False, True):
                r = asyncio.run(stall_run(samples, mix, chunked, args.scrapes))
                print(
                    f"| {samples} | {mix} | {paths[chunked]} | {r['scrape_s']:.3f} | {r['max_stall_ms']:.1f} | "
                    f"{r['p99_stall_ms']:.1f} | {r['ingest_p50_ms']:.1f} | {r['ingest_max_ms']:.1f} | "
                    f"{int(r['ingest_requests'])} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
