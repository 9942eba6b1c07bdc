"""Tenant budgets end to end: spans over OTLP/HTTP in, exact budget gauges on /metrics out, across a
restart, with a webhook receiver, and with two gateways sharing a real Redis that stops and restarts."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from gateway.derive.budgets import BudgetsConfig, BudgetTracker
from gateway.derive.config import GenAIConfig
from gateway.metrics.store import MetricStore
from gateway.settings import Settings
from tests.conftest import RunningGateway, loopback_settings, sample_value, start_gateway
from tests.support.genai_spans import make_request, make_span

pytestmark = pytest.mark.integration

ACME_DAILY = {"tenant": "acme", "period": "daily", "tokens": 2000, "usd": 0.01}
ACME = {"tenant_id": "acme", "period": "daily"}
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def budget_settings(state_file: Path, *rules: dict[str, Any], **keys: Any) -> Settings:
    genai = GenAIConfig.from_mapping(
        {"tenant_attributes": ["tenant.id"], "budgets": list(rules), "budget_state_file": str(state_file), **keys}
    )
    return loopback_settings(genai=genai)


async def send(gateway: RunningGateway, tenant: str, input_tokens: int, output_tokens: int, usd: float) -> None:
    """One chat span over OTLP/HTTP whose cost the span itself carries (trusted by default)."""
    span = make_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.usage.cost": usd,
            "tenant.id": tenant,
        }
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway.http_url}/v1/traces",
            data=make_request([span]).SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        ) as response,
    ):
        assert 200 == response.status


async def remaining(gateway: RunningGateway, labels: dict[str, str] = ACME) -> tuple[float, float]:
    """(tokens, usd) remaining, read from one scrape of /metrics."""
    body = await gateway.scrape()
    return (
        sample_value(body, "gen_ai_budget_remaining_tokens", labels),
        sample_value(body, "gen_ai_budget_remaining_usd", labels),
    )


def tracker_of(gateway: RunningGateway) -> BudgetTracker:
    budgets = gateway.gateway.budgets
    assert budgets is not None
    return budgets


async def test_remaining_budget_is_exact_on_metrics_and_survives_a_restart(tmp_path: Path) -> None:
    """The acceptance case: 1,250 tokens for $0.005 leave 750 tokens and $0.005; a restart shows the same."""
    settings = budget_settings(tmp_path / "budget-state.json", ACME_DAILY)
    first = await start_gateway(settings)
    try:
        await send(first, "acme", 1000, 200, 0.004)
        await send(first, "acme", 40, 10, 0.001)
        assert (750.0, 0.005) == await remaining(first)
    finally:
        await first.gateway.shutdown()
    second = await start_gateway(settings)
    try:
        assert (750.0, 0.005) == await remaining(second)
    finally:
        await second.gateway.shutdown()


async def test_budget_series_outlive_store_expiry_and_wildcards_track_each_tenant(tmp_path: Path) -> None:
    """With every stored series expiring at once, budget gauges stay; ``*`` gives bob and carol their own."""
    settings = budget_settings(tmp_path / "state.json", {"tenant": "*", "period": "monthly", "tokens": 1000})
    settings = dataclasses.replace(settings, prometheus=dataclasses.replace(settings.prometheus, series_expiration=0.0))
    running = await start_gateway(settings)
    try:
        await send(running, "bob", 100, 20, 0.0)
        await send(running, "carol", 300, 0, 0.0)
        body = await running.scrape()
    finally:
        await running.gateway.shutdown()
    assert "gen_ai_client_tokens_total{" not in body  # the store's series expired ...
    assert 'gen_ai_budget_remaining_tokens{period="monthly",tenant_id="bob"} 880.0' in body  # ... budgets did not
    assert 'gen_ai_budget_remaining_tokens{period="monthly",tenant_id="carol"} 700.0' in body


# --- webhook --------------------------------------------------------------------------------------


class WebhookReceiver:
    """A local HTTP endpoint that answers 500 to the first ``failures`` requests, then records bodies."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts = 0
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[str | None] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _hook(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.attempts <= self.failures:
            return web.Response(status=500)
        self.bodies.append(await request.json())
        self.headers.append(request.headers.get("Authorization"))
        return web.Response(status=204)

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/budget", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/budget"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_webhook_fires_once_per_threshold_kind_and_period() -> None:
    """80% and 100% are sent once each per period and kind (a 500 is retried); a new day starts over."""
    clock = Clock(T0 + 3600)
    async with WebhookReceiver(failures=1) as receiver:
        config = BudgetsConfig.from_genai_section(
            {
                "budgets": [ACME_DAILY],
                "budget_state_file": "",
                "budget_webhook": {"url": receiver.url, "headers": {"Authorization": "Bearer s3cret"}},
            }
        )
        store = MetricStore()
        budget = BudgetTracker(config, store, clock=clock, sync_interval=3600, webhook_backoff=0.01)
        await budget.start()
        try:
            budget.add("acme", 1600, 0.001)  # 80% of the tokens, 10% of the dollars
            await budget.sync()
            budget.add("acme", 100, 0.001)  # 85%: nothing new
            await budget.sync()
            budget.add("acme", 400, 0.0)  # 105%
            await budget.sync()
            await budget.sync()
            clock.now = T0 + 86_400 + 60  # the next day
            budget.add("acme", 1800, 0.0085)  # 90% of the tokens, 85% of the dollars
            await budget.sync()
        finally:
            await budget.shutdown()
    day1 = {"tenant": "acme", "period": "daily", "period_start": "2026-01-01T00:00:00+00:00"}
    day2 = {**day1, "period_start": "2026-01-02T00:00:00+00:00"}
    assert [
        {**day1, "kind": "tokens", "threshold": 80, "used": 1600, "limit": 2000},
        {**day1, "kind": "tokens", "threshold": 100, "used": 2100, "limit": 2000},
        {**day2, "kind": "tokens", "threshold": 80, "used": 1800, "limit": 2000},
        {**day2, "kind": "usd", "threshold": 80, "used": 0.0085, "limit": 0.01},
    ] == receiver.bodies
    assert (5, ["Bearer s3cret"] * 4) == (receiver.attempts, receiver.headers)
    assert 4.0 == budget.webhook_notifications.value(("delivered",))


# --- Redis ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """Debian's redis-server on 127.0.0.1 with no persistence: a restart starts empty."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not found: `make test` installs the Debian package redis-server (root + apt)")
        self._binary = binary
        self._directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start and return once the server logs that it accepts connections."""
        self._process = await asyncio.create_subprocess_exec(
            self._binary,
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self._directory), "--loglevel", "notice",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert self._process.stdout is not None
        output = self._process.stdout
        async with asyncio.timeout(10):
            while b"Ready to accept connections" not in (line := await output.readline()):
                if not line:
                    pytest.fail("redis-server exited before it was ready")
        self._drain = asyncio.create_task(self._discard(output))

    @staticmethod
    async def _discard(output: asyncio.StreamReader) -> None:
        while await output.read(65536):
            pass

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            process.terminate()
        await process.wait()
        if self._drain is not None:
            await self._drain
            self._drain = None


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def ready_json(gateway: RunningGateway) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{gateway.metrics_url}/health/ready") as response,
    ):
        return response.status, await response.json()


async def test_two_gateways_sharing_redis_report_the_same_global_remaining(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Usage sent to either replica is summed in Redis; both serve the same exact remaining budget."""
    first = await start_gateway(budget_settings(tmp_path / "a.json", ACME_DAILY, budget_store=redis_server.url))
    second = await start_gateway(budget_settings(tmp_path / "b.json", ACME_DAILY, budget_store=redis_server.url))
    try:
        await send(first, "acme", 800, 200, 0.004)
        await send(second, "acme", 200, 50, 0.001)
        for running in (first, second, first):
            await tracker_of(running).sync()
        assert [(750.0, 0.005), (750.0, 0.005)] == [await remaining(first), await remaining(second)]
        assert 1.0 == await first.value("gateway_budget_store_up")
    finally:
        await second.gateway.shutdown()
        await first.gateway.shutdown()


async def test_redis_stopped_and_restarted_loses_no_usage(tmp_path: Path, redis_server: RedisServer) -> None:
    """While Redis is down ingest goes on and /health/ready says so; the restarted (empty) Redis gets every
    replica's full usage back, so both replicas again agree on the exact global remaining."""
    first = await start_gateway(budget_settings(tmp_path / "a.json", ACME_DAILY, budget_store=redis_server.url))
    second = await start_gateway(budget_settings(tmp_path / "b.json", ACME_DAILY, budget_store=redis_server.url))
    try:
        await send(first, "acme", 800, 200, 0.004)
        for running in (first, second):
            await tracker_of(running).sync()

        await redis_server.stop()
        await send(first, "acme", 150, 50, 0.0008)
        await send(second, "acme", 40, 10, 0.0002)
        for running in (first, second):
            await tracker_of(running).sync()
        status, ready = await ready_json(first)
        assert (200, "down", 0.0) == (
            status,
            ready["details"]["budgets"]["store_state"],
            await first.value("gateway_budget_store_up"),
        )
        assert "counting locally" in ready["details"]["budgets"]["detail"]
        assert 1.0 <= await first.value("gateway_budget_store_flush_failures_total")

        await redis_server.start()
        for running in (first, second, first):
            await tracker_of(running).sync()
        assert [(750.0, 0.005), (750.0, 0.005)] == [await remaining(first), await remaining(second)]
        assert "up" == (await ready_json(second))[1]["details"]["budgets"]["store_state"]
    finally:
        await second.gateway.shutdown()
        await first.gateway.shutdown()


# --- alert rules ----------------------------------------------------------------------------------

RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus" / "budget-rules.yml"


def _series(name: str, instance: str, tenant: str, period: str, values: str) -> dict[str, str]:
    labels = f'job="gw",instance="{instance}",tenant_id="{tenant}",period="{period}"'
    return {"series": f"{name}{{{labels}}}", "values": values}


OVER_BUDGET_ACME = (
    "Tenant acme has used all of its daily tokens budget. The gateway does not block traffic: decide whether to "
    "throttle the tenant or raise the budget."
)


def rules_test() -> dict[str, Any]:
    """A promtool unit test: acme on two replicas without a store (1200 + 900 of 2000 tokens: summed,
    over budget), bob on two replicas sharing Redis (both report the global $4.50 of $5: max, 90%)."""
    ratio = "tenant_period_kind:gen_ai_budget_used:ratio"
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    _series("gen_ai_budget_used_tokens", "a", "acme", "daily", "1200x10"),
                    _series("gen_ai_budget_used_tokens", "b", "acme", "daily", "900x10"),
                    _series("gen_ai_budget_limit_tokens", "a", "acme", "daily", "2000x10"),
                    _series("gen_ai_budget_limit_tokens", "b", "acme", "daily", "2000x10"),
                    _series("gen_ai_budget_used_usd", "c", "bob", "monthly", "4.5x10"),
                    _series("gen_ai_budget_used_usd", "d", "bob", "monthly", "4.5x10"),
                    _series("gen_ai_budget_limit_usd", "c", "bob", "monthly", "5x10"),
                    _series("gen_ai_budget_limit_usd", "d", "bob", "monthly", "5x10"),
                    {"series": 'gateway_budget_store_up{job="gw",instance="c"}', "values": "1x10"},
                    {"series": 'gateway_budget_store_up{job="gw",instance="d"}', "values": "1x10"},
                ],
                "promql_expr_test": [
                    {
                        "expr": ratio,
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": f'{ratio}{{tenant_id="acme",period="daily",kind="tokens"}}', "value": 1.05},
                            {"labels": f'{ratio}{{tenant_id="bob",period="monthly",kind="usd"}}', "value": 0.9},
                        ],
                    }
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "GenAIOverBudget",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "tenant_id": "acme",
                                    "period": "daily",
                                    "kind": "tokens",
                                },
                                "exp_annotations": {
                                    "summary": "Tenant acme is over its daily tokens budget (105%)",
                                    "description": OVER_BUDGET_ACME,
                                    "runbook_url": "docs/budgets.md#runbook-over-budget",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "GenAIBudgetNearlySpent",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "tenant_id": "bob",
                                    "period": "monthly",
                                    "kind": "usd",
                                },
                                "exp_annotations": {
                                    "summary": "Tenant bob has used 90% of its monthly usd budget",
                                    "description": "More than 80% of the monthly usd budget of tenant bob is spent; at "
                                    "the current rate it may run out before the period resets.",
                                    "runbook_url": "docs/budgets.md#runbook-budget-nearly-spent",
                                },
                            }
                        ],
                    },
                    {"eval_time": "10m", "alertname": "GenAIBudgetStoreDown", "exp_alerts": []},
                ],
            }
        ],
    }


async def test_budget_alert_rules_pass_promtool_in_both_deployments(tmp_path: Path) -> None:
    """The rules are valid, sum replicas' own usage without Redis, take the max with it, and alert at 80%/100%."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: `make test` installs the Debian package prometheus (needs root + apt)")
    test_file = tmp_path / "budget-rules.test.yml"
    test_file.write_text(yaml.safe_dump(rules_test()), encoding="utf-8")
    for command in (("check", "rules", str(RULES)), ("test", "rules", str(test_file))):
        process = await asyncio.create_subprocess_exec(
            binary, *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await process.communicate()
        assert (0, command) == (process.returncode, command), output.decode()
