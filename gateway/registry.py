"""Component type name -> factory. Adding an exporter type is a module plus one line here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.component import Exporter
from gateway.exporters.base import SelfObserving
from gateway.exporters.debug import create_debug_exporter
from gateway.exporters.otlp_grpc import create_otlp_grpc_exporter
from gateway.exporters.otlp_http import create_otlp_http_exporter
from gateway.metrics.store import MetricStore
from gateway.settings import ConfigError, ExporterSettings

ExporterFactory = Callable[[str, Mapping[str, Any], str], Exporter]

EXPORTER_FACTORIES: Mapping[str, ExporterFactory] = {
    "debug": create_debug_exporter,
    "otlp_grpc": create_otlp_grpc_exporter,
    "otlp_http": create_otlp_http_exporter,
}


def build_exporter(settings: ExporterSettings, store: MetricStore | None = None) -> Exporter:
    """Validate an exporter's options with its type's factory; errors name ``exporters.<name>...``.

    With ``store``, an exporter that keeps self-metrics (``SelfObserving``) keeps them there."""
    factory = EXPORTER_FACTORIES.get(settings.type)
    path = f"exporters.{settings.name}"
    if factory is None:
        known = ", ".join(sorted(EXPORTER_FACTORIES))
        raise ConfigError(f"{path}.type", f"unknown exporter type {settings.type!r} (known: {known})")
    exporter = factory(settings.name, settings.options, path)
    if store is not None and isinstance(exporter, SelfObserving):
        exporter.bind_metrics(store)
    return exporter
