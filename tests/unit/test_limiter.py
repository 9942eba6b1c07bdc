"""The memory limiter admits requests within its byte and request budgets and refuses the rest at once."""

from __future__ import annotations

import pytest

from gateway.errors import QueueFullError
from gateway.metrics.store import MetricStore
from gateway.receivers.limiter import InflightLimiter


def test_requests_within_the_byte_budget_are_admitted_and_tracked() -> None:
    """Two requests that fit together are both held, and the gauge shows their sum."""
    store = MetricStore()
    gauge = store.gauge("inflight", "In flight.", (), expires=False)
    limiter = InflightLimiter(max_bytes=100, max_requests=10, inflight_gauge=gauge)
    limiter.acquire(60)
    limiter.acquire(40)
    assert (100, 2, 100.0) == (limiter.bytes, limiter.requests, gauge.value(()))


def test_a_request_over_the_byte_budget_is_refused_as_retryable() -> None:
    """With 60 of 100 bytes held, a 50-byte request is refused with a retry hint; nothing is held for it."""
    limiter = InflightLimiter(max_bytes=100, max_requests=10)
    limiter.acquire(60)
    with pytest.raises(QueueFullError, match="memory limit") as caught:
        limiter.acquire(50)
    assert (1.0, 60, 1) == (caught.value.retry_after, limiter.bytes, limiter.requests)


def test_releasing_frees_the_budget() -> None:
    """After release, the same request fits again."""
    limiter = InflightLimiter(max_bytes=100, max_requests=10)
    limiter.acquire(60)
    limiter.release(60)
    limiter.acquire(90)
    assert (90, 1) == (limiter.bytes, limiter.requests)


def test_one_oversized_request_is_admitted_when_nothing_else_is_in_flight() -> None:
    """A lone request larger than the budget still passes, so a small limit cannot block it forever."""
    limiter = InflightLimiter(max_bytes=100, max_requests=10)
    limiter.acquire(500)
    assert 500 == limiter.bytes


def test_concurrent_request_limit() -> None:
    """Past max_requests in flight, the next request is refused whatever its size."""
    limiter = InflightLimiter(max_bytes=10**9, max_requests=2)
    limiter.acquire(1)
    limiter.acquire(1)
    with pytest.raises(QueueFullError, match="too many concurrent requests"):
        limiter.acquire(1)


def test_growing_a_request_within_the_budget_holds_the_extra_bytes() -> None:
    """A request found to decode to more than its body takes the difference, while it fits."""
    limiter = InflightLimiter(max_bytes=100, max_requests=10)
    limiter.acquire(10)
    limiter.acquire(20)
    limiter.grow(20, 50)
    assert (80, 2) == (limiter.bytes, limiter.requests)


def test_growing_past_the_budget_is_refused_and_keeps_what_was_held() -> None:
    """With 30 bytes held by another request, growing 20 to 90 is refused; the 20 stay held until release."""
    limiter = InflightLimiter(max_bytes=100, max_requests=10)
    limiter.acquire(30)
    limiter.acquire(20)
    with pytest.raises(QueueFullError, match="memory limit: 30 bytes in flight, and this request decodes to about 90"):
        limiter.grow(20, 70)
    limiter.release(20)
    assert (30, 1) == (limiter.bytes, limiter.requests)


def test_a_lone_request_grows_past_the_budget() -> None:
    """Alone in flight, a request may grow past the budget, as a lone oversized request is admitted."""
    limiter = InflightLimiter(max_bytes=100, max_requests=10)
    limiter.acquire(20)
    limiter.grow(20, 500)
    assert 520 == limiter.bytes
