"""GenAIProcessor: spans in, exact token / cost / latency / error series out, each call counted once."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.derive.config import GenAIConfig, PriceOverride, PricesConfig
from gateway.derive.genai import GenAIProcessor
from gateway.metrics.collector import StoreCollector
from gateway.metrics.store import OVERFLOW_KEY, Exemplar, MetricStore, resolve_exemplar
from tests.support.genai_spans import START_NS, AttributeValue, make_batch, make_span

CHAT = ("chatbot", "", "chat", "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
GPT_4O_MINI_CHAT: dict[str, AttributeValue] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 500,
    "gen_ai.usage.cache_read.input_tokens": 200,
    "gen_ai.usage.reasoning.output_tokens": 100,
}
# gpt-4o-mini: 800 uncached * $0.15 + 200 cached * $0.075 + 500 output * $0.60, per million tokens
GPT_4O_MINI_CHAT_USD = 0.000435


def processor(config: GenAIConfig | None = None) -> GenAIProcessor:
    return GenAIProcessor(config or GenAIConfig(), MetricStore())


def chat(**changes: AttributeValue) -> dict[str, AttributeValue]:
    return {**GPT_4O_MINI_CHAT, **changes}


def span_id(n: int) -> bytes:
    return n.to_bytes(8, "big")


def test_leaf_chat_counts_every_token_type() -> None:
    """tokens_total gets input, output and the cache_read / reasoning subsets of one chat call."""
    proc = processor()
    proc.process(make_batch([make_span(GPT_4O_MINI_CHAT)]))
    assert {"input": 1000.0, "output": 500.0, "cache_read": 200.0, "cache_creation": 0.0, "reasoning": 100.0} == {
        token_type: proc.tokens.value((*CHAT, token_type))
        for token_type in ("input", "output", "cache_read", "cache_creation", "reasoning")
    }


def test_request_whose_bytes_name_no_span_kind_key_is_not_read() -> None:
    """The pre-check trusts batch.raw: bytes without any span-kind key mean no GenAI span to read."""
    proc = processor()
    batch = make_batch([make_span(GPT_4O_MINI_CHAT)])
    plain = make_batch([make_span({"http.request.method": "GET", "url.path": "/"})])
    proc.process(dataclasses.replace(batch, raw=plain.raw))
    assert 0 == len(proc.tokens.series)
    proc.process(batch)
    assert 1000.0 == proc.tokens.value((*CHAT, "input"))


def test_token_usage_histogram_observes_input_and_output_once_each() -> None:
    """gen_ai_client_token_usage gets one observation per span and token type."""
    proc = processor()
    proc.process(make_batch([make_span(GPT_4O_MINI_CHAT)]))
    series = {t: proc.token_usage.series[(*CHAT, t)] for t in ("input", "output")}
    assert {"input": (1, 1000.0), "output": (1, 500.0)} == {t: (s.count, s.sum) for t, s in series.items()}


def test_chat_duration_is_observed_with_empty_error_agent_and_tool() -> None:
    """A successful chat call is one duration observation with empty error_type, agent and tool labels."""
    proc = processor()
    proc.process(make_batch([make_span(GPT_4O_MINI_CHAT, duration_s=1.5)]))
    series = proc.duration.series[(*CHAT, "", "", "")]
    assert (1, 1.5) == (series.count, series.sum)


def test_cost_is_priced_from_genai_prices() -> None:
    """Without a span cost, the call is priced from the bundled price data."""
    proc = processor()
    proc.process(make_batch([make_span(GPT_4O_MINI_CHAT)]))
    assert GPT_4O_MINI_CHAT_USD == pytest.approx(proc.cost.value((*CHAT, "genai_prices")), rel=1e-12)


def test_embeddings_count_input_only() -> None:
    """An embeddings call has input tokens only, and is priced on them."""
    proc = processor()
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "text-embedding-3-small",
        "gen_ai.usage.input_tokens": 10_000,
    }
    proc.process(make_batch([make_span(attributes)]))
    labels = ("chatbot", "", "embeddings", "openai", "text-embedding-3-small", "")
    # $0.02 per million input tokens
    assert (10_000.0, 0.0, 0.0002) == (
        proc.tokens.value((*labels, "input")),
        proc.tokens.value((*labels, "output")),
        pytest.approx(proc.cost.value((*labels, "genai_prices")), rel=1e-12),
    )


def test_agent_span_repeating_its_chats_totals_is_not_counted_twice() -> None:
    """invoke_agent carries the sum of its two chat spans: tokens and cost equal the two chats' sum."""
    proc = processor()
    agent = make_span(
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "planner",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 3000,
            "gen_ai.usage.output_tokens": 700,
        },
        span_id=span_id(1),
    )
    first = make_span(
        chat(**{"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 500}), span_id=span_id(2)
    )
    second = make_span(
        chat(**{"gen_ai.usage.input_tokens": 2000, "gen_ai.usage.output_tokens": 200}), span_id=span_id(3)
    )
    proc.process(make_batch([agent, first, second]))
    # chat 1: 800*0.15 + 200*0.075 + 500*0.6; chat 2: 1800*0.15 + 200*0.075 + 200*0.6 (per million)
    expected_usd = (800 * 0.15 + 200 * 0.075 + 500 * 0.6 + 1800 * 0.15 + 200 * 0.075 + 200 * 0.6) / 1e6
    total_cost = sum(series.value for series in proc.cost.series.values())
    assert (3000.0, 700.0, pytest.approx(expected_usd, rel=1e-12)) == (
        sum(s.value for k, s in proc.tokens.series.items() if k[-1] == "input"),
        sum(s.value for k, s in proc.tokens.series.items() if k[-1] == "output"),
        total_cost,
    )


def test_agent_span_feeds_the_duration_histogram_under_its_name() -> None:
    """The agent span is timed as invoke_agent with gen_ai_agent_name."""
    proc = processor()
    agent = make_span({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}, duration_s=4.0)
    proc.process(make_batch([agent]))
    series = proc.duration.series[("chatbot", "", "invoke_agent", "", "", "", "", "planner", "")]
    assert (1, 4.0) == (series.count, series.sum)


def test_pydantic_ai_agent_run_counts_only_its_chat_spans_costs() -> None:
    """Pydantic AI: the run span's aggregated usage is ignored; each chat span's operation.cost is summed."""
    proc = processor()
    run = make_span(
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support",
            "gen_ai.aggregated_usage.input_tokens": 300,
            "gen_ai.aggregated_usage.output_tokens": 60,
            "operation.cost": 0.5,
        },
        span_id=span_id(1),
    )
    chats = [
        make_span(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": tokens,
                "gen_ai.usage.output_tokens": 30,
                "operation.cost": cost,
            },
            span_id=span_id(n),
        )
        for n, tokens, cost in ((2, 100, 0.125), (3, 200, 0.25))
    ]
    proc.process(make_batch([run, *chats]))
    labels = ("chatbot", "", "chat", "openai", "gpt-4o", "")
    assert (300.0, 0.375, 1) == (
        proc.tokens.value((*labels, "input")),
        proc.cost.value((*labels, "span")),
        len(proc.cost.series),
    )


