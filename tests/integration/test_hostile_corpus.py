"""Every entry of the hostile corpus gets its exact answer from a gateway process, which stays up and small.

The entries and their answers are the table of tests/data/hostile/MANIFEST.md; ``gen/`` entries are
generated here (``RECIPES``). The gateway runs as a child process so that its own peak RSS
(``VmHWM`` in /proc/<pid>/status) can be held under 400 MiB, whatever the test process allocates.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import signal as signals
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import zstandard
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from prometheus_client.parser import text_string_to_metric_families

from proto_handlers import compress
from tests.support.wire import length_delimited, nested_kvlist_protobuf, traces_request

CORPUS = Path(__file__).parent.parent / "data" / "hostile"
RSS_LIMIT_KIB = 400 * 1024
CONTENT_TYPES = {"protobuf": "application/x-protobuf", "json": "application/json"}
GRPC_SERVICES = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
CONFIG = """
receivers:
  otlp:
    grpc: {endpoint: "127.0.0.1:0"}
    http: {endpoint: "127.0.0.1:0"}
prometheus: {endpoint: "127.0.0.1:0"}
"""
TIMEOUT = aiohttp.ClientTimeout(total=120)


# --- the big entries, as recipes ---------------------------------------------------------------


def _gzip_of_zeros(size: int, level: int = 9) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    body = [compressor.compress(chunk) for _ in range(size >> 20)]
    return b"".join(body) + compressor.flush()


def _nested_kvlist_json(levels: int) -> bytes:
    value = b'{"kvlistValue":{"values":[{"key":"k","value":' * levels + b'{"stringValue":"leaf"}' + b"}]}}" * levels
    return b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"deep","value":' + value + b"}]}]}]}]}"


def _empty_zstd_blocks(count: int) -> bytes:
    header = (0xFD2FB528).to_bytes(4, "little") + b"\x00\x00"
    return header + b"\x00\x00\x00" * count + b"\x01\x00\x00"


def _string_attribute(size: int) -> bytes:
    span = Span(attributes=[KeyValue(key="big", value=AnyValue(string_value="x" * size))])
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    ).SerializeToString()


RECIPES: dict[str, Callable[[], bytes]] = {
    "gen/gzip_bomb_21_mib.pb.gz": lambda: _gzip_of_zeros(21 << 20),
    "gen/deflate_bomb_21_mib.pb.deflate": lambda: zlib.compress(bytes(21 << 20), 9),
    "gen/gzip_in_gzip.pb.gz": lambda: gzip.compress(_gzip_of_zeros(256 << 20, level=1), mtime=0),
    "gen/gzip_100k_empty_members.pb.gz": lambda: gzip.compress(b"", mtime=0) * 100_000,
    "gen/zstd_100k_empty_blocks.zst": lambda: _empty_zstd_blocks(100_000),
    "gen/nested_kvlist_10k.pb": lambda: nested_kvlist_protobuf(10_000),
    "gen/nested_kvlist_10k.json": lambda: _nested_kvlist_json(10_000),
    "gen/nested_lists_10k.json": lambda: b'{"resourceSpans":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    "gen/empty_spans_1m.pb": lambda: traces_request(b"\x12\x00" * 1_000_000),
    "gen/empty_spans_10m.pb": lambda: traces_request(b"\x12\x00" * 10_000_000),
    "gen/empty_resource_spans_1m.pb": lambda: b"\x0a\x00" * 1_000_000,
    "gen/unknown_fields_10m.pb": lambda: b"\x10\x00" * 10_000_000,
    "gen/empty_spans_1m.json": lambda: (
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[' + b",".join([b"{}"] * 1_000_000) + b"]}]}]}"
    ),
    "gen/empty_attributes_1m.pb": lambda: traces_request(length_delimited(2, b"\x4a\x00" * 1_000_000)),
    "gen/string_attribute_5_mib.pb": lambda: _string_attribute(5 << 20),
}


# --- the manifest ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    signal: str
    fmt: str
    encoding: str | None
    http: int
    grpc: str | None
    """A ``grpc.StatusCode`` name, or None when the entry is not sent over gRPC."""

    def body(self) -> bytes:
        recipe = RECIPES.get(self.name)
        return recipe() if recipe is not None else (CORPUS / self.name).read_bytes()


def manifest() -> list[Entry]:
    """The rows of MANIFEST.md's table."""
    entries = []
    for line in (CORPUS / "MANIFEST.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 7 or cells[0] in ("entry", "") or set(cells[0]) <= {"-"}:
            continue
        name, signal, fmt, encoding, http, grpc_code, _ = cells
        entries.append(
            Entry(
                name,
                signal,
                fmt,
                None if encoding == "-" else encoding,
                int(http),
                None if grpc_code == "-" else grpc_code,
            )
        )
    return entries


ENTRIES = manifest()
ids = [entry.name for entry in ENTRIES]


def test_the_manifest_lists_every_file_and_recipe_once() -> None:
    """No corpus file or recipe goes unreplayed, and no row names a missing one."""
    files = {
        str(path.relative_to(CORPUS))
        for path in CORPUS.rglob("*")
        if path.is_file() and path.suffix not in (".md", ".py") and "__pycache__" not in path.parts
    }
    names = [entry.name for entry in ENTRIES]
    assert len(names) == len(set(names))
    assert files | set(RECIPES) == set(names)


# --- the gateway process ------------------------------------------------------------------------


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    http_url: str
    grpc_target: str
    metrics_url: str

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc/<pid>/status")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway process for the whole corpus: what one entry leaves behind is seen by the next."""
    config = tmp_path_factory.mktemp("hostile") / "gateway.yaml"
    config.write_text(CONFIG)
    with subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as process:
        assert process.stderr is not None
        started: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not started:
            line = process.stderr.readline()
            if not line:
                break
            if line.startswith(b"{") and json.loads(line).get("event") == "gateway_started":
                started = json.loads(line)
        assert started, "gateway_started was not logged"
        # Keep reading stderr so that the gateway never blocks on a full pipe.
        drain = threading.Thread(target=lambda: process.stderr and process.stderr.read(), daemon=True)
        drain.start()
        try:
            yield GatewayProcess(
                process,
                http_url=f"http://127.0.0.1:{started['http_port']}",
                grpc_target=f"127.0.0.1:{started['grpc_port']}",
                metrics_url=f"http://127.0.0.1:{started['metrics_port']}",
            )
        finally:
            process.send_signal(signals.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            drain.join(timeout=10)


def one_span_request() -> bytes:
    span = Span(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name="still serving")
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    ).SerializeToString()


async def post(gateway: GatewayProcess, entry: Entry, body: bytes, encoding: str | None) -> int:
    headers = {"Content-Type": CONTENT_TYPES[entry.fmt]}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        # A BytesIO, not bytes: aiohttp warns (an error here) about big raw bodies.
        session.post(f"{gateway.http_url}/v1/{entry.signal}", data=io.BytesIO(body), headers=headers) as response,
    ):
        await response.read()
        return response.status


