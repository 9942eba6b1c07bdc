"""OTel names and units -> Prometheus names, as the collector's Prometheus exporter (otlptranslator) makes them."""

from __future__ import annotations

import math

import pytest

from gateway.metrics.prom_names import NameKind, go_float, label_name, metric_name


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        ("http.server.request.duration", "s", "histogram", "http_server_request_duration_seconds"),
        ("process.runtime.gc.pause", "ms", "histogram", "process_runtime_gc_pause_milliseconds"),
        ("http.requests", "{request}", "counter", "http_requests_total"),
        ("http.requests", "1", "counter", "http_requests_total"),
        ("requests_total", "", "counter", "requests_total"),
        ("system.cpu.utilization", "1", "gauge", "system_cpu_utilization_ratio"),
        ("queue.size", "1", "updown", "queue_size"),
        ("gen_ai.client.token.usage", "{token}", "histogram", "gen_ai_client_token_usage"),
        ("gen_ai.usage.cost", "USD", "counter", "gen_ai_usage_cost_USD_total"),
        ("operation.cost", "{USD}", "counter", "operation_cost_total"),
        ("network.io", "By/s", "gauge", "network_io_bytes_per_second"),
        ("throughput", "{request}/s", "gauge", "throughput_per_second"),
        ("memory.usage", "MiBy", "gauge", "memory_usage_mebibytes"),
        ("latency_seconds", "s", "histogram", "latency_seconds"),
        ("http..server__active-requests", "", "gauge", "http_server_active_requests"),
        ("2xx.responses", "", "counter", "_2xx_responses_total"),
        ("jvm:threads", "", "gauge", "jvm:threads"),
    ],
)
def test_metric_name_follows_the_collector(name: str, unit: str, kind: NameKind, expected: str) -> None:
    """Invalid characters and runs of them become one ``_``; the unit word and ``_total``/``_ratio`` follow."""
    assert expected == metric_name(name, unit, kind)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("http.method", "http_method"),
        ("gen_ai.request.model", "gen_ai_request_model"),
        ("a..b", "a__b"),
        ("2xx", "key_2xx"),
        ("_private", "key_private"),
        ("__reserved", "__reserved"),
        ("café.name", "caf__name"),
    ],
)
def test_label_name_sanitizes_without_collapsing(key: str, expected: str) -> None:
    """Label names: every invalid character becomes ``_`` (runs kept, as the translator does), with a ``key`` prefix
    for a leading digit or a single leading underscore."""
    assert expected == label_name(key)


@pytest.mark.parametrize(
    ("number", "openmetrics", "expected"),
    [
        (1.0, True, "1.0"),
        (1.0, False, "1"),
        (0.005, True, "0.005"),
        (2.5, True, "2.5"),
        (15000.0, True, "15000.0"),
        (123456.0, True, "123456.0"),
        (1e6, True, "1e+06"),
        (1234567.0, True, "1.234567e+06"),
        (1e-5, True, "1e-05"),
        (0.0001, True, "0.0001"),
        (-2.0, True, "-2.0"),
        (0.0, True, "0.0"),
        (math.inf, True, "+Inf"),
        (-math.inf, True, "-Inf"),
        (math.nan, True, "NaN"),
    ],
)
def test_go_float_matches_the_go_client(number: float, openmetrics: bool, expected: str) -> None:
    """``le``/``quantile`` values are series identity: Go's FormatFloat('g', -1), plus ``.0`` in OpenMetrics."""
    assert expected == go_float(number, openmetrics=openmetrics)
