"""Tenant budgets: token and dollar limits per day and month, burned down live on /metrics.

Platform teams give each tenant a budget and want to see it shrink and be warned before it is gone,
without a second system to feed: the GenAI processor already prices every leaf call, so it hands
each one to ``BudgetTracker.add(tenant, tokens, usd)`` and the tracker does the rest.

How it is built, and why:

* ``add`` runs on the ingest hot path, synchronously: a clock read, a dict hit and two integer
  additions per leaf operation. Everything slow (Redis, the state file, webhooks) happens in one
  background loop about once a second and can never block or fail ingest.
* Dollars are counted as integer nano-dollars: sums are exact and identical on every replica, and
  ``0.01 - 0.005`` is ``0.005`` on /metrics, not ``0.0049999999``.
* Periods are calendar days and months in ``genai.budget_timezone`` (UTC by default). A period is a
  ``_Window``; when the clock passes its end a fresh one replaces it, on the next ``add``, scrape or
  loop tick, whichever comes first, so a rollover with no traffic still shows fresh usage.
* The gauges are computed when Prometheus scrapes (``collect``), not stored in the ``MetricStore``,
  so the store's staleness expiry never drops a budget that merely had a quiet hour.
* Restarts: the current periods' counters are written to a small JSON file (temp file, fsync,
  ``os.replace``) every few seconds when they changed, and at shutdown.
* Replicas: with ``genai.budget_store: redis://...`` every replica writes its *own cumulative*
  counters into one Redis hash per tenant and period (one field per replica, ``HSET``, pipelined)
  and reads the hash back (``HGETALL``), so all replicas report the same global usage. Cumulative
  writes are idempotent, unlike ``INCRBY``: a flush retried after an ambiguous failure cannot
  count twice, and a Redis that restarted empty is refilled by the next flush of every replica.
  While Redis is down each replica keeps counting locally and reports last-known global usage plus
  its own; the backlog is simply the next successful write.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
import orjson
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from gateway.log import get_logger
from gateway.metrics.store import MetricStore
from gateway.validation import ConfigError, expect_mapping, read_duration, read_int, read_str, reject_unknown

if TYPE_CHECKING:
    from redis.asyncio import Redis

Period = Literal["daily", "monthly"]
Kind = Literal["tokens", "usd"]
PERIODS: Final[tuple[Period, ...]] = ("daily", "monthly")
KINDS: Final[tuple[Kind, ...]] = ("tokens", "usd")
THRESHOLDS: Final = (80, 100)  # percent of a limit that triggers the webhook, once per period
WILDCARD: Final = "*"
NANOS_PER_USD: Final = 1_000_000_000
MAX_USD: Final = 1_000_000_000.0  # keeps nano-dollars far inside a signed 64-bit Redis integer
DEFAULT_STATE_FILE: Final = "budget-state.json"
DEFAULT_MAX_TENANTS: Final = 1000
DEFAULT_WEBHOOK_TIMEOUT: Final = 5.0
# The genai.* keys this module reads (GenAIConfig's parser accepts them and hands them over).
BUDGET_KEYS: Final = (
    "budgets",
    "budget_timezone",
    "budget_state_file",
    "budget_store",
    "budget_webhook",
    "budget_max_tenants",
)
REDIS_PREFIX: Final = "otel-ai-gateway:budget"
REDIS_EXPIRY_GRACE_S: Final = 3600  # keys outlive their period by an hour (late replicas, slow clocks)
STATE_VERSION: Final = 1
WEBHOOK_ATTEMPTS: Final = 5
WEBHOOK_QUEUE_SIZE: Final = 1000
_LABELS: Final = ("tenant_id", "period")

Cell: TypeAlias = list[int]  # [tokens, usd nano-dollars] counted by this replica, mutated in place
Totals: TypeAlias = tuple[int, int]
NotifiedKey: TypeAlias = tuple[str, str, str, str, int]  # (period, period key, tenant, kind, threshold)


# --- config ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """One ``genai.budgets`` entry: a tenant (or ``*``), a period and at least one limit."""

    tenant: str
    period: Period
    tokens: int | None = None
    usd: float | None = None

    def limit(self, kind: Kind) -> int | None:
        """The limit in counting units (tokens, nano-dollars); ``None`` when this kind has none."""
        if kind == "tokens":
            return self.tokens
        return None if self.usd is None else round(self.usd * NANOS_PER_USD)


@dataclass(frozen=True, slots=True)
class BudgetWebhookConfig:
    """``genai.budget_webhook``: where threshold notifications are POSTed as JSON."""

    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_WEBHOOK_TIMEOUT


@dataclass(frozen=True, slots=True)
class BudgetsConfig:
    """The budget keys of the ``genai`` section; inert (no tracker, no series) without rules."""

    rules: tuple[BudgetRule, ...] = ()
    timezone: str = "UTC"
    state_file: str = DEFAULT_STATE_FILE  # "" keeps usage in memory only
    store: str = ""  # "" counts per replica; redis://host:6379/0 shares usage between replicas
    webhook: BudgetWebhookConfig | None = None
    max_tenants: int = DEFAULT_MAX_TENANTS  # tenants a wildcard rule tracks at once

    @property
    def enabled(self) -> bool:
        return bool(self.rules)

    @classmethod
    def default_config(cls) -> BudgetsConfig:
        return cls()

    @classmethod
    def from_genai_section(cls, section: Mapping[str, Any], path: str = "genai") -> BudgetsConfig:
        """Read the ``budget*`` keys of an already checked ``genai`` mapping; errors name the key."""
        defaults = cls()
        rules = _read_rules(section.get("budgets"), f"{path}.budgets")
        zone_name = defaults.timezone
        if "budget_timezone" in section:
            zone_name = read_str(section["budget_timezone"], f"{path}.budget_timezone")
            try:
                zone(zone_name)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigError(f"{path}.budget_timezone", f"unknown time zone {zone_name!r}") from exc
        state_file = defaults.state_file
        if "budget_state_file" in section:
            value = section["budget_state_file"]
            state_file = "" if value is None else read_str(value, f"{path}.budget_state_file", allow_empty=True)
        store = ""
        if section.get("budget_store") is not None:
            store = read_str(section["budget_store"], f"{path}.budget_store")
            if urlsplit(store).scheme not in ("redis", "rediss", "unix"):
                raise ConfigError(
                    f"{path}.budget_store", f"expected a redis://, rediss:// or unix:// URL, got {store!r}"
                )
        max_tenants = defaults.max_tenants
        if "budget_max_tenants" in section:
            max_tenants = read_int(section["budget_max_tenants"], f"{path}.budget_max_tenants", minimum=1)
        webhook = None
        if section.get("budget_webhook") is not None:
            webhook = _read_webhook(section["budget_webhook"], f"{path}.budget_webhook")
        return cls(rules, zone_name, state_file, store, webhook, max_tenants)

    def as_mapping(self) -> dict[str, Any]:
        """The ``genai.*`` keys that ``from_genai_section`` reads back to this config."""
        out: dict[str, Any] = {
            "budgets": [
                {
                    key: value
                    for key, value in (("tenant", r.tenant), ("period", r.period), ("tokens", r.tokens), ("usd", r.usd))
                    if value is not None
                }
                for r in self.rules
            ],
            "budget_timezone": self.timezone,
            "budget_state_file": self.state_file,
            "budget_max_tenants": self.max_tenants,
        }
        if self.store:
            out["budget_store"] = self.store
        if self.webhook is not None:
            out["budget_webhook"] = {
                "url": self.webhook.url,
                "headers": dict(self.webhook.headers),
                "timeout": self.webhook.timeout,
            }
        return out


def _read_rules(value: Any, path: str) -> tuple[BudgetRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list, got {type(value).__name__}")
    rules: list[BudgetRule] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        entry = expect_mapping(item, item_path)
        reject_unknown(entry, ("tenant", "period", "tokens", "usd"), item_path)
        for required in ("tenant", "period"):
            if required not in entry:
                raise ConfigError(f"{item_path}.{required}", "missing")
        tenant = str(entry["tenant"]) if isinstance(entry["tenant"], int) else entry["tenant"]
        tenant = read_str(tenant, f"{item_path}.tenant")
        period = entry["period"]
        if period not in PERIODS:
            raise ConfigError(f"{item_path}.period", f"expected daily or monthly, got {period!r}")
        if (tenant, period) in seen:
            raise ConfigError(item_path, f"a {period} budget for tenant {tenant!r} is already defined")
        seen.add((tenant, period))
        tokens = read_int(entry["tokens"], f"{item_path}.tokens") if entry.get("tokens") is not None else None
        usd = _read_usd(entry["usd"], f"{item_path}.usd") if entry.get("usd") is not None else None
        if tokens is None and usd is None:
            raise ConfigError(item_path, "give tokens, usd or both")
        rules.append(BudgetRule(tenant, period, tokens, usd))
    return tuple(rules)


def _read_usd(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 <= value <= MAX_USD):
        raise ConfigError(path, f"expected a number of USD between 0 and {MAX_USD:.0f}, got {value!r}")
    return float(value)


def _read_webhook(value: Any, path: str) -> BudgetWebhookConfig:
    section = expect_mapping(value, path)
    reject_unknown(section, ("url", "headers", "timeout"), path)
    if "url" not in section:
        raise ConfigError(f"{path}.url", "missing")
    url = read_str(section["url"], f"{path}.url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{path}.url", f"expected an http:// or https:// URL, got {url!r}")
    headers_raw = expect_mapping(section.get("headers"), f"{path}.headers")
    headers = tuple(
        (key, read_str(item, f"{path}.headers.{key}", allow_empty=True)) for key, item in headers_raw.items()
    )
    timeout = DEFAULT_WEBHOOK_TIMEOUT
    if "timeout" in section:
        timeout = read_duration(section["timeout"], f"{path}.timeout")
        if timeout <= 0:
            raise ConfigError(f"{path}.timeout", "must be > 0")
    return BudgetWebhookConfig(url, headers, timeout)


def zone(name: str) -> tzinfo:
    """The tzinfo of a zone name; UTC needs no time zone database (slim images may lack one)."""
    return UTC if name == "UTC" else ZoneInfo(name)


def period_bounds(period: Period, now: float, tz: tzinfo) -> tuple[str, datetime, datetime]:
    """(key, local start, local end) of the calendar day or month holding unix time ``now``."""
    local = datetime.fromtimestamp(now, tz)
    if period == "daily":
        start = datetime(local.year, local.month, local.day, tzinfo=tz)
        following = start.date() + timedelta(days=1)
        end = datetime(following.year, following.month, following.day, tzinfo=tz)
        return start.strftime("%Y-%m-%d"), start, end
    start = datetime(local.year, local.month, 1, tzinfo=tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return start.strftime("%Y-%m"), start, datetime(year, month, 1, tzinfo=tz)


# --- tracker --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Window:
    """One period in progress: this replica's counters and what the shared store said and holds."""

    period: Period
    key: str
    start: datetime
    end: float  # unix seconds
    usage: dict[str, Cell] = field(default_factory=dict)
    others: dict[str, Totals] = field(default_factory=dict)  # other replicas' totals at the last read
    written: dict[str, Totals] = field(default_factory=dict)  # what our Redis field holds, as far as known

    def unsynced(self) -> int:
        return sum(1 for tenant, cell in self.usage.items() if any(cell) and self.written.get(tenant) != tuple(cell))


