"""Tenant budgets: config, exact burn-down, periods on a controlled clock, wildcard tenants, state file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.derive.budgets import (
    BudgetRule,
    BudgetsConfig,
    BudgetTracker,
    BudgetWebhookConfig,
    period_bounds,
)
from gateway.derive.config import GenAIConfig, from_mapping
from gateway.derive.genai import GenAIProcessor
from gateway.metrics.store import MetricStore
from gateway.validation import ConfigError
from tests.support.genai_spans import make_batch, make_span

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday
HOUR = 3600.0
DAY = 86_400.0
ACME_DAILY = {"tenant": "acme", "period": "daily", "tokens": 2000, "usd": 0.01}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(*rules: dict[str, Any], **keys: Any) -> BudgetsConfig:
    return BudgetsConfig.from_genai_section({"budgets": list(rules), "budget_state_file": "", **keys})


def tracker(cfg: BudgetsConfig, clock: Clock | None = None, store: MetricStore | None = None) -> BudgetTracker:
    return BudgetTracker(cfg, store or MetricStore(), clock=clock or Clock())


def gauges(budget: BudgetTracker) -> dict[tuple[str, str, str], float]:
    """{(metric, tenant_id, period): value} of one scrape."""
    return {
        (sample.name, sample.labels["tenant_id"], sample.labels["period"]): sample.value
        for family in budget.collect()
        for sample in family.samples
    }


def series(budget: BudgetTracker, tenant: str, period: str) -> dict[str, float]:
    """The six gauges of one tenant and period, by metric name without the gen_ai_budget_ prefix."""
    return {
        name.removeprefix("gen_ai_budget_"): value
        for (name, t, p), value in gauges(budget).items()
        if (t, p) == (tenant, period)
    }


# --- config ---------------------------------------------------------------------------------------


def test_config_reads_every_key() -> None:
    """Every budget key of the genai section lands in the dataclass."""
    raw = {
        "tenant_attributes": ["tenant.id"],
        "budgets": [
            {"tenant": "acme", "period": "daily", "tokens": 2_000_000, "usd": 50},
            {"tenant": "acme", "period": "monthly", "tokens": 40_000_000},
            {"tenant": "*", "period": "daily", "usd": 5},
        ],
        "budget_timezone": "Europe/Berlin",
        "budget_state_file": "/var/lib/gateway/budgets.json",
        "budget_store": "redis://redis:6379/0",
        "budget_webhook": {
            "url": "https://hooks.example/budget",
            "headers": {"Authorization": "Bearer x"},
            "timeout": "2s",
        },
        "budget_max_tenants": 50,
    }
    assert (
        BudgetsConfig(
            rules=(
                BudgetRule("acme", "daily", 2_000_000, 50.0),
                BudgetRule("acme", "monthly", 40_000_000, None),
                BudgetRule("*", "daily", None, 5.0),
            ),
            timezone="Europe/Berlin",
            state_file="/var/lib/gateway/budgets.json",
            store="redis://redis:6379/0",
            webhook=BudgetWebhookConfig("https://hooks.example/budget", (("Authorization", "Bearer x"),), 2.0),
            max_tenants=50,
        )
        == from_mapping(raw).budgets
    )


def test_config_defaults_and_round_trip() -> None:
    """No budget keys: no rules, UTC, state in ./budget-state.json, local store, no webhook; validate() round-trips."""
    assert BudgetsConfig((), "UTC", "budget-state.json", "", None, 1000) == from_mapping({}).budgets
    full = from_mapping({"budgets": [ACME_DAILY], "budget_store": "redis://r:6379/1", "budget_state_file": None})
    assert "" == full.budgets.state_file
    full.validate()
    GenAIConfig().validate()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"budgets": {}}, "genai.budgets: expected a list, got dict"),
        ({"budgets": [{"period": "daily", "usd": 1}]}, "genai.budgets[0].tenant: missing"),
        (
            {"budgets": [{"tenant": "a", "period": "weekly", "usd": 1}]},
            "genai.budgets[0].period: expected daily or monthly, got 'weekly'",
        ),
        ({"budgets": [{"tenant": "a", "period": "daily"}]}, "genai.budgets[0]: give tokens, usd or both"),
        (
            {"budgets": [{"tenant": "a", "period": "daily", "tokens": -1}]},
            "genai.budgets[0].tokens: must be >= 0, got -1",
        ),
        (
            {"budgets": [{"tenant": "a", "period": "daily", "usd": "5"}]},
            "genai.budgets[0].usd: expected a number of USD between 0 and 1000000000, got '5'",
        ),
        (
            {
                "budgets": [
                    {"tenant": "a", "period": "daily", "usd": 1},
                    {"tenant": "a", "period": "daily", "tokens": 1},
                ]
            },
            "genai.budgets[1]: a daily budget for tenant 'a' is already defined",
        ),
        (
            {"budgets": [{"tenant": "a", "period": "daily", "usd": 1, "eur": 1}]},
            "genai.budgets[0].eur: unknown key (expected one of: tenant, period, tokens, usd)",
        ),
        ({"budget_timezone": "Mars/Olympus"}, "genai.budget_timezone: unknown time zone 'Mars/Olympus'"),
        (
            {"budget_store": "memcached://x:11211"},
            "genai.budget_store: expected a redis://, rediss:// or unix:// URL, got 'memcached://x:11211'",
        ),
        ({"budget_webhook": {"headers": {}}}, "genai.budget_webhook.url: missing"),
        (
            {"budget_webhook": {"url": "ftp://x"}},
            "genai.budget_webhook.url: expected an http:// or https:// URL, got 'ftp://x'",
        ),
        ({"budget_webhook": {"url": "http://x", "timeout": "0s"}}, "genai.budget_webhook.timeout: must be > 0"),
        ({"budget_max_tenants": 0}, "genai.budget_max_tenants: must be >= 1, got 0"),
    ],
)
def test_config_errors_name_the_key_path(raw: dict[str, Any], message: str) -> None:
    """Each mistake is refused with the dotted path of the key to fix."""
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw)
    assert message == str(caught.value)


# --- burn-down ------------------------------------------------------------------------------------


def test_remaining_after_known_usage_is_exact() -> None:
    """The acceptance case: 1,250 tokens for $0.005 against 2,000 tokens / $0.01 leaves 750 and $0.005."""
    budget = tracker(config(ACME_DAILY))
    budget.add("acme", 1000, 0.004)
    budget.add("acme", 250, 0.001)
    assert {
        "limit_tokens": 2000.0,
        "used_tokens": 1250.0,
        "remaining_tokens": 750.0,
        "limit_usd": 0.01,
        "used_usd": 0.005,
        "remaining_usd": 0.005,
    } == series(budget, "acme", "daily")


def test_explicit_tenants_have_series_before_any_traffic() -> None:
    """A configured tenant shows its whole budget from start-up; a kind without a limit has no series."""
    budget = tracker(config({"tenant": "acme", "period": "monthly", "tokens": 40_000_000}))
    assert {"limit_tokens": 40_000_000.0, "used_tokens": 0.0, "remaining_tokens": 40_000_000.0} == series(
        budget, "acme", "monthly"
    )


def test_remaining_goes_negative_once_over_budget() -> None:
    """Usage past the limit is still counted: remaining goes below zero."""
    budget = tracker(config(ACME_DAILY))
    budget.add("acme", 2600, 0.0125)
    assert (-600.0, -0.0025) == (
        series(budget, "acme", "daily")["remaining_tokens"],
        series(budget, "acme", "daily")["remaining_usd"],
    )


def test_processor_hands_each_leaf_call_to_the_usage_sink() -> None:
    """Tokens are input + output (cache and reasoning are subsets), usd the counted cost; agents are skipped."""
    calls: list[tuple[str, int, float]] = []
    processor = GenAIProcessor(GenAIConfig(), MetricStore(), usage_sink=lambda *usage: calls.append(usage))
    chat = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 500,
        "gen_ai.usage.cache_read.input_tokens": 200,
        "gen_ai.usage.reasoning.output_tokens": 100,
        "gen_ai.usage.cost": 0.0125,
        "tenant.id": "acme",
    }
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 1000, "tenant.id": "acme"}
    processor.process(make_batch([make_span(chat), make_span(agent)]))
    processor.process(make_batch([make_span(chat)], tenant="bound-key-tenant"))
    assert [("acme", 1500, 0.0125), ("bound-key-tenant", 1500, 0.0125)] == calls


# --- periods --------------------------------------------------------------------------------------


def test_daily_usage_resets_at_utc_midnight_and_a_scrape_shows_it_without_traffic() -> None:
    """At 00:00 UTC the daily counters start again (seen by the next scrape); the month goes on."""
    clock = Clock(T0 + 23 * HOUR)
    budget = tracker(config(ACME_DAILY, {"tenant": "acme", "period": "monthly", "tokens": 40_000}), clock)
    budget.add("acme", 1250, 0.005)
    clock.now = T0 + DAY - 0.001
    assert (1250.0, 1250.0) == (
        series(budget, "acme", "daily")["used_tokens"],
        series(budget, "acme", "monthly")["used_tokens"],
    )
    clock.now = T0 + DAY
    assert (0.0, 2000.0, 0.01, 1250.0) == (
        series(budget, "acme", "daily")["used_tokens"],
        series(budget, "acme", "daily")["remaining_tokens"],
        series(budget, "acme", "daily")["remaining_usd"],
        series(budget, "acme", "monthly")["used_tokens"],
    )


def test_monthly_usage_resets_on_the_first_of_the_month() -> None:
    """January's usage is gone on February 1st, 00:00 UTC."""
    clock = Clock(T0 + 10 * DAY)
    budget = tracker(config({"tenant": "acme", "period": "monthly", "usd": 100}), clock)
    budget.add("acme", 10, 42.5)
    clock.now = T0 + 31 * DAY - 1
    assert 42.5 == series(budget, "acme", "monthly")["used_usd"]
    clock.now = T0 + 31 * DAY
    assert 0.0 == series(budget, "acme", "monthly")["used_usd"]


