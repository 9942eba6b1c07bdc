"""Config value readers shared by every component's config class.

Each reader takes the raw YAML value and its dotted key path and returns a typed value or raises
``ConfigError(path, message)``, so every error a user sees starts with the key to fix. Kept apart
from ``settings.py`` so component config modules can import it without an import cycle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h)\s*$")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": KIB, "MB": 10**6, "MiB": MIB, "GB": 10**9, "GiB": GIB}


class ConfigError(Exception):
    """A configuration value is invalid; ``path`` is the dotted key path that holds it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def expect_mapping(value: Any, path: str) -> Mapping[str, Any]:
    """A YAML mapping; an absent (null) section reads as empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(path, f"keys must be strings, got {key!r}")
    return value


def reject_unknown(section: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
    """Unknown keys are typos until proven otherwise: refuse them, naming the first one."""
    for key in section:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            raise ConfigError(where, f"unknown key (expected one of: {', '.join(allowed)})")


def read_str(value: Any, path: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value):
        raise ConfigError(path, f"expected a non-empty string, got {value!r}")
    return value


def read_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {value!r}")
    return value


def read_int(value: Any, path: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(path, f"must be >= {minimum}, got {value}")
    return value


def read_duration(value: Any, path: str) -> float:
    """Seconds from ``200ms``, ``10s``, ``5m`` (the collector's spelling) or a bare number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ConfigError(path, f"expected a duration such as 200ms, 10s or 5m, got {value!r}")


def read_size(value: Any, path: str) -> int:
    """Bytes from ``4MiB``, ``512KiB``, ``20MB`` or a bare integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)):
        return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    raise ConfigError(path, f"expected a size such as 4MiB or 1048576, got {value!r}")


def read_str_list(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list of strings, got {type(value).__name__}")
    return tuple(read_str(item, f"{path}[{index}]") for index, item in enumerate(value))


def read_endpoint(value: Any, path: str) -> Endpoint:
    """``host:port`` as the collector writes it; port 0 asks the OS for a free one (tests)."""
    text = read_str(value, path)
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(path, f"expected host:port, got {text!r}")
    return Endpoint(host.strip("[]"), int(port_text))


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