class BudgetTracker:
    """Counts leaf usage per tenant and period and serves the budget gauges (a ``Component``).

    ``add`` is the processor's usage sink; ``collect`` is a ``StoreCollector`` source; ``sync`` is
    one round of the background loop (tests call it to avoid waiting for the next tick).
    """

    def __init__(
        self,
        config: BudgetsConfig,
        store: MetricStore,
        *,
        clock: Callable[[], float] = time.time,
        sync_interval: float = 1.0,
        persist_interval: float = 5.0,
        webhook_backoff: float = 0.5,
    ) -> None:
        self.config = config
        self._log = get_logger("processor/genai/budgets")
        self._tz = zone(config.timezone)
        self._clock = clock
        self._sync_interval = sync_interval
        self._persist_interval = persist_interval
        self._webhook_backoff = webhook_backoff
        self._explicit: dict[tuple[str, Period], BudgetRule] = {}
        self._wildcard: dict[Period, BudgetRule] = {}
        for rule in config.rules:
            if rule.tenant == WILDCARD:
                self._wildcard[rule.period] = rule
            else:
                self._explicit[(rule.tenant, rule.period)] = rule
        self._periods = tuple(p for p in PERIODS if p in self._wildcard or any(k[1] == p for k in self._explicit))
        self._windows: dict[Period, _Window] = {}
        self._draining: list[_Window] = []  # ended windows the shared store has not fully received
        self._routes: dict[str, tuple[Cell, ...]] = {}
        self._wildcard_tenants: set[str] = set()
        self._notified: set[NotifiedKey] = set()
        self._next_boundary = -math.inf
        self._changes = 0
        self._persisted_changes = -1
        self._persisted_at = -math.inf
        self.replica = uuid.uuid4().hex
        self._state_path = Path(config.state_file) if config.state_file else None
        self._lock_fd: int | None = None
        self._redis: Redis | None = None
        self._store_up = False
        self._store_checked = False
        self._store_error = ""
        self._session: aiohttp.ClientSession | None = None
        self._deliveries: asyncio.Queue[dict[str, Any]] = asyncio.Queue(WEBHOOK_QUEUE_SIZE)
        self._stopping = asyncio.Event()
        self._sync_lock = asyncio.Lock()  # one round at a time: the loop's, a test's, shutdown's last
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._state_failing = False
        self._store_error_logged = False
        self._loop_failures: set[str] = set()

        self.overflow = store.counter(
            "gateway_budget_tenant_overflow",
            "Leaf operations of tenants a wildcard budget could not track because genai.budget_max_tenants "
            "tenants already have budget series.",
            (),
            expires=False,
        )
        self.state_write_failures = store.counter(
            "gateway_budget_state_write_failures",
            "Failed writes of genai.budget_state_file; usage since the last good write is lost on a restart.",
            (),
            expires=False,
        )
        self.webhook_notifications = store.counter(
            "gateway_budget_webhook_notifications",
            "Budget threshold notifications by result: delivered, failed (after retries), dropped (queue full).",
            ("result",),
            expires=False,
        )
        self.store_up = (
            store.gauge(
                "gateway_budget_store_up",
                "1 when the last exchange with the shared budget store (Redis) succeeded, else 0; only "
                "exposed with genai.budget_store.",
                (),
                expires=False,
            )
            if config.store
            else None
        )
        self.store_flush_failures = (
            store.counter(
                "gateway_budget_store_flush_failures",
                "Failed flushes to the shared budget store; usage keeps counting locally and is written "
                "when the store is back.",
                (),
                expires=False,
            )
            if config.store
            else None
        )
        if self.store_up is not None:
            self.store_up.set((), 0.0)
        self._roll(clock())

    # --- hot path ---------------------------------------------------------------------------------

    def add(self, tenant: str, tokens: int, usd: float) -> None:
        """Count one leaf operation (tokens = input + output); cheap, synchronous, never raises."""
        now = self._clock()
        if now >= self._next_boundary:
            self._roll(now)
        cells = self._routes.get(tenant)
        if cells is None:
            cells = self._route(tenant)
            if not cells:
                return
        nanos = round(usd * NANOS_PER_USD) if 0.0 < usd <= MAX_USD else 0
        for cell in cells:
            cell[0] += tokens
            cell[1] += nanos
        self._changes += 1

    def _rule(self, tenant: str, period: Period) -> BudgetRule | None:
        """An explicit rule for this tenant and period, else the period's wildcard rule."""
        rule = self._explicit.get((tenant, period))
        if rule is None and tenant:
            rule = self._wildcard.get(period)
        return rule

    def _route(self, tenant: str) -> tuple[Cell, ...]:
        """The usage cells a tenant's operations add to; admits wildcard tenants up to the cap."""
        targets = [w for w in self._windows.values() if self._rule(tenant, w.period) is not None]
        if not targets:
            return ()
        wild = any((tenant, w.period) not in self._explicit for w in targets)
        if wild and tenant not in self._wildcard_tenants:
            if len(self._wildcard_tenants) >= self.config.max_tenants:
                self.overflow.inc(())
                # Explicit budgets still count; not cached, so every overflowing operation is counted.
                return tuple(w.usage[tenant] for w in targets if (tenant, w.period) in self._explicit)
            self._wildcard_tenants.add(tenant)
        cells = tuple(w.usage.setdefault(tenant, [0, 0]) for w in targets)
        self._routes[tenant] = cells
        return cells

    def _roll(self, now: float) -> None:
        """Start the period(s) that ``now`` is in; tenants that spent in the last one keep a series."""
        for period in self._periods:
            old = self._windows.get(period)
            key, start, end = period_bounds(period, now, self._tz)
            if old is not None and old.key == key:
                continue
            window = _Window(period, key, start, max(end.timestamp(), now + 1.0))
            for tenant, rule_period in self._explicit:
                if rule_period == period:
                    window.usage[tenant] = [0, 0]
            if old is not None:
                for tenant, cell in old.usage.items():
                    if any(cell):
                        window.usage.setdefault(tenant, [0, 0])
                if self.config.store and old.unsynced():
                    self._draining.append(old)
                self._log.info("budget_period_started", period=period, period_key=key, previous=old.key)
            self._windows[period] = window
            self._changes += 1
        self._routes.clear()
        self._wildcard_tenants = {
            tenant for w in self._windows.values() for tenant in w.usage if (tenant, w.period) not in self._explicit
        }
        current = {(w.period, w.key) for w in self._windows.values()}
        self._notified = {n for n in self._notified if (n[0], n[1]) in current}
        self._next_boundary = min((w.end for w in self._windows.values()), default=math.inf)

    # --- exposition -------------------------------------------------------------------------------

    def used(self, tenant: str, period: Period) -> Totals:
        """(tokens, nano-dollars) used in the current period: global with a shared store."""
        window = self._windows.get(period)
        if window is None:
            return (0, 0)
        cell = window.usage.get(tenant, (0, 0))
        other = window.others.get(tenant, (0, 0))
        return (cell[0] + other[0], cell[1] + other[1])

    def collect(self) -> list[Metric]:
        """The budget gauges for the current periods, computed now (a StoreCollector source)."""
        now = self._clock()
        if now >= self._next_boundary:
            self._roll(now)
        families: dict[str, GaugeMetricFamily] = {}
        for kind, unit in (("tokens", "tokens"), ("usd", "USD")):
            for what, doc in (
                ("limit", f"Budget limit in {unit} per tenant and period (genai.budgets)."),
                ("used", f"Used {unit} in the current period (global across replicas with genai.budget_store)."),
                ("remaining", f"Budget left in {unit} in the current period: limit - used, negative once over."),
            ):
                name = f"gen_ai_budget_{what}_{kind}"
                families[name] = GaugeMetricFamily(name, doc, labels=_LABELS)
        for window in self._windows.values():
            for tenant in window.usage:
                rule = self._rule(tenant, window.period)
                if rule is None:
                    continue
                labels = [tenant, window.period]
                used = self.used(tenant, window.period)
                for index, kind in enumerate(KINDS):
                    limit = rule.limit(kind)
                    if limit is None:
                        continue
                    scale = 1 if kind == "tokens" else NANOS_PER_USD
                    families[f"gen_ai_budget_limit_{kind}"].add_metric(labels, limit / scale)
                    families[f"gen_ai_budget_used_{kind}"].add_metric(labels, used[index] / scale)
                    families[f"gen_ai_budget_remaining_{kind}"].add_metric(labels, (limit - used[index]) / scale)
        return list(families.values())

    def status(self) -> dict[str, Any]:
        """What /health/ready shows under ``details.budgets``: never makes the gateway unready."""
        unsynced = sum(w.unsynced() for w in (*self._draining, *self._windows.values()))
        if self._redis is None and not self.config.store:
            return {"store": "local", "periods": [w.key for w in self._windows.values()]}
        state = "up" if self._store_up else ("connecting" if not self._store_checked else "down")
        status: dict[str, Any] = {"store": "redis", "store_state": state, "unsynced_series": unsynced}
        if state == "down":
            status["detail"] = (
                f"budget store unreachable ({self._store_error}): counting locally, the backlog is written "
                "when it is back"
            )
        return status

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the state file, connect the store (a down store does not stop start-up), run the loop."""
        self._started = True
        try:
            if self._state_path is not None:
                await asyncio.to_thread(self._lock_state)
                raw = await asyncio.to_thread(self._read_state)
                if raw is not None:
                    self._restore(raw)
            if self.config.store:
                await self._connect()
                await self._flush_store()
            if self.config.webhook is not None:
                self._session = aiohttp.ClientSession()
                self._tasks.append(asyncio.create_task(self._deliver_loop(), name="budget-webhook"))
            if self._state_path is not None:
                await self._persist()  # fail fast on an unwritable path, not at the first flush
                if self._state_failing:
                    raise OSError(f"genai.budget_state_file: cannot write {self._state_path}")
            self._tasks.append(asyncio.create_task(self._loop(), name="budget-sync"))
        except BaseException:
            await self.shutdown()
            raise
        self._log.info(
            "budget_tracker_started",
            rules=len(self.config.rules),
            periods=[w.key for w in self._windows.values()],
            timezone=self.config.timezone,
            store="redis" if self.config.store else "local",
            state_file=str(self._state_path) if self._state_path else None,
            webhook=self.config.webhook is not None,
            replica=self.replica,
        )

    async def shutdown(self) -> None:
        """Last flush and state write, webhook queue drained within its timeout; idempotent."""
        if not self._started:
            return
        self._started = False
        self._stopping.set()
        loop_tasks = [t for t in self._tasks if t.get_name() == "budget-sync"]
        for task in loop_tasks:
            await task
        async with self._sync_lock:
            self._roll(self._clock())
            if self._redis is not None:
                await self._flush_store()
            if self._state_path is not None and self._lock_fd is not None:
                await self._persist()
        delivery = [t for t in self._tasks if t not in loop_tasks]
        if delivery:
            timeout = self.config.webhook.timeout if self.config.webhook else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._deliveries.join(), timeout)
            for task in delivery:
                task.cancel()
            for task in delivery:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None
        self._log.info("budget_tracker_stopped", replica=self.replica)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._sync_interval)
                return
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not end the loop: log each kind once
                name = type(exc).__name__
                if name not in self._loop_failures:
                    self._loop_failures.add(name)
                    self._log.error("budget_sync_failed", exception=name, error=repr(exc))

    async def sync(self, *, persist: bool = False) -> None:
        """One background round: roll periods, write/read the shared store, notify, save state."""
        async with self._sync_lock:
            await self._sync(persist)

    async def _sync(self, persist: bool) -> None:
        now = self._clock()
        if now >= self._next_boundary:
            self._roll(now)
        if self._redis is not None:
            if await self._flush_store():
                await self._notify_shared()
        else:
            self._notify_local()
        due = persist or time.monotonic() - self._persisted_at >= self._persist_interval
        if self._state_path is not None and self._changes != self._persisted_changes and due:
            await self._persist()

    # --- shared store -----------------------------------------------------------------------------

    async def _connect(self) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # One immediate retry (a pooled connection may predate a Redis restart); writes are idempotent
        # (HSET of cumulative counters), so a retried or repeated flush never counts twice.
        self._redis = Redis.from_url(
            self.config.store,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 1),
            client_name=f"otel-ai-gateway-{self.replica[:8]}",
        )

    def _key(self, window: _Window, tenant: str) -> str:
        return f"{REDIS_PREFIX}:{window.period}:{window.key}:{tenant}"

    async def _flush_store(self) -> bool:
        """Write our changed cumulative counters, read every tracked tenant's totals; True on success."""
        from redis.exceptions import RedisError

        redis = self._redis
        if redis is None:
            return False
        windows = [*self._draining, *self._windows.values()]
        writes: list[tuple[_Window, str, Totals]] = []
        pipe = redis.pipeline(transaction=False)
        for window in windows:
            for tenant, cell in window.usage.items():
                value = (cell[0], cell[1])
                if any(value) and window.written.get(tenant) != value:
                    key = self._key(window, tenant)
                    pipe.hset(key, mapping={f"{self.replica}:tokens": value[0], f"{self.replica}:usd_nanos": value[1]})
                    pipe.expireat(key, int(window.end) + REDIS_EXPIRY_GRACE_S)
                    writes.append((window, tenant, value))
        reads = [(w, tenant) for w in self._windows.values() for tenant in w.usage]
        for window, tenant in reads:
            pipe.hgetall(self._key(window, tenant))
        try:
            results = await pipe.execute()
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            self._store_down(exc)
            return False
        for window, tenant, value in writes:
            window.written[tenant] = value
        for (window, tenant), fields in zip(reads, results[2 * len(writes) :], strict=True):
            self._read_totals(window, tenant, fields)
        self._draining = [w for w in self._draining if w.unsynced()]
        self._store_ok()
        return True

    def _read_totals(self, window: _Window, tenant: str, fields: Mapping[bytes, bytes]) -> None:
        """Sum the other replicas' fields; if ours is not what we wrote (Redis lost data), rewrite it."""
        tokens = nanos = 0
        own = [0, 0]
        for raw_field, raw_value in fields.items():
            replica, _, kind = raw_field.decode().rpartition(":")
            try:
                value = int(raw_value)
            except ValueError:
                continue
            index = 0 if kind == "tokens" else 1 if kind == "usd_nanos" else -1
            if index < 0:
                continue
            if replica == self.replica:
                own[index] = value
            elif index == 0:
                tokens += value
            else:
                nanos += value
        window.others[tenant] = (tokens, nanos)
        if window.written.get(tenant, (0, 0)) != tuple(own):
            window.written.pop(tenant, None)

    def _store_down(self, exc: BaseException) -> None:
        self._store_checked = True
        self._store_error = type(exc).__name__
        if self.store_flush_failures is not None:
            self.store_flush_failures.inc(())
        if self.store_up is not None:
            self.store_up.set((), 0.0)
        for window in (*self._draining, *self._windows.values()):
            window.written.clear()  # unknown what the store holds now: write everything when it is back
        if self._store_up or not self._store_error_logged:
            self._log.warning("budget_store_unavailable", error=repr(exc), action="counting locally")
            self._store_error_logged = True
        self._store_up = False

    def _store_ok(self) -> None:
        if not self._store_up and self._store_checked:
            self._log.info("budget_store_recovered")
        self._store_up = True
        self._store_checked = True
        self._store_error_logged = False
        if self.store_up is not None:
            self.store_up.set((), 1.0)

    # --- notifications ----------------------------------------------------------------------------

    def _crossings(self) -> list[tuple[NotifiedKey, _Window, int, int]]:
        """Thresholds reached and not yet notified: (key, window, used, limit) in counting units."""
        found: list[tuple[NotifiedKey, _Window, int, int]] = []
        for window in self._windows.values():
            for tenant in window.usage:
                rule = self._rule(tenant, window.period)
                if rule is None:
                    continue
                used = self.used(tenant, window.period)
                for index, kind in enumerate(KINDS):
                    limit = rule.limit(kind)
                    if limit is None or used[index] <= 0:
                        continue
                    for threshold in THRESHOLDS:
                        key: NotifiedKey = (window.period, window.key, tenant, kind, threshold)
                        if used[index] * 100 >= limit * threshold and key not in self._notified:
                            found.append((key, window, used[index], limit))
        return found

    def _notify_local(self) -> None:
        for key, window, used, limit in self._crossings():
            self._notified.add(key)
            self._changes += 1
            self._enqueue(key, window, used, limit)

    async def _notify_shared(self) -> None:
        """With many replicas one claims each notification (SET NX) and only that one sends it."""
        from redis.exceptions import RedisError

        crossings = self._crossings()
        if not crossings or self._redis is None:
            return
        if self.config.webhook is None:
            self._notified.update(key for key, *_ in crossings)
            return
        pipe = self._redis.pipeline(transaction=False)
        for key, window, _, _ in crossings:
            period, period_key, tenant, kind, threshold = key
            claim = f"{REDIS_PREFIX}-notified:{period}:{period_key}:{tenant}:{kind}:{threshold}"
            pipe.set(claim, self.replica, nx=True, exat=int(window.end) + REDIS_EXPIRY_GRACE_S)
        try:
            claimed = await pipe.execute()
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            self._store_down(exc)
            return  # retried after the next successful flush
        for (key, window, used, limit), won in zip(crossings, claimed, strict=True):
            self._notified.add(key)
            self._changes += 1
            if won:
                self._enqueue(key, window, used, limit)

    def _enqueue(self, key: NotifiedKey, window: _Window, used: int, limit: int) -> None:
        if self.config.webhook is None:
            return
        period, _, tenant, kind, threshold = key
        scale = 1 if kind == "tokens" else NANOS_PER_USD
        body = {
            "tenant": tenant,
            "period": period,
            "period_start": window.start.isoformat(),
            "kind": kind,
            "threshold": threshold,
            "used": used if kind == "tokens" else used / scale,
            "limit": limit if kind == "tokens" else limit / scale,
        }
        self._log.info("budget_threshold_reached", tenant=tenant, period=period, kind=kind, threshold=threshold)
        try:
            self._deliveries.put_nowait(body)
        except asyncio.QueueFull:
            self.webhook_notifications.inc(("dropped",))

    async def _deliver_loop(self) -> None:
        while True:
            body = await self._deliveries.get()
            try:
                delivered = await self._deliver(body)
                self.webhook_notifications.inc(("delivered" if delivered else "failed",))
            finally:
                self._deliveries.task_done()

    async def _deliver(self, body: Mapping[str, Any]) -> bool:
        """POST with retries on network errors, 408, 429 and 5xx, backing off; False when given up."""
        webhook = self.config.webhook
        assert webhook is not None and self._session is not None
        headers = {"Content-Type": "application/json", **dict(webhook.headers)}
        data = orjson.dumps(body)
        delay = self._webhook_backoff
        outcome = ""
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            try:
                async with self._session.post(
                    webhook.url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=webhook.timeout)
                ) as response:
                    status = response.status
                    await response.read()
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            else:
                if 200 <= status < 300:
                    return True
                outcome = f"http_{status}"
                if status not in (408, 429) and status < 500:
                    break  # the receiver refuses this request: retrying cannot help
            if attempt == WEBHOOK_ATTEMPTS:
                break
            await asyncio.sleep(delay)  # a backoff, not a poll; shutdown cancels it past its drain deadline
            delay *= 2
        self._log.warning("budget_webhook_failed", tenant=body["tenant"], threshold=body["threshold"], error=outcome)
        return False

    # --- state file -------------------------------------------------------------------------------

    def _lock_state(self) -> None:
        assert self._state_path is not None
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self._state_path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OSError(
                f"genai.budget_state_file: {self._state_path} is in use by another gateway (one file per replica)"
            ) from None
        self._lock_fd = fd

    def _read_state(self) -> dict[str, Any] | None:
        assert self._state_path is not None
        try:
            data = self._state_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            state = orjson.loads(data)
            if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
                raise ValueError("not a budget state file of version 1")
            return state
        except ValueError as exc:
            aside = self._state_path.with_name(self._state_path.name + ".corrupt")
            os.replace(self._state_path, aside)
            self._log.error("budget_state_unreadable", path=str(self._state_path), moved_to=str(aside), error=str(exc))
            return None

    def _restore(self, state: Mapping[str, Any]) -> None:
        """Take back the current periods' counters (older ones only if the shared store may lack them)."""
        replica = state.get("replica")
        if isinstance(replica, str) and replica:
            self.replica = replica
        restored = 0
        try:
            for item in state.get("windows", ()):
                period, key, usage = item["period"], item["key"], item["usage"]
                current = self._windows.get(period)
                if current is not None and current.key == key:
                    target = current
                elif self.config.store and period in PERIODS:
                    # An ended period's usage may never have reached the store: write it (idempotently).
                    target = _Window(period, key, datetime.fromisoformat(item["start"]), float(item["end"]))
                    self._draining.append(target)
                else:
                    continue
                for tenant, (tokens, nanos) in usage.items():
                    cell = target.usage.setdefault(str(tenant), [0, 0])
                    cell[0] += int(tokens)
                    cell[1] += int(nanos)
                    restored += 1
            for period, key, tenant, kind, threshold in state.get("notified", ()):
                window = self._windows.get(period)
                if window is not None and window.key == key:
                    self._notified.add((period, key, tenant, kind, int(threshold)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # hand-edited or foreign: keep what was read
            self._log.error("budget_state_invalid", path=str(self._state_path), error=repr(exc))
        self._routes.clear()
        self._wildcard_tenants = {
            tenant for w in self._windows.values() for tenant in w.usage if (tenant, w.period) not in self._explicit
        }
        self._log.info("budget_state_restored", series=restored, replica=self.replica)

    def _snapshot(self) -> bytes:
        return orjson.dumps(
            {
                "version": STATE_VERSION,
                "replica": self.replica,
                "timezone": self.config.timezone,
                "windows": [
                    {
                        "period": w.period,
                        "key": w.key,
                        "start": w.start.isoformat(),
                        "end": w.end,
                        "usage": {tenant: cell for tenant, cell in w.usage.items() if any(cell)},
                    }
                    for w in (*self._draining, *self._windows.values())
                ],
                "notified": sorted(self._notified),
            }
        )

    async def _persist(self) -> None:
        assert self._state_path is not None
        changes = self._changes
        data = self._snapshot()
        try:
            await asyncio.to_thread(write_atomic, self._state_path, data)
        except OSError as exc:
            self.state_write_failures.inc(())
            if not self._state_failing:
                self._log.error("budget_state_write_failed", path=str(self._state_path), error=repr(exc))
            self._state_failing = True
            return
        if self._state_failing:
            self._log.info("budget_state_write_recovered", path=str(self._state_path))
        self._state_failing = False
        self._persisted_changes = changes
        self._persisted_at = time.monotonic()


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file, fsync it, rename over ``path`` and fsync the directory: a crash leaves
    the old file or the new one, never half of one."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
