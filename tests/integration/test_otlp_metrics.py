"""OTLP metrics from the real OTel SDK, over gRPC and HTTP, served on /metrics and scraped by a real Prometheus."""

from __future__ import annotations

import asyncio
import math
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from tests.conftest import RunningGateway
from tests.integration.test_exposition import promtool
from tests.support.prometheus import Prometheus

RESOURCE = {"service.name": "checkout", "service.namespace": "shop", "service.instance.id": "pod-1"}
LABELS = 'instance="pod-1",job="shop/checkout",otel_scope_name="shop.meter",otel_scope_version="1.2.0"'
VIEWS = [
    View(instrument_name="http.server.duration", aggregation=ExplicitBucketHistogramAggregation([0.1, 1.0])),
    View(instrument_name="queue.wait", aggregation=ExponentialBucketHistogramAggregation(max_scale=0)),
]


@dataclass
class Sdk:
    """A MeterProvider exporting only when told to (``flush``), through a real OTLP exporter."""

    provider: MeterProvider
    meter: Meter

    async def flush(self) -> None:
        assert await asyncio.to_thread(self.provider.force_flush, 10_000)

    async def close(self) -> None:
        await asyncio.to_thread(self.provider.shutdown)


def sdk(exporter: MetricExporter) -> Sdk:
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    provider = MeterProvider(resource=Resource.create(RESOURCE), metric_readers=[reader], views=VIEWS)
    return Sdk(provider, provider.get_meter("shop.meter", "1.2.0"))


@pytest.fixture
async def grpc_sdk(running_gateway: RunningGateway) -> AsyncIterator[Sdk]:
    meters = sdk(GrpcMetricExporter(endpoint=running_gateway.grpc_target, insecure=True))
    yield meters
    await meters.close()


@pytest.fixture
async def http_delta_sdk(running_gateway: RunningGateway) -> AsyncIterator[Sdk]:
    delta: dict[type, AggregationTemporality] = {
        Counter: AggregationTemporality.DELTA,
        Histogram: AggregationTemporality.DELTA,
    }
    exporter = HttpMetricExporter(endpoint=f"{running_gateway.http_url}/v1/metrics", preferred_temporality=delta)
    meters = sdk(exporter)
    yield meters
    await meters.close()


def record_everything(meter: Meter) -> None:
    """Counter (two attribute sets), up-down counter, histogram, observable gauge and exponential histogram."""
    requests = meter.create_counter("http.requests", unit="{request}", description="HTTP requests.")
    requests.add(2, {"route": "/a"})
    requests.add(3, {"route": "/b"})
    items = meter.create_up_down_counter("queue.items", unit="{item}", description="Items queued.")
    items.add(5)
    items.add(-2)
    duration = meter.create_histogram("http.server.duration", unit="s", description="Request duration.")
    duration.record(0.05)
    duration.record(0.5)
    duration.record(2.0)

    def utilization(options: CallbackOptions) -> Sequence[Observation]:
        return [Observation(0.75, {"cpu": "0"})]

    meter.create_observable_gauge("system.cpu.utilization", [utilization], unit="1", description="CPU busy.")
    wait = meter.create_histogram("queue.wait", unit="s", description="Time queued.")
    for value in (1.5, 3.0, 3.0):
        wait.record(value)


def lines(exposition: str, prefix: str) -> list[str]:
    return [line for line in exposition.splitlines() if line.startswith(prefix)]


async def test_sdk_counter_over_grpc_is_a_total(running_gateway: RunningGateway, grpc_sdk: Sdk) -> None:
    """The SDK's counter arrives as ``http_requests_total`` with job, instance, scope and route labels."""
    record_everything(grpc_sdk.meter)
    await grpc_sdk.flush()
    assert [
        f'http_requests_total{{{LABELS},route="/a"}} 2.0',
        f'http_requests_total{{{LABELS},route="/b"}} 3.0',
    ] == lines(await running_gateway.scrape(), "http_requests_total")