def test_vercel_outer_and_inner_spans_count_once() -> None:
    """ai.generateText and its ai.generateText.doGenerate both carry usage: only the inner one counts."""
    proc = processor()
    usage: dict[str, AttributeValue] = {
        "ai.model.provider": "openai.chat",
        "ai.model.id": "gpt-4o-mini",
        "ai.usage.inputTokens": 400,
        "ai.usage.outputTokens": 20,
    }
    outer = make_span({"ai.operationId": "ai.generateText", **usage}, span_id=span_id(1))
    inner = make_span({"ai.operationId": "ai.generateText.doGenerate", **usage}, span_id=span_id(2))
    proc.process(make_batch([outer, inner]))
    assert (400.0, 20.0) == (
        sum(s.value for k, s in proc.tokens.series.items() if k[-1] == "input"),
        sum(s.value for k, s in proc.tokens.series.items() if k[-1] == "output"),
    )


def test_openinference_agent_and_llm_spans_count_once() -> None:
    """An OpenInference AGENT span with the LLM span's token counts adds nothing."""
    proc = processor()
    counts: dict[str, AttributeValue] = {"llm.token_count.prompt": 50, "llm.token_count.completion": 5}
    agent = make_span({"openinference.span.kind": "AGENT", **counts}, span_id=span_id(1))
    llm = make_span(
        {"openinference.span.kind": "LLM", "llm.system": "openai", "llm.model_name": "gpt-4o", **counts},
        span_id=span_id(2),
    )
    proc.process(make_batch([agent, llm]))
    assert 50.0 == sum(s.value for k, s in proc.tokens.series.items() if k[-1] == "input")


