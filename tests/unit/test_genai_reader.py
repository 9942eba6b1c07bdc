"""Span -> GenAIRecord: every convention's attributes land in the same normalized fields.

Attribute sets mirror what the instrumentations really emit (docs/genai.md records them).
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.derive.conventions import DEFAULT_TENANT_ATTRIBUTES
from gateway.derive.genai import GenAIRecord, SpanReader, normalize_error_type, normalize_provider
from tests.support.genai_spans import START_NS, AttributeValue, as_received, make_request, make_span

USAGE = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
MODEL = ("operation", "leaf", "provider", "request_model", "response_model")


def read(attributes: dict[str, AttributeValue], reader: SpanReader | None = None, **span: Any) -> GenAIRecord:
    record = (reader or SpanReader(DEFAULT_TENANT_ATTRIBUTES)).read(received(attributes, **span))
    assert record is not None
    return record


def received(attributes: dict[str, AttributeValue], **span: Any) -> Any:
    """A span built from ``attributes``, as a receiver hands it to derivation."""
    return as_received(make_span(attributes, **span))


def pick(record: GenAIRecord, *names: str) -> dict[str, object]:
    return {name: getattr(record, name) for name in names}


# --- OpenTelemetry GenAI (current) --------------------------------------------------------------


def test_otel_current_chat_span_fills_every_field() -> None:
    """A chat span in today's semconv names gives model, provider, usage, TTFT, server and ids."""
    record = read(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 500,
            "gen_ai.usage.cache_read.input_tokens": 200,
            "gen_ai.usage.cache_write.input_tokens": 100,
            "gen_ai.usage.reasoning.output_tokens": 50,
            "gen_ai.response.time_to_first_chunk": 0.25,
            "server.address": "api.openai.com",
        },
        duration_s=2.0,
    )
    assert {
        "operation": "chat",
        "leaf": True,
        "provider": "openai",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "input_tokens": 1000,
        "output_tokens": 500,
        "cache_read_tokens": 200,
        "cache_write_tokens": 100,
        "reasoning_tokens": 50,
        "ttft_seconds": 0.25,
        "duration_seconds": 2.0,
        "server_address": "api.openai.com",
        "error_type": "",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "start_unix_nano": START_NS,
        "fixups": (),
        "refused": (),
    } == pick(
        record,
        *MODEL,
        *USAGE,
        "ttft_seconds",
        "duration_seconds",
        "server_address",
        "error_type",
        "trace_id",
        "span_id",
        "start_unix_nano",
        "fixups",
        "refused",
    )


def test_otel_cache_creation_key_is_read_as_cache_write() -> None:
    """gen_ai.usage.cache_creation.input_tokens (before the PR #440 rename) still counts as cache write."""
    record = read(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.cache_creation.input_tokens": 4,
        }
    )
    assert 4 == record.cache_write_tokens


@pytest.mark.parametrize("operation", ["chat", "text_completion", "generate_content", "embeddings"])
def test_otel_inference_operations_are_leaves(operation: str) -> None:
    """The four inference operations carry their own usage: they are the spans that get counted."""
    assert (operation, True) == (read({"gen_ai.operation.name": operation}).operation, True)


def test_otel_invoke_agent_is_not_a_leaf_and_names_the_agent() -> None:
    """An agent span repeats its children's usage, so it is only timed, under its agent's name."""
    record = read({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "travel-planner"})
    assert ("invoke_agent", False, "travel-planner") == (record.operation, record.leaf, record.agent_name)


def test_otel_execute_tool_names_the_tool() -> None:
    """A tool span is timed under its tool's name."""
    record = read({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"})
    assert ("execute_tool", False, "get_weather") == (record.operation, record.leaf, record.tool_name)


def test_unknown_operation_value_is_kept_as_a_non_leaf_label() -> None:
    """New operations (create_agent, plan, memory ops) are timed under their own name, never priced."""
    record = read({"gen_ai.operation.name": "search_memory"})
    assert ("search_memory", False) == (record.operation, record.leaf)


def test_legacy_completion_operation_is_a_text_completion() -> None:
    """'completion' (early semconv, OpenLLMetry) is the same leaf as text_completion."""
    assert ("text_completion", True) == (lambda r: (r.operation, r.leaf))(read({"gen_ai.operation.name": "completion"}))


# --- OTel deprecated and unofficial spellings ---------------------------------------------------


def test_deprecated_system_and_prompt_completion_tokens() -> None:
    """gen_ai.system and gen_ai.usage.prompt/completion_tokens (pre-1.27/1.37 names) fill the same fields."""
    record = read(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "vertex_ai",
            "gen_ai.usage.prompt_tokens": 12,
            "gen_ai.usage.completion_tokens": 7,
        }
    )
    assert ("gcp.vertex_ai", 12, 7) == (record.provider, record.input_tokens, record.output_tokens)


def test_current_name_wins_over_deprecated_whatever_the_order() -> None:
    """With both spellings on one span, the current semconv value is used even if it comes last."""
    record = read(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.prompt_tokens": 99,
            "gen_ai.system": "anthropic",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.provider.name": "openai",
        }
    )
    assert ("openai", 10) == (record.provider, record.input_tokens)