async def test_sdk_up_down_counter_is_a_gauge(running_gateway: RunningGateway, grpc_sdk: Sdk) -> None:
    """An up-down counter's current sum is a gauge; its ``{item}`` unit adds no suffix."""
    record_everything(grpc_sdk.meter)
    await grpc_sdk.flush()
    assert [f"queue_items{{{LABELS}}} 3.0"] == lines(await running_gateway.scrape(), "queue_items")


async def test_sdk_histogram_is_a_histogram_in_seconds(running_gateway: RunningGateway, grpc_sdk: Sdk) -> None:
    """An explicit-bucket histogram keeps its bounds, cumulated, with ``_seconds`` from its unit."""
    record_everything(grpc_sdk.meter)
    await grpc_sdk.flush()
    assert [
        f'http_server_duration_seconds_bucket{{{LABELS},le="0.1"}} 1',
        f'http_server_duration_seconds_bucket{{{LABELS},le="1.0"}} 2',
        f'http_server_duration_seconds_bucket{{{LABELS},le="+Inf"}} 3',
        f"http_server_duration_seconds_count{{{LABELS}}} 3",
        f"http_server_duration_seconds_sum{{{LABELS}}} 2.55",
    ] == lines(await running_gateway.scrape(), "http_server_duration")


async def test_sdk_observable_gauge_of_unit_one_is_a_ratio(running_gateway: RunningGateway, grpc_sdk: Sdk) -> None:
    """An observable gauge with unit ``1`` is ``..._ratio``."""
    record_everything(grpc_sdk.meter)
    await grpc_sdk.flush()
    assert [f'system_cpu_utilization_ratio{{cpu="0",{LABELS}}} 0.75'] == lines(
        await running_gateway.scrape(), "system_cpu_utilization"
    )


async def test_sdk_exponential_histogram_becomes_classic_buckets(
    running_gateway: RunningGateway, grpc_sdk: Sdk
) -> None:
    """An exponential histogram (scale 0 by view) is served with le = 2^(i+1) bucket bounds."""
    record_everything(grpc_sdk.meter)
    await grpc_sdk.flush()
    assert [
        f'queue_wait_seconds_bucket{{{LABELS},le="0.0"}} 0',
        f'queue_wait_seconds_bucket{{{LABELS},le="2.0"}} 1',
        f'queue_wait_seconds_bucket{{{LABELS},le="4.0"}} 3',
        f'queue_wait_seconds_bucket{{{LABELS},le="+Inf"}} 3',
        f"queue_wait_seconds_count{{{LABELS}}} 3",
        f"queue_wait_seconds_sum{{{LABELS}}} 7.5",
    ] == lines(await running_gateway.scrape(), "queue_wait_seconds")


async def test_sdk_resource_is_target_info(running_gateway: RunningGateway, grpc_sdk: Sdk) -> None:
    """The resource's remaining attributes (the SDK's telemetry.sdk.*) are one ``target_info`` series."""
    record_everything(grpc_sdk.meter)
    await grpc_sdk.flush()
    [line] = lines(await running_gateway.scrape(), "target_info")
    assert line.startswith('target_info{instance="pod-1",job="shop/checkout",telemetry_sdk_language="python"')


async def test_cumulative_reexport_keeps_the_same_values(running_gateway: RunningGateway, grpc_sdk: Sdk) -> None:
    """A cumulative SDK exports its totals again each time; the served value is the total, not a sum of exports."""
    record_everything(grpc_sdk.meter)
    await grpc_sdk.flush()
    await grpc_sdk.flush()
    assert [
        f'http_requests_total{{{LABELS},route="/a"}} 2.0',
        f'http_requests_total{{{LABELS},route="/b"}} 3.0',
    ] == lines(await running_gateway.scrape(), "http_requests_total")