def test_budget_timezone_moves_the_day_boundary() -> None:
    """With Europe/Berlin (UTC+1 in winter) the day ends at 23:00 UTC."""
    clock = Clock(T0 + 22 * HOUR)
    budget = tracker(config(ACME_DAILY, budget_timezone="Europe/Berlin"), clock)
    budget.add("acme", 100, 0.0)
    clock.now = T0 + 23 * HOUR - 1
    assert 100.0 == series(budget, "acme", "daily")["used_tokens"]
    clock.now = T0 + 23 * HOUR
    budget.add("acme", 7, 0.0)
    assert 7.0 == series(budget, "acme", "daily")["used_tokens"]


def test_period_bounds_follow_daylight_saving_time() -> None:
    """The day Berlin moves its clocks forward lasts 23 hours; keys name the local day and month."""
    berlin = ZoneInfo("Europe/Berlin")
    key, start, end = period_bounds("daily", 1_774_785_600.0, berlin)  # 2026-03-29T12:00:00Z
    month_key, month_start, month_end = period_bounds("monthly", 1_774_785_600.0, berlin)
    assert ("2026-03-29", 23 * HOUR, "2026-03", "2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00") == (
        key,
        end.timestamp() - start.timestamp(),
        month_key,
        month_start.isoformat(),
        month_end.isoformat(),
    )


