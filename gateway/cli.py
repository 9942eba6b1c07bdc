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

from gateway.log import configure_logging, get_logger
from gateway.settings import ConfigError, load_settings

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


async def _serve(config_path: str | None) -> int:
    from gateway.app import Gateway  # imported late: building it loads price data

    log = get_logger("cli")
    try:
        settings = load_settings(config_path)
        gateway = Gateway(settings)
    except ConfigError as exc:
        log.error("invalid_config", key=exc.path, error=exc.message)
        print(f"otel-ai-gateway: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await gateway.run(stop)
    except OSError as exc:
        log.error("startup_failed", error=str(exc))
        print(f"otel-ai-gateway: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "hash-key":
        return _hash_key()
    configure_logging(args.log_format, args.log_level)
    return asyncio.run(_serve(args.config))
