"""Backend faults: down then up, slow, 503/429 with Retry-After, RESOURCE_EXHAUSTED with RetryInfo,
permanent refusals, partial success, and a shutdown that drains within its deadline."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from gateway.metrics.store import CounterFamily
from tests.conftest import RunningGateway, start_gateway
from tests.support.exporting import FAST_BATCH, FAST_RETRY, exporter_settings, post, span_request
from tests.support.otlp_backend import Reply, black_hole, fake_backend
from tests.support.rotel import free_port, running_rotel


def counted(running: RunningGateway, name: str, *labels: str) -> float:
    """A counter straight from the store (after shutdown, when every outcome has been counted)."""
    family = running.gateway.store.family(name)
    assert isinstance(family, CounterFamily)
    return family.value(labels)


async def send(running: RunningGateway, requests: int, spans: int = 2) -> None:
    for n in range(requests):
        status, _, _ = await post(f"{running.http_url}/v1/traces", span_request(spans, service=f"s{n}"))
        assert 200 == status


def exporter(endpoint: str, type_name: str = "otlp_http", **extra: Any) -> dict[str, Mapping[str, Any]]:
    body: dict[str, Any] = {"type": type_name, "endpoint": endpoint, "batch": FAST_BATCH, "retry": FAST_RETRY}
    body.update(extra)
    return {"out": body}


@pytest.mark.parametrize("exporter_type", ["otlp_grpc", "otlp_http"])
async def test_spans_accepted_while_the_backend_is_down_arrive_when_it_comes_up(
    tmp_path: Path, exporter_type: str
) -> None:
    """Nothing listens at first: the gateway accepts and queues, retries, and rotel gets every span once up."""
    grpc_port, http_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{grpc_port}" if exporter_type == "otlp_grpc" else f"http://127.0.0.1:{http_port}"
    running = await start_gateway(exporter_settings(exporter(endpoint, exporter_type)))
    try:
        await send(running, 10)
        async with running_rotel(tmp_path, grpc_port=grpc_port, http_port=http_port) as rotel:
            await rotel.wait_for("traces", 20)
            await running.gateway.shutdown()
    finally:
        await running.gateway.shutdown()
    assert 20 == rotel.received["traces"]
    assert (20.0, True) == (
        counted(running, "gateway_exporter_sent_spans", "out"),
        counted(running, "gateway_exporter_retries", "out") >= 1,
    )


@pytest.mark.parametrize("exporter_type", ["otlp_grpc", "otlp_http"])
async def test_a_backend_slower_than_the_timeout_is_retried_until_it_answers(exporter_type: str) -> None:
    """The first answer comes after the exporter's timeout: the batch is sent again and counted once as sent."""
    async with fake_backend() as backend:
        backend.script(Reply(delay=0.6))
        endpoint = backend.http_endpoint if exporter_type == "otlp_http" else f"http://{backend.grpc_endpoint}"
        running = await start_gateway(exporter_settings(exporter(endpoint, exporter_type, timeout="200ms")))
        try:
            await send(running, 1, spans=5)
            await backend.wait_until(lambda b: len(b.received) >= 2)
        finally:
            await running.gateway.shutdown()
    assert (5.0, 1.0) == (
        counted(running, "gateway_exporter_sent_spans", "out"),
        counted(running, "gateway_exporter_retries", "out"),
    )


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_from_the_backend_is_honoured(status: int) -> None:
    """A 503/429 with Retry-After: 1 delays the next attempt by at least a second (backoff is 20 ms)."""
    async with fake_backend() as backend:
        backend.script(Reply(http_status=status, retry_after="1"))
        running = await start_gateway(exporter_settings(exporter(backend.http_endpoint)))
        try:
            await send(running, 1, spans=3)
            await backend.wait_for_items(3)
        finally:
            await running.gateway.shutdown()
    first, second = backend.received
    assert (status, 200) == (first.answered, second.answered)
    assert second.at - first.at >= 1.0
    assert (3.0, 1.0) == (
        counted(running, "gateway_exporter_sent_spans", "out"),
        counted(running, "gateway_exporter_retries", "out"),
    )


async def test_resource_exhausted_with_retry_info_is_retried_after_the_given_delay() -> None:
    """gRPC RESOURCE_EXHAUSTED with RetryInfo(300 ms): retried, not sooner than the delay."""
    async with fake_backend() as backend:
        backend.script(Reply(grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=0.3))
        running = await start_gateway(exporter_settings(exporter(f"http://{backend.grpc_endpoint}", "otlp_grpc")))
        try:
            await send(running, 1, spans=3)
            await backend.wait_for_items(3)
        finally:
            await running.gateway.shutdown()
    first, second = backend.received
    assert second.at - first.at >= 0.3
    assert 3.0 == counted(running, "gateway_exporter_sent_spans", "out")