@pytest.mark.parametrize("key", ["gen_ai.usage.cached_tokens", "gen_ai.usage.input_cached_tokens"])
def test_unofficial_cached_token_keys_are_cache_reads(key: str) -> None:
    """Unofficial cache-read spellings seen in the wild are read as cache reads."""
    record = read({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 100, key: 30})
    assert 30 == record.cache_read_tokens


# --- OpenInference --------------------------------------------------------------------------------

OPENINFERENCE_CHAT: dict[str, AttributeValue] = {
    # as openinference-instrumentation-openai 0.1.66 emits it (docs/genai.md)
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "llm.invocation_parameters": '{"model": "gpt-4o-mini", "max_tokens": 10}',
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.token_count.prompt": 39,
    "llm.token_count.completion": 10,
    "llm.token_count.total": 49,
    "llm.token_count.prompt_details.cache_read": 9,
    "llm.token_count.prompt_details.audio": 0,
    "llm.token_count.completion_details.reasoning": 5,
    "input.value": '{"model": "gpt-4o-mini"}',
}


def test_openinference_llm_span() -> None:
    """Request model from the invocation parameters' JSON, response model from llm.model_name."""
    record = read(OPENINFERENCE_CHAT)
    assert {
        "operation": "chat",
        "leaf": True,
        "provider": "openai",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "input_tokens": 39,
        "output_tokens": 10,
        "cache_read_tokens": 9,
        "cache_write_tokens": None,
        "reasoning_tokens": 5,
    } == pick(record, *MODEL, *USAGE)


def test_openinference_model_name_alone_names_both_models() -> None:
    """Without invocation parameters, llm.model_name ("the model being used") is the request model too."""
    record = read(
        {"openinference.span.kind": "LLM", "llm.model_name": "claude-sonnet-4-5", "llm.provider": "anthropic"}
    )
    assert ("claude-sonnet-4-5", "claude-sonnet-4-5", "anthropic") == (
        record.request_model,
        record.response_model,
        record.provider,
    )


def test_openinference_request_and_response_model_keys() -> None:
    """llm.request.model_name / llm.response.model_name, when present, beat llm.model_name."""
    record = read(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "routed",
            "llm.request.model_name": "gpt-4o",
            "llm.response.model_name": "gpt-4o-2024-08-06",
        }
    )
    assert ("gpt-4o", "gpt-4o-2024-08-06") == (record.request_model, record.response_model)


def test_openinference_embedding_span() -> None:
    """EMBEDDING spans are embeddings leaves with their model and prompt tokens."""
    record = read(
        {
            "openinference.span.kind": "EMBEDDING",
            "llm.system": "openai",
            "embedding.model_name": "text-embedding-3-small",
            "embedding.invocation_parameters": '{"model": "text-embedding-3-small", "encoding_format": "base64"}',
            "llm.token_count.prompt": 10,
            "llm.token_count.total": 10,
        }
    )
    assert {
        "operation": "embeddings",
        "leaf": True,
        "provider": "openai",
        "request_model": "text-embedding-3-small",
        "response_model": "text-embedding-3-small",
        "input_tokens": 10,
        "output_tokens": None,
        "cache_read_tokens": None,
        "cache_write_tokens": None,
        "reasoning_tokens": None,
    } == pick(record, *MODEL, *USAGE)


