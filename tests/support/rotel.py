"""rotel (the Rust OTLP agent from PyPI) as a real downstream OTLP backend for exporter tests.

``running_rotel()`` starts ``rotel-agent start`` on two free loopback ports with the blackhole
exporter and its debug log on stdout, reads that log as it comes (no sleeping), and stops the
process at the end. In the default ("basic") verbosity rotel logs one JSON line per batch it
received (``Received traces.`` with ``spans``); with ``detailed=True`` it prints every span (trace
id, span id, name, attributes), which ``Rotel.spans`` collects so tests can check ids and attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import rotel as rotel_package  # type: ignore[import-untyped]

ROTEL_AGENT = Path(rotel_package.__file__).parent / "rotel-agent"
_COUNT_FIELDS = {"Received traces.": ("traces", "spans"), "Received metrics.": ("metrics", "metrics")}
_COUNT_FIELDS["Received logs."] = ("logs", "logs")
_ATTRIBUTE = re.compile(r"^\s+-> ([^:]+): (\w+)\((.*)\)$")


def free_port() -> int:
    """A port the OS just handed out on 127.0.0.1 (for processes that cannot be given port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RotelSpan:
    trace_id: str
    span_id: str
    name: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    resource: dict[str, str] = field(default_factory=dict)


class Rotel:
    """A running rotel-agent and what it has logged so far."""

    def __init__(self, process: asyncio.subprocess.Process, grpc_port: int, http_port: int) -> None:
        self.process = process
        self.grpc_endpoint = f"127.0.0.1:{grpc_port}"
        self.http_endpoint = f"http://127.0.0.1:{http_port}"
        self.received: dict[str, int] = {"traces": 0, "metrics": 0, "logs": 0}
        self.batches = 0
        self.spans: list[RotelSpan] = []
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._resource: dict[str, str] = {}
        self._section = ""
        self._reader: asyncio.Task[None] | None = None

    async def wait_until(self, predicate: Callable[[Rotel], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds, woken by each line rotel prints."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def wait_for(self, signal: str, count: int, timeout: float = 10.0) -> None:
        try:
            await self.wait_until(lambda r: r.received[signal] >= count, timeout)
        except TimeoutError:
            raise AssertionError(f"rotel received {self.received[signal]} {signal} items, expected {count}") from None

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            text = line.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(text)
            self._parse(text)
            async with self._changed:
                self._changed.notify_all()

    def _parse(self, text: str) -> None:
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(text)
                counted = _COUNT_FIELDS.get(record.get("msg", ""))
                if counted is not None:
                    signal, key = counted
                    self.received[signal] += int(record.get(key, 0))
                    self.batches += 1
            return
        stripped = text.strip()
        if text.startswith("ResourceSpans #"):
            self._resource = {}
            self._section = ""
        elif text.startswith("Resource attributes:"):
            self._section = "resource"
        elif text.startswith("Span #"):
            self._section = "span"
        elif text.startswith("Attributes:"):
            self._section = "attributes"
        elif stripped.startswith("Trace ID"):
            self.spans.append(RotelSpan(trace_id=stripped.split(":", 1)[1].strip(), span_id=""))
            self.spans[-1].resource = dict(self._resource)
        elif stripped.startswith("ID ") and self.spans:
            self.spans[-1].span_id = stripped.split(":", 1)[1].strip()
            self.received["traces"] += 1
        elif stripped.startswith("Name ") and self.spans:
            self.spans[-1].name = stripped.split(":", 1)[1].strip()
        elif match := _ATTRIBUTE.match(text):
            key, _, value = match.groups()
            if self._section == "resource":
                self._resource[key] = value
            elif self._section == "attributes" and self.spans:
                self.spans[-1].attributes[key] = value


async def _wait_listening(rotel: Rotel, timeout: float) -> None:
    """Until rotel logged its start and its gRPC port accepts a connection (gRPC's own event)."""
    await rotel.wait_until(lambda r: any("Starting Rotel" in line for line in r.lines), timeout)
    options = [
        ("grpc.initial_reconnect_backoff_ms", 20),
        ("grpc.min_reconnect_backoff_ms", 20),
        ("grpc.max_reconnect_backoff_ms", 100),
    ]
    async with grpc.aio.insecure_channel(rotel.grpc_endpoint, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout)


@contextlib.asynccontextmanager
async def running_rotel(
    tmp_path: Path, *, detailed: bool = False, grpc_port: int | None = None, http_port: int | None = None
) -> AsyncIterator[Rotel]:
    """rotel-agent with the blackhole exporter, counting (or, ``detailed``, listing) what it receives."""
    grpc_port = grpc_port or free_port()
    http_port = http_port or free_port()
    args = [
        "start",
        "--otlp-grpc-endpoint",
        f"127.0.0.1:{grpc_port}",
        "--otlp-http-endpoint",
        f"127.0.0.1:{http_port}",
        "--exporter",
        "blackhole",
        "--log-format",
        "json",
        "--debug-log",
        "traces",
        "--debug-log",
        "metrics",
        "--debug-log",
        "logs",
        "--debug-log-verbosity",
        "detailed" if detailed else "basic",
        "--batch-timeout",
        "10ms",
        "--pid-file",
        str(tmp_path / f"rotel-{grpc_port}.pid"),
        "--log-file",
        str(tmp_path / f"rotel-{grpc_port}.log"),
    ]
    process = await asyncio.create_subprocess_exec(
        str(ROTEL_AGENT),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    rotel = Rotel(process, grpc_port, http_port)
    rotel._reader = asyncio.create_task(rotel._read())
    try:
        try:
            await _wait_listening(rotel, 10.0)
        except TimeoutError:
            raise AssertionError("rotel did not start:\n" + "\n".join(rotel.lines)) from None
        yield rotel
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        await rotel._reader
