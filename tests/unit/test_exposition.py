"""The chunked /metrics renderer: same samples as prometheus_client, both formats, and it lets the loop run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from gateway.component import Batch
from gateway.metrics.collector import StoreCollector
from gateway.metrics.exposition import CHUNK_LINES, Exposition
from gateway.metrics.otlp_translate import OtlpMetricsProcessor
from gateway.metrics.store import Exemplar, MetricStore

EXEMPLAR = Exemplar("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 0.3, 1_700_000_000.5)


def populated() -> tuple[MetricStore, OtlpMetricsProcessor, StoreCollector]:
    """A store with a counter, a gauge, a histogram (with exemplars) and translated OTLP families."""
    store = MetricStore()
    tokens = store.counter("tokens", "Tokens.", ("model", "type"))
    tokens.inc(("gpt-4o", "input"), 120, EXEMPLAR)
    tokens.inc(("gpt-4o", "output"), 30)
    store.gauge("budget_remaining_ratio", "Budget left.", ("tenant",)).set(("acme",), 0.25)
    latency = store.histogram("latency_seconds", "Latency.", ("model",), (0.1, 1.0))
    latency.observe(("gpt-4o",), 0.3, EXEMPLAR)
    latency.observe(("gpt-4o",), 7.0)
    otlp = OtlpMetricsProcessor(store)
    message = ExportMetricsServiceRequest()
    resource = message.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "checkout"
    scope = resource.scope_metrics.add()
    counter = scope.metrics.add(name="http.requests", description="Requests.")
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    counter.sum.data_points.add(as_int=4, time_unix_nano=1).attributes.add(key="route").value.string_value = "/a"
    summary = scope.metrics.add(name="rpc.latency", unit="s", description="RPC.")
    point = summary.summary.data_points.add(count=2, sum=0.5, time_unix_nano=1)
    point.quantile_values.add(quantile=0.5, value=0.2)
    otlp.process(Batch("metrics", b"", message, 2, "test"))
    collector = StoreCollector(store)
    collector.add_native_source(otlp)
    return store, otlp, collector


def samples(families: Iterable[Metric]) -> list[tuple[str, tuple[tuple[str, str], ...], float, object]]:
    return sorted((s.name, tuple(sorted(s.labels.items())), s.value, s.exemplar) for f in families for s in f.samples)


def registry_of(collector: StoreCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def test_text_format_has_the_same_samples_as_prometheus_client() -> None:
    """Parsed back, the fast text rendering equals prometheus_client's generate_latest over StoreCollector."""
    store, otlp, collector = populated()
    expected = generate_latest(registry_of(collector)).decode()
    assert samples(parse_text(expected)) == samples(parse_text(Exposition(store, [otlp]).render()))


def test_openmetrics_has_the_same_samples_and_exemplars_as_prometheus_client() -> None:
    """With OpenMetrics, samples and exemplars equal prometheus_client's, through its strict parser."""
    store, otlp, collector = populated()
    expected = generate_openmetrics(registry_of(collector)).decode()  # type: ignore[no-untyped-call]
    rendered = Exposition(store, [otlp]).render(openmetrics=True)
    parse = parse_openmetrics
    assert samples(parse(expected)) == samples(parse(rendered))  # type: ignore[no-untyped-call]


def test_text_format_carries_no_exemplars() -> None:
    """Exemplars exist only in OpenMetrics; the text format would not parse with them."""
    store, otlp, _ = populated()
    assert "trace_id" not in Exposition(store, [otlp]).render()


def test_openmetrics_ends_with_eof() -> None:
    """An OpenMetrics exposition ends with ``# EOF`` (Prometheus refuses it otherwise)."""
    store, otlp, _ = populated()
    assert Exposition(store, [otlp]).render(openmetrics=True).endswith("\n# EOF\n")


def test_label_values_are_escaped() -> None:
    """Backslash, double quote and newline in a label value are escaped once, when the series is first rendered."""
    store = MetricStore()
    store.counter("calls", "Calls.", ("span_name",)).inc(('say "hi"\\\n',), 1)
    assert 'calls_total{span_name="say \\"hi\\"\\\\\\n"} 1.0' in Exposition(store).render()


def test_extra_prometheus_client_sources_are_rendered_too() -> None:
    """Families other components add with ``StoreCollector.add_source`` appear after the native ones."""
    store = MetricStore()
    collector = StoreCollector(store)
    collector.add_source(lambda: [GaugeMetricFamily("queue_bytes", "Queued bytes.", value=512.0)])
    assert "queue_bytes 512.0" in Exposition(store, (), collector.extra_sources).render()


def test_large_expositions_come_in_chunks() -> None:
    """Rendering yields a chunk about every ``CHUNK_LINES`` lines, so the loop can be given a turn in between."""
    store = MetricStore(max_series=10 * CHUNK_LINES)
    calls = store.counter("calls", "Calls.", ("route",))
    for index in range(3 * CHUNK_LINES):
        calls.inc((f"/r/{index}",), 1)
    assert len(list(Exposition(store).chunks(openmetrics=False))) >= 3


async def test_write_to_lets_other_tasks_run_during_a_large_scrape() -> None:
    """While 100k series are written, a ticking task keeps running: ingest is not stalled for the whole scrape."""
    store = MetricStore(max_series=200_000)
    calls = store.counter("calls", "Calls.", ("route",))
    for index in range(100_000):
        calls.inc((f"/r/{index}",), 1)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async def write(chunk: bytes) -> None:
        return None

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ticks = 0
    await Exposition(store).write_to(write, openmetrics=False, budget=0.0)
    done.set()
    await task
    assert ticks > 10


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stale_store_series_are_left_out_and_deleted() -> None:
    """A scrape skips and deletes series older than ``series_expiration``; the fresh ones stay."""
    clock = FakeClock()
    store = MetricStore(series_expiration=60, clock=clock)
    calls = store.counter("calls", "Calls.", ("model",))
    store.tick()
    calls.inc(("old",), 1)
    clock.now += 30
    store.tick()
    calls.inc(("new",), 1)
    clock.now += 31
    text = Exposition(store).render()
    assert (['calls_total{model="new"} 1.0'], [("new",)]) == (
        [line for line in text.splitlines() if line.startswith("calls_total")],
        list(calls.series),
    )


def test_non_expiring_store_series_survive_a_scrape() -> None:
    """Families created with ``expires=False`` (self-telemetry) keep their series however idle."""
    clock = FakeClock()
    store = MetricStore(series_expiration=60, clock=clock)
    accepted = store.counter("accepted", "Accepted.", ("transport",), expires=False)
    accepted.inc(("grpc",), 1)
    clock.now += 3600
    assert 'accepted_total{transport="grpc"} 1.0' in Exposition(store).render()