# --- wildcard tenants -----------------------------------------------------------------------------


def test_wildcard_budget_creates_series_for_every_tenant_seen() -> None:
    """``*`` gives every other tenant its own series; an explicit rule wins for its tenant and period."""
    budget = tracker(config(ACME_DAILY, {"tenant": "*", "period": "daily", "usd": 5}))
    budget.add("bob", 10, 1.25)
    budget.add("carol", 20, 0.5)
    budget.add("", 30, 0.5)  # no tenant attribute: nothing to hold a budget against
    found = gauges(budget)
    assert {("acme", 0.01), ("bob", 5.0), ("carol", 5.0)} == {
        (tenant, value) for (name, tenant, _), value in found.items() if name == "gen_ai_budget_limit_usd"
    }
    assert (3.75, 4.5) == (
        found[("gen_ai_budget_remaining_usd", "bob", "daily")],
        found[("gen_ai_budget_remaining_usd", "carol", "daily")],
    )


def test_wildcard_tenants_are_capped_and_the_overflow_counted() -> None:
    """Past genai.budget_max_tenants new tenants get no series; each of their operations is counted."""
    store = MetricStore()
    budget = tracker(config({"tenant": "*", "period": "daily", "tokens": 100}, budget_max_tenants=2), store=store)
    for tenant in ("t1", "t2", "t3", "t3", "t1"):
        budget.add(tenant, 1, 0.0)
    assert ({"t1": 2.0, "t2": 1.0}, 2.0) == (
        {t: v for (name, t, _), v in gauges(budget).items() if name == "gen_ai_budget_used_tokens"},
        budget.overflow.value(()),
    )