@pytest.mark.parametrize(
    ("kind", "operation"),
    [("AGENT", "invoke_agent"), ("CHAIN", "chain"), ("TOOL", "execute_tool"), ("RETRIEVER", "retrieval")],
)
def test_openinference_non_llm_kinds_are_not_leaves(kind: str, operation: str) -> None:
    """AGENT, CHAIN, TOOL, RETRIEVER spans are timed, never counted (an AGENT span repeats usage)."""
    record = read({"openinference.span.kind": kind, "llm.token_count.prompt": 100})
    assert (operation, False) == (record.operation, record.leaf)


def test_openinference_first_token_event_gives_ttft() -> None:
    """The 'First Token Stream Event' time minus the span start is the time to first token."""
    record = read(OPENINFERENCE_CHAT, duration_s=1.0, events=[("First Token Stream Event", 0.125, {})])
    assert 0.125 == record.ttft_seconds


def test_openinference_error_type_comes_from_the_exception_event() -> None:
    """A failed OpenInference span has no error.type: the exception event's type names the error."""
    record = read(
        {"openinference.span.kind": "LLM", "llm.invocation_parameters": '{"model": "fail-400"}'},
        error=True,
        events=[("exception", 0.01, {"exception.type": "openai.BadRequestError", "exception.message": "400"})],
    )
    assert ("BadRequestError", "fail-400") == (record.error_type, record.request_model)


def test_openinference_bad_invocation_json_is_refused_and_model_falls_back() -> None:
    """Unparsable invocation parameters are refused; llm.model_name still names the model."""
    record = read({"openinference.span.kind": "LLM", "llm.invocation_parameters": "{not json", "llm.model_name": "m"})
    assert ("m", (("llm.invocation_parameters", "invalid_json"),)) == (record.request_model, record.refused)


def test_openinference_cost_total_is_the_span_cost() -> None:
    """llm.cost.total (USD) is a cost carried by the span."""
    assert 0.0042 == read({"openinference.span.kind": "LLM", "llm.cost.total": 0.0042}).cost_usd


# --- OpenLLMetry / Traceloop ----------------------------------------------------------------------


def test_openllmetry_chat_span() -> None:
    """As opentelemetry-instrumentation-openai 0.62.4 emits it: semconv names plus its own reasoning key."""
    record = read(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 39,
            "gen_ai.usage.output_tokens": 10,
            "gen_ai.usage.cache_read.input_tokens": 9,
            "gen_ai.usage.reasoning_tokens": 5,
            "gen_ai.usage.total_tokens": 49,
            "gen_ai.is_streaming": False,
        }
    )
    assert {
        "operation": "chat",
        "leaf": True,
        "provider": "openai",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "input_tokens": 39,
        "output_tokens": 10,
        "cache_read_tokens": 9,
        "cache_write_tokens": None,
        "reasoning_tokens": 5,
    } == pick(record, *MODEL, *USAGE)


def test_openllmetry_first_chunk_event_gives_ttft() -> None:
    """Of the gen_ai.content.completion.chunk events, the first one marks the first token."""
    record = read(
        {"gen_ai.operation.name": "chat", "gen_ai.is_streaming": True},
        duration_s=1.0,
        events=[
            ("gen_ai.content.completion.chunk", 0.3, {}),
            ("gen_ai.content.completion.chunk", 0.4, {}),
        ],
    )
    assert 0.3 == record.ttft_seconds


def test_openllmetry_legacy_request_type_and_total_tokens() -> None:
    """Pre-0.5 spans: llm.request.type names the operation, and the total fills a missing input count."""
    record = read(
        {
            "llm.request.type": "chat",
            "gen_ai.system": "OpenAI",
            "gen_ai.usage.completion_tokens": 15,
            "llm.usage.total_tokens": 40,
        }
    )
    assert ("chat", True, "openai", 25, 15) == (
        record.operation,
        record.leaf,
        record.provider,
        record.input_tokens,
        record.output_tokens,
    )


def test_openllmetry_workflow_span_is_not_a_leaf() -> None:
    """traceloop.span.kind=workflow marks a decorator span: timed as invoke_workflow, never counted."""
    record = read({"traceloop.span.kind": "workflow", "gen_ai.usage.input_tokens": 5})
    assert ("invoke_workflow", False) == (record.operation, record.leaf)


# --- OpenLIT ---------------------------------------------------------------------------------------


