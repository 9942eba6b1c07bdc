"""A real Prometheus server (Debian's /usr/bin/prometheus 2.42) scraping a gateway under test.

Started with a temporary config and TSDB, on a free loopback port, scraping every second with
exemplar storage on; the helpers poll its HTTP API (the only readiness signal an external process
offers) within a deadline, and ``stop`` terminates and reaps it so no process outlives its test.

``honor_labels: true`` as for any federation-style endpoint: the gateway serves ``job`` and
``instance`` from the services' resources, and Prometheus must keep them rather than rename them
``exported_job`` / ``exported_instance`` (docs/metrics.md shows the same scrape config).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: gateway
    honor_labels: true
    static_configs:
      - targets: ["{target}"]
"""


class _Exited(Exception):
    """Prometheus stopped on its own (typically: its port was taken)."""


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus not found: `make test` installs the Debian package prometheus (needs root + apt)")
    return path


def free_port() -> int:
    """A port nothing listens on right now (Prometheus takes its port on the command line)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Prometheus:
    """One Prometheus process scraping ``target`` (host:port of a gateway's /metrics).

    Use ``await Prometheus.start(target)``: it retries on another port if the one picked was taken
    between the probe and Prometheus binding it (other test processes share the machine).
    """

    @classmethod
    async def start(cls, target: str, attempts: int = 3) -> Prometheus:
        for attempt in range(attempts):
            server = cls(target)
            try:
                await server._until(server._ready, "/-/ready", timeout=15.0)
            except _Exited:
                await server.stop()
                if attempt == attempts - 1:
                    raise
                continue
            return server
        raise AssertionError("unreachable")

    def __init__(self, target: str) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="prometheus-test-")
        root = Path(self._directory.name)
        (root / "prometheus.yml").write_text(_CONFIG.format(target=target), encoding="utf-8")
        self.url = f"http://127.0.0.1:{free_port()}"
        self._process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        await self._session.close()
        self._process.terminate()
        try:
            await asyncio.to_thread(self._process.wait, 10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            await asyncio.to_thread(self._process.wait)
        if self._process.stderr is not None:
            self._process.stderr.close()
        self._directory.cleanup()

    async def _ready(self) -> bool:
        async with self._session.get(f"{self.url}/-/ready") as response:
            return response.status == 200

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        async with self._session.get(f"{self.url}{path}", params=params) as response:
            return await response.json()

    async def _until(self, probe: Callable[[], Any], what: Callable[[], str] | str, timeout: float = 15.0) -> Any:
        """Poll ``probe`` until it returns something truthy; fail the test with ``what`` if it never does."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise _Exited(f"prometheus exited with {self._process.returncode}: {stderr}")
            try:
                result = await probe()
            except aiohttp.ClientConnectionError:
                result = None
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"prometheus: timed out waiting for {what if isinstance(what, str) else what()}")
            await asyncio.sleep(0.1)

    async def wait_for_target_up(self) -> dict[str, Any]:
        """The gateway target once a scrape has succeeded (its health is "up")."""

        async def probe() -> dict[str, Any] | None:
            targets = (await self._get("/api/v1/targets"))["data"]["activeTargets"]
            return next((t for t in targets if t["health"] == "up"), None)

        # Prometheus 2.x hands new targets to the scraper every 5 s; allow for a loaded machine.
        result: dict[str, Any] = await self._until(probe, "the gateway target to be up", timeout=30.0)
        return result

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector a PromQL query returns right now (possibly empty)."""
        body = await self._get("/api/v1/query", {"query": promql})
        if body["status"] != "success":
            pytest.fail(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def wait_for_value(self, promql: str, expected: float) -> float:
        """Poll until ``promql`` returns one sample equal to ``expected`` (or fail with the last seen)."""
        seen: list[list[dict[str, Any]]] = [[]]

        async def probe() -> float | None:
            seen[0] = await self.query(promql)
            if len(seen[0]) == 1 and float(seen[0][0]["value"][1]) == expected:
                return expected
            return None

        value: float = await self._until(probe, lambda: f"{promql} == {expected}, last result {seen[0]}")
        return value

    async def exemplars(self, promql: str) -> list[dict[str, Any]]:
        """Exemplars stored for the series ``promql`` selects (any time)."""
        body = await self._get("/api/v1/query_exemplars", {"query": promql, "start": "0", "end": "9999999999"})
        if body["status"] != "success":
            pytest.fail(f"exemplar query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]
        return result

    async def wait_for_exemplars(self, promql: str) -> list[dict[str, Any]]:
        async def probe() -> list[dict[str, Any]] | None:
            return await self.exemplars(promql) or None

        result: list[dict[str, Any]] = await self._until(probe, f"exemplars of {promql}")
        return result
