"""Configuration is read once, validated, and every error names the key path to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.settings import (
    MIB,
    ConfigError,
    Endpoint,
    ExporterSettings,
    GrpcReceiverSettings,
    HttpReceiverSettings,
    LimitsSettings,
    PipelineSettings,
    PrometheusSettings,
    Settings,
    load_settings,
    parse_settings,
    substitute_env,
)

DATA = Path(__file__).parent.parent / "data" / "config"
REPO = Path(__file__).parent.parent.parent


def test_shipped_default_file_equals_the_embedded_defaults() -> None:
    """config/gateway.yaml spells out exactly what running with no --config does."""
    assert Settings() == load_settings(REPO / "config" / "gateway.yaml", environ={})


def test_defaults_match_the_issue_contract() -> None:
    """gRPC on localhost:4317, HTTP on localhost:4318, /metrics on localhost:9464, a debug exporter."""
    settings = load_settings(None)
    assert GrpcReceiverSettings(Endpoint("localhost", 4317), 4 * MIB) == settings.grpc
    assert HttpReceiverSettings(Endpoint("localhost", 4318), 20 * MIB) == settings.http
    assert Endpoint("localhost", 9464) == settings.prometheus.endpoint
    assert (ExporterSettings("console", "debug"),) == settings.exporters
    assert ("console",) == settings.pipelines["traces"].exporters


def test_full_file_loads_into_the_expected_settings() -> None:
    """Every key of a complete file lands in its field, env defaults expanded."""
    settings = load_settings(DATA / "good" / "full.yaml", environ={})
    expected = Settings(
        grpc=GrpcReceiverSettings(Endpoint("0.0.0.0", 14317), 8 * MIB),
        http=HttpReceiverSettings(Endpoint("127.0.0.1", 14318), 10 * MIB),
        prometheus=PrometheusSettings(Endpoint("127.0.0.1", 19464), 500, 90.0),
        exporters=(ExporterSettings("console", "debug"), ExporterSettings("other", "debug")),
        pipelines={
            "traces": PipelineSettings(("console", "other")),
            "metrics": PipelineSettings(("other",)),
            "logs": PipelineSettings(()),
        },
    )
    assert expected == settings


def test_env_variable_overrides_its_default() -> None:
    """${env:VAR:-default} takes the variable when it is set."""
    settings = load_settings(DATA / "good" / "full.yaml", environ={"GW_HTTP_HOST": "10.1.2.3"})
    assert settings.http is not None
    assert Endpoint("10.1.2.3", 14318) == settings.http.endpoint


def test_a_receivers_section_turns_off_the_protocols_it_omits() -> None:
    """Listing only http means no gRPC listener, as in the collector."""
    settings = load_settings(DATA / "good" / "http_only.yaml", environ={})
    assert (None, Endpoint("127.0.0.1", 4318)) == (settings.grpc, settings.http and settings.http.endpoint)


def test_substitution_escapes_double_dollar() -> None:
    """$$ stands for a literal dollar sign, so values can contain ${...} text."""
    assert "a $ ${env:X}-b" == substitute_env("a $$ $${env:X}-${env:Y}", {"Y": "b"})


BAD = {
    "unknown_top_key": "recievers: unknown key",
    "bad_grpc_endpoint": "receivers.otlp.grpc.endpoint: expected host:port",
    "bad_http_size": "receivers.otlp.http.max_request_body_size: expected a size",
    "no_receivers": "receivers.otlp: enable at least one of grpc, http",
    "exporter_without_type": "exporters.tempo.type: missing",
    "unknown_exporter_type": "exporters.tempo.type: unknown exporter type 'carrier_pigeon'",
    "pipeline_unknown_exporter": "pipelines.traces.exporters[1]: no exporter named 'jaeger'",
    "bad_series_expiration": "prometheus.series_expiration: expected a duration",
    "pipeline_unknown_signal": "pipelines.profiles: unknown key",
    "negative_series_cap": "prometheus.max_series_per_metric: must be >= 1",
    "not_a_mapping": "<root>: expected a mapping",
    "unused_exporter_bad_type": "exporters.spare.type: unknown exporter type",
    "bad_max_items_per_request": "limits.max_items_per_request: must be >= 1, got 0",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_fails_naming_the_key(name: str) -> None:
    """Each bad sample fails at start-up with the key path at the front of the message."""
    with pytest.raises(ConfigError) as caught:
        Gateway(load_settings(DATA / "bad" / f"{name}.yaml", environ={}))
    assert str(caught.value).startswith(BAD[name]), str(caught.value)


def test_every_bad_sample_has_an_expectation() -> None:
    """No file in tests/data/config/bad goes untested."""
    assert sorted(BAD) == sorted(p.stem for p in (DATA / "bad").glob("*.yaml"))


def test_limits_keys_load_and_default() -> None:
    """limits keys are read as given; left out, 500 000 items per request and 128 attributes per span."""
    given = parse_settings(
        "limits: {max_items_per_request: 1000, max_inflight_bytes: 64MiB, max_attributes_per_span: 32}", {}
    )
    assert LimitsSettings(64 * MIB, 1024, 1000, 32) == given.limits
    assert LimitsSettings(256 * MIB, 1024, 500_000, 128) == parse_settings("limits: {}", {}).limits


def test_bad_max_attributes_per_span_names_the_key() -> None:
    """Zero attributes per span would derive nothing: refused at start-up, naming the key."""
    with pytest.raises(ConfigError) as caught:
        parse_settings("limits: {max_attributes_per_span: 0}", {})
    assert "limits.max_attributes_per_span: must be >= 1, got 0" == str(caught.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'500k'", "limits.max_items_per_request: expected an integer, got '500k'"),
        ("-1", "limits.max_items_per_request: must be >= 1, got -1"),
        ("true", "limits.max_items_per_request: expected an integer, got True"),
    ],
)
def test_bad_max_items_per_request_names_the_key(value: str, message: str) -> None:
    """Values that are not a positive integer stop the start-up, naming the key."""
    with pytest.raises(ConfigError) as caught:
        parse_settings(f"limits: {{max_items_per_request: {value}}}", {})
    assert message == str(caught.value)


def test_invalid_yaml_is_a_config_error() -> None:
    """A YAML syntax error is reported as such, not as a traceback."""
    with pytest.raises(ConfigError, match="invalid YAML"):
        parse_settings("receivers: [", {})