async def grpc_export(gateway: GatewayProcess, signal: str, body: bytes) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        call = channel.unary_unary(GRPC_SERVICES[signal], request_serializer=None, response_deserializer=None)
        try:
            await call(body, timeout=120)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK


async def assert_still_serving_and_small(gateway: GatewayProcess) -> None:
    valid = Entry("valid", "traces", "protobuf", None, 200, "OK")
    assert 200 == await post(gateway, valid, one_span_request(), None)
    assert grpc.StatusCode.OK == await grpc_export(gateway, "traces", one_span_request())
    assert gateway.process.poll() is None
    assert gateway.peak_rss_kib() < RSS_LIMIT_KIB


# --- the replay --------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
async def test_http_answer(gateway: GatewayProcess, entry: Entry) -> None:
    """OTLP/HTTP answers each entry with its status from the manifest, then serves a valid request."""
    assert entry.http == await post(gateway, entry, entry.body(), entry.encoding)
    await assert_still_serving_and_small(gateway)


@pytest.mark.parametrize(
    "entry",
    [entry for entry in ENTRIES if entry.encoding is None and not entry.name.startswith("gen/")],
    ids=lambda entry: entry.name,
)
async def test_http_answer_when_gzipped(gateway: GatewayProcess, entry: Entry) -> None:
    """The committed entries gzipped get the same answer: compression changes nothing once inflated.

    Generated entries are left out: they are big, and gzip adds nothing to what they test.
    """
    assert entry.http == await post(gateway, entry, compress(entry.body(), "gzip"), "gzip")
    await assert_still_serving_and_small(gateway)


@pytest.mark.parametrize("entry", [entry for entry in ENTRIES if entry.grpc is not None], ids=lambda entry: entry.name)
async def test_grpc_answer(gateway: GatewayProcess, entry: Entry) -> None:
    """OTLP/gRPC answers the protobuf entries, sent as raw bytes, with their status code from the manifest."""
    assert entry.grpc == (await grpc_export(gateway, entry.signal, entry.body())).name
    await assert_still_serving_and_small(gateway)


async def test_weird_token_counts_leave_no_nan_or_negative_in_genai_metrics(gateway: GatewayProcess) -> None:
    """NaN, infinite and negative token counts are accepted, and no gen_ai sample becomes NaN, infinite or negative."""
    for name, fmt in (("pb/genai_weird_token_counts.pb", "protobuf"), ("json/genai_weird_token_counts.json", "json")):
        entry = Entry(name, "traces", fmt, None, 200, None)
        assert 200 == await post(gateway, entry, entry.body(), None)
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(f"{gateway.metrics_url}/metrics") as response,
    ):
        exposition = await response.text()
    samples = [
        sample
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith("gen_ai")
    ]
    assert samples  # the valid counts among them (output_tokens 5) were derived
    for sample in samples:
        assert math.isfinite(sample.value) and sample.value >= 0, sample


def test_zstd_corpus_bomb_is_what_it_claims() -> None:
    """The committed zstd bomb is a valid frame of 64 MiB: a 413 for the right reason, not a corrupt body."""
    body = (CORPUS / "enc/zstd_rle_bomb_64_mib.zst").read_bytes()
    reader = zstandard.ZstdDecompressor().stream_reader(body)
    total = 0
    while chunk := reader.read(1 << 24):
        total += len(chunk)
    assert (64 << 20, True) == (total, len(body) < 4096)