def test_openlit_span_carries_cost_and_server_ttft() -> None:
    """gen_ai.usage.cost (USD) and gen_ai.server.time_to_first_token (s); az.ai.openai is normalized."""
    record = read(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "az.ai.openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 30,
            "gen_ai.usage.cost": 0.0006,
            "gen_ai.server.time_to_first_token": 0.4,
            "gen_ai.usage.completion_tokens_details.reasoning_tokens": 8,
        },
        duration_s=1.0,
    )
    assert ("azure.ai.openai", 0.0006, 0.4, 8) == (
        record.provider,
        record.cost_usd,
        record.ttft_seconds,
        record.reasoning_tokens,
    )


def test_ttft_equal_to_the_duration_is_dropped() -> None:
    """OpenLIT sets ttft = duration on non-streamed calls: that is not a time to first token."""
    record = read({"gen_ai.operation.name": "chat", "gen_ai.server.time_to_first_token": 1.5}, duration_s=1.5)
    assert None is record.ttft_seconds


# --- Vercel AI SDK ------------------------------------------------------------------------------


def test_vercel_do_generate_span() -> None:
    """ai.generateText.doGenerate: provider 'openai.chat' -> openai, ai.* usage and models."""
    record = read(
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "operation.name": "ai.generateText.doGenerate my-function",
            "ai.model.provider": "openai.chat",
            "ai.model.id": "gpt-4o-mini",
            "ai.response.model": "gpt-4o-mini-2024-07-18",
            "ai.usage.inputTokens": 300,
            "ai.usage.outputTokens": 40,
            "ai.usage.cachedInputTokens": 100,
            "ai.usage.reasoningTokens": 10,
        }
    )
    assert {
        "operation": "chat",
        "leaf": True,
        "provider": "openai",
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "input_tokens": 300,
        "output_tokens": 40,
        "cache_read_tokens": 100,
        "cache_write_tokens": None,
        "reasoning_tokens": 10,
    } == pick(record, *MODEL, *USAGE)


def test_vercel_do_stream_ms_to_first_chunk_is_converted_to_seconds() -> None:
    """ai.response.msToFirstChunk is in milliseconds."""
    record = read({"ai.operationId": "ai.streamText.doStream", "ai.response.msToFirstChunk": 250.0}, duration_s=2.0)
    assert 0.25 == record.ttft_seconds


def test_vercel_v4_prompt_and_completion_tokens() -> None:
    """AI SDK v4 spells usage ai.usage.promptTokens / completionTokens; gen_ai.system 'anthropic.messages'."""
    record = read(
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "gen_ai.system": "anthropic.messages",
            "ai.usage.promptTokens": 21,
            "ai.usage.completionTokens": 4,
        }
    )
    assert ("anthropic", 21, 4) == (record.provider, record.input_tokens, record.output_tokens)


@pytest.mark.parametrize(
    ("operation_id", "operation"),
    [("ai.streamText", "invoke_agent"), ("ai.generateObject", "invoke_agent"), ("ai.embedMany", "embeddings")],
)
def test_vercel_outer_spans_are_not_leaves(operation_id: str, operation: str) -> None:
    """Outer ai.* spans repeat their inner call's usage: timed, never counted."""
    record = read({"ai.operationId": operation_id, "ai.usage.inputTokens": 300})
    assert (operation, False) == (record.operation, record.leaf)


def test_vercel_do_embed_reads_ai_usage_tokens() -> None:
    """ai.embedMany.doEmbed is the embeddings leaf; its usage is ai.usage.tokens."""
    record = read(
        {"ai.operationId": "ai.embedMany.doEmbed", "ai.model.provider": "openai.embedding", "ai.usage.tokens": 8}
    )
    assert ("embeddings", True, "openai", 8) == (record.operation, record.leaf, record.provider, record.input_tokens)


def test_vercel_tool_call_names_the_tool() -> None:
    """ai.toolCall spans are execute_tool, named by ai.toolCall.name."""
    record = read({"ai.operationId": "ai.toolCall", "ai.toolCall.name": "search"})
    assert ("execute_tool", "search") == (record.operation, record.tool_name)


# --- Pydantic AI / Logfire ----------------------------------------------------------------------


def test_pydantic_ai_chat_span() -> None:
    """operation.cost is the span's cost; usage details carry cache and reasoning counts."""
    record = read(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.usage.input_tokens": 2000,
            "gen_ai.usage.output_tokens": 100,
            "gen_ai.usage.details.cache_read_tokens": 1500,
            "gen_ai.usage.details.cache_write_tokens": 300,
            "gen_ai.usage.details.reasoning_tokens": 20,
            "operation.cost": 0.003,
        }
    )
    assert (1500, 300, 20, 0.003) == (
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.reasoning_tokens,
        record.cost_usd,
    )


