"""``workers: N``: N gateway processes on the same receiver ports, one merged ``/metrics``.

Why processes: derivation is pure-Python CPU work on one event loop, so one process uses one core.
The kernel spreads incoming *connections* across processes that listen on the same port with
SO_REUSEPORT; each worker (``worker.py``) is a complete ``Gateway`` with its own store, exporter
queues and backend connections. The supervisor never handles a request. It:

- reserves the receiver ports given as 0 (binds a SO_REUSEPORT socket it never listens on, and
  hands the port to every worker), so a restarted worker gets the same port back;
- starts the workers with multiprocessing *spawn* and waits for each to report its private state
  endpoint over a pipe; a worker that cannot start (a port in use, a bad exporter option) stops
  the whole start-up with the worker's exit code (1 or 2, as the single process);
- owns the public ``prometheus.endpoint``: ``/metrics`` fetches every worker's state concurrently
  and renders the merge (``merge.py``); ``/health/ready`` is ready when every worker is;
- restarts a worker that exited with a backoff (0.5 s doubling to 30 s, back to 0.5 s after a
  minute of life) and counts it in ``gateway_worker_restarts_total{worker}``; the dead worker's
  last state stays in the merge as an offset, so counters never go down;
- on SIGTERM/SIGINT forwards SIGTERM to every worker, waits for them to drain (bounded), and exits
  0 when all exited 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_1_0_0

from gateway.log import LogFormat, get_logger
from gateway.metrics.http import STATE_PATH
from gateway.metrics.store import MetricStore
from gateway.settings import Endpoint, Settings
from gateway.workers.merge import Merger
from gateway.workers.snapshot import Snapshot, state_of
from gateway.workers.worker import EXIT_STARTUP, WorkerSpec, worker_main

STOP_TIMEOUT = 30.0  # a worker's drain is bounded by its own grace periods; this is the backstop
FETCH_TIMEOUT = 10.0
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
BACKOFF_RESET_AFTER = 60.0  # a worker that lived this long starts the backoff over


@dataclass(frozen=True, slots=True)
class Launch:
    """What the CLI knows that workers need too: the config file and the logging flags."""

    config_path: str
    log_format: LogFormat = "json"
    log_level: str = "info"


@dataclass(slots=True)
class _Slot:
    """Worker ``index``: its current process (replaced on restart) and its last state."""

    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    pid: int = 0
    state_port: int | None = None
    started_at: float = 0.0
    snapshot: Snapshot | None = None
    backoff: float = BACKOFF_INITIAL
    failures: list[str] = field(default_factory=list)


async def _readable(fd: int) -> None:
    """Return once ``fd`` is readable (a pipe with data or EOF, a process sentinel that ended)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def reserve_port(endpoint: Endpoint) -> socket.socket:
    """A bound, never-listening SO_REUSEPORT socket on ``endpoint`` (port 0: the kernel picks one).

    It keeps the port for the workers while the supervisor lives (a worker restarting finds it
    free) and receives no connection itself: the kernel balances only across listening sockets.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        endpoint.host, endpoint.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class Supervisor:
    def __init__(self, settings: Settings, launch: Launch) -> None:
        self.settings = settings
        self._launch = launch
        self._log = get_logger("workers/supervisor")
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot(index) for index in range(settings.workers)]
        prometheus = settings.prometheus
        self._merger = Merger(prometheus.max_series_per_metric, prometheus.series_expiration)
        self.store = MetricStore(
            max_series=prometheus.max_series_per_metric, series_expiration=prometheus.series_expiration
        )
        self._restarts = self.store.counter(
            "gateway_worker_restarts",
            "Worker processes started again after one exited unexpectedly (workers: N).",
            ("worker",),
            expires=False,
        )
        self._running = self.store.gauge("gateway_workers", "Worker processes serving (workers: N).", (), expires=False)
        self._reserved: list[socket.socket] = []
        self._ports: dict[str, int | None] = {"grpc": None, "http": None}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self._wakeup = asyncio.Event()  # set on stop: ends restart backoffs early
        self.metrics_port: int | None = None
        self.failure: str | None = None  # why start-up failed: the first worker's error

    # -- lifecycle --

    async def run(self, stop: asyncio.Event) -> int:
        """Start everything, serve until ``stop``, stop every worker; the process exit code."""
        try:
            self._reserve()
            await self._start_endpoint()
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT))
            results = await asyncio.gather(*(self._spawn(slot) for slot in self._slots))
            failed = [code for code in results if code != 0]
            if failed:
                errors = [error for slot in self._slots for error in slot.failures]
                self._log.error("workers_failed_to_start", errors=errors)
                self.failure = errors[0] if errors else "a worker exited"
                return failed[0]
            self._log.info(
                "gateway_started",
                workers=len(self._slots),
                pids=[slot.pid for slot in self._slots],
                grpc_port=self._public_port("grpc"),
                http_port=self._public_port("http"),
                metrics_port=self.metrics_port,
            )
            watchers = [asyncio.create_task(self._watch(slot)) for slot in self._slots]
            try:
                await stop.wait()
            finally:
                self._stopping = True
                self._wakeup.set()
                for watcher in watchers:
                    watcher.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
            return await self._stop_workers()
        finally:
            self._stopping = True
            await self._stop_workers()
            await self._close()
            self._log.info("gateway_stopped")

    def _public_port(self, receiver: str) -> int | None:
        configured = self.settings.grpc if receiver == "grpc" else self.settings.http
        if configured is None:
            return None
        return self._ports[receiver] or configured.endpoint.port

    def _reserve(self) -> None:
        """Ports given as 0 are picked here once, so every worker (and a restarted one) shares them."""
        for name, receiver in (("grpc", self.settings.grpc), ("http", self.settings.http)):
            if receiver is not None and receiver.endpoint.port == 0:
                sock = reserve_port(receiver.endpoint)
                self._reserved.append(sock)
                self._ports[name] = int(sock.getsockname()[1])

    async def _spawn(self, slot: _Slot) -> int:
        """Start worker ``slot.index`` and wait for its report: 0 once it serves, else its exit code."""
        spec = WorkerSpec(
            slot.index,
            self._launch.config_path,
            self._launch.log_format,
            self._launch.log_level,
            grpc_port=self._ports["grpc"],
            http_port=self._ports["http"],
        )
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=worker_main, args=(spec, theirs), name=f"gateway-worker-{slot.index}")
        process.start()
        theirs.close()
        slot.process, slot.conn, slot.state_port, slot.snapshot = process, ours, None, None
        slot.pid = process.pid or 0
        slot.started_at = time.monotonic()
        await _readable(ours.fileno())
        try:
            message: dict[str, Any] = ours.recv()
        except (EOFError, OSError):
            message = {"event": "failed", "code": EXIT_STARTUP, "error": "exited before reporting"}
        if message.get("event") != "started":
            slot.failures.append(str(message.get("error")))
            return int(message.get("code", EXIT_STARTUP)) or EXIT_STARTUP
        slot.state_port = int(message["state_port"])
        self._log.info("worker_started", worker=slot.index, pid=slot.pid, state_port=slot.state_port)
        return 0

    async def _watch(self, slot: _Slot) -> None:
        """Restart worker ``slot.index`` whenever it exits, until the supervisor stops."""
        while not self._stopping:
            process = slot.process
            assert process is not None
            await _readable(process.sentinel)
            process.join()
            self._retire(slot)
            if self._stopping:
                return
            lived = time.monotonic() - slot.started_at
            if lived >= BACKOFF_RESET_AFTER:
                slot.backoff = BACKOFF_INITIAL
            delay = slot.backoff
            slot.backoff = min(slot.backoff * 2, BACKOFF_MAX)
            self._log.warning(
                "worker_exited", worker=slot.index, pid=slot.pid, exit_code=process.exitcode, restart_in_s=delay
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)
            if self._stopping:
                return
            self._restarts.inc((str(slot.index),))
            if await self._spawn(slot) != 0:
                self._log.error("worker_restart_failed", worker=slot.index, error=slot.failures[-1:])

    def _retire(self, slot: _Slot) -> None:
        """A worker exited: its last state becomes an offset in the merge; its endpoint is gone."""
        if slot.snapshot is not None:
            self._merger.retire(slot.snapshot)
        slot.snapshot = None
        slot.state_port = None
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None

    async def _stop_workers(self) -> int:
        """SIGTERM to every worker, then wait (bounded) for all of them; 0 when all exited 0."""
        processes = [slot.process for slot in self._slots if slot.process is not None]
        for process in processes:
            if process.exitcode is None:
                process.terminate()
        waiting = [p for p in processes if p.exitcode is None]
        try:
            await asyncio.wait_for(asyncio.gather(*(_readable(p.sentinel) for p in waiting)), STOP_TIMEOUT)
        except TimeoutError:
            for process in waiting:
                if process.exitcode is None and process.is_alive():
                    self._log.error("worker_stop_timeout", pid=process.pid, timeout_s=STOP_TIMEOUT)
                    process.kill()
        codes = []
        for process in processes:
            process.join()
            codes.append(process.exitcode)
        for slot in self._slots:
            if slot.process is not None:
                self._retire(slot)
                slot.process.close()
                slot.process = None
        if processes:
            self._log.info("workers_stopped", exit_codes=codes)
        return 0 if all(code == 0 for code in codes) else EXIT_STARTUP

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        for sock in self._reserved:
            sock.close()
        self._reserved.clear()

    # -- the public endpoint --

    async def _start_endpoint(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health/live", self._live)
        app.router.add_get("/health/ready", self._ready)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        endpoint = self.settings.prometheus.endpoint
        try:
            await web.TCPSite(runner, endpoint.host, endpoint.port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.metrics_port = int(runner.addresses[0][1])

    async def snapshots(self) -> list[Snapshot]:
        """Every serving worker's state, fetched concurrently; a worker that does not answer counts
        with the state it had at the previous scrape (never with less)."""
        live = [slot for slot in self._slots if slot.state_port is not None]
        fetched = await asyncio.gather(*(self._fetch(slot.state_port) for slot in live if slot.state_port))
        for slot, snapshot in zip(live, fetched, strict=True):
            if snapshot is None or snapshot.get("pid") != slot.pid or slot.state_port is None:
                continue  # failed, or the worker was replaced meanwhile (its offset is retired already)
            if slot.snapshot is None or snapshot["now"] >= slot.snapshot["now"]:
                slot.snapshot = snapshot
        self._running.set((), float(len(live)))
        return [slot.snapshot for slot in self._slots if slot.snapshot is not None]

    async def _fetch(self, port: int) -> Snapshot | None:
        assert self._session is not None
        try:
            async with self._session.get(f"http://127.0.0.1:{port}{STATE_PATH}") as response:
                if response.status != 200:
                    return None
                state: Snapshot = orjson.loads(await response.read())
                return state
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            return None

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        snapshots = await self.snapshots()
        exposition = self._merger.exposition([*snapshots, state_of(self.store, None)])
        _, content_type = choose_encoder(request.headers.get("Accept", ""))
        openmetrics = content_type.startswith("application/openmetrics-text")
        response = web.StreamResponse(
            headers={"Content-Type": OPENMETRICS_1_0_0 if openmetrics else CONTENT_TYPE_PLAIN_0_0_4}
        )
        await response.prepare(request)
        await exposition.write_to(response.write, openmetrics)
        await response.write_eof()
        return response

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def _ready(self, request: web.Request) -> web.Response:
        """Ready when every worker is (each one's own /health/ready, fetched concurrently)."""
        answers = await asyncio.gather(*(self._worker_ready(slot) for slot in self._slots))
        components = {f"worker/{slot.index}": ready for slot, (ready, _) in zip(self._slots, answers, strict=True)}
        ready = all(components.values())
        details = {f"worker/{slot.index}": body for slot, (_, body) in zip(self._slots, answers, strict=True) if body}
        payload: dict[str, object] = {"status": "ready" if ready else "not_ready", "components": components}
        if details:
            payload["details"] = details
        return web.json_response(payload, status=200 if ready else 503)

    async def _worker_ready(self, slot: _Slot) -> tuple[bool, dict[str, Any] | None]:
        port = slot.state_port
        if port is None or self._session is None:
            return False, None
        try:
            async with self._session.get(f"http://127.0.0.1:{port}/health/ready") as response:
                body: dict[str, Any] = await response.json()
                return response.status == 200, body
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False, None
