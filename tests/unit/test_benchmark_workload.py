"""The benchmark load: a pool of distinct spans, the same bytes whether built or read back from disk."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.workload import DISTINCT_GENAI_SPANS, default_pool, prepare


def test_a_genai_pool_holds_the_same_number_of_distinct_spans_at_every_batch_size() -> None:
    assert [DISTINCT_GENAI_SPANS, DISTINCT_GENAI_SPANS // 64, DISTINCT_GENAI_SPANS // 512, 16] == [
        default_pool("genai", 1),
        default_pool("genai", 64),
        default_pool("genai", 512),
        default_pool("trace10k", 100),
    ]


def test_a_cached_pool_is_read_back_byte_for_byte(tmp_path: Path) -> None:
    built = prepare("genai", 8, pool=5, cache_dir=tmp_path)
    [pool_file] = tmp_path.iterdir()
    read_back = prepare("genai", 8, pool=5, cache_dir=tmp_path)
    assert (built.requests, 5) == (read_back.requests, len(read_back.requests))
    assert pool_file.name.startswith("genai-8x5-20260101-")
    assert [8] * 5 == [
        sum(len(s.spans) for r in ExportTraceServiceRequest.FromString(raw).resource_spans for s in r.scope_spans)
        for raw in read_back.requests
    ]


def test_requests_of_a_pool_are_distinct() -> None:
    load = prepare("genai", 4, pool=50)
    assert 50 == len(set(load.requests))
