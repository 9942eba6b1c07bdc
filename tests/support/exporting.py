"""Helpers for exporter tests: gateway settings with exporters, real SDK-encoded requests, and the
record-level view of an OTLP body used to compare forwarded bytes with received ones."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal as signals
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from gateway.settings import Settings, parse_settings
from proto_handlers import Signal, split_request
from tests.conftest import loopback_settings, sample_value
from tests.support.otel_sdk import make_spans

FAST_RETRY: dict[str, str] = {"initial_interval": "20ms", "max_interval": "100ms", "max_elapsed_time": "20s"}
FAST_BATCH: dict[str, str] = {"timeout": "10ms"}


def exporter_settings(
    exporters: Mapping[str, Mapping[str, Any]],
    pipelines: Mapping[str, list[str]] | None = None,
    resource: Mapping[str, Any] | None = None,
) -> Settings:
    """Loopback gateway settings whose pipelines (default: every signal) feed ``exporters``."""
    names = list(exporters)
    document: dict[str, Any] = {
        "exporters": {name: dict(body) for name, body in exporters.items()},
        "pipelines": {
            signal: {"exporters": list((pipelines or {}).get(signal, names))}
            for signal in ("traces", "metrics", "logs")
        },
    }
    if resource:
        document["resource"] = {"attributes": dict(resource)}
    return loopback_settings(parse_settings(yaml.safe_dump(document), {}))


def span_request(count: int, service: str = "checkout", attributes: dict[str, object] | None = None) -> bytes:
    """A serialized ExportTraceServiceRequest of ``count`` spans made by the real SDK."""
    return encode_spans(make_spans(count, service, attributes)).SerializeToString()  # type: ignore[no-any-return]


def records(signal: Signal, body: bytes) -> list[bytes]:
    """The top-level records (one resource entry each) of a serialized request, bytes untouched."""
    return split_request(signal, body, 1)


def record_counts(signal: Signal, bodies: list[bytes]) -> Counter[bytes]:
    counts: Counter[bytes] = Counter()
    for body in bodies:
        counts.update(records(signal, body))
    return counts


async def post(
    url: str, body: bytes, content_type: str = "application/x-protobuf"
) -> tuple[int, bytes, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"Content-Type": content_type}) as response,
    ):
        return response.status, await response.read(), dict(response.headers)


class GatewayProcess:
    """``python -m gateway`` as a child process, its JSON log read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())
        self.http_url = ""
        self.metrics_url = ""

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))
            async with self._changed:
                self._changed.notify_all()

    def find(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    async def wait_for_event(self, event: str, timeout: float = 20.0) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: bool(self.find(event)) or self.process.returncode is not None)
        except TimeoutError:
            raise AssertionError(f"{event} not logged; events: {[e.get('event') for e in self.events]}") from None
        found = self.find(event)
        if not found:
            raise AssertionError(f"gateway exited ({self.process.returncode}) before {event}: {self.events}")
        return found[0]

    async def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        async with aiohttp.ClientSession() as session, session.get(f"{self.metrics_url}/metrics") as response:
            return sample_value(await response.text(), name, labels or {})

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        self.process.send_signal(signals.SIGKILL)

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signals.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 20.0)
        await self._reader
        return code


@contextlib.asynccontextmanager
async def gateway_process(config: Path) -> AsyncIterator[GatewayProcess]:
    """A started gateway process (gateway_started seen); killed if the test leaves it running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--config",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    gateway = GatewayProcess(process)
    try:
        started = await gateway.wait_for_event("gateway_started")
        gateway.http_url = f"http://127.0.0.1:{started['http_port']}"
        gateway.metrics_url = f"http://127.0.0.1:{started['metrics_port']}"
        yield gateway
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await gateway._reader
