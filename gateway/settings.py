"""Configuration: one YAML file -> frozen dataclasses, validated once at start-up.

Every error names the key path (``receivers.otlp.grpc.endpoint: ...``) so a user can find the
line to fix; the process exits non-zero before it binds a port. With no file, the dataclass defaults
apply; ``config/gateway.yaml`` spells the same defaults out and a test keeps the two equal.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.auth import AuthSettings
from gateway.derive.config import GenAIConfig
from gateway.derive.spanmetrics import SpanMetricsSettings
from gateway.tls import TlsServerSettings
from gateway.validation import (
    GIB,
    KIB,
    MIB,
    ConfigError,
    Endpoint,
    expect_mapping,
    read_bool,
    read_duration,
    read_endpoint,
    read_int,
    read_size,
    read_str,
    read_str_list,
    reject_unknown,
)

__all__ = [
    "GIB",
    "KIB",
    "MIB",
    "AuthSettings",
    "ConfigError",
    "Endpoint",
    "ExporterSettings",
    "GenAIConfig",
    "GrpcReceiverSettings",
    "HttpReceiverSettings",
    "LimitsSettings",
    "PipelineSettings",
    "PrometheusSettings",
    "Settings",
    "expect_mapping",
    "load_settings",
    "parse_settings",
    "read_bool",
    "read_duration",
    "read_endpoint",
    "read_int",
    "read_size",
    "read_str",
    "read_str_list",
    "reject_unknown",
    "substitute_env",
]

_ENV_REF = re.compile(r"\$\$|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SIGNALS = ("traces", "metrics", "logs")


# --- the settings tree ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrpcReceiverSettings:
    endpoint: Endpoint = Endpoint("localhost", 4317)  # noqa: RUF009 (frozen, shared safely)
    max_recv_msg_size: int = 4 * MIB  # the collector's default (max_recv_msg_size_mib: 4)
    tls: TlsServerSettings | None = None


@dataclass(frozen=True, slots=True)
class HttpReceiverSettings:
    endpoint: Endpoint = Endpoint("localhost", 4318)  # noqa: RUF009 (frozen, shared safely)
    max_request_body_size: int = 20 * MIB  # the collector's default
    tls: TlsServerSettings | None = None


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    endpoint: Endpoint = Endpoint("localhost", 9464)  # noqa: RUF009 (frozen, shared safely)
    max_series_per_metric: int = 2000
    series_expiration: float = 300.0
    promote_resource_attributes: tuple[str, ...] = ()  # copied onto every OTLP-translated series


@dataclass(frozen=True, slots=True)
class ExporterSettings:
    """One named exporter; ``options`` are validated by the exporter type's own factory."""

    name: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    exporters: tuple[str, ...] = ()


AttributeValue = str | bool | int | float


@dataclass(frozen=True, slots=True)
class ResourceSettings:
    """``resource.attributes``: set on every resource of every received request (replacing a value
    the sender gave for the same key) before processors and exporters see it."""

    attributes: tuple[tuple[str, AttributeValue], ...] = ()

    @staticmethod
    def from_mapping(section: Mapping[str, Any], path: str) -> ResourceSettings:
        reject_unknown(section, ("attributes",), path)
        attributes = expect_mapping(section.get("attributes"), f"{path}.attributes")
        pairs: list[tuple[str, AttributeValue]] = []
        for key, value in attributes.items():
            if not key:
                raise ConfigError(f"{path}.attributes", "attribute keys must be non-empty")
            if not isinstance(value, (str, bool, int, float)):
                raise ConfigError(f"{path}.attributes.{key}", f"expected a string, number or boolean, got {value!r}")
            pairs.append((key, value))
        return ResourceSettings(tuple(pairs))


def _default_exporters() -> tuple[ExporterSettings, ...]:
    return (ExporterSettings(name="console", type="debug"),)


