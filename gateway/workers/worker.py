"""One worker process of ``workers: N``: a whole ``Gateway`` sharing the receiver ports.

Started by the supervisor with multiprocessing *spawn* (grpc's core is not fork-safe once started),
so this module is imported fresh in the child: ``worker_main`` reads the config file again, adapts
what must differ per process (``worker_settings``), starts the gateway and reports over a one-way
pipe either ``{"event": "started", "pid", "state_port"}`` or ``{"event": "failed", "code", "error"}``.

The worker stops on SIGTERM (the supervisor forwards its own) and drains exactly as the
single-process gateway does. It ignores SIGINT, which a terminal sends to the whole process group:
the supervisor decides the order. If the supervisor dies, the pipe's other end closes and the
worker stops too, rather than keep the ports as an orphan.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from gateway.log import LogFormat, configure_logging, get_logger
from gateway.settings import ConfigError, Endpoint, ExporterSettings, Settings, load_settings

EXIT_CONFIG = 2
EXIT_STARTUP = 1


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker needs to build its gateway; picklable, since spawn sends it to the child."""

    index: int
    config_path: str
    log_format: LogFormat = "json"
    log_level: str = "info"
    grpc_port: int | None = None  # the port the supervisor reserved when the config says 0
    http_port: int | None = None


def worker_settings(settings: Settings, spec: WorkerSpec) -> Settings:
    """The settings of worker ``spec.index``: what is per process gets its own port, file or directory.

    - ``prometheus.endpoint``: a private ``127.0.0.1:0`` (the supervisor owns the public one);
    - receiver ports given as 0: the port the supervisor reserved, the same for every worker;
    - an exporter's ``queue.directory``: a ``worker-<i>`` sub-directory (a disk queue is locked by one
      process; a restarted worker takes its predecessor's directory and delivers what is in it);
    - ``genai.budget_state_file``: ``<stem>.worker-<i><suffix>`` (one state file per replica, and the
      file keeps the replica id under which the worker writes its usage to Redis).
    """
    grpc = settings.grpc
    if grpc is not None and spec.grpc_port is not None:
        grpc = dataclasses.replace(grpc, endpoint=Endpoint(grpc.endpoint.host, spec.grpc_port))
    http = settings.http
    if http is not None and spec.http_port is not None:
        http = dataclasses.replace(http, endpoint=Endpoint(http.endpoint.host, spec.http_port))
    budgets = settings.genai.budgets
    if budgets.state_file:
        path = Path(budgets.state_file)
        budgets = dataclasses.replace(
            budgets, state_file=str(path.with_name(f"{path.stem}.worker-{spec.index}{path.suffix}"))
        )
    return dataclasses.replace(
        settings,
        grpc=grpc,
        http=http,
        prometheus=dataclasses.replace(settings.prometheus, endpoint=Endpoint("127.0.0.1", 0)),
        exporters=tuple(_exporter(e, spec.index) for e in settings.exporters),
        genai=dataclasses.replace(settings.genai, budgets=budgets),
    )


def _exporter(exporter: ExporterSettings, index: int) -> ExporterSettings:
    queue = exporter.options.get("queue")
    if not isinstance(queue, Mapping) or not queue.get("directory"):
        return exporter
    directory = str(Path(str(queue["directory"])) / f"worker-{index}")
    options: dict[str, Any] = {**exporter.options, "queue": {**queue, "directory": directory}}
    return dataclasses.replace(exporter, options=options)


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """The child process' entry point (a module-level function: spawn imports it by name)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(spec.log_format, spec.log_level)
    structlog.contextvars.bind_contextvars(worker=spec.index)
    code = asyncio.run(_run(spec, conn))
    conn.close()
    sys.exit(code)


async def _run(spec: WorkerSpec, conn: Connection) -> int:
    from gateway.app import Gateway  # late: building it loads price data
    from gateway.cli import tune_gc

    log = get_logger("workers/worker")
    try:
        settings = worker_settings(load_settings(spec.config_path), spec)
        gateway = Gateway(settings, worker=True)
    except ConfigError as exc:
        conn.send({"event": "failed", "code": EXIT_CONFIG, "error": str(exc)})
        return EXIT_CONFIG
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def supervisor_gone() -> None:
        # The supervisor never writes: readable means its end closed (it died), so stop.
        loop.remove_reader(conn.fileno())
        stop.set()

    try:
        await gateway.start()
    except OSError as exc:
        log.error("startup_failed", error=str(exc))
        conn.send({"event": "failed", "code": EXIT_STARTUP, "error": str(exc)})
        return EXIT_STARTUP
    conn.send({"event": "started", "pid": os.getpid(), "state_port": gateway.metrics_server.port})
    loop.add_reader(conn.fileno(), supervisor_gone)
    try:
        await stop.wait()
    finally:
        if not conn.closed:
            loop.remove_reader(conn.fileno())
        await gateway.shutdown()
    return 0
