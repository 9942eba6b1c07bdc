"""The on-disk queue across real process deaths: SIGKILL loses nothing that was acknowledged, duplicates
are bounded and counted, and a damaged segment is skipped (logged, counted) instead of crash-looping."""

from __future__ import annotations

from pathlib import Path

from tests.support.exporting import gateway_process, post, record_counts, span_request
from tests.support.otlp_backend import FakeOtlpBackend, Reply, fake_backend
from tests.support.rotel import free_port

SPANS_PER_REQUEST = 3


def write_config(tmp_path: Path, backend_url: str) -> Path:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""
receivers:
  otlp:
    grpc: {{endpoint: "127.0.0.1:0"}}
    http: {{endpoint: "127.0.0.1:0"}}
prometheus: {{endpoint: "127.0.0.1:0"}}
exporters:
  backend:
    type: otlp_http
    endpoint: {backend_url}
    timeout: 5s
    batch: {{timeout: 10ms}}
    retry: {{initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 60s}}
    queue: {{directory: {tmp_path / "queue"}, drain_timeout: 200ms}}
pipelines:
  traces: {{exporters: [backend]}}
"""
    )
    return config


def requests(count: int) -> list[bytes]:
    return [span_request(SPANS_PER_REQUEST, service=f"svc-{n}", attributes={"n": n}) for n in range(count)]


def arrived(backend: FakeOtlpBackend) -> list[bytes]:
    return [r.body for r in backend.accepted()]


async def test_acknowledged_spans_survive_sigkill_and_arrive_byte_for_byte_after_restart(tmp_path: Path) -> None:
    """Backend down; 20 requests acknowledged; SIGKILL; backend up; restart: every resource entry arrives,
    byte-identical, and nothing twice (none had reached the backend)."""
    port = free_port()
    config = write_config(tmp_path, f"http://127.0.0.1:{port}")
    sent = requests(20)
    async with gateway_process(config) as first:
        statuses = [(await post(f"{first.http_url}/v1/traces", body))[0] for body in sent]
        first.kill()
        await first.process.wait()
    async with fake_backend(http_port=port) as backend, gateway_process(config) as second:
        await backend.wait_for_items(20 * SPANS_PER_REQUEST)
        started = await second.wait_for_event("exporter_started")
        redelivered = await second.value("gateway_exporter_redelivered_spans_total", {"exporter": "backend"})
        assert 0 == await second.stop()
    assert [200] * 20 == statuses
    assert (20, 20 * SPANS_PER_REQUEST) == (started["recovered_entries"], backend.accepted_items())
    assert record_counts("traces", sent) == record_counts("traces", arrived(backend))
    assert redelivered <= 20 * SPANS_PER_REQUEST


async def test_sigkill_while_sending_delivers_everything_with_duplicates_bounded_by_the_redelivered_count(
    tmp_path: Path,
) -> None:
    """The backend is slow, so batches are in flight when the gateway is killed: after a restart every
    acknowledged entry has arrived, and the duplicates are no more than gateway_exporter_redelivered_spans."""
    async with fake_backend() as backend:
        backend.script(*[Reply(delay=0.3)] * 4)
        config = write_config(tmp_path, backend.http_endpoint)
        sent = requests(30)
        async with gateway_process(config) as first:
            for body in sent:
                assert 200 == (await post(f"{first.http_url}/v1/traces", body))[0]
            await backend.wait_until(lambda b: len(b.received) >= 2)
            first.kill()
            await first.process.wait()
        expected = record_counts("traces", sent)
        async with gateway_process(config) as second:
            await backend.wait_until(lambda b: set(expected) <= set(record_counts("traces", arrived(b))))
            redelivered = await second.value("gateway_exporter_redelivered_spans_total", {"exporter": "backend"})
            assert 0 == await second.stop()
        await backend.wait_until(lambda b: all(r.answered != -1 for r in b.received))
    received = record_counts("traces", arrived(backend))
    duplicate_spans = (sum(received.values()) - len(expected)) * SPANS_PER_REQUEST
    assert set(expected) == set(received)
    assert redelivered > 0
    assert duplicate_spans <= redelivered


async def test_a_damaged_segment_is_skipped_logged_and_counted_and_the_rest_delivered(tmp_path: Path) -> None:
    """SIGTERM with the backend down keeps the queue on disk; one flipped byte costs that request only."""
    port = free_port()
    config = write_config(tmp_path, f"http://127.0.0.1:{port}")
    sent = requests(10)
    async with gateway_process(config) as first:
        for body in sent:
            assert 200 == (await post(f"{first.http_url}/v1/traces", body))[0]
        assert 0 == await first.stop()
        kept = first.find("exporter_queue_kept_on_disk")
    segment = next(p for p in (tmp_path / "queue").glob("*.seg") if sent[4] in p.read_bytes())
    data = bytearray(segment.read_bytes())
    data[data.index(sent[4]) + len(sent[4]) // 2] ^= 0x55
    segment.write_bytes(bytes(data))
    async with fake_backend(http_port=port) as backend, gateway_process(config) as second:
        await backend.wait_for_items(9 * SPANS_PER_REQUEST)
        corrupt = await second.value("gateway_exporter_queue_corrupt_records_total", {"exporter": "backend"})
        skipped = second.find("queue_corrupt_record_skipped")
        assert 0 == await second.stop()
    assert 1 == len(kept) and 10 == kept[0]["entries"]
    assert (1.0, 1) == (corrupt, len(skipped))
    assert record_counts("traces", sent[:4] + sent[5:]) == record_counts("traces", arrived(backend))
