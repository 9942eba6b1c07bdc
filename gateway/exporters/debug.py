"""The default exporter: one structlog event per batch (counts and services), never per span.

It lets ``make run`` work with no backend at all, and shows at a glance that data arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.component import Batch
from gateway.log import get_logger
from gateway.settings import ConfigError, reject_unknown

_SERVICE_NAME = "service.name"


@dataclass(frozen=True, slots=True)
class DebugExporterConfig:
    @staticmethod
    def from_mapping(options: Mapping[str, Any], path: str) -> DebugExporterConfig:
        reject_unknown(options, (), path)
        return DebugExporterConfig()


def services_of(request: Any) -> list[str]:
    """The distinct ``service.name`` values of a request's resources, in order of appearance."""
    resources = (
        getattr(request, "resource_spans", None)
        or getattr(request, "resource_metrics", None)
        or getattr(request, "resource_logs", None)
        or ()
    )
    names: list[str] = []
    for resource_entry in resources:
        for attribute in resource_entry.resource.attributes:
            if attribute.key == _SERVICE_NAME:
                name = attribute.value.string_value
                if name not in names:
                    names.append(name)
                break
    return names


class DebugExporter:
    def __init__(self, name: str, config: DebugExporterConfig) -> None:
        self.name = name
        self._log = get_logger(f"exporter/{name}")
        self._started = False

    async def start(self) -> None:
        self._started = True
        self._log.info("exporter_started", type="debug")

    async def shutdown(self) -> None:
        if self._started:
            self._started = False
            self._log.info("exporter_stopped", type="debug")

    def ready(self) -> bool:
        return self._started

    async def export(self, batch: Batch) -> None:
        self._log.info(
            "batch",
            signal=batch.signal,
            items=batch.items,
            bytes=len(batch.raw),
            transport=batch.transport,
            services=services_of(batch.request),
        )


def create_debug_exporter(name: str, options: Mapping[str, Any], path: str) -> DebugExporter:
    return DebugExporter(name, DebugExporterConfig.from_mapping(options, path))


__all__ = ["ConfigError", "DebugExporter", "DebugExporterConfig", "create_debug_exporter"]
