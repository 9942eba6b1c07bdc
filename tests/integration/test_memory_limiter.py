"""Past the in-flight budget the receivers push back (RESOURCE_EXHAUSTED / 429) instead of buffering."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from gateway.settings import ExporterSettings, LimitsSettings, PipelineSettings, Settings
from tests.conftest import loopback_settings, start_gateway
from tests.integration.test_bad_input import TRACE_SERVICE, one_span_request


async def test_concurrent_requests_past_the_limit_get_resource_exhausted(tmp_path: Path) -> None:
    """With one request allowed in flight and a disk queue that awaits its fsync, a burst of 20 is
    partly refused as RESOURCE_EXHAUSTED; every request is either accepted or refused, none lost."""
    settings = loopback_settings(
        Settings(
            exporters=(
                ExporterSettings(
                    "disk",
                    "otlp_http",
                    {
                        "endpoint": "http://127.0.0.1:9",
                        "queue": {"directory": str(tmp_path / "q"), "drain_timeout": "100ms"},
                    },
                ),
            ),
            pipelines={
                "traces": PipelineSettings(("disk",)),
                "metrics": PipelineSettings(),
                "logs": PipelineSettings(),
            },
            limits=LimitsSettings(max_concurrent_requests=1),
        )
    )
    running = await start_gateway(settings)
    try:
        async with grpc.aio.insecure_channel(running.grpc_target) as channel:
            call = channel.unary_unary(TRACE_SERVICE, request_serializer=None, response_deserializer=None)
            body = one_span_request()
            outcomes = await asyncio.gather(*(call(body, timeout=10) for _ in range(20)), return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert {grpc.StatusCode.RESOURCE_EXHAUSTED} == {o.code() for o in refused}
        accepted = 20 - len(refused)
        assert accepted >= 1 and len(refused) >= 1, (accepted, len(refused))
        assert float(accepted) == await running.value("gateway_receiver_accepted_spans_total", {"transport": "grpc"})
        assert float(len(refused)) == await running.value(
            "gateway_receiver_refused_requests_total", {"transport": "grpc", "reason": "memory_limit"}
        )
        assert 0.0 == await running.value("gateway_receiver_inflight_bytes")
    finally:
        await running.gateway.shutdown()
