"""Forwarding: SDK -> gateway -> a real OTLP backend, the bytes untouched, fan-out without head-of-line
blocking, and honest answers (partial success, push-back) when an exporter cannot take more."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import grpc
import pytest
import trustme
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.trace.export import SpanExportResult
from prometheus_client import generate_latest

from gateway.exporters.retry import grpc_retry_delay
from gateway.settings import GrpcReceiverSettings, HttpReceiverSettings, Settings
from gateway.tls import TlsServerSettings
from proto_handlers import decode_request
from tests.conftest import LOOPBACK, loopback_settings, sample_value, start_gateway
from tests.support.exporting import FAST_BATCH, FAST_RETRY, exporter_settings, post, record_counts, span_request
from tests.support.otel_sdk import make_log_records, make_metrics, make_spans
from tests.support.otlp_backend import black_hole, fake_backend
from tests.support.rotel import running_rotel

TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.mark.parametrize("exporter_type", ["otlp_grpc", "otlp_http"])
async def test_sdk_spans_metrics_and_logs_all_reach_rotel(tmp_path: Path, exporter_type: str) -> None:
    """Everything the SDK exports to the gateway arrives at rotel, exactly once, and is counted as sent."""
    async with running_rotel(tmp_path) as rotel:
        endpoint = f"http://{rotel.grpc_endpoint}" if exporter_type == "otlp_grpc" else rotel.http_endpoint
        running = await start_gateway(
            exporter_settings({"rotel": {"type": exporter_type, "endpoint": endpoint, "batch": FAST_BATCH}})
        )
        try:
            spans = OTLPSpanExporter(endpoint=running.grpc_target, insecure=True)
            metrics = OTLPMetricExporter(endpoint=running.grpc_target, insecure=True)
            logs = OTLPLogExporter(endpoint=running.grpc_target, insecure=True)
            results = [await asyncio.to_thread(spans.export, make_spans(10)) for _ in range(5)]
            metric_result = await asyncio.to_thread(metrics.export, make_metrics())
            log_result = await asyncio.to_thread(logs.export, make_log_records(4))
            for exporter in (spans, metrics, logs):
                exporter.shutdown()
            assert [SpanExportResult.SUCCESS] * 5 == results
            assert (MetricExportResult.SUCCESS, LogRecordExportResult.SUCCESS) == (metric_result, log_result)
            await rotel.wait_for("traces", 50)
            await rotel.wait_for("metrics", 3)
            await rotel.wait_for("logs", 4)
        finally:
            await running.gateway.shutdown()  # drained: every answer from rotel has been counted
    sent = [
        running.gateway.store.family(f"gateway_exporter_sent_{item}").value(("rotel",))  # type: ignore[union-attr]
        for item in ("spans", "metric_points", "log_records")
    ]
    assert {"traces": 50, "metrics": 3, "logs": 4} == rotel.received
    assert [50.0, 3.0, 4.0] == sent


async def test_trace_and_span_ids_and_attributes_arrive_intact_with_configured_resource_attributes(
    tmp_path: Path,
) -> None:
    """rotel prints every span it got: same ids, names and attributes, plus the config's resource attributes."""
    sdk_spans = make_spans(6, service="chat", attributes={"gen_ai.request.model": "gpt-4o", "tokens": 42})
    async with running_rotel(tmp_path, detailed=True) as rotel:
        settings = exporter_settings(
            {"rotel": {"type": "otlp_grpc", "endpoint": f"http://{rotel.grpc_endpoint}", "batch": FAST_BATCH}},
            resource={"deployment.environment": "prod", "service.name": "chat-renamed"},
        )
        running = await start_gateway(settings)
        try:
            exporter = HttpSpanExporter(endpoint=f"{running.http_url}/v1/traces")
            result = await asyncio.to_thread(exporter.export, sdk_spans)
            exporter.shutdown()
            assert SpanExportResult.SUCCESS == result
            await rotel.wait_until(lambda r: len(r.spans) >= 6 and all(len(s.attributes) == 2 for s in r.spans))
        finally:
            await running.gateway.shutdown()
    expected = {(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x"), s.name) for s in sdk_spans}
    assert expected == {(s.trace_id, s.span_id, s.name) for s in rotel.spans}
    assert [{"gen_ai.request.model": "gpt-4o", "tokens": "42"}] * 6 == [s.attributes for s in rotel.spans]
    resources = [(s.resource["deployment.environment"], s.resource["service.name"]) for s in rotel.spans]
    assert [("prod", "chat-renamed")] * 6 == resources


@pytest.mark.parametrize(
    ("exporter_type", "compression"),
    [("otlp_http", "gzip"), ("otlp_http", "zstd"), ("otlp_http", "none"), ("otlp_grpc", "gzip"), ("otlp_grpc", "none")],
)
async def test_forwarded_requests_are_the_received_bytes_with_headers(exporter_type: str, compression: str) -> None:
    """Every resource entry the backend gets is byte-identical to one the gateway received; headers are sent."""
    async with fake_backend() as backend:
        endpoint = backend.http_endpoint if exporter_type == "otlp_http" else f"http://{backend.grpc_endpoint}"
        exporter = {
            "type": exporter_type,
            "endpoint": endpoint,
            "compression": compression,
            "headers": {"X-Scope-OrgID": "acme"},
            "batch": FAST_BATCH,
        }
        running = await start_gateway(exporter_settings({"backend": exporter}))
        try:
            sent = [span_request(3, service=f"svc-{n}", attributes={"n": n}) for n in range(8)]
            statuses = [(await post(f"{running.http_url}/v1/traces", body))[0] for body in sent]
            await backend.wait_for_items(24)
        finally:
            await running.gateway.shutdown()
    assert [200] * 8 == statuses
    received = backend.accepted()
    assert record_counts("traces", sent) == record_counts("traces", [r.body for r in received])
    header = "X-Scope-OrgID" if exporter_type == "otlp_http" else "x-scope-orgid"
    assert {"acme"} == {r.headers.get(header) for r in received}
    if exporter_type == "otlp_http":
        expected_encoding = None if compression == "none" else compression
        assert {expected_encoding} == {r.headers.get("Content-Encoding") for r in received}


async def test_json_encoding_sends_otlp_json_of_the_same_data() -> None:
    """encoding: json re-encodes each batch as OTLP/JSON; the backend decodes the same spans."""
    async with fake_backend() as backend:
        exporter = {"type": "otlp_http", "endpoint": backend.http_endpoint, "encoding": "json", "batch": FAST_BATCH}
        running = await start_gateway(exporter_settings({"backend": exporter}))
        try:
            sent = [span_request(2, service=f"svc-{n}") for n in range(3)]
            for body in sent:
                await post(f"{running.http_url}/v1/traces", body)
            await backend.wait_for_items(6)
        finally:
            await running.gateway.shutdown()
    assert {"application/json"} == {r.headers["Content-Type"] for r in backend.accepted()}
    sent_spans = sorted(
        (rs.resource.SerializeToString(), ss.spans[0].span_id)
        for body in sent
        for rs in decode_request("traces", body, "protobuf").resource_spans
        for ss in rs.scope_spans
    )
    got_spans = sorted(
        (rs.resource.SerializeToString(), ss.spans[0].span_id)
        for r in backend.accepted()
        for rs in decode_request("traces", r.body, "protobuf").resource_spans
        for ss in rs.scope_spans
    )
    assert sent_spans == got_spans


async def test_a_dead_exporter_never_holds_back_a_healthy_one_and_senders_get_partial_success() -> None:
    """One backend never answers: the other still gets everything at once, and once the dead one's queue is
    full the sender is told, per request, that those spans were rejected there (not asked to retry)."""
    async with fake_backend() as backend, black_hole() as hole:
        exporters = {
            "healthy": {"type": "otlp_http", "endpoint": backend.http_endpoint, "batch": FAST_BATCH},
            "dead": {
                "type": "otlp_http",
                "endpoint": f"http://127.0.0.1:{hole.port}",
                "timeout": "30s",
                "batch": FAST_BATCH,
                "queue": {"max_bytes": "4KiB", "num_consumers": 1, "drain_timeout": "100ms"},
            },
        }
        running = await start_gateway(exporter_settings(exporters))
        try:
            answers = []
            async with asyncio.timeout(10):
                for n in range(20):
                    answers.append(await post(f"{running.http_url}/v1/traces", span_request(3, service=f"s{n}")))
            await backend.wait_for_items(60)
            refused = await running.value("gateway_exporter_enqueue_failed_spans_total", {"exporter": "dead"})
            accepted = await running.value("gateway_receiver_accepted_spans_total")
        finally:
            await running.gateway.shutdown()
    assert [200] * 20 == [status for status, _, _ in answers]
    partial = [ExportTraceServiceResponse.FromString(body).partial_success for _, body, _ in answers if body]
    assert partial, "the dead exporter's queue never filled"
    assert {3} == {p.rejected_spans for p in partial}
    assert all("dead" in p.error_message and "healthy" not in p.error_message for p in partial)
    assert 3.0 * len(partial) == refused
    assert 60.0 - refused == accepted


async def test_a_full_queue_pushes_back_with_429_and_resource_exhausted_with_retry_info() -> None:
    """When the only exporter cannot queue more, HTTP answers 429 + Retry-After and gRPC RESOURCE_EXHAUSTED
    + RetryInfo, so any OTLP client retries instead of losing data."""
    async with black_hole() as hole:
        exporter = {
            "type": "otlp_grpc",
            "endpoint": f"http://127.0.0.1:{hole.port}",
            "timeout": "30s",
            "queue": {"max_bytes": "2KiB", "num_consumers": 1, "drain_timeout": "100ms"},
        }
        running = await start_gateway(exporter_settings({"dead": exporter}))
        try:
            body = span_request(3)
            statuses = []
            headers: dict[str, str] = {}
            for _ in range(20):
                status, _, headers = await post(f"{running.http_url}/v1/traces", body)
                statuses.append(status)
                if status == 429:
                    break
            async with grpc.aio.insecure_channel(running.grpc_target) as channel:
                call = channel.unary_unary(TRACES_METHOD, request_serializer=None, response_deserializer=None)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call(body, timeout=5)
            refused = await running.value("gateway_receiver_refused_spans_total", {"reason": "queue_full"})
        finally:
            await running.gateway.shutdown()
    assert 429 == statuses[-1] and 200 == statuses[0]
    assert int(headers["Retry-After"]) >= 1
    assert grpc.StatusCode.RESOURCE_EXHAUSTED == caught.value.code()
    assert grpc_retry_delay(caught.value.trailing_metadata()) is not None
    assert 6.0 == refused


async def test_self_metrics_and_readiness_of_an_exporter() -> None:
    """The exporter's series carry the documented names, and /health/ready lists it."""
    async with fake_backend() as backend:
        exporter = {
            "type": "otlp_http",
            "endpoint": backend.http_endpoint,
            "batch": FAST_BATCH,
            "retry": FAST_RETRY,
            "queue": {"max_bytes": "1MiB"},
        }
        running = await start_gateway(exporter_settings({"tempo": exporter}))
        try:
            await post(f"{running.http_url}/v1/traces", span_request(4))
            await backend.wait_for_items(4)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{running.metrics_url}/health/ready") as ready,
            ):
                readiness = await ready.json()
        finally:
            await running.gateway.shutdown()  # drained: the send has been counted
    exposition = generate_latest(running.gateway.registry).decode()
    labels = {"exporter": "tempo"}
    values = {
        name: sample_value(exposition, name, labels)
        for name in (
            "gateway_exporter_sent_spans_total",
            "gateway_exporter_sent_metric_points_total",
            "gateway_exporter_sent_log_records_total",
            "gateway_exporter_queue_capacity_bytes",
            "gateway_exporter_queue_size_bytes",
            "gateway_exporter_retries_total",
        )
    }
    assert readiness["components"]["exporter/tempo"] is True
    assert {
        "gateway_exporter_sent_spans_total": 4.0,
        "gateway_exporter_sent_metric_points_total": 0.0,
        "gateway_exporter_sent_log_records_total": 0.0,
        "gateway_exporter_queue_capacity_bytes": 1048576.0,
        "gateway_exporter_queue_size_bytes": 0.0,
        "gateway_exporter_retries_total": 0.0,
    } == values
    for name in ("gateway_exporter_sent_metric_points_total", "gateway_exporter_retries_total"):
        assert f'{name}{{exporter="tempo"}}' in exposition


async def test_batches_are_sent_when_they_reach_max_spans_and_the_rest_at_shutdown() -> None:
    """max_spans 6, timeout 30 s: five 3-span requests go as two 6-span batches; the last 3 at shutdown."""
    async with fake_backend() as backend:
        exporter = {
            "type": "otlp_http",
            "endpoint": backend.http_endpoint,
            "batch": {"max_spans": 6, "timeout": "30s"},
            "queue": {"num_consumers": 1},
        }
        running = await start_gateway(exporter_settings({"backend": exporter}))
        try:
            for n in range(5):
                await post(f"{running.http_url}/v1/traces", span_request(3, service=f"s{n}"))
            await backend.wait_for_items(12)
            before_shutdown = [r.items for r in backend.accepted()]
        finally:
            await running.gateway.shutdown()
    assert [6, 6] == before_shutdown
    assert [6, 6, 3] == [r.items for r in backend.accepted()]


async def test_a_request_larger_than_max_bytes_is_cut_between_resources_without_reencoding() -> None:
    """A request of many resources over batch.max_bytes arrives as several requests, entries untouched."""
    async with fake_backend() as backend:
        exporter = {"type": "otlp_grpc", "endpoint": f"http://{backend.grpc_endpoint}", "batch": {"max_bytes": 1000}}
        running = await start_gateway(exporter_settings({"backend": exporter}))
        try:
            big = b"".join(span_request(2, service=f"service-{n}") for n in range(8))
            status, _, _ = await post(f"{running.http_url}/v1/traces", big)
            await backend.wait_for_items(16)
        finally:
            await running.gateway.shutdown()
    assert 200 == status
    received = backend.accepted()
    assert len(received) > 1 and all(len(r.body) <= 1000 for r in received)
    assert record_counts("traces", [big]) == record_counts("traces", [r.body for r in received])
    assert 16.0 == running.gateway.store.family("gateway_exporter_sent_spans").value(("backend",))  # type: ignore[union-attr]


@pytest.mark.parametrize("exporter_type", ["otlp_grpc", "otlp_http"])
async def test_export_over_mutual_tls_to_another_gateway(tmp_path: Path, exporter_type: str) -> None:
    """Gateway A exports with tls.ca_file and a client certificate to gateway B, whose receivers demand mTLS."""
    ca = trustme.CA()
    server, client = ca.issue_cert(LOOPBACK, "localhost"), ca.issue_cert("gateway-a@example.test")
    files = {name: tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem", "client.pem", "client.key")}
    ca.cert_pem.write_to_path(str(files["ca.pem"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert.pem"]))
    server.private_key_pem.write_to_path(str(files["key.pem"]))
    client.cert_chain_pems[0].write_to_path(str(files["client.pem"]))
    client.private_key_pem.write_to_path(str(files["client.key"]))
    tls = TlsServerSettings(str(files["cert.pem"]), str(files["key.pem"]), client_ca_file=str(files["ca.pem"]))
    b = await start_gateway(
        loopback_settings(Settings(grpc=GrpcReceiverSettings(tls=tls), http=HttpReceiverSettings(tls=tls)))
    )
    try:
        assert b.gateway.grpc is not None and b.gateway.http is not None
        endpoint = (
            f"https://{LOOPBACK}:{b.gateway.grpc.port}"
            if exporter_type == "otlp_grpc"
            else f"https://{LOOPBACK}:{b.gateway.http.port}"
        )
        client_tls = {
            "ca_file": str(files["ca.pem"]),
            "cert_file": str(files["client.pem"]),
            "key_file": str(files["client.key"]),
        }
        a = await start_gateway(
            exporter_settings(
                {"b": {"type": exporter_type, "endpoint": endpoint, "tls": client_tls, "batch": FAST_BATCH}}
            )
        )
        try:
            assert 200 == (await post(f"{a.http_url}/v1/traces", span_request(4)))[0]
            await a.gateway.shutdown()  # drains into B
        finally:
            await a.gateway.shutdown()
        transport = "grpc" if exporter_type == "otlp_grpc" else "http"
        accepted = await b.value("gateway_receiver_accepted_spans_total", {"transport": transport})
    finally:
        await b.gateway.shutdown()
    assert 4.0 == accepted
    assert 4.0 == a.gateway.store.family("gateway_exporter_sent_spans").value(("b",))  # type: ignore[union-attr]


async def test_a_batch_refused_with_429_is_not_derived_so_the_retry_counts_once() -> None:
    """Derivation follows acceptance: tokens counted equal the tokens of the accepted requests only,
    however many refused copies the sender retried."""
    chat = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 10,
    }
    async with black_hole() as hole:
        exporter = {
            "type": "otlp_grpc",
            "endpoint": f"http://127.0.0.1:{hole.port}",
            "timeout": "30s",
            "queue": {"max_bytes": "2KiB", "num_consumers": 1, "drain_timeout": "100ms"},
        }
        running = await start_gateway(exporter_settings({"dead": exporter}))
        try:
            body = span_request(1, attributes=chat)
            statuses = [(await post(f"{running.http_url}/v1/traces", body))[0] for _ in range(30)]
            tokens = await running.value("gen_ai_client_tokens_total", {"gen_ai_token_type": "input"})
        finally:
            await running.gateway.shutdown()
    accepted = statuses.count(200)
    assert accepted >= 1 and 429 in statuses
    assert {200, 429} == set(statuses)
    assert 100.0 * accepted == tokens