async def test_sdk_delta_counter_over_http_is_accumulated(running_gateway: RunningGateway, http_delta_sdk: Sdk) -> None:
    """With delta temporality over OTLP/HTTP, two exports of 2 and 5 are served as a counter of 7."""
    requests = http_delta_sdk.meter.create_counter("http.requests", unit="{request}")
    requests.add(2, {"route": "/a"})
    await http_delta_sdk.flush()
    requests.add(5, {"route": "/a"})
    await http_delta_sdk.flush()
    assert [f'http_requests_total{{{LABELS},route="/a"}} 7.0'] == lines(
        await running_gateway.scrape(), "http_requests_total"
    )


async def test_sdk_delta_histogram_over_http_is_accumulated(
    running_gateway: RunningGateway, http_delta_sdk: Sdk
) -> None:
    """Delta histogram exports add up bucket by bucket."""
    duration = http_delta_sdk.meter.create_histogram("http.server.duration", unit="s")
    duration.record(0.05)
    await http_delta_sdk.flush()
    duration.record(0.5)
    duration.record(0.07)
    await http_delta_sdk.flush()
    assert [
        f'http_server_duration_seconds_bucket{{{LABELS},le="0.1"}} 2',
        f'http_server_duration_seconds_bucket{{{LABELS},le="1.0"}} 3',
        f'http_server_duration_seconds_bucket{{{LABELS},le="+Inf"}} 3',
    ] == lines(await running_gateway.scrape(), "http_server_duration_seconds_bucket")


async def test_promtool_is_clean_on_translated_metrics(running_gateway: RunningGateway, grpc_sdk: Sdk) -> None:
    """Translated SDK metrics (with descriptions and base units) pass `promtool check metrics` with no finding."""
    record_everything(grpc_sdk.meter)
    await grpc_sdk.flush()
    exposition = await running_gateway.scrape()
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=exposition.encode(), capture_output=True, timeout=60
    )
    assert (0, b"") == (result.returncode, result.stdout + result.stderr)


async def test_openmetrics_exposition_passes_the_strict_parser(running_gateway: RunningGateway, grpc_sdk: Sdk) -> None:
    """promtool 2.42 reads only the text format; the OpenMetrics body goes through prometheus_client's strict parser."""
    record_everything(grpc_sdk.meter)
    await grpc_sdk.flush()
    body = await running_gateway.scrape("application/openmetrics-text; version=1.0.0")
    families = {family.name for family in parse_openmetrics(body)}  # type: ignore[no-untyped-call]
    assert {"http_requests", "queue_items", "http_server_duration_seconds", "target_info"} <= families


@pytest.fixture
async def prometheus(running_gateway: RunningGateway) -> AsyncIterator[Prometheus]:
    server = await Prometheus.start(running_gateway.metrics_url.removeprefix("http://"))
    try:
        await server.wait_for_target_up()
        yield server
    finally:
        await server.stop()


async def test_prometheus_reads_the_same_values(
    running_gateway: RunningGateway, grpc_sdk: Sdk, prometheus: Prometheus
) -> None:
    """A real Prometheus scraping the gateway returns, through PromQL, the values the SDK recorded."""
    record_everything(grpc_sdk.meter)
    await grpc_sdk.flush()
    selector = '{job="shop/checkout",instance="pod-1"}'
    results = [
        await prometheus.wait_for_value('http_requests_total{job="shop/checkout",route="/a"}', 2.0),
        await prometheus.wait_for_value(f"queue_items{selector}", 3.0),
        await prometheus.wait_for_value(f"http_server_duration_seconds_count{selector}", 3.0),
        await prometheus.wait_for_value('http_server_duration_seconds_bucket{job="shop/checkout",le="1.0"}', 2.0),
        await prometheus.wait_for_value('system_cpu_utilization_ratio{job="shop/checkout",cpu="0"}', 0.75),
        await prometheus.wait_for_value('queue_wait_seconds_bucket{job="shop/checkout",le="4.0"}', 3.0),
        await prometheus.wait_for_value('count(target_info{job="shop/checkout",instance="pod-1"})', 1.0),
    ]
    assert [2.0, 3.0, 3.0, 2.0, 0.75, 3.0, 1.0] == results
