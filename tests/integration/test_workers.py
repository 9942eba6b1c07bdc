"""``workers: 2`` as a user runs it: the real CLI, real SDK exporters over many connections, one merged /metrics."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics.http import STATE_PATH
from tests.integration.test_exposition import SPANMETRICS_UNIT_FINDING, promtool
from tests.support.otel_sdk import make_spans

CONFIG = """
workers: 2
receivers:
  otlp:
    grpc: {endpoint: "127.0.0.1:0"}
    http: {endpoint: "127.0.0.1:0"}
prometheus: {endpoint: "127.0.0.1:0"}
exporters: {}
pipelines: {traces: {exporters: []}}
"""
CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 30,
    "tenant.id": "acme",
}
SPANS_PER_EXPORT = 3


class Supervised:
    """The gateway process with ``workers: 2``; its JSON log lines are read on a thread (no polling)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.state_ports: dict[int, int] = {}  # worker index -> its private endpoint, from worker_started
        threading.Thread(target=self._read, daemon=True).start()
        self.started = self.wait_for("gateway_started", component="workers/supervisor")
        self.metrics_url = f"http://127.0.0.1:{self.started['metrics_port']}"

    def _read(self) -> None:
        assert self.process.stderr is not None
        with contextlib.suppress(ValueError, OSError):  # the pipe closed under us at the end of the test
            for line in self.process.stderr:
                with contextlib.suppress(ValueError):
                    self._lines.put(json.loads(line))

    def wait_for(self, event: str, timeout: float = 20.0, **fields: object) -> dict[str, Any]:
        """The next log record of ``event`` whose fields match; worker_started records are remembered."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                record = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if record.get("event") == "worker_started":
                self.state_ports[record["worker"]] = record["state_port"]
            if record.get("event") == event and all(record.get(k) == v for k, v in fields.items()):
                return record
        raise AssertionError(f"{event} {fields} not logged")

    def scrape(self) -> str:
        with urllib.request.urlopen(self.metrics_url + "/metrics", timeout=10) as response:
            return str(response.read().decode())

    def accepted_by_worker(self) -> dict[int, float]:
        """Spans each worker accepted, from its own private state (not the merge under test)."""
        accepted = {}
        for worker, port in self.state_ports.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{STATE_PATH}", timeout=10) as response:
                state = orjson.loads(response.read())
            family = next(f for f in state["store"] if f["name"] == "gateway_receiver_accepted_spans")
            accepted[worker] = sum(row[1] for row in family["series"])
        return accepted


@contextlib.contextmanager
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    with subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as process:
        try:
            yield Supervised(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def send_until_both_workers_have_spans(gateway: Supervised) -> int:
    """Export GenAI spans over new connections (a new SDK exporter each time, gRPC and HTTP in turn)
    until the kernel has given both workers some; returns the number of spans sent."""
    grpc_target = f"127.0.0.1:{gateway.started['grpc_port']}"
    http_url = f"http://127.0.0.1:{gateway.started['http_port']}/v1/traces"
    sent = 0
    for attempt in range(64):
        exporter: GrpcSpanExporter | HttpSpanExporter = (
            GrpcSpanExporter(endpoint=grpc_target, insecure=True) if attempt % 2 == 0 else HttpSpanExporter(http_url)
        )
        exporter.export(make_spans(SPANS_PER_EXPORT, service="chatbot", attributes=CHAT))
        exporter.shutdown()
        sent += SPANS_PER_EXPORT
        if attempt >= 3 and all(count > 0 for count in gateway.accepted_by_worker().values()):
            return sent
    raise AssertionError(f"64 connections all went to one worker: {gateway.accepted_by_worker()}")


def tokens(exposition: str, kind: str) -> float:
    """gen_ai_client_tokens_total{gen_ai_token_type=kind}, summed over the other labels."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "gen_ai_client_tokens_total" and sample.labels.get("gen_ai_token_type") == kind
    )


def value(exposition: str, name: str, labels: dict[str, str] | None = None) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items())
    )


def test_two_workers_share_the_ports_and_serve_exact_merged_counts(tmp_path: Path) -> None:
    """Spans spread over both workers are counted exactly once in the merged /metrics, promtool accepts
    it, OpenMetrics carries exemplars, /health/ready proxies both workers, and SIGTERM exits 0."""
    with supervised(tmp_path) as gateway:
        assert 2 == len(set(gateway.started["pids"]))
        sent = send_until_both_workers_have_spans(gateway)
        per_worker = gateway.accepted_by_worker()
        exposition = gateway.scrape()
        assert (sent, sent) == (sum(per_worker.values()), value(exposition, "gateway_receiver_accepted_spans_total"))
        assert (120.0 * sent, 30.0 * sent) == (tokens(exposition, "input"), tokens(exposition, "output"))
        assert 1.0 == value(exposition, "gateway_build_info")
        assert 2.0 == value(exposition, "gateway_workers")
        result = subprocess.run(
            [promtool(), "check", "metrics"], input=exposition.encode(), capture_output=True, timeout=60
        )
        assert (3, SPANMETRICS_UNIT_FINDING) == (result.returncode, result.stdout + result.stderr)
        openmetrics = urllib.request.Request(
            gateway.metrics_url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(openmetrics, timeout=10) as response:
            exemplars = [
                sample.exemplar
                for family in openmetrics_families(response.read().decode())
                for sample in family.samples
                if sample.name == "gen_ai_client_tokens_total" and sample.exemplar is not None
            ]
        assert exemplars, "the merged OpenMetrics exposition carries the workers' exemplars"
        with urllib.request.urlopen(gateway.metrics_url + "/health/ready", timeout=10) as response:
            ready = json.loads(response.read())
        assert {"worker/0": True, "worker/1": True} == ready["components"]
        gateway.process.send_signal(signal.SIGTERM)
        assert 0 == gateway.process.wait(timeout=30)


def test_a_killed_worker_is_restarted_and_counters_do_not_go_back(tmp_path: Path) -> None:
    """SIGKILL to a worker: it is started again and counted, and the merged counters keep what it had
    counted at the last scrape (rate() sees no reset)."""
    with supervised(tmp_path) as gateway:
        sent = send_until_both_workers_have_spans(gateway)
        before = tokens(gateway.scrape(), "input")
        assert 120.0 * sent == before
        victim = gateway.started["pids"][0]
        os.kill(victim, signal.SIGKILL)
        gateway.wait_for("worker_exited", pid=victim)
        gateway.wait_for("worker_started", worker=0)
        after = gateway.scrape()
        assert (before, 1.0) == (tokens(after, "input"), value(after, "gateway_worker_restarts_total"))
        sent_again = send_until_both_workers_have_spans(gateway)
        assert before + 120.0 * sent_again == tokens(gateway.scrape(), "input")
        gateway.process.send_signal(signal.SIGTERM)
        assert 0 == gateway.process.wait(timeout=30)


def test_a_port_in_use_stops_the_start_with_exit_1(tmp_path: Path) -> None:
    """Workers share ports only with each other: a port another process listens on fails the start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "gateway.yaml"
        config.write_text(CONFIG.replace('grpc: {endpoint: "127.0.0.1:0"}', f'grpc: {{endpoint: "127.0.0.1:{port}"}}'))
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(config)], capture_output=True, timeout=60
        )
    assert 1 == result.returncode
    assert b"otel-ai-gateway: cannot start:" in result.stderr
