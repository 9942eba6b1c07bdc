"""The conventions table: every documented key is there, meaning what its convention says."""

from __future__ import annotations

import pytest

from gateway.derive.conventions import ATTRIBUTE_ROWS, CONVENTIONS, KIND_ROWS, Field
from gateway.derive.genai import build_keymap

F = Field


@pytest.mark.parametrize(
    ("key", "field"),
    [
        # OTel GenAI current
        ("gen_ai.provider.name", F.PROVIDER),
        ("gen_ai.request.model", F.REQUEST_MODEL),
        ("gen_ai.response.model", F.RESPONSE_MODEL),
        ("gen_ai.usage.input_tokens", F.INPUT_TOKENS),
        ("gen_ai.usage.output_tokens", F.OUTPUT_TOKENS),
        ("gen_ai.usage.cache_read.input_tokens", F.CACHE_READ_TOKENS),
        ("gen_ai.usage.cache_creation.input_tokens", F.CACHE_WRITE_TOKENS),
        ("gen_ai.usage.cache_write.input_tokens", F.CACHE_WRITE_TOKENS),
        ("gen_ai.usage.reasoning.output_tokens", F.REASONING_TOKENS),
        ("gen_ai.response.time_to_first_chunk", F.TTFT_SECONDS),
        ("gen_ai.agent.name", F.AGENT_NAME),
        ("gen_ai.tool.name", F.TOOL_NAME),
        ("error.type", F.ERROR_TYPE),
        ("server.address", F.SERVER_ADDRESS),
        ("gen_ai.operation.name", F.OPERATION),
        # deprecated and unofficial
        ("gen_ai.system", F.PROVIDER),
        ("gen_ai.usage.prompt_tokens", F.INPUT_TOKENS),
        ("gen_ai.usage.completion_tokens", F.OUTPUT_TOKENS),
        ("gen_ai.usage.cached_tokens", F.CACHE_READ_TOKENS),
        ("gen_ai.usage.input_cached_tokens", F.CACHE_READ_TOKENS),
        # OpenInference
        ("llm.model_name", F.RESPONSE_MODEL),
        ("llm.provider", F.PROVIDER),
        ("llm.system", F.PROVIDER),
        ("llm.token_count.prompt", F.INPUT_TOKENS),
        ("llm.token_count.completion", F.OUTPUT_TOKENS),
        ("llm.token_count.total", F.TOTAL_TOKENS),
        ("llm.token_count.prompt_details.cache_read", F.CACHE_READ_TOKENS),
        ("openinference.span.kind", F.OPERATION),
        ("embedding.model_name", F.REQUEST_MODEL),
        ("llm.invocation_parameters", F.REQUEST_MODEL),
        ("llm.cost.total", F.COST_USD),
        # OpenLLMetry / Traceloop
        ("gen_ai.usage.total_tokens", F.TOTAL_TOKENS),
        ("llm.usage.total_tokens", F.TOTAL_TOKENS),
        ("traceloop.span.kind", F.OPERATION),
        ("llm.request.type", F.OPERATION),
        # OpenLIT
        ("gen_ai.usage.cost", F.COST_USD),
        # Vercel AI SDK
        ("ai.model.id", F.REQUEST_MODEL),
        ("ai.model.provider", F.PROVIDER),
        ("ai.usage.inputTokens", F.INPUT_TOKENS),
        ("ai.usage.promptTokens", F.INPUT_TOKENS),
        ("ai.usage.outputTokens", F.OUTPUT_TOKENS),
        ("ai.response.msToFirstChunk", F.TTFT_SECONDS),
        ("ai.operationId", F.OPERATION),
        # Pydantic AI / Logfire
        ("operation.cost", F.COST_USD),
    ],
)
def test_documented_key_fills_its_field(key: str, field: Field) -> None:
    """Each key named in the issue is in the start-up key map, for the field it means."""
    assert field in {target_field for target_field, _, _ in build_keymap(())[key]}


def test_every_row_names_a_known_convention() -> None:
    """A typo in a convention name would silently lose its precedence."""
    used = {row.convention for row in ATTRIBUTE_ROWS} | {row.convention for row in KIND_ROWS}
    assert set() == used - set(CONVENTIONS)


def test_no_key_is_listed_twice_for_one_field() -> None:
    """Duplicate rows would be dead data; each (key, field) pair appears once."""
    pairs = [(row.key, row.field) for row in ATTRIBUTE_ROWS]
    assert len(set(pairs)) == len(pairs)


def test_aggregated_usage_is_never_read_as_usage() -> None:
    """Pydantic AI's gen_ai.aggregated_usage.* only marks an agent run; it never fills a token field."""
    keymap = build_keymap(())
    assert {F.OPERATION} == {field for field, _, _ in keymap["gen_ai.aggregated_usage.input_tokens"]}


def test_tenant_keys_come_from_config() -> None:
    """genai.tenant_attributes adds its keys to the map, first key with the best priority."""
    keymap = build_keymap(("org.id", "user.id"))
    assert ((F.TENANT, 0), (F.TENANT, 1)) == (keymap["org.id"][0][:2], keymap["user.id"][0][:2])
