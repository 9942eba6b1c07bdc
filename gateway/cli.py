"""Command line: ``otel-ai-gateway [--config FILE]`` (also ``python -m gateway``), and
``otel-ai-gateway hash-key`` which prints the SHA-256 of an API key read from stdin, for ``auth.api_keys``.

Exit codes: 0 after a clean shutdown on SIGTERM/SIGINT, 2 for an invalid configuration (the message
names the key path), 1 when a port cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Sequence

from gateway.log import LogFormat, configure_logging, get_logger
from gateway.settings import ConfigError, Settings, load_settings

EXIT_CONFIG = 2
EXIT_STARTUP = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-ai-gateway",
        description="OTLP gateway that derives GenAI token, cost and latency metrics and forwards OTLP.",
    )
    parser.add_argument("--config", help="YAML config file (default: the embedded defaults)")
    parser.add_argument("--log-format", choices=("json", "console"), default="json")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("hash-key", help="print the sha256 of an API key read from stdin (for auth.api_keys)")
    return parser


GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the start-up heap and out of the per-batch path.

    Building the gateway loads price tables and convention maps (about 100k long-lived objects) that
    every full collection would traverse again; ``gc.freeze()`` moves them to the permanent
    generation. Derivation allocates a handful of short-lived objects per span (protobuf wrappers,
    label tuples) that reference counting frees, so the default gen-0 threshold (700) ran several
    pointless collections per 512-span batch. Measured: about 15 % less CPU per span
    (``python -m benchmarks.derive --gc``; numbers in benchmarks/RESULTS.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 10, 10)


def _hash_key() -> int:
    """Read one key from stdin (trailing newline ignored) so it never lands in shell history."""
    from gateway.auth import hash_key

    key = sys.stdin.readline().rstrip("\r\n")
    if not key:
        print("otel-ai-gateway hash-key: no key on stdin", file=sys.stderr)
        return EXIT_CONFIG
    print(hash_key(key))
    return 0


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _serve(config_path: str | None, log_format: LogFormat = "json", log_level: str = "info") -> int:
    log = get_logger("cli")
    try:
        settings = load_settings(config_path)
        if settings.workers > 1 and config_path is not None:  # the defaults say 1
            from gateway.registry import build_exporter

            for exporter in settings.exporters:  # as Gateway() does: a bad option stops us before any worker
                build_exporter(exporter)
            return await _supervise(settings, config_path, log_format, log_level)
        from gateway.app import Gateway  # imported late: building it loads price data

        gateway = Gateway(settings)
    except ConfigError as exc:
        log.error("invalid_config", key=exc.path, error=exc.message)
        print(f"otel-ai-gateway: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    tune_gc()
    stop = _stop_event()
    try:
        await gateway.run(stop)
    except OSError as exc:
        log.error("startup_failed", error=str(exc))
        print(f"otel-ai-gateway: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return 0


async def _supervise(settings: Settings, config_path: str, log_format: LogFormat, log_level: str) -> int:
    """``workers: N`` (N > 1): this process only supervises; gateway/workers/ and docs/workers.md."""
    from gateway.workers.supervisor import Launch, Supervisor

    supervisor = Supervisor(settings, Launch(config_path, log_format, log_level))
    try:
        code = await supervisor.run(_stop_event())
    except OSError as exc:
        get_logger("cli").error("startup_failed", error=str(exc))
        print(f"otel-ai-gateway: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    if supervisor.failure is not None:
        what = "invalid configuration" if code == EXIT_CONFIG else "cannot start"
        print(f"otel-ai-gateway: {what}: {supervisor.failure}", file=sys.stderr)
    elif code != 0:
        print(f"otel-ai-gateway: a worker did not stop cleanly (exit code {code}); see the log", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "hash-key":
        return _hash_key()
    configure_logging(args.log_format, args.log_level)
    return asyncio.run(_serve(args.config, args.log_format, args.log_level))
