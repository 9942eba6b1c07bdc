"""The ``genai:`` section of the config: tenant attribution and prices, validated once at start-up.

```yaml
genai:
  enabled: true             # false: no GenAI metrics (span metrics and forwarding go on)
  tenant_attributes: [tenant.id, tenant_id, enduser.id, user.id]   # span first, then resource
  prices:
    span_cost: trust        # trust: use a cost the span carries; recompute: always price ourselves
    overrides:              # checked before genai-prices, first match wins
      - match: "ft:gpt-4o-mini:acme:.*"   # regex, full match on the request then response model
        provider: openai                  # optional: only for this gen_ai.provider.name
        input_per_mtok: 0.30              # USD per million tokens
        output_per_mtok: 1.20
        cache_read_per_mtok: 0.15         # optional, defaults to input_per_mtok
        cache_write_per_mtok: 0.30        # optional, defaults to input_per_mtok
```

Tenant budgets (``budgets``, ``budget_timezone``, ``budget_state_file``, ``budget_store``,
``budget_webhook``, ``budget_max_tenants``) are read by ``gateway.derive.budgets``; see docs/budgets.md.

Every error names its key path (``genai.prices.overrides[0].match: invalid regex ...``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.derive.budgets import BUDGET_KEYS, BudgetsConfig
from gateway.derive.conventions import DEFAULT_TENANT_ATTRIBUTES
from gateway.validation import ConfigError, expect_mapping, read_bool, read_str, read_str_list, reject_unknown

SpanCostPolicy = Literal["trust", "recompute"]
_SPAN_COST_POLICIES: tuple[SpanCostPolicy, ...] = ("trust", "recompute")


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """A user price for models whose name fully matches ``match`` (USD per million tokens)."""

    match: str
    input_per_mtok: float
    output_per_mtok: float
    provider: str | None = None
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None


@dataclass(frozen=True, slots=True)
class PricesConfig:
    span_cost: SpanCostPolicy = "trust"
    overrides: tuple[PriceOverride, ...] = ()


@dataclass(frozen=True, slots=True)
class GenAIConfig:
    tenant_attributes: tuple[str, ...] = DEFAULT_TENANT_ATTRIBUTES
    prices: PricesConfig = field(default_factory=PricesConfig)
    enabled: bool = True
    budgets: BudgetsConfig = field(default_factory=BudgetsConfig)  # genai.budget* keys: derive/budgets.py

    @classmethod
    def default_config(cls) -> GenAIConfig:
        return cls()

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], path: str = "genai") -> GenAIConfig:
        return from_mapping(raw, path)

    def validate(self) -> None:
        """Re-check a config built in code (YAML goes through ``from_mapping``, which checks as it reads)."""
        from_mapping(_as_mapping(self), "genai")


def default_config() -> GenAIConfig:
    return GenAIConfig()


def from_mapping(raw: Mapping[str, Any], path: str = "genai") -> GenAIConfig:
    """Build a GenAIConfig from the parsed YAML section; raise ConfigError naming the bad key."""
    section = expect_mapping(raw, path)
    reject_unknown(section, ("enabled", "tenant_attributes", "prices", *BUDGET_KEYS), path)
    defaults = GenAIConfig()
    enabled = read_bool(section["enabled"], f"{path}.enabled") if "enabled" in section else defaults.enabled
    tenant_attributes = defaults.tenant_attributes
    if "tenant_attributes" in section:
        tenant_attributes = read_str_list(section["tenant_attributes"], f"{path}.tenant_attributes")

    prices_path = f"{path}.prices"
    prices = expect_mapping(section.get("prices"), prices_path)
    reject_unknown(prices, ("span_cost", "overrides"), prices_path)
    span_cost: SpanCostPolicy = defaults.prices.span_cost
    if "span_cost" in prices:
        value = prices["span_cost"]
        if value not in _SPAN_COST_POLICIES:
            raise ConfigError(f"{prices_path}.span_cost", f"expected trust or recompute, got {value!r}")
        span_cost = value

    overrides_path = f"{prices_path}.overrides"
    raw_overrides = prices.get("overrides")
    if raw_overrides is None:
        raw_overrides = []
    if not isinstance(raw_overrides, list):
        raise ConfigError(overrides_path, f"expected a list, got {type(raw_overrides).__name__}")
    overrides: list[PriceOverride] = []
    for index, item in enumerate(raw_overrides):
        item_path = f"{overrides_path}[{index}]"
        entry = expect_mapping(item, item_path)
        reject_unknown(
            entry,
            ("match", "provider", "input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok"),
            item_path,
        )
        for required in ("match", "input_per_mtok", "output_per_mtok"):
            if required not in entry:
                raise ConfigError(f"{item_path}.{required}", "missing")
        match = read_str(entry["match"], f"{item_path}.match")
        try:
            re.compile(match)
        except re.error as exc:
            raise ConfigError(f"{item_path}.match", f"invalid regex {match!r}: {exc}") from exc
        provider = read_str(entry["provider"], f"{item_path}.provider") if "provider" in entry else None
        overrides.append(
            PriceOverride(
                match=match,
                provider=provider,
                input_per_mtok=_read_price(entry["input_per_mtok"], f"{item_path}.input_per_mtok"),
                output_per_mtok=_read_price(entry["output_per_mtok"], f"{item_path}.output_per_mtok"),
                cache_read_per_mtok=_optional_price(entry, "cache_read_per_mtok", item_path),
                cache_write_per_mtok=_optional_price(entry, "cache_write_per_mtok", item_path),
            )
        )
    return GenAIConfig(
        tenant_attributes=tenant_attributes,
        prices=PricesConfig(span_cost=span_cost, overrides=tuple(overrides)),
        enabled=enabled,
        budgets=BudgetsConfig.from_genai_section(section, path),
    )


def _read_price(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(path, f"expected a non-negative number of USD per million tokens, got {value!r}")
    return float(value)


def _optional_price(entry: Mapping[str, Any], key: str, item_path: str) -> float | None:
    if key not in entry or entry[key] is None:
        return None
    return _read_price(entry[key], f"{item_path}.{key}")


def _as_mapping(config: GenAIConfig) -> dict[str, Any]:
    overrides = [
        {
            key: value
            for key, value in (
                ("match", o.match),
                ("provider", o.provider),
                ("input_per_mtok", o.input_per_mtok),
                ("output_per_mtok", o.output_per_mtok),
                ("cache_read_per_mtok", o.cache_read_per_mtok),
                ("cache_write_per_mtok", o.cache_write_per_mtok),
            )
            if value is not None
        }
        for o in config.prices.overrides
    ]
    return {
        "enabled": config.enabled,
        "tenant_attributes": list(config.tenant_attributes),
        "prices": {"span_cost": config.prices.span_cost, "overrides": overrides},
        **config.budgets.as_mapping(),
    }
