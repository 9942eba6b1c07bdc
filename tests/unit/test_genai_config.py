"""The genai: config section: complete expected dataclasses, and errors that name the key path."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.derive.config import GenAIConfig, PriceOverride, PricesConfig, default_config, from_mapping
from gateway.settings import parse_settings
from gateway.validation import ConfigError

NOT_A_PRICE = "expected a non-negative number of USD per million tokens, got "


def test_defaults() -> None:
    """No genai section: the four usual tenant keys, trust span costs, no overrides."""
    assert (
        GenAIConfig(
            tenant_attributes=("tenant.id", "tenant_id", "enduser.id", "user.id"),
            prices=PricesConfig(span_cost="trust", overrides=()),
            enabled=True,
        )
        == default_config()
    )


def test_full_section_is_read_completely() -> None:
    """Every key of the section lands in the dataclass tree."""
    raw = {
        "tenant_attributes": ["org.id", "user.id"],
        "prices": {
            "span_cost": "recompute",
            "overrides": [
                {
                    "match": "ft:gpt-4o-mini:acme:.*",
                    "provider": "openai",
                    "input_per_mtok": 0.3,
                    "output_per_mtok": 1.2,
                    "cache_read_per_mtok": 0.15,
                    "cache_write_per_mtok": 0.3,
                },
                {"match": "llama3.*", "input_per_mtok": 0, "output_per_mtok": 0},
            ],
        },
    }
    assert GenAIConfig(
        tenant_attributes=("org.id", "user.id"),
        prices=PricesConfig(
            span_cost="recompute",
            overrides=(
                PriceOverride(
                    match="ft:gpt-4o-mini:acme:.*",
                    provider="openai",
                    input_per_mtok=0.3,
                    output_per_mtok=1.2,
                    cache_read_per_mtok=0.15,
                    cache_write_per_mtok=0.3,
                ),
                PriceOverride(match="llama3.*", input_per_mtok=0.0, output_per_mtok=0.0),
            ),
        ),
    ) == from_mapping(raw)


def test_section_is_read_through_the_settings_loader() -> None:
    """The YAML file's genai: section reaches Settings.genai."""
    settings = parse_settings(
        "genai:\n  tenant_attributes: [org.id]\n  prices:\n    span_cost: recompute\n", environ={}
    )
    assert GenAIConfig(tenant_attributes=("org.id",), prices=PricesConfig(span_cost="recompute")) == settings.genai


def test_enabled_false_turns_genai_derivation_off() -> None:
    """genai.enabled: false is read, and the gateway then wires only span metrics for traces."""
    from gateway.app import Gateway

    settings = parse_settings("genai:\n  enabled: false\n", environ={})
    assert GenAIConfig(enabled=False) == settings.genai
    assert ["SpanMetricsProcessor"] == [type(p).__name__ for p in Gateway(settings).processors["traces"]]


def test_built_config_validates() -> None:
    """A config built in code passes the same checks as one read from YAML."""
    GenAIConfig(
        prices=PricesConfig(overrides=(PriceOverride(match="m", input_per_mtok=1, output_per_mtok=1),))
    ).validate()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"tenants": []},
            "genai.tenants: unknown key (expected one of: enabled, tenant_attributes, prices, budgets, "
            "budget_timezone, budget_state_file, budget_store, budget_webhook, budget_max_tenants)",
        ),
        ({"enabled": "no"}, "genai.enabled: expected true or false, got 'no'"),
        ({"tenant_attributes": "user.id"}, "genai.tenant_attributes: expected a list of strings, got str"),
        ({"prices": {"span_cost": "both"}}, "genai.prices.span_cost: expected trust or recompute, got 'both'"),
        ({"prices": {"overrides": {"match": "x"}}}, "genai.prices.overrides: expected a list, got dict"),
        (
            {"prices": {"overrides": [{"input_per_mtok": 1, "output_per_mtok": 1}]}},
            "genai.prices.overrides[0].match: missing",
        ),
        (
            {"prices": {"overrides": [{"match": "x", "output_per_mtok": 1}]}},
            "genai.prices.overrides[0].input_per_mtok: missing",
        ),
        (
            {"prices": {"overrides": [{"match": "x", "input_per_mtok": -1, "output_per_mtok": 1}]}},
            f"genai.prices.overrides[0].input_per_mtok: {NOT_A_PRICE}-1",
        ),
        (
            {"prices": {"overrides": [{"match": "x", "input_per_mtok": True, "output_per_mtok": 1}]}},
            f"genai.prices.overrides[0].input_per_mtok: {NOT_A_PRICE}True",
        ),
        (
            {
                "prices": {
                    "overrides": [
                        {"match": "x", "input_per_mtok": 1, "output_per_mtok": 1, "cache_read_per_mtok": "0.1"}
                    ]
                }
            },
            f"genai.prices.overrides[0].cache_read_per_mtok: {NOT_A_PRICE}'0.1'",
        ),
        (
            {"prices": {"overrides": [{"match": "x", "input_per_mtok": 1, "output_per_mtok": 1, "provider": ""}]}},
            "genai.prices.overrides[0].provider: expected a non-empty string, got ''",
        ),
        (
            {"prices": {"overrides": [{"match": "x", "input_per_mtok": 1, "output_per_mtok": 1, "price": 2}]}},
            "genai.prices.overrides[0].price: unknown key (expected one of: match, provider, input_per_mtok, "
            "output_per_mtok, cache_read_per_mtok, cache_write_per_mtok)",
        ),
    ],
)
def test_errors_name_the_key_path(raw: dict[str, Any], message: str) -> None:
    """Each mistake is refused with the dotted path of the key to fix."""
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw)
    assert message == str(caught.value)


def test_invalid_regex_is_refused_at_start_up() -> None:
    """A regex that does not compile fails the config, naming the override."""
    with pytest.raises(ConfigError) as caught:
        from_mapping({"prices": {"overrides": [{"match": "gpt-(4", "input_per_mtok": 1, "output_per_mtok": 1}]}})
    assert str(caught.value).startswith("genai.prices.overrides[0].match: invalid regex 'gpt-(4': missing )")