def test_pydantic_ai_agent_run_with_aggregated_usage_only() -> None:
    """An agent run span from before gen_ai.operation.name: aggregated usage marks it invoke_agent, no usage."""
    record = read(
        {
            "agent_name": "support",
            "gen_ai.aggregated_usage.input_tokens": 300,
            "gen_ai.aggregated_usage.output_tokens": 40,
        }
    )
    assert ("invoke_agent", False, "support", None) == (
        record.operation,
        record.leaf,
        record.agent_name,
        record.input_tokens,
    )


# --- Sentry ---------------------------------------------------------------------------------------


def test_sentry_cost_key() -> None:
    """gen_ai.cost.total_tokens is Sentry's total cost in USD."""
    assert 0.02 == read({"gen_ai.operation.name": "chat", "gen_ai.cost.total_tokens": 0.02}).cost_usd


# --- normalization ------------------------------------------------------------------------------


def test_disjoint_cache_numbers_are_added_to_input() -> None:
    """cache_read + cache_write > input means Anthropic's disjoint numbers: input becomes the OTel total."""
    record = read(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.cache_read.input_tokens": 300,
            "gen_ai.usage.cache_write.input_tokens": 50,
        }
    )
    assert (450, ("cache_tokens_added_to_input",)) == (record.input_tokens, record.fixups)


def test_inclusive_cache_numbers_are_left_alone() -> None:
    """When input already covers the cache buckets nothing is changed."""
    record = read(
        {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 400, "gen_ai.usage.cache_read.input_tokens": 300}
    )
    assert (400, ()) == (record.input_tokens, record.fixups)


def test_reasoning_beyond_output_is_added_to_output() -> None:
    """Reasoning larger than output means output excluded it (Gemini's candidates vs thoughts)."""
    record = read(
        {"gen_ai.operation.name": "chat", "gen_ai.usage.output_tokens": 30, "gen_ai.usage.reasoning.output_tokens": 70}
    )
    assert (100, ("reasoning_tokens_added_to_output",)) == (record.output_tokens, record.fixups)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("openai", "openai"),
        ("OpenAI", "openai"),
        ("openai.chat", "openai"),
        ("anthropic.messages", "anthropic"),
        ("google.generative-ai", "gcp.gen_ai"),
        ("amazon-bedrock", "aws.bedrock"),
        ("aws.bedrock", "aws.bedrock"),
        ("azure.ai.openai", "azure.ai.openai"),
        ("az.ai.inference", "azure.ai.inference"),
        ("xai", "x_ai"),
        ("gemini", "gcp.gemini"),
        ("mistralai", "mistral_ai"),
        ("ollama", "ollama"),
    ],
)
def test_provider_spellings_are_normalized(raw: str, normalized: str) -> None:
    """Every convention's provider value maps to the OTel gen_ai.provider.name spelling."""
    assert normalized == normalize_provider(raw)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("<class 'openai.BadRequestError'>", "BadRequestError"),
        ("openai.BadRequestError", "BadRequestError"),
        ("BadRequestError", "BadRequestError"),
        ("timeout", "timeout"),
        ("500", "500"),
    ],
)
def test_error_types_are_normalized_to_the_short_class_name(raw: str, normalized: str) -> None:
    """The same exception is one error_type whichever instrumentation reported it."""
    assert normalized == normalize_error_type(raw)


def test_error_status_without_a_type_is_other() -> None:
    """Status ERROR with neither error.type nor an exception event gives _OTHER."""
    assert "_OTHER" == read({"gen_ai.operation.name": "chat"}, error=True).error_type


def test_error_type_attribute_wins_over_the_exception_event() -> None:
    """error.type, when set, is the error's type."""
    record = read(
        {"gen_ai.operation.name": "chat", "error.type": "RateLimitError"},
        error=True,
        events=[("exception", 0.1, {"exception.type": "openai.APIError"})],
    )
    assert "RateLimitError" == record.error_type


