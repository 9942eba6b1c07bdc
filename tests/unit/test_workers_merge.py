"""The supervisor's merge of worker snapshots (``workers: N``), checked on real stores and exact lines."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson
from opentelemetry.proto.metrics.v1.metrics_pb2 import ExponentialHistogramDataPoint, Metric
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric as PromMetric

from gateway.component import Batch
from gateway.metrics.otlp_translate import OtlpMetricsProcessor
from gateway.metrics.store import Exemplar, MetricStore
from gateway.workers.merge import Merger
from gateway.workers.snapshot import Snapshot, state_of
from tests.unit.test_otlp_translate import (
    BASE,
    DELTA,
    SECOND,
    T0,
    FakeClock,
    exponential_metric,
    histogram_metric,
    histogram_point,
    number,
    request,
    sum_metric,
)

Source = Callable[[], Iterable[PromMetric]]


class Worker:
    """One worker's state: a store with a counter, a gauge and a histogram, and an OTLP translator."""

    def __init__(self, clock: FakeClock, max_series: int = 2000, extra: Iterable[Source] = ()) -> None:
        self.store = MetricStore(max_series=max_series, series_expiration=300.0, clock=clock)
        self.tokens = self.store.counter("tokens", "Tokens.", ("model",))
        self.queue = self.store.gauge("queue_bytes", "Queued bytes.", ("exporter",), expires=False)
        self.info = self.store.gauge("build_info", "Build.", ("version",), expires=False)
        self.latency = self.store.histogram("latency_seconds", "Latency.", ("model",), (0.1, 1.0))
        self.otlp = OtlpMetricsProcessor(self.store)
        self.extra = list(extra)

    def send(self, *metrics: Metric) -> None:
        self.store.tick()
        self.otlp.process(Batch("metrics", b"", request(metrics), 0, "test"))

    def snapshot(self) -> Snapshot:
        """As the supervisor receives it: through orjson."""
        state: Snapshot = orjson.loads(orjson.dumps(state_of(self.store, self.otlp, self.extra)))
        return state


def lines(merger: Merger, snapshots: list[Snapshot], prefix: str, openmetrics: bool = False) -> list[str]:
    text = merger.exposition(snapshots).render(openmetrics)
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_counters_and_histograms_are_summed_per_label_set() -> None:
    """Two workers' counters and histogram buckets, sums and counts add up label set by label set."""
    clock = FakeClock()
    a, b = Worker(clock), Worker(clock)
    a.tokens.inc(("gpt-4o",), 100)
    b.tokens.inc(("gpt-4o",), 20)
    b.tokens.inc(("claude",), 7)
    a.latency.observe(("gpt-4o",), 0.05)
    b.latency.observe(("gpt-4o",), 0.5)
    b.latency.observe(("gpt-4o",), 2.0)
    merger = Merger(2000, 300.0, clock)
    snapshots = [a.snapshot(), b.snapshot()]
    assert ['tokens_total{model="gpt-4o"} 120.0', 'tokens_total{model="claude"} 7.0'] == lines(
        merger, snapshots, "tokens_total"
    )
    assert [
        'latency_seconds_bucket{model="gpt-4o",le="0.1"} 1',
        'latency_seconds_bucket{model="gpt-4o",le="1.0"} 2',
        'latency_seconds_bucket{model="gpt-4o",le="+Inf"} 3',
        'latency_seconds_count{model="gpt-4o"} 3',
        'latency_seconds_sum{model="gpt-4o"} 2.55',
    ] == lines(merger, snapshots, "latency_seconds")


def test_gauges_are_summed_and_info_gauges_taken_once() -> None:
    """Queue bytes are parts of a total; build_info is the same on every worker and stays 1."""
    clock = FakeClock()
    a, b = Worker(clock), Worker(clock)
    a.queue.set(("tempo",), 1000.0)
    b.queue.set(("tempo",), 24.0)
    for worker in (a, b):
        worker.info.set(("1.0",), 1.0)
    merger = Merger(2000, 300.0, clock)
    snapshots = [a.snapshot(), b.snapshot()]
    assert ['queue_bytes{exporter="tempo"} 1024.0'] == lines(merger, snapshots, "queue_bytes")
    assert ['build_info{version="1.0"} 1.0'] == lines(merger, snapshots, "build_info")


def test_exemplar_is_the_newest_of_the_workers() -> None:
    """Each worker keeps the exemplar of its last observation; the merge shows the later one."""
    clock = FakeClock()
    a, b = Worker(clock), Worker(clock)
    a.tokens.inc(("gpt-4o",), 1, Exemplar("aa" * 16, "bb" * 8, 1.0, 200.0))
    b.tokens.inc(("gpt-4o",), 2, Exemplar("cc" * 16, "dd" * 8, 2.0, 100.0))
    merger = Merger(2000, 300.0, clock)
    assert [f'tokens_total{{model="gpt-4o"}} 3.0 # {{trace_id="{"aa" * 16}",span_id="{"bb" * 8}"}} 1.0 200.0'] == lines(
        merger, [b.snapshot(), a.snapshot()], "tokens_total", openmetrics=True
    )


