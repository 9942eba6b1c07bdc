"""Exporter configs: the documented keys load into complete dataclasses; mistakes name their key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.exporters.config import BatchConfig, TlsConfig
from gateway.exporters.otlp_grpc import OtlpGrpcExporterConfig
from gateway.exporters.otlp_http import OtlpHttpExporterConfig
from gateway.exporters.queue import QueueConfig
from gateway.exporters.retry import RetryConfig
from gateway.registry import EXPORTER_FACTORIES, build_exporter
from gateway.settings import ExporterSettings, parse_settings
from gateway.validation import MIB, ConfigError

TEMPO = """
type: otlp_http
endpoint: http://tempo:4318
headers: {X-Scope-OrgID: acme}
compression: zstd
timeout: 10s
tls: {insecure: false, insecure_skip_verify: false}
batch: {max_spans: 8192, max_bytes: 4MiB, timeout: 200ms}
retry: {initial_interval: 1s, max_interval: 30s, max_elapsed_time: 300s}
queue: {max_bytes: 256MiB, directory: /var/lib/otel-ai-gateway/tempo}
"""


def options(text: str) -> dict[str, object]:
    loaded = yaml.safe_load(text)
    loaded.pop("type", None)
    return loaded  # type: ignore[no-any-return]


def test_the_documented_http_example_loads_completely() -> None:
    """The example of docs/exporters.md, key for key."""
    config = OtlpHttpExporterConfig.from_mapping(options(TEMPO), "exporters.tempo")
    assert (
        OtlpHttpExporterConfig(
            endpoint="http://tempo:4318",
            signal_urls={
                "traces": "http://tempo:4318/v1/traces",
                "metrics": "http://tempo:4318/v1/metrics",
                "logs": "http://tempo:4318/v1/logs",
            },
            encoding="protobuf",
            headers=(("X-Scope-OrgID", "acme"),),
            compression="zstd",
            timeout=10.0,
            tls=TlsConfig(),
            batch=BatchConfig(8192, 4 * MIB, 0.2),
            retry=RetryConfig(initial_interval=1.0, max_interval=30.0, max_elapsed_time=300.0),
            queue=QueueConfig(max_bytes=256 * MIB, directory="/var/lib/otel-ai-gateway/tempo"),
        )
        == config
    )


def test_a_per_signal_endpoint_is_used_as_given() -> None:
    """traces_endpoint is a full URL; the other signals still append /v1/<signal> to endpoint."""
    config = OtlpHttpExporterConfig.from_mapping(
        {"endpoint": "https://otlp.example.com/base/", "traces_endpoint": "https://t.example.com/ingest"}, "e"
    )
    assert {
        "traces": "https://t.example.com/ingest",
        "metrics": "https://otlp.example.com/base/v1/metrics",
        "logs": "https://otlp.example.com/base/v1/logs",
    } == config.signal_urls


@pytest.mark.parametrize(
    ("endpoint", "tls", "expected"),
    [
        ("localhost:4317", {}, ("localhost:4317", False)),
        ("localhost:4317", {"insecure": True}, ("localhost:4317", True)),
        ("http://jaeger:4317", {}, ("jaeger:4317", True)),
        ("https://jaeger:4317", {"insecure": True}, ("jaeger:4317", False)),
    ],
)
def test_grpc_plaintext_follows_the_scheme_then_tls_insecure(
    endpoint: str, tls: dict[str, object], expected: tuple[str, bool]
) -> None:
    """The collector's rule: http:// is plaintext, https:// is TLS, no scheme is TLS unless insecure."""
    config = OtlpGrpcExporterConfig.from_mapping({"endpoint": endpoint, "tls": tls}, "e")
    assert expected == (config.endpoint, config.insecure)


def test_grpc_metadata_keys_are_lowercased() -> None:
    """gRPC metadata keys must be lower case; X-Scope-OrgID is sent as x-scope-orgid."""
    config = OtlpGrpcExporterConfig.from_mapping({"endpoint": "h:1", "headers": {"X-Scope-OrgID": "acme"}}, "e")
    assert (("x-scope-orgid", "acme"),) == config.headers


@pytest.mark.parametrize(
    ("type_name", "body", "path"),
    [
        ("otlp_http", {}, "exporters.x.endpoint"),
        ("otlp_http", {"endpoint": "tempo:4318"}, "exporters.x.endpoint"),
        ("otlp_http", {"endpoint": "http://t", "compression": "brotli"}, "exporters.x.compression"),
        ("otlp_http", {"endpoint": "http://t", "encoding": "xml"}, "exporters.x.encoding"),
        ("otlp_http", {"endpoint": "http://t", "timeout": "0s"}, "exporters.x.timeout"),
        ("otlp_http", {"endpoint": "http://t", "headers": {"X": 3}}, "exporters.x.headers.X"),
        ("otlp_http", {"endpoint": "http://t", "batch": {"max_spans": 0}}, "exporters.x.batch.max_spans"),
        ("otlp_http", {"endpoint": "http://t", "queue": {"max_bytes": "lots"}}, "exporters.x.queue.max_bytes"),
        ("otlp_http", {"endpoint": "http://t", "queue": {"fsync": False}}, "exporters.x.queue.fsync"),
        ("otlp_http", {"endpoint": "http://t", "tls": {"ca_file": "/nonexistent/ca.pem"}}, "exporters.x.tls.ca_file"),
        ("otlp_http", {"endpoint": "http://t", "retry": {"multiplier": 0}}, "exporters.x.retry.multiplier"),
        ("otlp_http", {"endpoint": "http://t", "sending_queue": {}}, "exporters.x.sending_queue"),
        ("otlp_grpc", {"endpoint": "jaeger"}, "exporters.x.endpoint"),
        ("otlp_grpc", {"endpoint": "h:4317", "compression": "zstd"}, "exporters.x.compression"),
        ("otlp_grpc", {"endpoint": "h:4317", "encoding": "json"}, "exporters.x.encoding"),
        (
            "otlp_grpc",
            {"endpoint": "h:4317", "tls": {"insecure_skip_verify": True}},
            "exporters.x.tls.insecure_skip_verify",
        ),
    ],
)
def test_bad_exporter_options_name_the_key(type_name: str, body: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_exporter(ExporterSettings("x", type_name, body))
    assert path == caught.value.path


def test_both_otlp_types_are_registered() -> None:
    assert {"debug", "otlp_grpc", "otlp_http"} <= set(EXPORTER_FACTORIES)


def test_resource_attributes_load_from_the_top_level_key() -> None:
    """resource.attributes keep their YAML types (string, int, float, bool) in order."""
    settings = parse_settings(
        "resource: {attributes: {deployment.environment: prod, shard: 3, ratio: 0.5, canary: true}}\n", {}
    )
    assert (("deployment.environment", "prod"), ("shard", 3), ("ratio", 0.5), ("canary", True)) == (
        settings.resource.attributes
    )


def test_a_resource_attribute_must_be_a_scalar() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings("resource: {attributes: {tags: [a, b]}}\n", {})
    assert "resource.attributes.tags" == caught.value.path


def test_tls_files_are_checked_at_load(tmp_path: Path) -> None:
    """A client cert without its key is refused; readable files are kept as given."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert str(ca) == TlsConfig.from_mapping({"ca_file": str(ca)}, "t").ca_file
    with pytest.raises(ConfigError) as caught:
        TlsConfig.from_mapping({"cert_file": str(ca)}, "t")
    assert "t" == caught.value.path
