"""Pricing: cached per-model coefficients reproduce genai-prices exactly; overrides win; misses are cached."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from genai_prices import Usage, calc_price

from gateway.derive.config import PriceOverride
from gateway.derive.pricing import Pricer, model_candidates

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def nanos(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000_000


def reference(provider_id: str, model: str, usage: tuple[int, int, int, int, int], when: datetime = NOON) -> float:
    """genai-prices' own answer, in float (what the gateway exposes)."""
    input_tokens, output_tokens, cache_read, cache_write, reasoning = usage
    price = calc_price(
        Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            output_reasoning_tokens=reasoning,
        ),
        model,
        provider_id=provider_id,
        genai_request_timestamp=when,
    )
    return float(price.total_price)


@pytest.mark.parametrize(
    ("provider", "provider_id", "model", "usage"),
    [
        ("openai", "openai", "gpt-4o-mini", (1000, 500, 200, 0, 0)),
        ("openai", "openai", "gpt-4o", (123_456, 7_890, 100_000, 0, 3_000)),
        ("openai", "openai", "text-embedding-3-small", (5000, 0, 0, 0, 0)),
        ("anthropic", "anthropic", "claude-sonnet-4-5", (150_000, 2_000, 100_000, 20_000, 500)),
        ("anthropic", "anthropic", "claude-sonnet-4-5", (250_000, 2_000, 100_000, 20_000, 500)),  # above the tier
        ("gcp.gemini", "google", "gemini-2.5-pro", (300_000, 9_000, 50_000, 0, 4_000)),  # above the tier
        ("aws.bedrock", "aws", "anthropic.claude-3-5-sonnet-20241022-v2:0", (4000, 300, 1000, 500, 0)),
        ("azure.ai.openai", "azure", "gpt-4o", (1000, 1000, 0, 0, 0)),
        ("perplexity", "perplexity", "sonar-deep-research", (1000, 3000, 0, 0, 1200)),  # reasoning priced apart
        ("perplexity", "perplexity", "sonar", (1000, 200, 0, 0, 0)),  # a per-request fee
    ],
)
def test_cached_coefficients_equal_genai_prices(
    provider: str, provider_id: str, model: str, usage: tuple[int, int, int, int, int]
) -> None:
    """For each model, price from the cached coefficients == genai-prices' calc_price (to 1e-12)."""
    quote = Pricer().lookup(provider, model, "")
    assert quote is not None
    ours = quote.pricing.cost(*usage, nanos(NOON))
    assert reference(provider_id, model, usage) == pytest.approx(ours, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("hour", [3, 20])
def test_time_of_day_prices_follow_the_span_start(hour: int) -> None:
    """DeepSeek's off-peak price applies to calls that started off-peak (evaluated per span)."""
    when = datetime(2026, 6, 1, hour, 0, tzinfo=UTC)
    quote = Pricer().lookup("deepseek", "deepseek-chat", "")
    assert quote is not None
    usage = (10_000, 2_000, 4_000, 0, 0)
    assert reference("deepseek", "deepseek-chat", usage, when) == pytest.approx(
        quote.pricing.cost(*usage, nanos(when)), rel=1e-12
    )


def test_gpt_4o_mini_price_in_plain_numbers() -> None:
    """gpt-4o-mini: $0.15/MTok input, $0.075 cached input, $0.60 output; reasoning is output."""
    quote = Pricer().lookup("openai", "gpt-4o-mini", "")
    assert quote is not None
    # 800 uncached * 0.15 + 200 cached * 0.075 + 500 output * 0.60, per million
    assert 0.000435 == pytest.approx(quote.pricing.cost(1000, 500, 200, 0, 100), rel=1e-12)


def test_quote_names_source_and_model() -> None:
    """A genai-prices quote says so and names the matched model."""
    quote = Pricer().lookup("openai", "gpt-4o-mini-2024-07-18", "")
    assert quote is not None
    assert ("genai_prices", "gpt-4o-mini") == (quote.source, quote.model_id)


def test_response_model_is_tried_after_the_request_model() -> None:
    """An alias the price data does not know as request model is priced by the response model."""
    quote = Pricer().lookup("openai", "my-deployment", "gpt-4o-mini-2024-07-18")
    assert quote is not None
    assert "gpt-4o-mini" == quote.model_id


def test_version_suffix_is_removed_as_a_last_resort() -> None:
    """A date suffix genai-prices has never seen is stripped, then the base model is priced."""
    quote = Pricer().lookup("openai", "gpt-4o-mini-2099-12-31", "")
    assert quote is not None
    assert "gpt-4o-mini" == quote.model_id


def test_unknown_provider_leaves_the_call_unpriced() -> None:
    """A self-hosted provider is not priced as whoever else sells a model of that name."""
    assert None is Pricer().lookup("ollama", "gpt-4o-mini", "")


def test_missing_provider_matches_the_model_across_providers() -> None:
    """Without a provider, the model name alone finds its provider."""
    quote = Pricer().lookup("", "claude-sonnet-4-5", "")
    assert quote is not None
    assert "claude-sonnet-4-5" == quote.model_id


def test_unknown_model_is_unpriced() -> None:
    """No model, no guess."""
    assert None is Pricer().lookup("openai", "no-such-model-xyz", "")


def test_override_wins_over_genai_prices() -> None:
    """A config override for a model genai-prices knows is used instead."""
    pricer = Pricer([PriceOverride(match="gpt-4o-mini", input_per_mtok=1.0, output_per_mtok=2.0)])
    quote = pricer.lookup("openai", "gpt-4o-mini", "")
    assert quote is not None
    assert ("override", 0.002) == (quote.source, pytest.approx(quote.pricing.cost(1000, 500, 0, 0, 0), rel=1e-12))


def test_override_cache_prices_default_to_the_input_price() -> None:
    """Unset cache prices charge cached tokens as ordinary input; set ones are used."""
    pricer = Pricer([PriceOverride(match="ft:.*", input_per_mtok=2.0, output_per_mtok=8.0, cache_read_per_mtok=0.5)])
    quote = pricer.lookup("openai", "ft:gpt-4o-mini:acme", "")
    assert quote is not None
    # 600 uncached * 2 + 300 read * 0.5 + 100 written * 2 (input price) + 50 output * 8, per million
    assert (600 * 2 + 300 * 0.5 + 100 * 2 + 50 * 8) / 1e6 == pytest.approx(
        quote.pricing.cost(1000, 50, 300, 100, 0), rel=1e-12
    )


def test_override_is_a_full_match() -> None:
    """'gpt-4o' does not match 'gpt-4o-mini': patterns match the whole name."""
    pricer = Pricer([PriceOverride(match="gpt-4o", input_per_mtok=100.0, output_per_mtok=100.0)])
    quote = pricer.lookup("openai", "gpt-4o-mini", "")
    assert quote is not None
    assert "genai_prices" == quote.source


def test_override_restricted_to_a_provider() -> None:
    """An override with a provider only applies to that provider's spans."""
    pricer = Pricer([PriceOverride(match="llama3.*", provider="ollama", input_per_mtok=0.0, output_per_mtok=0.0)])
    ollama = pricer.lookup("ollama", "llama3:8b", "")
    assert ollama is not None
    assert ("override", None) == (ollama.source, pricer.lookup("groq", "llama3-70b-fake", ""))


def test_first_matching_override_wins() -> None:
    """Overrides are tried in order."""
    pricer = Pricer(
        [
            PriceOverride(match="acme-.*", input_per_mtok=1.0, output_per_mtok=1.0),
            PriceOverride(match="acme-large", input_per_mtok=9.0, output_per_mtok=9.0),
        ]
    )
    quote = pricer.lookup("", "acme-large", "")
    assert quote is not None
    assert "acme-.*" == quote.model_id


def test_lookups_are_cached_including_misses() -> None:
    """A second lookup of the same (provider, models) returns the very same answer object."""
    pricer = Pricer()
    first = pricer.lookup("openai", "gpt-4o-mini", "")
    assert (first, None, None) == (
        pricer.lookup("openai", "gpt-4o-mini", ""),
        pricer.lookup("openai", "nope", ""),
        pricer.lookup("openai", "nope", ""),
    )
    assert pricer.lookup("openai", "gpt-4o-mini", "") is first


def test_cache_is_bounded() -> None:
    """Past max_cache entries the cache is emptied rather than grown."""
    pricer = Pricer(max_cache=2)
    for name in ("a", "b", "c"):
        pricer.lookup("openai", name, "")
    assert 1 == pricer.cache_entries


def test_model_candidates_order() -> None:
    """Request, response, then each without a vendor prefix and with version suffixes peeled one by one."""
    assert [
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "openrouter/gpt-4o-2024-08-06",
        "anthropic.claude-3-5-sonnet-20241022",
        "anthropic.claude-3-5-sonnet",
        "gpt-4o-2024-08-06",
        "gpt-4o",
    ] == model_candidates("anthropic.claude-3-5-sonnet-20241022-v2:0", "openrouter/gpt-4o-2024-08-06")