def test_span_cost_is_trusted_by_default() -> None:
    """A cost the span carries is used as is, labelled cost_source=span."""
    proc = processor()
    proc.process(make_batch([make_span(chat(**{"gen_ai.usage.cost": 0.01}))]))
    assert ({(*CHAT, "span")}, 0.01) == (set(proc.cost.series), proc.cost.value((*CHAT, "span")))


def test_span_cost_is_ignored_when_recomputing() -> None:
    """span_cost: recompute prices the call from token counts, whatever the span says."""
    proc = processor(GenAIConfig(prices=PricesConfig(span_cost="recompute")))
    proc.process(make_batch([make_span(chat(**{"gen_ai.usage.cost": 0.01}))]))
    assert ({(*CHAT, "genai_prices")}, pytest.approx(GPT_4O_MINI_CHAT_USD, rel=1e-12)) == (
        set(proc.cost.series),
        proc.cost.value((*CHAT, "genai_prices")),
    )


def test_config_override_prices_the_call() -> None:
    """A matching override wins over genai-prices and is labelled cost_source=override."""
    override = PriceOverride(match="gpt-4o-mini", input_per_mtok=1.0, output_per_mtok=2.0)
    proc = processor(GenAIConfig(prices=PricesConfig(overrides=(override,))))
    proc.process(make_batch([make_span(GPT_4O_MINI_CHAT)]))
    # 1000 input (cache priced as input when the override sets no cache price) * $1 + 500 output * $2, per million
    assert 0.002 == pytest.approx(proc.cost.value((*CHAT, "override")), rel=1e-12)


def test_unknown_model_is_counted_as_unpriced() -> None:
    """A leaf call with tokens that no source can price is counted, and adds no cost series."""
    proc = processor()
    proc.process(make_batch([make_span(chat(**{"gen_ai.request.model": "in-house-7b", "gen_ai.response.model": ""}))]))
    assert (1.0, 0) == (proc.unpriced.value(("openai", "in-house-7b")), len(proc.cost.series))


def test_failed_call_is_timed_with_its_error_and_not_priced() -> None:
    """An error span without usage: a duration with error_type, no cost and no unpriced count."""
    proc = processor()
    failed = make_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "error.type": "<class 'openai.BadRequestError'>",
        },
        error=True,
        duration_s=0.05,
    )
    proc.process(make_batch([failed]))
    series = proc.duration.series[("chatbot", "", "chat", "openai", "gpt-4o-mini", "", "BadRequestError", "", "")]
    assert (1, 0, 0) == (series.count, len(proc.cost.series), len(proc.unpriced.series))


def test_time_to_first_token_is_observed() -> None:
    """A TTFT the span reports is one observation of gen_ai_server_time_to_first_token_seconds."""
    proc = processor()
    proc.process(make_batch([make_span(chat(**{"gen_ai.response.time_to_first_chunk": 0.3}), duration_s=2.0)]))
    series = proc.ttft.series[CHAT]
    assert (1, 0.3) == (series.count, series.sum)