def test_wildcard_tenants_keep_their_series_one_period_after_their_last_use() -> None:
    """A tenant that spent yesterday shows a fresh budget today, and is forgotten a quiet day later."""
    clock = Clock()
    budget = tracker(config({"tenant": "*", "period": "daily", "tokens": 100}), clock)
    budget.add("bob", 60, 0.0)
    clock.now = T0 + DAY
    assert {"limit_tokens": 100.0, "used_tokens": 0.0, "remaining_tokens": 100.0} == series(budget, "bob", "daily")
    clock.now = T0 + 2 * DAY
    assert {} == series(budget, "bob", "daily")


# --- state file -----------------------------------------------------------------------------------


async def test_usage_survives_a_restart_through_the_state_file(tmp_path: Path) -> None:
    """Counters written at shutdown are read back by the next tracker on the same file."""
    state = tmp_path / "state" / "budgets.json"
    cfg = config(ACME_DAILY, budget_state_file=str(state))
    first = tracker(cfg)
    await first.start()
    first.add("acme", 1250, 0.005)
    await first.shutdown()
    second = tracker(cfg)
    await second.start()
    try:
        assert (750.0, 0.005) == (
            series(second, "acme", "daily")["remaining_tokens"],
            series(second, "acme", "daily")["remaining_usd"],
        )
    finally:
        await second.shutdown()
    assert ["budgets.json", "budgets.json.lock"] == sorted(p.name for p in state.parent.iterdir())


async def test_sync_writes_the_state_file_when_usage_changed(tmp_path: Path) -> None:
    """The periodic write holds the current period's counters as integers (tokens, nano-dollars)."""
    state = tmp_path / "budgets.json"
    budget = tracker(config(ACME_DAILY, budget_state_file=str(state)))
    await budget.start()
    try:
        budget.add("acme", 1250, 0.005)
        await budget.sync(persist=True)
        written = json.loads(state.read_text())
    finally:
        await budget.shutdown()
    assert [("daily", "2026-01-01", {"acme": [1250, 5_000_000]})] == [
        (w["period"], w["key"], w["usage"]) for w in written["windows"]
    ]


async def test_a_state_file_from_an_earlier_day_is_not_restored(tmp_path: Path) -> None:
    """A restart on the next day starts the daily budget afresh and keeps the month's usage."""
    cfg = config(
        ACME_DAILY,
        {"tenant": "acme", "period": "monthly", "tokens": 40_000},
        budget_state_file=str(tmp_path / "s.json"),
    )
    clock = Clock()
    first = tracker(cfg, clock)
    await first.start()
    first.add("acme", 1250, 0.005)
    await first.shutdown()
    clock.now = T0 + DAY + HOUR
    second = tracker(cfg, clock)
    await second.start()
    try:
        assert (0.0, 1250.0) == (
            series(second, "acme", "daily")["used_tokens"],
            series(second, "acme", "monthly")["used_tokens"],
        )
    finally:
        await second.shutdown()


async def test_an_unreadable_state_file_is_moved_aside(tmp_path: Path) -> None:
    """A corrupt file does not stop the gateway: it is kept as .corrupt for inspection and counting restarts."""
    state = tmp_path / "budgets.json"
    state.write_text("{not json")
    budget = tracker(config(ACME_DAILY, budget_state_file=str(state)))
    await budget.start()
    try:
        assert 0.0 == series(budget, "acme", "daily")["used_tokens"]
    finally:
        await budget.shutdown()
    assert "{not json" == (tmp_path / "budgets.json.corrupt").read_text()


async def test_two_trackers_cannot_share_a_state_file(tmp_path: Path) -> None:
    """A second gateway on the same file would overwrite the first's counters: start-up refuses it."""
    cfg = config(ACME_DAILY, budget_state_file=str(tmp_path / "budgets.json"))
    first = tracker(cfg)
    await first.start()
    second = tracker(cfg)
    try:
        with pytest.raises(OSError, match=r"genai\.budget_state_file: .* is in use by another gateway"):
            await second.start()
    finally:
        await second.shutdown()
        await first.shutdown()


async def test_shutdown_is_idempotent_and_safe_without_start() -> None:
    """shutdown() before start() and twice after it does nothing harmful."""
    budget = tracker(config(ACME_DAILY))
    await budget.shutdown()
    await budget.start()
    await budget.shutdown()
    await budget.shutdown()
    assert {"store": "local", "periods": ["2026-01-01"]} == budget.status()