@pytest.mark.parametrize(
    ("type_name", "reply"),
    [
        ("otlp_grpc", Reply(grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED)),
        ("otlp_grpc", Reply(grpc_code=grpc.StatusCode.INVALID_ARGUMENT)),
        ("otlp_http", Reply(http_status=400)),
        ("otlp_http", Reply(http_status=500)),
    ],
)
async def test_a_permanent_refusal_is_dropped_after_one_attempt_counted_and_logged_once(
    type_name: str, reply: Reply
) -> None:
    """No retry can help (RESOURCE_EXHAUSTED without RetryInfo too): one attempt, counted, one log line."""
    async with fake_backend() as backend:
        backend.script(reply, reply, reply)
        endpoint = backend.http_endpoint if type_name == "otlp_http" else f"http://{backend.grpc_endpoint}"
        with capture_logs() as logs:
            running = await start_gateway(exporter_settings(exporter(endpoint, type_name, queue={"num_consumers": 1})))
            try:
                await send(running, 3, spans=2)
                await backend.wait_until(lambda b: len(b.received) >= 1)
                await running.gateway.shutdown()
            finally:
                await running.gateway.shutdown()
    dropped = [e for e in logs if e["event"] == "export_dropped"]
    assert (6.0, 0.0, 0.0) == (
        counted(running, "gateway_exporter_send_failed_spans", "out", "permanent"),
        counted(running, "gateway_exporter_sent_spans", "out"),
        counted(running, "gateway_exporter_retries", "out"),
    )
    assert 1 == len(dropped)
    assert len(backend.received) <= 3


async def test_partial_success_from_the_backend_is_counted() -> None:
    """The backend accepts the batch but rejects 2 spans: 2 counted as rejected, the rest as sent."""
    async with fake_backend() as backend:
        backend.script(Reply(rejected=2, message="2 spans had no name"))
        running = await start_gateway(exporter_settings(exporter(backend.http_endpoint)))
        try:
            await send(running, 1, spans=5)
            await backend.wait_for_items(5)
        finally:
            await running.gateway.shutdown()
    assert (3.0, 2.0) == (
        counted(running, "gateway_exporter_sent_spans", "out"),
        counted(running, "gateway_exporter_send_failed_spans", "out", "rejected"),
    )


async def test_retries_stop_at_max_elapsed_time() -> None:
    """A backend that always answers 503 gets the batch until max_elapsed_time, then it is dropped."""
    async with fake_backend() as backend:
        backend.script(*[Reply(http_status=503)] * 1000)
        retry = {**FAST_RETRY, "max_elapsed_time": "300ms"}
        running = await start_gateway(exporter_settings(exporter(backend.http_endpoint, retry=retry)))
        try:
            began = time.monotonic()
            await send(running, 1, spans=4)
            await backend.wait_until(lambda b: len(b.received) >= 3)
            await running.gateway.shutdown()
            elapsed = time.monotonic() - began
        finally:
            await running.gateway.shutdown()
    assert 4.0 == counted(running, "gateway_exporter_send_failed_spans", "out", "retries_exhausted")
    assert elapsed < 2.0


async def test_shutdown_sends_what_is_queued_before_returning() -> None:
    """With a 30 s batch timeout nothing would go yet; shutdown flushes it to the backend at once."""
    async with fake_backend() as backend:
        running = await start_gateway(exporter_settings(exporter(backend.http_endpoint, batch={"timeout": "30s"})))
        try:
            await send(running, 4, spans=2)
            began = time.monotonic()
            await running.gateway.shutdown()
            took = time.monotonic() - began
        finally:
            await running.gateway.shutdown()
        assert 8 == backend.accepted_items()
    assert took < 2.0


async def test_a_memory_queue_counts_what_it_could_not_send_by_the_drain_deadline() -> None:
    """Backend dead, memory queue: shutdown gives up after drain_timeout and counts the loss as shutdown."""
    async with black_hole() as hole:
        running = await start_gateway(
            exporter_settings(
                exporter(f"http://127.0.0.1:{hole.port}", timeout="30s", queue={"drain_timeout": "200ms"})
            )
        )
        try:
            await send(running, 5, spans=2)
            began = time.monotonic()
            await running.gateway.shutdown()
            took = time.monotonic() - began
        finally:
            await running.gateway.shutdown()
    assert 10.0 == counted(running, "gateway_exporter_send_failed_spans", "out", "shutdown")
    assert took < 6.0
