"""The processes under test (rotel, the gateway in several configurations, the bare Python loop)
and the rotel sink.

Each target runs in its own process pinned to one core (``os.sched_setaffinity`` in the child
before ``exec``, so every thread it ever starts inherits the mask); the load generator and the
sink share the other core. Targets listen on loopback only. The gateway binds port 0 and reports
its ports in its ``gateway_started`` log event, which is also how we know it is ready; the bare
loop (``benchmarks/bare_loop.py``) does the same, with no metrics port; rotel takes explicit free
ports and is ready when both accept connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import rotel  # type: ignore[import-untyped]

ROTEL_AGENT = Path(rotel.__file__).parent / "rotel-agent"
LOOPBACK = "127.0.0.1"
_REPO = Path(__file__).resolve().parent.parent
_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class CorePlan:
    """Which CPUs the target gets and which the load generator and sink get."""

    target: frozenset[int]
    load: frozenset[int]

    @staticmethod
    def detect() -> CorePlan:
        """First allowed CPU for the target, the rest for the load; one CPU means no isolation."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return CorePlan(frozenset(cpus), frozenset(cpus))
        return CorePlan(frozenset(cpus[:1]), frozenset(cpus[1:]))


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One system under test. ``forward`` applies to all kinds, ``derive`` and the rest to the gateway only."""

    name: str
    kind: Literal["rotel", "gateway", "bare"]
    forward: bool
    derive: bool = False
    uvloop: bool = False
    default_gc: bool = False
    description: str = ""
    workers: int = 1  # the gateway's ``workers: N`` (the scaling scenario); its CPU is the whole process tree


TARGETS: Mapping[str, TargetSpec] = {
    t.name: t
    for t in (
        TargetSpec("rotel-forward", "rotel", forward=True, description="rotel: receive, batch, forward OTLP/gRPC"),
        TargetSpec("rotel-blackhole", "rotel", forward=False, description="rotel: receive, drop (reference)"),
        TargetSpec("gateway-full", "gateway", forward=True, derive=True, description="gateway: derive all + forward"),
        TargetSpec(
            "gateway-full-uvloop",
            "gateway",
            forward=True,
            derive=True,
            uvloop=True,
            description="gateway-full on uvloop",
        ),
        TargetSpec(
            "gateway-full-defaultgc",
            "gateway",
            forward=True,
            derive=True,
            default_gc=True,
            description="gateway-full without gateway.cli.tune_gc() (before/after of that change)",
        ),
        TargetSpec("gateway-derive", "gateway", forward=False, derive=True, description="gateway: derive, no exporter"),
        TargetSpec(
            "gateway-forward", "gateway", forward=True, derive=False, description="gateway: forward, derivation off"
        ),
        # Calibration: issue 6's reference loop, the floor for any Python forwarder (benchmarks/bare_loop.py).
        TargetSpec(
            "python-bare-forward",
            "bare",
            forward=True,
            description="bare Python loop (grpc.aio + aiohttp, upb): decode, read 3 gen_ai attributes per span, "
            "forward the original bytes to the sink (one awaited uncompressed Export call per request)",
        ),
        TargetSpec(
            "python-bare",
            "bare",
            forward=False,
            description="bare Python loop (grpc.aio + aiohttp, upb): decode, read 3 gen_ai attributes per span, "
            "no forwarding",
        ),
    )
}


def free_port() -> int:
    """A port that was free a moment ago (rotel has no port-0 reporting; the race is harmless here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _pinned(cpus: frozenset[int]) -> Any:
    def preexec() -> None:
        os.sched_setaffinity(0, cpus)

    return preexec


def _wait_listening(process: subprocess.Popen[bytes], ports: Sequence[int], what: str) -> None:
    """Bounded wait until every port accepts a TCP connection, or the process died."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    pending = list(ports)
    while pending:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not listening on {pending} after {_START_TIMEOUT_S}s")
        try:
            with socket.create_connection((LOOPBACK, pending[0]), timeout=0.2):
                pending.pop(0)
        except OSError:
            time.sleep(0.05)


def _stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, a bounded wait for a clean exit, then SIGKILL; only ever our own child."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_STOP_TIMEOUT_S)


@dataclass(slots=True)
class RunningTarget:
    """A started process under test and the addresses the load generator needs."""

    spec: TargetSpec
    process: subprocess.Popen[bytes]
    grpc_address: str
    http_address: str
    workdir: Path
    metrics_url: str | None = None
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    log_reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def address(self, transport: str) -> str:
        return self.grpc_address if transport == "grpc" else self.http_address

    def stop(self) -> int | None:
        """Stop the process, then let the log reader see EOF and close the pipe it read."""
        _stop(self.process)
        if self.log_reader is not None:
            self.log_reader.join(_STOP_TIMEOUT_S)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return self.process.returncode


def start_rotel_sink(workdir: Path, cpus: frozenset[int]) -> tuple[subprocess.Popen[bytes], str]:
    """A rotel with the blackhole exporter: the downstream every forwarding target sends to."""
    grpc_port, http_port = free_port(), free_port()
    process = _start_rotel(workdir / "sink", grpc_port, http_port, ["--exporter", "blackhole"], cpus)
    try:
        _wait_listening(process, [grpc_port, http_port], "rotel sink")
    except BaseException:
        _stop(process)
        raise
    return process, f"{LOOPBACK}:{grpc_port}"


def _start_rotel(
    workdir: Path, grpc_port: int, http_port: int, exporter_args: list[str], cpus: frozenset[int]
) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        str(ROTEL_AGENT),
        "start",
        "--otlp-grpc-endpoint",
        f"{LOOPBACK}:{grpc_port}",
        "--otlp-http-endpoint",
        f"{LOOPBACK}:{http_port}",
        "--pid-file",
        str(workdir / "rotel.pid"),
        "--log-file",
        str(workdir / "rotel.log"),
        *exporter_args,
    ]
    with open(workdir / "stdout.log", "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_pinned(cpus))


def start_target(
    spec: TargetSpec, workdir: Path, cpus: frozenset[int], sink_address: str | None, gateway_caps: GatewayCaps
) -> RunningTarget:
    """Start ``spec`` pinned to ``cpus``; forwarding targets send to ``sink_address``."""
    if spec.forward and sink_address is None:
        raise ValueError(f"{spec.name} forwards and needs a sink")
    if spec.kind == "rotel":
        grpc_port, http_port = free_port(), free_port()
        exporter = (
            [
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                f"http://{sink_address}",
                # The gateway forwards the bytes it received, uncompressed; compare like with like.
                "--otlp-exporter-compression",
                "none",
            ]
            if spec.forward
            else ["--exporter", "blackhole"]
        )
        process = _start_rotel(workdir / spec.name, grpc_port, http_port, exporter, cpus)
        try:
            _wait_listening(process, [grpc_port, http_port], spec.name)
        except BaseException:
            _stop(process)
            raise
        return RunningTarget(spec, process, f"{LOOPBACK}:{grpc_port}", f"{LOOPBACK}:{http_port}", workdir / spec.name)
    if spec.kind == "bare":
        sink = sink_address if spec.forward and sink_address is not None else "none"
        command = [sys.executable, "-m", "benchmarks.bare_loop", "--sink", sink]
        return _start_reporting(spec, command, workdir / spec.name, cpus)
    return _start_gateway(spec, workdir / spec.name, cpus, sink_address, gateway_caps)


# --- the gateway --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayCaps:
    """What the gateway in this tree can do, probed once, so rows can say what they really measured.

    ``trace_processors`` are the class names the gateway wires for traces on its defaults; "all
    derivation" means the GenAI processor and span metrics. The switches are the settings keys that
    turn each off (``genai.enabled``, ``spanmetrics.enabled``), when the tree has them.
    """

    exporter_types: frozenset[str]
    trace_processors: tuple[str, ...]
    genai_switch: bool
    spanmetrics_switch: bool

    @property
    def genai_wired(self) -> bool:
        return any("GenAI" in name for name in self.trace_processors)

    @property
    def spanmetrics_wired(self) -> bool:
        return any("SpanMetrics" in name for name in self.trace_processors)

    def can_forward(self) -> bool:
        return "otlp_grpc" in self.exporter_types

    def pending(self, spec: TargetSpec) -> str | None:
        """What ``spec`` needs that this tree lacks; the row is still measured with what exists."""
        if spec.kind != "gateway":
            return None
        gaps = []
        if spec.forward and not self.can_forward():
            gaps.append("no otlp_grpc exporter yet, measured without forwarding")
        if spec.derive and not self.genai_wired:
            gaps.append("GenAI derivation not wired yet, measured span metrics only")
        if spec.derive and not self.spanmetrics_wired:
            gaps.append("span metrics not wired yet")
        if not spec.derive and self.genai_wired and not self.genai_switch:
            gaps.append("no genai.enabled switch, measured with GenAI derivation on")
        if not spec.derive and self.spanmetrics_wired and not self.spanmetrics_switch:
            gaps.append("no spanmetrics.enabled switch, measured with span metrics on")
        return "pending: " + "; ".join(gaps) if gaps else None


def probe_gateway() -> GatewayCaps:
    """Build (not start) a Gateway on loopback settings and look at what it wired."""
    from gateway.app import Gateway
    from gateway.derive.config import GenAIConfig
    from gateway.registry import EXPORTER_FACTORIES
    from gateway.settings import Settings, settings_from_mapping

    built = Gateway(settings_from_mapping(gateway_config(derive=True, sink_address=None)))
    return GatewayCaps(
        exporter_types=frozenset(EXPORTER_FACTORIES),
        trace_processors=tuple(type(p).__name__ for p in built.processors["traces"]),
        genai_switch=hasattr(GenAIConfig(), "enabled"),
        spanmetrics_switch=hasattr(getattr(Settings(), "spanmetrics", None), "enabled"),
    )


def gateway_config(
    *, derive: bool, sink_address: str | None, caps: GatewayCaps | None = None, workers: int = 1
) -> dict[str, Any]:
    """The benchmark's gateway config: loopback port 0 everywhere, info logs (start/stop only).

    Forwarding is uncompressed OTLP/gRPC to the sink, as rotel is run, so both do the same work.
    With ``derive`` off, every derivation this tree can switch off is switched off.
    """
    exporters: dict[str, Any] = {}
    if sink_address is not None:
        exporters["sink"] = {"type": "otlp_grpc", "endpoint": f"http://{sink_address}", "compression": "none"}
    config: dict[str, Any] = {
        "receivers": {"otlp": {"grpc": {"endpoint": f"{LOOPBACK}:0"}, "http": {"endpoint": f"{LOOPBACK}:0"}}},
        "prometheus": {"endpoint": f"{LOOPBACK}:0"},
        "exporters": exporters,
        "pipelines": {"traces": {"exporters": list(exporters)}, "metrics": {}, "logs": {}},
    }
    if workers > 1:
        config["workers"] = workers
    if not derive and caps is not None:
        if caps.genai_switch:
            config["genai"] = {"enabled": False}
        if caps.spanmetrics_switch:
            config["spanmetrics"] = {"enabled": False}
    return config


def _start_gateway(
    spec: TargetSpec, workdir: Path, cpus: frozenset[int], sink_address: str | None, caps: GatewayCaps
) -> RunningTarget:
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "gateway.yaml"
    forward_to = sink_address if spec.forward and caps.can_forward() else None
    config = gateway_config(derive=spec.derive, sink_address=forward_to, caps=caps, workers=spec.workers)
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    command = [sys.executable, "-m", "benchmarks.gateway_main", "--config", str(config_path), "--log-level", "info"]
    if spec.uvloop:
        command.append("--uvloop")
    if spec.default_gc:
        command.append("--default-gc")
    return _start_reporting(spec, command, workdir, cpus)


def _start_reporting(spec: TargetSpec, command: list[str], workdir: Path, cpus: frozenset[int]) -> RunningTarget:
    """Start a Python target that reports its ports in a ``gateway_started`` JSON line on stderr.

    The gateway and the bare loop both do; a null ``metrics_port`` (the bare loop) means no /metrics,
    so the target is handled like rotel: no forwarded-spans scrape, no scrapes in latency rows.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=_REPO,
        preexec_fn=_pinned(cpus),
    )
    assert process.stderr is not None
    started = threading.Event()
    ports: dict[str, int | None] = {}
    tail: deque[str] = deque(maxlen=50)

    def drain() -> None:
        """Read the target's log lines until it exits, so its stderr pipe never fills."""
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            tail.append(line)
            if not started.is_set() and '"gateway_started"' in line:
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if spec.workers > 1 and event.get("component") != "workers/supervisor":
                        continue  # a worker's own start: the supervisor's says all are up, with the public ports
                    ports.update(grpc=event["grpc_port"], http=event["http_port"], metrics=event["metrics_port"])
                    started.set()
        started.set()  # exited: wake the waiter

    reader = threading.Thread(target=drain, name=f"{spec.name}-stderr", daemon=True)
    reader.start()
    if not started.wait(_START_TIMEOUT_S) or not ports:
        _stop(process)
        reader.join(_STOP_TIMEOUT_S)
        process.stderr.close()
        raise RuntimeError(f"{spec.name} did not start: " + " | ".join(tail))
    metrics_port = ports["metrics"]
    return RunningTarget(
        spec,
        process,
        f"{LOOPBACK}:{ports['grpc']}",
        f"{LOOPBACK}:{ports['http']}",
        workdir,
        metrics_url=f"http://{LOOPBACK}:{metrics_port}/metrics" if metrics_port is not None else None,
        log_tail=tail,
        log_reader=reader,
    )


@contextlib.contextmanager
def rotel_sink(workdir: Path, cpus: frozenset[int]) -> Iterator[str]:
    """The blackhole sink for a whole run; yields its OTLP/gRPC address."""
    process, address = start_rotel_sink(workdir, cpus)
    try:
        yield address
    finally:
        _stop(process)
