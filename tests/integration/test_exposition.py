"""/metrics and health as Prometheus and an orchestrator see them."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import aiohttp
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

from gateway import __version__
from gateway.derive.spanmetrics import SpanMetricsSettings
from tests.conftest import RunningGateway, loopback_settings, start_gateway
from tests.support.otel_sdk import make_spans


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: `make test` installs the Debian package prometheus (needs root + apt)")
    return path


# The one name promtool's linter objects to, kept on purpose: the collector's spanmetrics connector
# calls it so and Jaeger's Monitor tab queries it by that name (see docs/metrics.md).
SPANMETRICS_UNIT_FINDING = (
    b'traces_span_metrics_duration_milliseconds use base unit "seconds" instead of "milliseconds"\n'
)


async def test_promtool_check_metrics_is_clean(running_gateway: RunningGateway) -> None:
    """After real traffic `promtool check metrics` finds nothing but the spanmetrics-compatible unit."""
    exporter = OTLPSpanExporter(endpoint=running_gateway.grpc_target, insecure=True)
    await asyncio.to_thread(exporter.export, make_spans(3))
    exporter.shutdown()
    exposition = await running_gateway.scrape()
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=exposition.encode(), capture_output=True, timeout=60
    )
    assert (3, SPANMETRICS_UNIT_FINDING) == (result.returncode, result.stdout + result.stderr)


async def test_promtool_is_fully_clean_with_second_based_span_metrics() -> None:
    """With spanmetrics.histogram.unit: s, the exposition after plain and GenAI traffic has no finding at all."""
    settings = loopback_settings(spanmetrics=SpanMetricsSettings(histogram_unit="s"))
    running = await start_gateway(settings)
    try:
        exporter = OTLPSpanExporter(endpoint=running.grpc_target, insecure=True)
        chat = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 30,
            "tenant.id": "acme",
        }
        await asyncio.to_thread(exporter.export, [*make_spans(2), *make_spans(1, attributes=chat)])
        exporter.shutdown()
        exposition = await running.scrape()
    finally:
        await running.gateway.shutdown()
    assert "traces_span_metrics_duration_seconds_bucket" in exposition
    assert "gen_ai_client_cost_usd_total" in exposition
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=exposition.encode(), capture_output=True, timeout=60
    )
    assert (0, b"") == (result.returncode, result.stdout + result.stderr)


async def test_build_info_names_the_version(running_gateway: RunningGateway) -> None:
    """gateway_build_info is 1 and carries the package version."""
    assert 1.0 == await running_gateway.value("gateway_build_info", {"version": __version__})


async def test_openmetrics_is_served_when_asked_for(running_gateway: RunningGateway) -> None:
    """A scraper that accepts OpenMetrics gets it (and the # EOF terminator)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{running_gateway.metrics_url}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        ) as response,
    ):
        body = await response.text()
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")


async def test_health_live_and_ready(running_gateway: RunningGateway) -> None:
    """A started gateway is live and ready, and says which components it checked."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{running_gateway.metrics_url}/health/live") as live:
            assert (200, {"status": "live"}) == (live.status, await live.json())
        async with session.get(f"{running_gateway.metrics_url}/health/ready") as ready:
            assert 200 == ready.status
            assert {
                "status": "ready",
                "components": {
                    "receiver/otlp_grpc": True,
                    "receiver/otlp_http": True,
                    "exporter/console": True,
                },
            } == await ready.json()


async def test_ready_is_503_once_receivers_stop(running_gateway: RunningGateway) -> None:
    """While shutting down (receivers closed) the gateway reports not ready."""
    assert running_gateway.gateway.grpc is not None
    await running_gateway.gateway.grpc.shutdown()
    async with aiohttp.ClientSession() as session, session.get(f"{running_gateway.metrics_url}/health/ready") as ready:
        assert 503 == ready.status
        assert False is (await ready.json())["components"]["receiver/otlp_grpc"]