def test_series_cap_applies_again_after_the_merge() -> None:
    """Two workers under the cap of 2 each, three label sets together: the third goes to overflow."""
    clock = FakeClock()
    a, b = Worker(clock, max_series=2), Worker(clock, max_series=2)
    a.tokens.inc(("m1",), 1)
    a.tokens.inc(("m2",), 2)
    b.tokens.inc(("m3",), 4)
    b.tokens.inc(("m1",), 8)
    merger = Merger(2, 300.0, clock)
    assert [
        'tokens_total{model="m1"} 9.0',
        'tokens_total{model="m2"} 2.0',
        'tokens_total{otel_metric_overflow="true"} 4.0',
    ] == lines(merger, [a.snapshot(), b.snapshot()], "tokens_total")


def test_label_sets_admitted_at_the_previous_scrape_keep_their_series() -> None:
    """Whichever worker is listed first, a label set that had its own series keeps it (no fake reset)."""
    clock = FakeClock()
    a, b = Worker(clock, max_series=1), Worker(clock, max_series=1)
    a.tokens.inc(("m1",), 1)
    b.tokens.inc(("m2",), 2)
    merger = Merger(1, 300.0, clock)
    first = lines(merger, [a.snapshot(), b.snapshot()], "tokens_total")
    second = lines(merger, [b.snapshot(), a.snapshot()], "tokens_total")
    assert ['tokens_total{model="m1"} 1.0', 'tokens_total{otel_metric_overflow="true"} 2.0'] == first == second


def test_a_dead_workers_counters_stay_as_an_offset() -> None:
    """After worker a exits and a fresh one takes its place, the merged counter does not go down."""
    clock = FakeClock()
    a, b = Worker(clock), Worker(clock)
    a.tokens.inc(("gpt-4o",), 100)
    b.tokens.inc(("gpt-4o",), 20)
    a.latency.observe(("gpt-4o",), 0.5)
    a.queue.set(("tempo",), 50.0)
    merger = Merger(2000, 300.0, clock)
    last = a.snapshot()
    assert ['tokens_total{model="gpt-4o"} 120.0'] == lines(merger, [last, b.snapshot()], "tokens_total")
    merger.retire(last)
    restarted = Worker(clock)
    restarted.tokens.inc(("gpt-4o",), 1)
    snapshots = [restarted.snapshot(), b.snapshot()]
    assert ['tokens_total{model="gpt-4o"} 121.0'] == lines(merger, snapshots, "tokens_total")
    assert ['latency_seconds_count{model="gpt-4o"} 1'] == lines(merger, snapshots, "latency_seconds_count")
    assert [] == lines(merger, snapshots, "queue_bytes{")  # a dead process' queue is not queued anymore


def test_a_retired_offset_expires_with_its_label_set() -> None:
    """Once no worker updated the label set for series_expiration, the offset leaves too."""
    clock = FakeClock()
    a = Worker(clock)
    a.tokens.inc(("gpt-4o",), 100)
    merger = Merger(2000, 300.0, clock)
    merger.retire(a.snapshot())
    assert ['tokens_total{model="gpt-4o"} 100.0'] == lines(merger, [], "tokens_total")
    clock.now += 301
    assert [] == lines(merger, [], "tokens_total")


def test_cumulative_otlp_series_take_the_newest_copy() -> None:
    """An SDK's cumulative counter seen by two workers is the total of neither sum: the later point wins."""
    clock = FakeClock()
    a, b = Worker(clock), Worker(clock)
    a.send(sum_metric("requests", [number(5, time=T0 + 2 * SECOND)]))
    b.send(sum_metric("requests", [number(3, time=T0 + SECOND)]))
    merger = Merger(2000, 300.0, clock)
    assert [f"requests_total{{{BASE}}} 5.0"] == lines(merger, [b.snapshot(), a.snapshot()], "requests_total")