def _default_pipelines() -> Mapping[str, PipelineSettings]:
    return {
        "traces": PipelineSettings(exporters=("console",)),
        "metrics": PipelineSettings(),
        "logs": PipelineSettings(),
    }


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    """The memory limiter: request bytes in flight (received, not yet in every exporter queue) and
    concurrent requests, across both receivers. Past either, senders get 429 / RESOURCE_EXHAUSTED.

    ``max_items_per_request`` caps the spans, data points or log records of one request (and the
    resource, scope and metric entries holding them), counted on the wire before decoding: past it,
    413 / RESOURCE_EXHAUSTED. 500 000 is about a thousand SDK batches (512 spans by default) and
    more than 20 MiB of minimal real spans hold (~60 bytes each: 350 000), while 500 000 empty
    spans decode to ~90 MB instead of the 1.8 GB of the 10M a 20 MiB body can hold."""

    max_inflight_bytes: int = 256 * MIB
    max_concurrent_requests: int = 1024
    max_items_per_request: int = 500_000
    # Derivation reads at most this many attributes of a span (the OTel SDKs' default attribute
    # count limit); a span with more is derived from its first ones and counted as refused
    # (gateway_genai_refused_attributes_total{attribute="span.attributes",reason="too_many"}).
    max_attributes_per_span: int = 128

    @staticmethod
    def from_mapping(raw: Mapping[str, Any], path: str = "limits") -> LimitsSettings:
        reject_unknown(
            raw,
            ("max_inflight_bytes", "max_concurrent_requests", "max_items_per_request", "max_attributes_per_span"),
            path,
        )
        base = LimitsSettings()
        return LimitsSettings(
            max_inflight_bytes=read_size(raw["max_inflight_bytes"], f"{path}.max_inflight_bytes")
            if "max_inflight_bytes" in raw
            else base.max_inflight_bytes,
            max_concurrent_requests=read_int(
                raw["max_concurrent_requests"], f"{path}.max_concurrent_requests", minimum=1
            )
            if "max_concurrent_requests" in raw
            else base.max_concurrent_requests,
            max_items_per_request=read_int(raw["max_items_per_request"], f"{path}.max_items_per_request", minimum=1)
            if "max_items_per_request" in raw
            else base.max_items_per_request,
            max_attributes_per_span=read_int(
                raw["max_attributes_per_span"], f"{path}.max_attributes_per_span", minimum=1
            )
            if "max_attributes_per_span" in raw
            else base.max_attributes_per_span,
        )


@dataclass(frozen=True, slots=True)
class Settings:
    grpc: GrpcReceiverSettings | None = field(default_factory=GrpcReceiverSettings)
    http: HttpReceiverSettings | None = field(default_factory=HttpReceiverSettings)
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    exporters: tuple[ExporterSettings, ...] = field(default_factory=_default_exporters)
    pipelines: Mapping[str, PipelineSettings] = field(default_factory=_default_pipelines)
    genai: GenAIConfig = field(default_factory=GenAIConfig.default_config)
    auth: AuthSettings = field(default_factory=AuthSettings)
    spanmetrics: SpanMetricsSettings = field(default_factory=SpanMetricsSettings)
    resource: ResourceSettings = field(default_factory=ResourceSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    # Processes sharing the receiver ports (SO_REUSEPORT) behind one merged /metrics: docs/workers.md.
    # 1 runs the gateway in this process, exactly as without the key.
    workers: int = 1


# --- loading ------------------------------------------------------------------------------------


def substitute_env(text: str, environ: Mapping[str, str]) -> str:
    """Expand ``${env:VAR}`` and ``${env:VAR:-default}`` as the collector does; ``$$`` is a literal ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        value = environ.get(match.group(1))
        if value is None:
            return match.group(2) or ""
        return value

    return _ENV_REF.sub(replace, text)


def load_settings(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, substitute and validate a config file; ``None`` means the embedded defaults."""
    if path is None:
        return Settings()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from exc
    return parse_settings(text, os.environ if environ is None else environ)


def parse_settings(text: str, environ: Mapping[str, str]) -> Settings:
    try:
        raw = yaml.safe_load(substitute_env(text, environ))
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"invalid YAML: {exc}") from exc
    return settings_from_mapping(expect_mapping(raw, "<root>"))


