"""Config pieces every OTLP exporter shares: TLS, batching, headers and compression.

Each reads its own section and names the key path in errors, like ``gateway.settings``. The
transport configs (``OtlpGrpcExporterConfig``, ``OtlpHttpExporterConfig``) compose them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.validation import (
    MIB,
    ConfigError,
    expect_mapping,
    read_bool,
    read_duration,
    read_int,
    read_size,
    read_str,
    reject_unknown,
)

Compression = Literal["gzip", "zstd", "none"]
COMPRESSIONS: tuple[Compression, ...] = ("gzip", "zstd", "none")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """``tls:`` as the collector spells it; files are checked for readability at start-up."""

    insecure: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False

    @staticmethod
    def from_mapping(options: Mapping[str, Any], path: str) -> TlsConfig:
        reject_unknown(options, ("insecure", "ca_file", "cert_file", "key_file", "insecure_skip_verify"), path)
        files: dict[str, str | None] = {}
        for key in ("ca_file", "cert_file", "key_file"):
            value = options.get(key)
            if value is None or value == "":
                files[key] = None
                continue
            name = read_str(value, f"{path}.{key}")
            if not os.access(name, os.R_OK):
                raise ConfigError(f"{path}.{key}", f"cannot read {name!r}")
            files[key] = name
        if (files["cert_file"] is None) != (files["key_file"] is None):
            raise ConfigError(path, "cert_file and key_file go together (client certificate and its key)")
        return TlsConfig(
            insecure=read_bool(options["insecure"], f"{path}.insecure") if "insecure" in options else False,
            ca_file=files["ca_file"],
            cert_file=files["cert_file"],
            key_file=files["key_file"],
            insecure_skip_verify=read_bool(options["insecure_skip_verify"], f"{path}.insecure_skip_verify")
            if "insecure_skip_verify" in options
            else False,
        )


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """``batch:``: a batch is sent when it holds ``max_spans`` items (spans, data points or log
    records) or ``max_bytes``, or ``timeout`` after its first request was queued."""

    max_spans: int = 8192
    max_bytes: int = 4 * MIB
    timeout: float = 0.2

    @staticmethod
    def from_mapping(options: Mapping[str, Any], path: str) -> BatchConfig:
        reject_unknown(options, ("max_spans", "max_bytes", "timeout"), path)
        base = BatchConfig()
        return BatchConfig(
            max_spans=read_int(options["max_spans"], f"{path}.max_spans", minimum=1)
            if "max_spans" in options
            else base.max_spans,
            max_bytes=_positive_size(options, "max_bytes", path, base.max_bytes),
            timeout=read_duration(options["timeout"], f"{path}.timeout") if "timeout" in options else base.timeout,
        )


def _positive_size(options: Mapping[str, Any], key: str, path: str, default: int) -> int:
    if key not in options:
        return default
    value = read_size(options[key], f"{path}.{key}")
    if value < 1:
        raise ConfigError(f"{path}.{key}", "must be > 0")
    return value


def batch_config(value: Any, path: str) -> BatchConfig:
    return BatchConfig.from_mapping(expect_mapping(value, path), path)


def tls_config(value: Any, path: str) -> TlsConfig:
    return TlsConfig.from_mapping(expect_mapping(value, path), path)


def read_headers(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    """``headers: {name: value}``; values must be strings (numbers are a YAML slip: quote them)."""
    section = expect_mapping(value, path)
    headers = []
    for name, header_value in section.items():
        if not name or any(c in name for c in " \t\r\n:"):
            raise ConfigError(f"{path}.{name}", "not a valid header name")
        text = read_str(header_value, f"{path}.{name}", allow_empty=True)
        if "\r" in text or "\n" in text:
            raise ConfigError(f"{path}.{name}", "header values cannot contain line breaks")
        headers.append((name, text))
    return tuple(headers)


def read_compression(value: Any, path: str, allowed: tuple[Compression, ...] = COMPRESSIONS) -> Compression:
    text = read_str(value, path).lower()
    for option in allowed:
        if text == option:
            return option
    raise ConfigError(path, f"expected one of {', '.join(allowed)}, got {value!r}")


def read_timeout(value: Any, path: str) -> float:
    timeout = read_duration(value, path)
    if timeout <= 0:
        raise ConfigError(path, "must be > 0")
    return timeout
