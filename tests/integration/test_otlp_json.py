"""OTLP/JSON bodies from the opentelemetry-proto examples are accepted over HTTP and answered in JSON."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.conftest import RunningGateway

EXAMPLES = Path(__file__).parent.parent / "data" / "otlp_json"

CASES = [
    ("trace.json", "/v1/traces", "gateway_receiver_accepted_spans_total"),
    ("metrics.json", "/v1/metrics", "gateway_receiver_accepted_metric_points_total"),
    ("logs.json", "/v1/logs", "gateway_receiver_accepted_log_records_total"),
]


def expected_items(document: dict[str, object], name: str) -> int:
    """Count items straight from the JSON, independently of the gateway's decoder."""
    if name == "trace.json":
        return sum(len(s["spans"]) for r in document["resourceSpans"] for s in r["scopeSpans"])  # type: ignore[attr-defined,index]
    if name == "logs.json":
        return sum(len(s["logRecords"]) for r in document["resourceLogs"] for s in r["scopeLogs"])  # type: ignore[attr-defined,index]
    points = 0
    for resource in document["resourceMetrics"]:  # type: ignore[attr-defined]
        for scope in resource["scopeMetrics"]:
            for metric in scope["metrics"]:
                for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "summary"):
                    if kind in metric:
                        points += len(metric[kind]["dataPoints"])
    return points


@pytest.mark.parametrize(("name", "path", "metric"), CASES)
async def test_spec_example_is_accepted_and_counted(
    running_gateway: RunningGateway, name: str, path: str, metric: str
) -> None:
    """The spec's example body gets 200, an empty JSON response, and its items counted over http."""
    body = (EXAMPLES / name).read_bytes()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{running_gateway.http_url}{path}", data=body, headers={"Content-Type": "application/json"}
        ) as response,
    ):
        assert 200 == response.status
        assert "application/json" == response.content_type
        assert {} == orjson.loads(await response.read())
    items = expected_items(orjson.loads(body), name)
    assert items > 0
    assert float(items) == await running_gateway.value(metric, {"transport": "http"})
