"""``python -m benchmarks.derive``: CPU cost per span of each in-process stage, on the ingest load.

Why next to the end-to-end benchmark: ``benchmarks.ingest`` says how the whole gateway compares
with rotel, this says which stage to work on. Each stage runs in this process on the same
pre-serialized requests (512 GenAI spans each), timed with the thread's CPU clock (so other load
on the machine does not count) and reported as the best of several rounds, in microseconds of CPU
per span. Stages are cumulative where noted, so differences isolate one piece of work:

* ``decode``: ``ExportTraceServiceRequest.FromString`` (upb);
* ``walk attributes``: decode + touch every span attribute's key (the floor of any Python pass);
* ``spanmetrics``, ``genai read``, ``genai``: decode + that processor (``genai read`` stops at the
  per-span record, ``genai`` also aggregates it into the metric store).

``--instructions`` counts instructions instead of CPU time: each stage runs under valgrind's
callgrind once with one pass over the pool and once with two, and the difference divided by the
pool's spans is the stage's instructions per span in steady state (start-up, imports and the warm
pass cancel out). CPU time on this shared machine moves by ±10 % between runs even as the best of
several rounds, so a change of a few per cent cannot be told from noise; on the full pool the
instruction count repeats within ~0.1 % (not on a tiny ``--pool``: start-up noise dominates), and
memory stalls are not in it: confirm a kept change end to end.

``--gc`` instead runs every trace processor of a Gateway built from the benchmark's settings (so the
heap holds the price tables, as in production), alternating the interpreter's default GC settings
with ``gateway.cli.tune_gc()`` round by round, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.workload import LOAD_CACHE_DIR, prepare
from gateway.component import Batch
from gateway.metrics.store import MetricStore
from proto_handlers import decode_request
from proto_handlers.raw_attributes import RawAttributesTraceRequest

Stage = Callable[[bytes], None]


def _spans(request: Any) -> Iterator[Any]:
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            yield from scope_spans.spans


def stages() -> dict[str, Stage]:
    """The stages this tree can run; a processor that does not exist yet is left out."""
    standard = ExportTraceServiceRequest.FromString

    def parse(raw: bytes) -> Any:  # what a receiver does: validate, then the derivation view
        return decode_request("traces", raw, "protobuf", indexed=True)

    result: dict[str, Stage] = {}

    def decode_standard(raw: bytes) -> None:
        standard(raw)

    def walk(raw: bytes) -> None:
        for span in _spans(standard(raw)):
            for kv in span.attributes:
                _ = kv.key

    def decode_view(raw: bytes) -> None:
        RawAttributesTraceRequest.FromString(raw)

    def keys(raw: bytes) -> None:
        for span in _spans(parse(raw)):
            for _ in span.attributes:
                pass

    result["decode (standard schema, upb)"] = decode_standard
    result["walk attributes (standard schema)"] = walk
    result["decode (derivation view only)"] = decode_view
    result["decode (receiver: validate + ids + view)"] = parse
    result["walk attribute bytes"] = keys
    try:
        from gateway.derive.spanmetrics import SpanMetricsProcessor, SpanMetricsSettings

        spanmetrics = SpanMetricsProcessor(MetricStore(max_series=2000, series_expiration=300.0), SpanMetricsSettings())
        result["spanmetrics"] = lambda raw: spanmetrics.process(Batch("traces", raw, parse(raw), 512, "grpc"))
    except ImportError:
        pass
    try:
        from gateway.derive.config import GenAIConfig
        from gateway.derive.genai import GenAIProcessor

        genai = GenAIProcessor(GenAIConfig(), MetricStore(max_series=2000, series_expiration=300.0))

        def genai_read(raw: bytes) -> None:
            read = genai.reader.read
            for resource_spans in parse(raw).resource_spans:
                service, tenant = genai.reader.resource_context(resource_spans.resource)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        read(span, service, tenant)

        result["genai read"] = genai_read
        result["genai"] = lambda raw: genai.process(Batch("traces", raw, parse(raw), 512, "grpc"))
    except ImportError:
        pass
    return result


def measure(stage: Stage, requests: tuple[bytes, ...], spans_per_request: int, rounds: int) -> float:
    """Best-of-``rounds`` CPU microseconds per span; each round is one pass over the request pool."""
    for raw in requests:  # warm caches and create metric series first: steady state is what runs
        stage(raw)
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        for raw in requests:
            stage(raw)
        best = min(best, time.thread_time() - started)
    return best / (len(requests) * spans_per_request) * 1e6


def run_passes(stage_name: str, passes: int, batch: int, pool: int | None = None) -> None:
    """The child of ``--instructions``: ``passes`` passes of one stage over the pool, nothing else."""
    stage = stages()[stage_name]
    load = prepare("genai", batch, pool=pool, cache_dir=LOAD_CACHE_DIR)
    for _ in range(passes):
        for raw in load.requests:
            stage(raw)


_INSTRUCTIONS = re.compile(rb"I\s+refs:\s+([\d,]+)")


def instructions_per_span(stage_name: str, batch: int, pool: int | None = None) -> float:
    """Instructions per span of one stage in steady state: callgrind of two passes minus one pass.

    ``pool``: requests in the load pool (default: the benchmark's 65,536 distinct spans)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (Debian package valgrind)")
    load = prepare("genai", batch, pool=pool, cache_dir=LOAD_CACHE_DIR)  # built once here, not under valgrind
    totals = []
    with tempfile.TemporaryDirectory() as scratch:
        children = [
            subprocess.Popen(
                [
                    valgrind,
                    "--tool=callgrind",
                    f"--callgrind-out-file={scratch}/callgrind.{passes}",
                    sys.executable,
                    "-m",
                    "benchmarks.derive",
                    "--run-passes",
                    str(passes),
                    "--stage",
                    stage_name,
                    "--batch",
                    str(batch),
                    *(() if pool is None else ("--pool", str(pool))),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts in both children
            )
            for passes in (1, 2)
        ]
        for child in children:
            _, err = child.communicate()
            found = _INSTRUCTIONS.search(err)
            if child.returncode != 0 or found is None:
                raise SystemExit(f"callgrind run failed ({child.returncode}): {err[-2000:].decode(errors='replace')}")
            totals.append(int(found.group(1).replace(b",", b"")))
    return (totals[1] - totals[0]) / (len(load.requests) * load.spans_per_request)


def gc_ab(rounds: int, batch: int) -> dict[str, float]:
    """CPU microseconds per span of all trace processors with default vs tuned GC, interleaved."""
    from benchmarks.targets import gateway_config
    from gateway.app import Gateway
    from gateway.cli import tune_gc
    from gateway.settings import settings_from_mapping

    built = Gateway(settings_from_mapping(gateway_config(derive=True, sink_address=None)))
    processors = built.processors["traces"]
    parse = RawAttributesTraceRequest.FromString
    load = prepare("genai", batch, cache_dir=LOAD_CACHE_DIR)

    def one_pass() -> float:
        started = time.thread_time()
        for raw in load.requests:
            request_batch = Batch("traces", raw, parse(raw), batch, "grpc")
            built.store.tick()
            for processor in processors:
                processor.process(request_batch)
        return time.thread_time() - started

    def default_gc() -> None:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)

    modes = {"default GC": default_gc, "tune_gc()": tune_gc}
    totals = dict.fromkeys(modes, 0.0)
    one_pass()
    for round_index in range(rounds):
        order = list(modes) if round_index % 2 else list(reversed(modes))
        for name in order:
            modes[name]()
            totals[name] += one_pass()
    default_gc()
    spans = rounds * len(load.requests) * batch
    return {name: total / spans * 1e6 for name, total in totals.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.derive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--gc", action="store_true", help="A/B the gateway's GC tuning instead")
    parser.add_argument(
        "--instructions", action="store_true", help="instructions per span under callgrind instead of CPU time"
    )
    parser.add_argument("--stage", action="append", help="with --instructions: only this stage (repeatable)")
    parser.add_argument("--pool", type=int, help="with --instructions: requests in the pool (default: 65,536 spans)")
    parser.add_argument("--run-passes", type=int, help=argparse.SUPPRESS)  # the callgrind child
    args = parser.parse_args(argv)
    if args.run_passes is not None:
        run_passes(args.stage[0], args.run_passes, args.batch, args.pool)
        return 0
    if args.instructions:
        names = args.stage or ["decode (receiver: validate + ids + view)", "spanmetrics", "genai"]
        unknown = sorted(set(names) - set(stages()))
        if unknown:
            raise SystemExit(f"unknown --stage {unknown}; stages: {list(stages())}")
        print("| stage | instructions per span |")
        print("|---|---:|")
        for name in names:
            print(f"| {name} | {instructions_per_span(name, args.batch, args.pool):,.0f} |")
        return 0
    if args.gc:
        print("| GC settings | CPU us per span, all trace processors |")
        print("|---|---:|")
        for name, micros in gc_ab(args.rounds * 4, args.batch).items():
            print(f"| {name} | {micros:.2f} |")
        return 0
    load = prepare("genai", args.batch, cache_dir=LOAD_CACHE_DIR)
    print("| stage | CPU us per span | spans per CPU-second |")
    print("|---|---:|---:|")
    for name, stage in stages().items():
        micros = measure(stage, load.requests, load.spans_per_request, args.rounds)
        print(f"| {name} | {micros:.2f} | {1e6 / micros:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