def test_delta_otlp_series_are_summed() -> None:
    """Delta points accumulated by two workers are two parts of the stream's total."""
    clock = FakeClock()
    a, b = Worker(clock), Worker(clock)
    a.send(sum_metric("requests", [number(5, start=T0, time=T0 + SECOND)], temporality=DELTA))
    b.send(sum_metric("requests", [number(3, start=T0 + SECOND, time=T0 + 2 * SECOND)], temporality=DELTA))
    a.send(histogram_metric("wait", [histogram_point([1.0], [1, 0], 0.5)], DELTA))
    b.send(
        histogram_metric("wait", [histogram_point([1.0], [0, 2], 5.0, start=T0 + SECOND, time=T0 + 2 * SECOND)], DELTA)
    )
    merger = Merger(2000, 300.0, clock)
    snapshots = [a.snapshot(), b.snapshot()]
    assert [f"requests_total{{{BASE}}} 8.0"] == lines(merger, snapshots, "requests_total")
    assert [
        f'wait_seconds_bucket{{{BASE},le="1.0"}} 1',
        f'wait_seconds_bucket{{{BASE},le="+Inf"}} 3',
        f"wait_seconds_count{{{BASE}}} 3",
        f"wait_seconds_sum{{{BASE}}} 5.5",
    ] == lines(merger, snapshots, "wait_seconds")


def test_delta_exponential_histograms_merge_exactly_across_workers() -> None:
    """Different scales on two workers are merged in exponential buckets, at the coarser scale."""
    clock = FakeClock()
    a, b = Worker(clock), Worker(clock)
    first = ExponentialHistogramDataPoint(start_time_unix_nano=T0, time_unix_nano=T0 + SECOND, count=1, sum=1.5)
    first.positive.bucket_counts.extend([1])  # scale 0, index 0: (1, 2]
    second = ExponentialHistogramDataPoint(
        start_time_unix_nano=T0 + SECOND, time_unix_nano=T0 + 2 * SECOND, count=2, sum=6.0, scale=1
    )
    second.positive.offset = 3  # scale 1: (2.83, 4] and (4, 5.66] -> scale 0: (2, 4] and (4, 8]
    second.positive.bucket_counts.extend([1, 1])
    a.send(exponential_metric("wait", [first], DELTA))
    b.send(exponential_metric("wait", [second], DELTA))
    merger = Merger(2000, 300.0, clock)
    assert [
        f'wait_milliseconds_bucket{{{BASE},le="0.0"}} 0',
        f'wait_milliseconds_bucket{{{BASE},le="2.0"}} 1',
        f'wait_milliseconds_bucket{{{BASE},le="4.0"}} 2',
        f'wait_milliseconds_bucket{{{BASE},le="8.0"}} 3',
        f'wait_milliseconds_bucket{{{BASE},le="+Inf"}} 3',
        f"wait_milliseconds_count{{{BASE}}} 3",
        f"wait_milliseconds_sum{{{BASE}}} 7.5",
    ] == lines(merger, [a.snapshot(), b.snapshot()], "wait_milliseconds")


def test_target_info_is_served_once() -> None:
    """Both workers saw the service's resource: one target_info series."""
    clock = FakeClock()
    a, b = Worker(clock), Worker(clock)
    for worker in (a, b):
        worker.send(sum_metric("requests", [number(1)]))
    merger = Merger(2000, 300.0, clock)
    assert ['target_info{job="checkout"} 1.0'] == lines(merger, [a.snapshot(), b.snapshot()], "target_info{")


def test_prometheus_client_sources_are_taken_once() -> None:
    """Budget gauges are global (Redis) on every worker: the first worker's family is served, not a sum."""

    def budget(used: float) -> Source:
        def source() -> list[PromMetric]:
            family = GaugeMetricFamily("gen_ai_budget_used_tokens", "Used.", labels=("tenant_id", "period"))
            family.add_metric(["acme", "daily"], used)
            return [family]

        return source

    clock = FakeClock()
    a, b = Worker(clock, extra=[budget(1200)]), Worker(clock, extra=[budget(1200)])
    merger = Merger(2000, 300.0, clock)
    assert ['gen_ai_budget_used_tokens{period="daily",tenant_id="acme"} 1200.0'] == lines(
        merger, [a.snapshot(), b.snapshot()], "gen_ai_budget_used_tokens{"
    )


def test_a_workers_own_overflow_series_is_merged_into_the_overflow_series() -> None:
    """A worker past its cap sends its overflow series (no label set): it is added to the merged one."""
    clock = FakeClock()
    a, b = Worker(clock, max_series=1), Worker(clock, max_series=1)
    a.tokens.inc(("m1",), 1)
    a.tokens.inc(("m2",), 2)  # past a's cap: a's overflow series
    b.tokens.inc(("m3",), 4)
    merger = Merger(1, 300.0, clock)
    assert ['tokens_total{model="m1"} 1.0', 'tokens_total{otel_metric_overflow="true"} 6.0'] == lines(
        merger, [a.snapshot(), b.snapshot()], "tokens_total"
    )
    assert ['gateway_metric_series_overflow_total{metric="tokens"} 1.0'] == lines(
        merger, [a.snapshot(), b.snapshot()], "gateway_metric_series_overflow_total"
    )
