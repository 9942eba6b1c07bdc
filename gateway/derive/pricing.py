"""USD per (provider, model), resolved once and cached, so the hot loop only multiplies.

Why not call ``genai_prices.calc_price`` per span: it matches the model against ~1,500 price rules,
decomposes usage into leaf units and works in Decimal; that is milliseconds per call. A model's
price is *linear* in the five token counts we read (input, output, cache read, cache write,
reasoning), piecewise by input size for tiered models. So we ask genai-prices a few probe questions
once per model (the price of 1 more input token, of 1 cached token instead of an uncached one, ...)
and keep the coefficients. The probes go through genai-prices' own arithmetic, so whatever it
does with cache and reasoning tokens (price reads at the provider's cache rate, reasoning as output
unless the model prices it apart, a per-request fee) is reproduced exactly; tests compare against
``calc_price`` on real models.

Token counts follow OTel containment: ``input`` includes ``cache_read`` and ``cache_write``,
``output`` includes ``reasoning`` (as genai-prices' ``Usage`` does).

Lookup order for a span: config overrides (regex on the request, then the response model; the
first match wins), then genai-prices on the request model, the response model, and the names with a
date/version suffix or a ``vendor/`` prefix removed. A provider genai-prices does not know leaves
the span unpriced rather than priced as somebody else's model (a self-hosted ``llama3`` is not
Groq's). Unpriced lookups are cached too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final, Literal, Protocol

from genai_prices import Usage
from genai_prices.data_snapshot import DataSnapshot, get_snapshot
from genai_prices.types import ConditionalPrice, ModelInfo, ModelPrice, TieredPrices

from gateway.derive.config import PriceOverride
from gateway.derive.conventions import GENAI_PRICES_PROVIDERS

PriceSource = Literal["override", "genai_prices"]
_MTOK: Final = 1_000_000.0
_VERSION_SUFFIXES: Final = (
    re.compile(r"-v\d+(?::\d+)?$"),  # bedrock: anthropic.claude-3-sonnet-20240229-v1:0
    re.compile(r":\d+$"),
    re.compile(r"[-@]\d{4}-\d{2}-\d{2}$"),  # gpt-4o-2024-08-06
    re.compile(r"[-@]\d{8}$"),  # claude-3-5-sonnet-20241022, vertex claude-3-5-sonnet@20240620
    re.compile(r"-\d{4}$"),  # gpt-4-0613, mistral-large-2407
    re.compile(r"-latest$"),
)


@dataclass(frozen=True, slots=True)
class LinearPrice:
    """USD of one call = ``base + input*in + output*out + cache_read*cr + cache_write*cw + reasoning*rs``.

    ``cache_read``/``cache_write`` are what one cached token costs *more* than an input token
    (negative when cheaper), ``reasoning`` likewise relative to an output token: with OTel's
    inclusive counts, this is the provider's price applied to each disjoint bucket.
    """

    base: float
    input: float
    output: float
    cache_read: float
    cache_write: float
    reasoning: float

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int, reasoning: int) -> float:
        return (
            self.base
            + self.input * input_tokens
            + self.output * output_tokens
            + self.cache_read * cache_read
            + self.cache_write * cache_write
            + self.reasoning * reasoning
        )


class _Constraint(Protocol):
    def active(self, request_timestamp: datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class ModelPricing:
    """A model's price: linear pieces by input size, optionally chosen by date or time of day.

    ``tiers`` is ``((threshold, price), ...)`` ascending; a piece applies when input tokens exceed
    its threshold (genai-prices' cliff tiers: crossing one reprices every token). ``variants``, when
    set, holds genai-prices' conditional prices (historic prices, off-peak hours), evaluated at the
    span's start time; the last active one wins, as in genai-prices.
    """

    tiers: tuple[tuple[int, LinearPrice], ...]
    variants: tuple[tuple[_Constraint | None, tuple[tuple[int, LinearPrice], ...]], ...] = ()

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read: int,
        cache_write: int,
        reasoning: int,
        start_unix_nano: int = 0,
    ) -> float:
        tiers = self.tiers if not self.variants else self._tiers_at(start_unix_nano)
        price = tiers[0][1]
        if len(tiers) > 1:
            for threshold, tier_price in reversed(tiers):
                if input_tokens > threshold:
                    price = tier_price
                    break
        return price.cost(input_tokens, output_tokens, cache_read, cache_write, reasoning)

    def _tiers_at(self, start_unix_nano: int) -> tuple[tuple[int, LinearPrice], ...]:
        when = datetime.fromtimestamp(start_unix_nano / 1e9, UTC) if start_unix_nano > 0 else datetime.now(UTC)
        for constraint, tiers in reversed(self.variants):
            if constraint is None or constraint.active(when):
                return tiers
        return self.variants[0][1]


@dataclass(frozen=True, slots=True)
class PriceQuote:
    """What the hot loop needs for one (provider, request model, response model)."""

    pricing: ModelPricing
    source: PriceSource
    model_id: str


def linear_price_of(model_price: ModelPrice) -> tuple[tuple[int, LinearPrice], ...]:
    """Probe one genai-prices ModelPrice into linear pieces (one per tier), using its own arithmetic."""
    thresholds = sorted(
        {tier.start for value in vars(model_price).values() if isinstance(value, TieredPrices) for tier in value.tiers}
    )

    def total(**usage: int) -> Decimal:
        price: Decimal = model_price.calc_price(Usage(**usage))["total_price"]
        return price

    pieces: list[tuple[int, LinearPrice]] = []
    for threshold in [-1, *thresholds]:
        at = max(threshold + 1, 1)  # an input size inside this piece
        here = total(input_tokens=at)
        per_input = total(input_tokens=at + 1) - here
        with_output = total(input_tokens=at, output_tokens=1)
        pieces.append(
            (
                threshold,
                LinearPrice(
                    base=float(here - per_input * at),
                    input=float(per_input),
                    output=float(with_output - here),
                    cache_read=float(total(input_tokens=at, cache_read_tokens=1) - here),
                    cache_write=float(total(input_tokens=at, cache_write_tokens=1) - here),
                    reasoning=float(total(input_tokens=at, output_tokens=1, output_reasoning_tokens=1) - with_output),
                ),
            )
        )
    return tuple(pieces)


def model_pricing_of(model: ModelInfo) -> ModelPricing:
    """A genai-prices model's prices as coefficients, keeping its date/time-of-day conditions."""
    if isinstance(model.prices, ModelPrice):
        return ModelPricing(linear_price_of(model.prices))
    conditional: list[ConditionalPrice] = list(model.prices)
    variants = tuple((c.constraint, linear_price_of(c.prices)) for c in conditional)
    if len(variants) == 1 and variants[0][0] is None:
        return ModelPricing(variants[0][1])
    return ModelPricing(variants[0][1], variants)


def override_pricing(override: PriceOverride) -> ModelPricing:
    """An override's per-MTok prices as coefficients; unset cache prices charge the input price."""
    input_price = override.input_per_mtok / _MTOK
    cache_read = override.cache_read_per_mtok if override.cache_read_per_mtok is not None else override.input_per_mtok
    cache_write = (
        override.cache_write_per_mtok if override.cache_write_per_mtok is not None else override.input_per_mtok
    )
    return ModelPricing(
        (
            (
                -1,
                LinearPrice(
                    base=0.0,
                    input=input_price,
                    output=override.output_per_mtok / _MTOK,
                    cache_read=cache_read / _MTOK - input_price,
                    cache_write=cache_write / _MTOK - input_price,
                    reasoning=0.0,
                ),
            ),
        )
    )


def model_candidates(*names: str) -> list[str]:
    """Names to try, in order: each name as given, then with ``vendor/`` and version suffixes removed."""
    out: list[str] = []
    for name in names:
        if name and name not in out:
            out.append(name)
    for name in names:
        stem = name.rsplit("/", 1)[-1]
        while stem:
            if stem not in out:
                out.append(stem)
            for suffix in _VERSION_SUFFIXES:
                shorter = suffix.sub("", stem)
                if shorter != stem:
                    stem = shorter
                    break
            else:
                break
    return out


class Pricer:
    """Resolves (provider, request model, response model) to a PriceQuote, once; then a dict hit.

    The cache is bounded (a sender inventing model names must not grow memory without end): when
    full it is cleared and refilled by the models actually in use.
    """

    def __init__(
        self,
        overrides: Sequence[PriceOverride] = (),
        *,
        snapshot: DataSnapshot | None = None,
        max_cache: int = 10_000,
    ) -> None:
        self.overrides = tuple(overrides)
        self._overrides = [(re.compile(o.match), o.provider, override_pricing(o), o.match) for o in overrides]
        self._snapshot = snapshot if snapshot is not None else get_snapshot()
        self._max_cache = max_cache
        self._cache: dict[tuple[str, str, str], PriceQuote | None] = {}
        self._by_model: dict[int, ModelPricing] = {}

    @property
    def cache_entries(self) -> int:
        return len(self._cache)

    def lookup(self, provider: str, request_model: str, response_model: str) -> PriceQuote | None:
        key = (provider, request_model, response_model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        quote = self._resolve(provider, request_model, response_model)
        if len(self._cache) >= self._max_cache:
            self._cache.clear()
        self._cache[key] = quote
        return quote

    def _resolve(self, provider: str, request_model: str, response_model: str) -> PriceQuote | None:
        for model in (request_model, response_model):
            if not model:
                continue
            for pattern, only_provider, pricing, text in self._overrides:
                if (only_provider is None or only_provider == provider) and pattern.fullmatch(model):
                    return PriceQuote(pricing, "override", text)
        return self._from_genai_prices(provider, model_candidates(request_model, response_model))

    def _from_genai_prices(self, provider: str, candidates: list[str]) -> PriceQuote | None:
        if not candidates:
            return None
        find: Callable[[str], ModelInfo | None]
        if provider:
            provider_id = GENAI_PRICES_PROVIDERS.get(provider, provider)
            try:
                found_provider = self._snapshot.find_provider(None, provider_id, None)
            except LookupError:
                return None
            providers = self._snapshot.providers

            def find(name: str) -> ModelInfo | None:
                return found_provider.find_model(name, all_providers=providers)

        else:

            def find(name: str) -> ModelInfo | None:
                try:
                    return self._snapshot.find_provider_model(name, None, None, None)[1]
                except LookupError:
                    return None

        for name in candidates:
            model = find(name)
            if model is not None:
                return PriceQuote(self._pricing(model), "genai_prices", model.id)
        return None

    def _pricing(self, model: ModelInfo) -> ModelPricing:
        pricing = self._by_model.get(id(model))
        if pricing is None:
            pricing = self._by_model[id(model)] = model_pricing_of(model)
        return pricing