def test_exemplars_carry_trace_and_span_ids() -> None:
    """Duration and cost keep the trace id and span id (lowercase hex) of an observation."""
    proc = processor()
    proc.process(make_batch([make_span(GPT_4O_MINI_CHAT, duration_s=1.5)]))
    end = (START_NS + 1_500_000_000) / 1e9
    duration_exemplar = next(
        resolve_exemplar(e) for e in proc.duration.series[(*CHAT, "", "", "")].exemplars if e is not None
    )
    cost_exemplar = resolve_exemplar(proc.cost.series[(*CHAT, "genai_prices")].exemplar)
    assert cost_exemplar is not None
    assert (
        Exemplar("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 1.5, end),
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
    ) == (duration_exemplar, (cost_exemplar.trace_id, cost_exemplar.span_id))


def test_tenant_from_span_then_resource() -> None:
    """The span's tenant attribute labels the series; without one, the resource's does."""
    proc = processor()
    proc.process(make_batch([make_span(chat(**{"tenant.id": "acme"}))], {"service.name": "chatbot", "user.id": "u1"}))
    proc.process(make_batch([make_span(GPT_4O_MINI_CHAT)], {"service.name": "chatbot", "user.id": "u1"}))
    tenants = {key[1] for key in proc.tokens.series}
    assert {"acme", "u1"} == tenants


def test_batch_tenant_from_the_api_key_overrides_attributes() -> None:
    """A tenant bound to the sender's API key wins over span and resource attributes."""
    proc = processor()
    proc.process(make_batch([make_span(chat(**{"tenant.id": "spoofed"}))], tenant="key-tenant"))
    assert {"key-tenant"} == {key[1] for key in proc.tokens.series}


def test_service_name_labels_the_series() -> None:
    """service_name comes from the resource's service.name."""
    proc = processor()
    proc.process(make_batch([make_span(GPT_4O_MINI_CHAT)], {"service.name": "billing"}))
    assert {"billing"} == {key[0] for key in proc.tokens.series}


def test_refused_values_are_counted_by_attribute_and_reason() -> None:
    """A negative token count is counted as refused and never reaches a counter."""
    proc = processor()
    proc.process(make_batch([make_span(chat(**{"gen_ai.usage.output_tokens": -3}))]))
    assert (1.0, 0.0) == (
        proc.refused.value(("gen_ai.usage.output_tokens", "negative")),
        proc.tokens.value((*CHAT, "output")),
    )


def test_a_refused_value_is_counted_on_every_span_that_carries_it() -> None:
    """Spans repeating the same bad attribute are each counted (attributes are read once, counted per span)."""
    proc = processor()
    bad = chat(**{"gen_ai.usage.output_tokens": -3})
    proc.process(make_batch([make_span(bad, span_id=span_id(1)), make_span(bad, span_id=span_id(2))]))
    proc.process(make_batch([make_span(bad, span_id=span_id(3))]))
    assert 3.0 == proc.refused.value(("gen_ai.usage.output_tokens", "negative"))


def test_long_attribute_values_are_read_but_not_kept() -> None:
    """A span carrying a 20 KB prompt is derived as usual and leaves no 20 KB entry in the reader's memory."""
    proc = processor()
    prompt = "x" * 20_000
    for n in range(3):
        proc.process(make_batch([make_span(chat(**{"gen_ai.prompt.0.content": prompt}), span_id=span_id(n))]))
    assert (3, 256) == (
        proc.duration.series[(*CHAT, "", "", "")].count,
        max(256, *(len(raw) for raw in proc.reader.attribute_cache)),
    )


def test_a_label_set_that_expired_comes_back_as_a_new_series() -> None:
    """After expiry deleted a model's series (idle), its next span starts a fresh series that /metrics shows."""
    now = [1000.0]
    store = MetricStore(series_expiration=60.0, clock=lambda: now[0])
    proc = GenAIProcessor(GenAIConfig(), store)
    proc.process(make_batch([make_span(GPT_4O_MINI_CHAT)]))
    now[0] += 61.0
    store.tick()
    store.expire()
    assert (*CHAT, "input") not in proc.tokens.series
    store.tick()
    proc.process(make_batch([make_span(GPT_4O_MINI_CHAT)]))
    assert 1000.0 == proc.tokens.value((*CHAT, "input"))


def test_observations_past_the_series_limit_go_to_overflow_and_are_counted() -> None:
    """With room for one label set, a second model's observations land in the overflow series, each counted."""
    store = MetricStore(max_series=1)
    proc = GenAIProcessor(GenAIConfig(), store)
    other = chat(**{"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06"})
    proc.process(make_batch([make_span(GPT_4O_MINI_CHAT), make_span(other), make_span(other)]))
    overflow = proc.duration.series[OVERFLOW_KEY]
    assert (2, 2.0) == (
        overflow.count,
        store.family("gateway_metric_series_overflow").value(("gen_ai_client_operation_duration_seconds",)),
    )


def test_only_the_first_max_attributes_of_a_span_are_read_and_the_rest_counted() -> None:
    """limits.max_attributes_per_span: a span's attributes past the limit are not read; the span is counted."""
    proc = GenAIProcessor(GenAIConfig(), MetricStore(), max_attributes=len(GPT_4O_MINI_CHAT))
    padded = {**GPT_4O_MINI_CHAT, **{f"app.extra.{n}": n for n in range(200)}, "tenant.id": "acme"}
    proc.process(make_batch([make_span(padded)]))
    assert (1000.0, 1.0) == (
        proc.tokens.value((*CHAT, "input")),  # read: the GenAI keys come first; tenant.id (last) was not
        proc.refused.value(("span.attributes", "too_many")),
    )


def test_disjoint_cache_fixup_is_counted_and_not_double_priced() -> None:
    """Anthropic-style input (cache excluded) is corrected once: counted, and priced on the OTel total."""
    proc = processor()
    anthropic: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.cache_write.input_tokens": 400,
        "gen_ai.usage.output_tokens": 10,
    }
    proc.process(make_batch([make_span(anthropic)]))
    labels = ("chatbot", "", "chat", "anthropic", "claude-sonnet-4-5", "")
    # claude-sonnet-4-5: 100 uncached * $3 + 1000 read * $0.30 + 400 written * $3.75 + 10 output * $15, per million
    assert (1.0, 1500.0, pytest.approx((100 * 3 + 1000 * 0.3 + 400 * 3.75 + 10 * 15) / 1e6, rel=1e-12)) == (
        proc.fixups.value(("cache_tokens_added_to_input",)),
        proc.tokens.value((*labels, "input")),
        proc.cost.value((*labels, "genai_prices")),
    )