def settings_from_mapping(raw: Mapping[str, Any]) -> Settings:
    reject_unknown(
        raw,
        (
            "receivers",
            "prometheus",
            "exporters",
            "pipelines",
            "genai",
            "auth",
            "resource",
            "spanmetrics",
            "limits",
            "workers",
        ),
        "",
    )
    defaults = Settings()
    grpc, http = _receivers(raw.get("receivers", _DEFAULT), defaults)
    exporters = _exporters(raw.get("exporters", _DEFAULT), defaults.exporters)
    pipelines = _pipelines(raw.get("pipelines", _DEFAULT), defaults.pipelines, {e.name for e in exporters})
    genai_raw = raw.get("genai")
    settings = Settings(
        grpc=grpc,
        http=http,
        prometheus=_prometheus(expect_mapping(raw.get("prometheus"), "prometheus")),
        exporters=exporters,
        pipelines=pipelines,
        genai=GenAIConfig.from_mapping(expect_mapping(genai_raw, "genai"), "genai"),
        auth=AuthSettings.from_mapping(expect_mapping(raw.get("auth"), "auth"), "auth"),
        resource=ResourceSettings.from_mapping(expect_mapping(raw.get("resource"), "resource"), "resource"),
        spanmetrics=SpanMetricsSettings.from_mapping(expect_mapping(raw.get("spanmetrics"), "spanmetrics")),
        limits=LimitsSettings.from_mapping(expect_mapping(raw.get("limits"), "limits")),
        workers=read_workers(raw["workers"]) if "workers" in raw else defaults.workers,
    )
    _check_workers(settings)
    return settings


_DEFAULT: Any = object()


