"""The metric store: exact counts, inclusive buckets, a series cap with one overflow series, expiry."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from gateway.metrics.collector import StoreCollector
from gateway.metrics.store import Exemplar, MetricStore


class FakeClock:
    """A clock the test moves by hand, so expiry is tested without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exposition(store: MetricStore, openmetrics: bool = False) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return (generate_openmetrics if openmetrics else generate_latest)(registry).decode()


def test_counter_accumulates_per_label_set() -> None:
    """Increments add up per label tuple, independently."""
    store = MetricStore()
    tokens = store.counter("tokens", "Tokens.", ("model",))
    tokens.inc(("a",), 3)
    tokens.inc(("a",), 4)
    tokens.inc(("b",), 1)
    assert (7.0, 1.0) == (tokens.value(("a",)), tokens.value(("b",)))


def test_counter_refuses_negative_and_nan() -> None:
    """A counter never goes down and never holds NaN: such increments raise and change nothing."""
    store = MetricStore()
    tokens = store.counter("tokens", "Tokens.", ("model",))
    tokens.inc(("a",), 2)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            tokens.inc(("a",), bad)
    assert 2.0 == tokens.value(("a",))


def test_histogram_bucket_upper_bounds_are_inclusive() -> None:
    """A value equal to a bound counts in that bucket (Prometheus' le); larger ones go to +Inf."""
    store = MetricStore()
    latency = store.histogram("latency_seconds", "Latency.", (), (0.1, 1.0))
    for value in (0.1, 0.5, 1.0, 7.0):
        latency.observe((), value)
    text = exposition(store)
    assert 'latency_seconds_bucket{le="0.1"} 1.0' in text
    assert 'latency_seconds_bucket{le="1.0"} 3.0' in text
    assert 'latency_seconds_bucket{le="+Inf"} 4.0' in text
    assert "latency_seconds_sum 8.6" in text
    assert "latency_seconds_count 4.0" in text


def test_series_past_the_cap_go_to_one_overflow_series() -> None:
    """With a cap of 2, a third and fourth label set land in otel_metric_overflow="true" and are counted."""
    store = MetricStore(max_series=2)
    calls = store.counter("calls", "Calls.", ("model",))
    for model in ("a", "b", "c", "d"):
        calls.inc((model,), 1)
    calls.inc(("a",), 1)
    text = exposition(store)
    assert 'calls_total{model="a"} 2.0' in text
    assert 'calls_total{model="b"} 1.0' in text
    assert 'calls_total{otel_metric_overflow="true"} 2.0' in text
    assert 'model="c"' not in text
    assert 'gateway_metric_series_overflow_total{metric="calls"} 2.0' in text


def test_three_thousand_models_give_at_most_limit_plus_one_series() -> None:
    """The issue's acceptance case: 3000 distinct models, limit 2000 -> 2001 series."""
    store = MetricStore(max_series=2000)
    calls = store.counter("calls", "Calls.", ("model",))
    for index in range(3000):
        calls.inc((f"model-{index}",), 1)
    assert 2001 == calls.series_count()


def test_stale_series_are_deleted_after_expiration() -> None:
    """A series not updated for series_expiration disappears; an updated one stays."""
    clock = FakeClock()
    store = MetricStore(series_expiration=300, clock=clock)
    calls = store.counter("calls", "Calls.", ("model",))
    store.tick()
    calls.inc(("old",), 1)
    clock.now += 200
    store.tick()
    calls.inc(("fresh",), 1)
    clock.now += 150
    store.tick()
    assert 1 == store.expire()
    assert ["fresh"] == [key[0] for key in calls.series]


def test_non_expiring_families_keep_their_series() -> None:
    """Self-telemetry counters (expires=False) stay however long they are idle."""
    clock = FakeClock()
    store = MetricStore(series_expiration=1, clock=clock)
    accepted = store.counter("accepted", "Accepted.", ("transport",), expires=False)
    accepted.inc(("grpc",), 1)
    clock.now += 3600
    store.tick()
    store.expire()
    assert 1.0 == accepted.value(("grpc",))


def test_exemplars_appear_only_in_openmetrics() -> None:
    """The last exemplar of a bucket is served with OpenMetrics and left out of the text format."""
    store = MetricStore()
    latency = store.histogram("latency_seconds", "Latency.", ("model",), (1.0,))
    latency.observe(("m",), 0.5, Exemplar("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 0.5, 1700000000.0))
    assert "trace_id" not in exposition(store)
    assert (
        'latency_seconds_bucket{le="1.0",model="m"} 1.0 # {span_id="b7ad6b7169203331",'
        'trace_id="0af7651916cd43dd8448eb211c80319c"} 0.5 1700000000.0'
    ) in exposition(store, openmetrics=True)


def test_duplicate_family_names_are_refused() -> None:
    """Two families cannot share a name."""
    store = MetricStore()
    store.counter("calls", "Calls.", ())
    with pytest.raises(ValueError, match="already registered"):
        store.gauge("calls", "Calls.", ())