# --- bad values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [(-5, "negative"), ("12", "wrong_type"), (10**9 + 1, "too_large"), (12.5, "not_integer"), (True, "wrong_type")],
)
def test_bad_token_counts_are_refused(value: AttributeValue, reason: str) -> None:
    """Negative, textual, fractional or absurd token counts are refused with a reason, never used."""
    record = read({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": value})
    assert (None, (("gen_ai.usage.input_tokens", reason),)) == (record.input_tokens, record.refused)


def test_integral_double_token_count_is_accepted() -> None:
    """JavaScript SDKs may send a count as a double: 42.0 is 42."""
    assert 42 == read({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 42.0}).input_tokens


def test_refused_value_falls_back_to_a_lower_precedence_alias() -> None:
    """A refused current-semconv value does not hide a valid deprecated one."""
    record = read({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": -1, "gen_ai.usage.prompt_tokens": 17})
    assert 17 == record.input_tokens


@pytest.mark.parametrize(("value", "reason"), [(float("nan"), "not_finite"), (-0.5, "negative"), (2e6, "too_large")])
def test_bad_costs_are_refused(value: float, reason: str) -> None:
    """A span cost must be a finite, non-negative, plausible USD amount."""
    record = read({"gen_ai.operation.name": "chat", "gen_ai.usage.cost": value})
    assert (None, (("gen_ai.usage.cost", reason),)) == (record.cost_usd, record.refused)


def test_overlong_model_name_is_refused() -> None:
    """A model name longer than 256 characters is not a label value."""
    record = read({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m" * 300})
    assert ("", (("gen_ai.request.model", "too_long"),)) == (record.request_model, record.refused)


def test_span_ending_before_it_starts_has_no_duration() -> None:
    """Clock-skewed span times give no duration observation, and are counted as refused."""
    record = read({"gen_ai.operation.name": "chat"}, duration_s=-1.0)
    assert (None, (("span.end_time_unix_nano", "before_start"),)) == (record.duration_seconds, record.refused)


# --- tenant, service, non-GenAI spans -----------------------------------------------------------


def test_span_tenant_wins_over_resource_tenant() -> None:
    """The span's tenant attribute is used before the resource's."""
    reader = SpanReader(DEFAULT_TENANT_ATTRIBUTES)
    record = reader.read(received({"gen_ai.operation.name": "chat", "user.id": "u-1"}), "svc", "res-tenant")
    assert record is not None
    assert "u-1" == record.tenant


def test_first_configured_tenant_key_wins() -> None:
    """Among tenant keys on one span, the first in genai.tenant_attributes wins."""
    record = read({"gen_ai.operation.name": "chat", "user.id": "u-1", "tenant.id": "acme"})
    assert "acme" == record.tenant


def test_integer_tenant_is_rendered_as_text() -> None:
    """Tenant ids sent as integers become their decimal text."""
    assert "42" == read({"gen_ai.operation.name": "chat", "tenant_id": 42}).tenant


def test_resource_gives_service_name_and_tenant() -> None:
    """service.name and the tenant keys are read from the resource, once per ResourceSpans."""
    reader = SpanReader(("org.id",))
    resource = make_request([], {"service.name": "chatbot", "org.id": "acme"}).resource_spans[0].resource
    assert ("chatbot", "acme") == reader.resource_context(resource)


def test_resource_without_service_name_is_unknown_service() -> None:
    """The OTel default applies when the resource has no service.name."""
    reader = SpanReader(DEFAULT_TENANT_ATTRIBUTES)
    resource = make_request([], {}).resource_spans[0].resource
    assert ("unknown_service", "") == reader.resource_context(resource)


def test_plain_http_span_is_not_a_genai_span() -> None:
    """A span of no GenAI convention gives no record, even with generic keys like error.type."""
    reader = SpanReader(DEFAULT_TENANT_ATTRIBUTES)
    span = make_span({"http.request.method": "GET", "error.type": "500", "user.id": "u-1", "server.address": "x"})
    assert None is reader.read(as_received(span))


def test_model_without_an_operation_kind_is_not_counted() -> None:
    """A span that names a model but no operation kind is not classified (no guessing a leaf)."""
    assert None is SpanReader(()).read(received({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5}))


def test_reader_state_does_not_leak_between_spans() -> None:
    """The reused scratch arrays are reset: a second span does not inherit the first one's values."""
    reader = SpanReader(())
    reader.read(
        received({"gen_ai.operation.name": "chat", "gen_ai.request.model": "a", "gen_ai.usage.input_tokens": 3})
    )
    second = reader.read(received({"gen_ai.operation.name": "embeddings"}))
    assert second is not None
    assert ("", None) == (second.request_model, second.input_tokens)