def test_metrics_and_logs_batches_are_ignored() -> None:
    """Only traces batches are read."""
    proc = processor()
    proc.process(dataclasses.replace(make_batch([make_span(GPT_4O_MINI_CHAT)]), signal="logs"))
    assert 0 == len(proc.tokens.series)


def test_a_malformed_batch_is_counted_not_raised() -> None:
    """process() never raises into the pipeline: an unreadable batch is counted as a failure."""
    proc = processor()
    # The bytes name a GenAI span (so the pre-check lets the batch through), the decoded request is unreadable.
    proc.process(dataclasses.replace(make_batch([make_span(GPT_4O_MINI_CHAT)]), request=None))
    assert 1.0 == proc.failures.value(("AttributeError",))


def test_exposition_names_and_help() -> None:
    """The families expose under their contract names; HELP says cached and reasoning are subsets."""
    store = MetricStore()
    proc = GenAIProcessor(GenAIConfig(), store)
    proc.process(
        make_batch([make_span(chat(**{"gen_ai.response.time_to_first_chunk": 0.2, "gen_ai.usage.output_tokens": -1}))])
    )
    proc.process(make_batch([make_span(chat(**{"gen_ai.request.model": "zzz", "gen_ai.response.model": ""}))]))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert {
        "gen_ai_client_token_usage": "histogram",
        "gen_ai_client_tokens": "counter",
        "gen_ai_client_operation_duration_seconds": "histogram",
        "gen_ai_server_time_to_first_token_seconds": "histogram",
        "gen_ai_client_cost_usd": "counter",
        "gen_ai_client_unpriced_operations": "counter",
        "gateway_genai_refused_attributes": "counter",
    } == {
        name: families[name].type
        for name in (
            "gen_ai_client_token_usage",
            "gen_ai_client_tokens",
            "gen_ai_client_operation_duration_seconds",
            "gen_ai_server_time_to_first_token_seconds",
            "gen_ai_client_cost_usd",
            "gen_ai_client_unpriced_operations",
            "gateway_genai_refused_attributes",
        )
    }
    assert "subset" in families["gen_ai_client_tokens"].documentation


def test_duration_labels_are_in_contract_order() -> None:
    """Common labels first, in the documented order, then the family's own."""
    proc = processor()
    assert (
        "service_name",
        "tenant_id",
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
        "gen_ai_response_model",
        "error_type",
        "gen_ai_agent_name",
        "gen_ai_tool_name",
    ) == proc.duration.labelnames


def test_a_refused_value_is_kept_without_the_frames_that_refused_it() -> None:
    """The reader keeps a refused attribute's reason, not its traceback: the frames of the read
    (holding the parsed attribute) would otherwise live as long as the cache entry."""
    proc = processor()
    proc.process(make_batch([make_span(chat(**{"gen_ai.usage.output_tokens": -3}))]))
    refusals = [
        value
        for targets in proc.reader.attribute_cache.values()
        for *_, value, _key in targets
        if isinstance(value, Exception)
    ]
    assert [("negative", None)] == [(value.reason, value.__traceback__) for value in refusals]
