"""Component type name -> factory. Adding an exporter type is a module plus one line here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.component import Exporter
from gateway.exporters.debug import create_debug_exporter
from gateway.settings import ConfigError, ExporterSettings

ExporterFactory = Callable[[str, Mapping[str, Any], str], Exporter]

EXPORTER_FACTORIES: Mapping[str, ExporterFactory] = {
    "debug": create_debug_exporter,
}


def build_exporter(settings: ExporterSettings) -> Exporter:
    """Validate an exporter's options with its type's factory; errors name ``exporters.<name>...``."""
    factory = EXPORTER_FACTORIES.get(settings.type)
    path = f"exporters.{settings.name}"
    if factory is None:
        known = ", ".join(sorted(EXPORTER_FACTORIES))
        raise ConfigError(f"{path}.type", f"unknown exporter type {settings.type!r} (known: {known})")
    return factory(settings.name, settings.options, path)
