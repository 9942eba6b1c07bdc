"""The one place structlog is configured: JSON through orjson by default, a console renderer on request.

Components bind their id once (``log.bind(component="exporter/console")``) and log start, stop and
failures as key-value events; nothing logs per span or per request (that is what self-metrics are for).
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import orjson
import structlog

LogFormat = Literal["json", "console"]


def configure_logging(fmt: LogFormat = "json", level: str = "info") -> None:
    """Configure structlog once, at start-up; the processors chain is built here and never again."""
    level_number = logging.getLevelNamesMapping().get(level.upper())
    if level_number is None:
        raise ValueError(f"unknown log level {level!r}")
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    if fmt == "console":
        structlog.configure(
            processors=[*shared, structlog.dev.ConsoleRenderer(colors=False)],
            wrapper_class=structlog.make_filtering_bound_logger(level_number),
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
            cache_logger_on_first_use=True,
        )
    else:
        structlog.configure(
            processors=[*shared, structlog.processors.JSONRenderer(serializer=orjson.dumps)],
            wrapper_class=structlog.make_filtering_bound_logger(level_number),
            logger_factory=structlog.BytesLoggerFactory(file=sys.stderr.buffer),
            cache_logger_on_first_use=True,
        )


def get_logger(component: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to its component id, the collector's ``kind/name`` form."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(component=component)
    return logger