def available_cores() -> int:
    """The cores this process may run on (a container's cpuset, taskset), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_workers(value: Any, path: str = "workers") -> int:
    """``workers``: an integer >= 1, or ``auto`` for one worker per available core."""
    if value == "auto":
        return available_cores()
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"expected an integer >= 1 or 'auto', got {value!r}")
    if value < 1:
        raise ConfigError(path, f"must be >= 1 or 'auto', got {value}")
    return value


def _check_workers(settings: Settings) -> None:
    """What several worker processes cannot share without help, refused before anything starts.

    Budgets: each worker counts the leaf calls it received, so without a shared store every worker
    would report a fraction of a tenant's usage; Redis already sums replicas (docs/budgets.md).
    """
    if settings.workers == 1:
        return
    budgets = settings.genai.budgets
    if settings.genai.enabled and budgets.enabled and not budgets.store:
        raise ConfigError(
            "genai.budget_store",
            f"required with workers: {settings.workers} (each worker counts its own share of a tenant's usage; "
            "a redis:// store sums them)",
        )


def _receivers(value: Any, defaults: Settings) -> tuple[GrpcReceiverSettings | None, HttpReceiverSettings | None]:
    """A receivers section that is given replaces the default one: a protocol left out is off."""
    if value is _DEFAULT:
        return defaults.grpc, defaults.http
    receivers = expect_mapping(value, "receivers")
    reject_unknown(receivers, ("otlp",), "receivers")
    otlp = expect_mapping(receivers.get("otlp"), "receivers.otlp")
    reject_unknown(otlp, ("grpc", "http"), "receivers.otlp")
    grpc: GrpcReceiverSettings | None = None
    http: HttpReceiverSettings | None = None
    if "grpc" in otlp:
        section = expect_mapping(otlp["grpc"], "receivers.otlp.grpc")
        reject_unknown(section, ("endpoint", "max_recv_msg_size_mib", "tls"), "receivers.otlp.grpc")
        base = GrpcReceiverSettings()
        grpc = GrpcReceiverSettings(
            endpoint=read_endpoint(section["endpoint"], "receivers.otlp.grpc.endpoint")
            if "endpoint" in section
            else base.endpoint,
            max_recv_msg_size=read_int(
                section["max_recv_msg_size_mib"], "receivers.otlp.grpc.max_recv_msg_size_mib", minimum=1
            )
            * MIB
            if "max_recv_msg_size_mib" in section
            else base.max_recv_msg_size,
            tls=_tls(section, "receivers.otlp.grpc.tls"),
        )
    if "http" in otlp:
        section = expect_mapping(otlp["http"], "receivers.otlp.http")
        reject_unknown(section, ("endpoint", "max_request_body_size", "tls"), "receivers.otlp.http")
        base_http = HttpReceiverSettings()
        http = HttpReceiverSettings(
            endpoint=read_endpoint(section["endpoint"], "receivers.otlp.http.endpoint")
            if "endpoint" in section
            else base_http.endpoint,
            max_request_body_size=read_size(
                section["max_request_body_size"], "receivers.otlp.http.max_request_body_size"
            )
            if "max_request_body_size" in section
            else base_http.max_request_body_size,
            tls=_tls(section, "receivers.otlp.http.tls"),
        )
    if grpc is None and http is None:
        raise ConfigError("receivers.otlp", "enable at least one of grpc, http")
    return grpc, http


def _tls(section: Mapping[str, Any], path: str) -> TlsServerSettings | None:
    if section.get("tls") is None:
        return None
    return TlsServerSettings.from_mapping(expect_mapping(section["tls"], path), path)


def _prometheus(section: Mapping[str, Any]) -> PrometheusSettings:
    reject_unknown(
        section,
        ("endpoint", "max_series_per_metric", "series_expiration", "promote_resource_attributes"),
        "prometheus",
    )
    base = PrometheusSettings()
    return PrometheusSettings(
        endpoint=read_endpoint(section["endpoint"], "prometheus.endpoint") if "endpoint" in section else base.endpoint,
        max_series_per_metric=read_int(section["max_series_per_metric"], "prometheus.max_series_per_metric", minimum=1)
        if "max_series_per_metric" in section
        else base.max_series_per_metric,
        series_expiration=read_duration(section["series_expiration"], "prometheus.series_expiration")
        if "series_expiration" in section
        else base.series_expiration,
        promote_resource_attributes=_promoted(section.get("promote_resource_attributes")),
    )


_JOB_INSTANCE_KEYS = ("service.name", "service.namespace", "service.instance.id")


def _promoted(value: Any) -> tuple[str, ...]:
    """Resource attribute keys to copy onto OTLP-translated series (Prometheus' own OTLP key name).

    The service keys already become ``job`` and ``instance``; a key listed twice is a typo.
    """
    path = "prometheus.promote_resource_attributes"
    keys = read_str_list(value, path)
    for index, key in enumerate(keys):
        if key in _JOB_INSTANCE_KEYS:
            raise ConfigError(f"{path}[{index}]", f"{key!r} is already served as the job/instance labels")
        if key in keys[:index]:
            raise ConfigError(f"{path}[{index}]", f"{key!r} is listed twice")
    return keys


def _exporters(value: Any, defaults: tuple[ExporterSettings, ...]) -> tuple[ExporterSettings, ...]:
    if value is _DEFAULT:
        return defaults
    section = expect_mapping(value, "exporters")
    exporters = []
    for name, body in section.items():
        path = f"exporters.{name}"
        options = dict(expect_mapping(body, path))
        if "type" not in options:
            raise ConfigError(f"{path}.type", "missing (e.g. type: debug, otlp_grpc or otlp_http)")
        type_name = read_str(options.pop("type"), f"{path}.type")
        exporters.append(ExporterSettings(name=name, type=type_name, options=options))
    return tuple(exporters)


def _pipelines(
    value: Any, defaults: Mapping[str, PipelineSettings], exporter_names: set[str]
) -> Mapping[str, PipelineSettings]:
    if value is _DEFAULT:
        section: Mapping[str, Any] = {signal: {"exporters": list(p.exporters)} for signal, p in defaults.items()}
    else:
        section = expect_mapping(value, "pipelines")
    reject_unknown(section, SIGNALS, "pipelines")
    pipelines: dict[str, PipelineSettings] = {}
    for signal in SIGNALS:
        body = expect_mapping(section.get(signal), f"pipelines.{signal}")
        reject_unknown(body, ("exporters",), f"pipelines.{signal}")
        names = read_str_list(body.get("exporters"), f"pipelines.{signal}.exporters")
        for index, name in enumerate(names):
            if name not in exporter_names:
                known = ", ".join(sorted(exporter_names)) or "none"
                raise ConfigError(
                    f"pipelines.{signal}.exporters[{index}]",
                    f"no exporter named {name!r} (defined: {known})",
                )
        pipelines[signal] = PipelineSettings(exporters=names)
    return pipelines
