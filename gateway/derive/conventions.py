"""Which span attributes mean what, for every GenAI convention the gateway reads. Data, not code.

Why a table: instrumentations disagree on names (OTel GenAI current and deprecated, OpenInference,
OpenLLMetry/Traceloop, OpenLIT, Vercel AI SDK, Pydantic AI/Logfire, Sentry), and they keep renaming.
Supporting one more is adding rows here; ``genai.py`` turns the rows into one ``key -> targets`` dict
at start-up, so a span costs one dict lookup per attribute whatever the number of conventions.

Precedence: when several conventions put the same fact on one span, the lowest ``rank`` of
``CONVENTIONS`` wins (current semconv, then deprecated semconv, then the others); inside one
convention, the earlier row wins. Sources of every key: docs/genai.md and
shared/reference/genai-conventions.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Final


class Field(IntEnum):
    """What an attribute tells about the operation. Values index the per-span scratch arrays."""

    OPERATION = 0  # (operation label, leaf?) from a span-kind row
    PROVIDER = 1
    REQUEST_MODEL = 2
    RESPONSE_MODEL = 3
    INPUT_TOKENS = 4  # OTel semantics: includes cache read and cache write tokens
    OUTPUT_TOKENS = 5  # OTel semantics: includes reasoning tokens
    CACHE_READ_TOKENS = 6
    CACHE_WRITE_TOKENS = 7
    REASONING_TOKENS = 8
    TOTAL_TOKENS = 9  # only used to fill a missing input count
    TTFT_SECONDS = 10
    COST_USD = 11
    AGENT_NAME = 12
    TOOL_NAME = 13
    ERROR_TYPE = 14
    SERVER_ADDRESS = 15
    TENANT = 16  # rows come from config (genai.tenant_attributes), not from this table


FIELD_COUNT: Final = len(Field)


class ValueKind(IntEnum):
    """How to read an attribute's AnyValue; ``genai.py`` maps each kind to one converter."""

    STRING = 0
    PROVIDER = 1  # string, normalized through PROVIDER_ALIASES / VERCEL_PROVIDER_PREFIXES
    TOKENS = 2  # non-negative integer count (an integral double is accepted)
    SECONDS = 3
    MILLISECONDS = 4  # converted to seconds
    USD = 5
    JSON_MODEL = 6  # a JSON object string whose "model" key names the model (OpenInference)
    TENANT = 7  # string, or an integer rendered as text


@dataclass(frozen=True, slots=True)
class AttributeRow:
    convention: str
    key: str
    field: Field
    kind: ValueKind


@dataclass(frozen=True, slots=True)
class SpanKind:
    """The operation label a span gets, and whether it is a leaf inference call (priced, counted)."""

    operation: str
    leaf: bool


@dataclass(frozen=True, slots=True)
class KindRow:
    """An attribute that tells what kind of span this is.

    ``values`` maps known attribute values to a SpanKind; ``other`` says what any other value means:
    ``None`` (ignore it), ``PASS_THROUGH`` (a non-leaf operation labelled with the value itself), or a
    fixed SpanKind (for marker attributes whose mere presence tells the kind).
    """

    convention: str
    key: str
    values: Mapping[str, SpanKind] = field(default_factory=dict)
    other: SpanKind | None = None


PASS_THROUGH: Final = SpanKind("", leaf=False)

# Precedence of conventions: lower rank wins when two conventions disagree on one span.
CONVENTIONS: Mapping[str, int] = MappingProxyType(
    {
        "otel_genai": 0,
        "otel_genai_deprecated": 1,
        "openinference": 2,
        "openllmetry": 3,
        "openlit": 4,
        "vercel_ai": 5,
        "pydantic_ai": 6,
        "sentry": 7,
    }
)

_CHAT = SpanKind("chat", leaf=True)
_TEXT_COMPLETION = SpanKind("text_completion", leaf=True)
_GENERATE_CONTENT = SpanKind("generate_content", leaf=True)
_EMBEDDINGS = SpanKind("embeddings", leaf=True)
_INVOKE_AGENT = SpanKind("invoke_agent", leaf=False)
_EXECUTE_TOOL = SpanKind("execute_tool", leaf=False)
_EMBEDDINGS_PARENT = SpanKind("embeddings", leaf=False)

KIND_ROWS: tuple[KindRow, ...] = (
    KindRow(
        "otel_genai",
        "gen_ai.operation.name",
        {
            "chat": _CHAT,
            "text_completion": _TEXT_COMPLETION,
            "generate_content": _GENERATE_CONTENT,
            "embeddings": _EMBEDDINGS,
            "completion": _TEXT_COMPLETION,  # legacy value (OpenLLMetry, early semconv)
        },
        other=PASS_THROUGH,  # invoke_agent, execute_tool, create_agent, invoke_workflow, retrieval, ...
    ),
    KindRow(
        "openinference",
        "openinference.span.kind",
        {
            "LLM": _CHAT,
            "EMBEDDING": _EMBEDDINGS,
            "AGENT": _INVOKE_AGENT,
            "TOOL": _EXECUTE_TOOL,
            "CHAIN": SpanKind("chain", leaf=False),
            "RETRIEVER": SpanKind("retrieval", leaf=False),
            "RERANKER": SpanKind("rerank", leaf=False),
            "GUARDRAIL": SpanKind("guardrail", leaf=False),
            "EVALUATOR": SpanKind("evaluator", leaf=False),
            "PROMPT": SpanKind("prompt", leaf=False),
        },
    ),
    KindRow(
        "openllmetry",
        "llm.request.type",
        {
            "chat": _CHAT,
            "completion": _TEXT_COMPLETION,
            "embedding": _EMBEDDINGS,
            "rerank": SpanKind("rerank", leaf=False),
        },
    ),
    KindRow(
        "openllmetry",
        "traceloop.span.kind",
        {
            "workflow": SpanKind("invoke_workflow", leaf=False),
            "task": SpanKind("task", leaf=False),
            "agent": _INVOKE_AGENT,
            "tool": _EXECUTE_TOOL,
        },
    ),
    KindRow(
        "vercel_ai",
        "ai.operationId",
        {
            # inner provider calls: the only Vercel spans whose usage is counted
            "ai.generateText.doGenerate": _CHAT,
            "ai.streamText.doStream": _CHAT,
            "ai.generateObject.doGenerate": _CHAT,
            "ai.streamObject.doStream": _CHAT,
            "ai.embed.doEmbed": _EMBEDDINGS,
            "ai.embedMany.doEmbed": _EMBEDDINGS,
            # outer calls repeat their steps' usage (Vercel's own mapOperationName labels)
            "ai.generateText": _INVOKE_AGENT,
            "ai.streamText": _INVOKE_AGENT,
            "ai.generateObject": _INVOKE_AGENT,
            "ai.streamObject": _INVOKE_AGENT,
            "ai.embed": _EMBEDDINGS_PARENT,
            "ai.embedMany": _EMBEDDINGS_PARENT,
            "ai.toolCall": _EXECUTE_TOOL,
            "ai.rerank": SpanKind("rerank", leaf=False),
        },
    ),
    # Pydantic AI agent runs that predate gen_ai.operation.name carry only aggregated usage.
    KindRow("pydantic_ai", "gen_ai.aggregated_usage.input_tokens", other=_INVOKE_AGENT),
    KindRow("pydantic_ai", "gen_ai.aggregated_usage.output_tokens", other=_INVOKE_AGENT),
)

_S, _P, _T = ValueKind.STRING, ValueKind.PROVIDER, ValueKind.TOKENS
F = Field

ATTRIBUTE_ROWS: tuple[AttributeRow, ...] = (
    # --- OpenTelemetry GenAI semantic conventions (current; semantic-conventions-genai) -------------
    AttributeRow("otel_genai", "gen_ai.provider.name", F.PROVIDER, _P),
    AttributeRow("otel_genai", "gen_ai.request.model", F.REQUEST_MODEL, _S),
    AttributeRow("otel_genai", "gen_ai.response.model", F.RESPONSE_MODEL, _S),
    AttributeRow("otel_genai", "gen_ai.usage.input_tokens", F.INPUT_TOKENS, _T),
    AttributeRow("otel_genai", "gen_ai.usage.output_tokens", F.OUTPUT_TOKENS, _T),
    AttributeRow("otel_genai", "gen_ai.usage.cache_read.input_tokens", F.CACHE_READ_TOKENS, _T),
    AttributeRow("otel_genai", "gen_ai.usage.cache_write.input_tokens", F.CACHE_WRITE_TOKENS, _T),
    AttributeRow("otel_genai", "gen_ai.usage.cache_creation.input_tokens", F.CACHE_WRITE_TOKENS, _T),
    AttributeRow("otel_genai", "gen_ai.usage.reasoning.output_tokens", F.REASONING_TOKENS, _T),
    AttributeRow("otel_genai", "gen_ai.response.time_to_first_chunk", F.TTFT_SECONDS, ValueKind.SECONDS),
    AttributeRow("otel_genai", "gen_ai.agent.name", F.AGENT_NAME, _S),
    AttributeRow("otel_genai", "gen_ai.tool.name", F.TOOL_NAME, _S),
    AttributeRow("otel_genai", "error.type", F.ERROR_TYPE, _S),
    AttributeRow("otel_genai", "server.address", F.SERVER_ADDRESS, _S),
    # proposed standard cost (semantic-conventions-genai PR #443, open); USD is its default currency
    AttributeRow("otel_genai", "gen_ai.usage.cost.amount", F.COST_USD, ValueKind.USD),
    # --- OTel GenAI deprecated / renamed keys ----------------------------------------------------
    AttributeRow("otel_genai_deprecated", "gen_ai.system", F.PROVIDER, _P),
    AttributeRow("otel_genai_deprecated", "gen_ai.usage.prompt_tokens", F.INPUT_TOKENS, _T),
    AttributeRow("otel_genai_deprecated", "gen_ai.usage.completion_tokens", F.OUTPUT_TOKENS, _T),
    # unofficial spellings seen in the wild (read by Langfuse's normalizer among others)
    AttributeRow("otel_genai_deprecated", "gen_ai.usage.cached_tokens", F.CACHE_READ_TOKENS, _T),
    AttributeRow("otel_genai_deprecated", "gen_ai.usage.input_cached_tokens", F.CACHE_READ_TOKENS, _T),
    # --- OpenInference (Arize/Phoenix) -------------------------------------------------------------
    AttributeRow("openinference", "llm.provider", F.PROVIDER, _P),
    AttributeRow("openinference", "llm.system", F.PROVIDER, _P),
    AttributeRow("openinference", "llm.request.model_name", F.REQUEST_MODEL, _S),
    AttributeRow("openinference", "llm.invocation_parameters", F.REQUEST_MODEL, ValueKind.JSON_MODEL),
    AttributeRow("openinference", "embedding.invocation_parameters", F.REQUEST_MODEL, ValueKind.JSON_MODEL),
    AttributeRow("openinference", "llm.model_name", F.REQUEST_MODEL, _S),
    AttributeRow("openinference", "embedding.model_name", F.REQUEST_MODEL, _S),
    AttributeRow("openinference", "llm.response.model_name", F.RESPONSE_MODEL, _S),
    # the OpenAI instrumentation puts the *response* model in llm.model_name
    AttributeRow("openinference", "llm.model_name", F.RESPONSE_MODEL, _S),
    AttributeRow("openinference", "embedding.model_name", F.RESPONSE_MODEL, _S),
    AttributeRow("openinference", "llm.token_count.prompt", F.INPUT_TOKENS, _T),
    AttributeRow("openinference", "llm.token_count.completion", F.OUTPUT_TOKENS, _T),
    AttributeRow("openinference", "llm.token_count.total", F.TOTAL_TOKENS, _T),
    AttributeRow("openinference", "llm.token_count.prompt_details.cache_read", F.CACHE_READ_TOKENS, _T),
    AttributeRow("openinference", "llm.token_count.prompt_details.cache_input", F.CACHE_READ_TOKENS, _T),
    AttributeRow("openinference", "llm.token_count.prompt_details.cache_write", F.CACHE_WRITE_TOKENS, _T),
    AttributeRow("openinference", "llm.token_count.completion_details.reasoning", F.REASONING_TOKENS, _T),
    AttributeRow("openinference", "llm.cost.total", F.COST_USD, ValueKind.USD),
    AttributeRow("openinference", "agent.name", F.AGENT_NAME, _S),
    AttributeRow("openinference", "tool.name", F.TOOL_NAME, _S),
    # --- OpenLLMetry / Traceloop (semconv-ai 0.5 names, then pre-0.5 names) ------------------------
    AttributeRow("openllmetry", "gen_ai.usage.total_tokens", F.TOTAL_TOKENS, _T),
    AttributeRow("openllmetry", "llm.usage.total_tokens", F.TOTAL_TOKENS, _T),
    AttributeRow("openllmetry", "gen_ai.usage.cache_read_input_tokens", F.CACHE_READ_TOKENS, _T),
    AttributeRow("openllmetry", "gen_ai.usage.cache_creation_input_tokens", F.CACHE_WRITE_TOKENS, _T),
    AttributeRow("openllmetry", "gen_ai.usage.reasoning_tokens", F.REASONING_TOKENS, _T),
    AttributeRow("openllmetry", "llm.usage.reasoning_tokens", F.REASONING_TOKENS, _T),
    # --- OpenLIT -------------------------------------------------------------------------------
    AttributeRow("openlit", "gen_ai.usage.cost", F.COST_USD, ValueKind.USD),
    AttributeRow("openlit", "gen_ai.server.time_to_first_token", F.TTFT_SECONDS, ValueKind.SECONDS),
    AttributeRow("openlit", "gen_ai.usage.prompt_tokens_details.cached_tokens", F.CACHE_READ_TOKENS, _T),
    AttributeRow("openlit", "gen_ai.usage.prompt_tokens_details.cache_creation_tokens", F.CACHE_WRITE_TOKENS, _T),
    AttributeRow("openlit", "gen_ai.usage.completion_tokens_details.reasoning_tokens", F.REASONING_TOKENS, _T),
    # --- Vercel AI SDK (legacy ai.* telemetry; v4 names after v5+ names) -------------------------
    AttributeRow("vercel_ai", "ai.model.provider", F.PROVIDER, _P),
    AttributeRow("vercel_ai", "ai.model.id", F.REQUEST_MODEL, _S),
    AttributeRow("vercel_ai", "ai.response.model", F.RESPONSE_MODEL, _S),
    AttributeRow("vercel_ai", "ai.usage.inputTokens", F.INPUT_TOKENS, _T),
    AttributeRow("vercel_ai", "ai.usage.promptTokens", F.INPUT_TOKENS, _T),
    AttributeRow("vercel_ai", "ai.usage.tokens", F.INPUT_TOKENS, _T),  # embeddings
    AttributeRow("vercel_ai", "ai.usage.outputTokens", F.OUTPUT_TOKENS, _T),
    AttributeRow("vercel_ai", "ai.usage.completionTokens", F.OUTPUT_TOKENS, _T),
    AttributeRow("vercel_ai", "ai.usage.totalTokens", F.TOTAL_TOKENS, _T),
    AttributeRow("vercel_ai", "ai.usage.inputTokenDetails.cacheReadTokens", F.CACHE_READ_TOKENS, _T),
    AttributeRow("vercel_ai", "ai.usage.cachedInputTokens", F.CACHE_READ_TOKENS, _T),
    AttributeRow("vercel_ai", "ai.usage.inputTokenDetails.cacheWriteTokens", F.CACHE_WRITE_TOKENS, _T),
    AttributeRow("vercel_ai", "ai.usage.outputTokenDetails.reasoningTokens", F.REASONING_TOKENS, _T),
    AttributeRow("vercel_ai", "ai.usage.reasoningTokens", F.REASONING_TOKENS, _T),
    AttributeRow("vercel_ai", "ai.response.msToFirstChunk", F.TTFT_SECONDS, ValueKind.MILLISECONDS),
    AttributeRow("vercel_ai", "ai.stream.msToFirstChunk", F.TTFT_SECONDS, ValueKind.MILLISECONDS),
    AttributeRow("vercel_ai", "ai.toolCall.name", F.TOOL_NAME, _S),
    # the newer @ai-sdk/otel integration writes OTel names plus this span attribute
    AttributeRow("vercel_ai", "gen_ai.client.operation.time_to_first_chunk", F.TTFT_SECONDS, ValueKind.SECONDS),
    # --- Pydantic AI / Logfire -------------------------------------------------------------------
    AttributeRow("pydantic_ai", "operation.cost", F.COST_USD, ValueKind.USD),
    AttributeRow("pydantic_ai", "gen_ai.usage.details.cache_read_tokens", F.CACHE_READ_TOKENS, _T),
    AttributeRow("pydantic_ai", "gen_ai.usage.details.cache_write_tokens", F.CACHE_WRITE_TOKENS, _T),
    AttributeRow("pydantic_ai", "gen_ai.usage.details.reasoning_tokens", F.REASONING_TOKENS, _T),
    AttributeRow("pydantic_ai", "agent_name", F.AGENT_NAME, _S),
    # --- Sentry ------------------------------------------------------------------------------------
    AttributeRow("sentry", "gen_ai.cost.total_tokens", F.COST_USD, ValueKind.USD),
    AttributeRow("sentry", "gen_ai.usage.total_cost", F.COST_USD, ValueKind.USD),
    AttributeRow("sentry", "gen_ai.usage.input_tokens.cached", F.CACHE_READ_TOKENS, _T),
    AttributeRow("sentry", "gen_ai.usage.input_tokens.cache_write", F.CACHE_WRITE_TOKENS, _T),
    AttributeRow("sentry", "gen_ai.usage.output_tokens.reasoning", F.REASONING_TOKENS, _T),
    AttributeRow("sentry", "gen_ai.response.time_to_first_token", F.TTFT_SECONDS, ValueKind.SECONDS),
)

# Span events whose time marks the first streamed token or chunk (time minus span start = TTFT).
TTFT_EVENTS: frozenset[str] = frozenset(
    {
        "First Token Stream Event",  # OpenInference
        "gen_ai.content.completion.chunk",  # OpenLLMetry (one per chunk; the first one counts)
        "llm.content.completion.chunk",  # OpenLLMetry, older name
        "ai.stream.firstChunk",  # Vercel AI SDK
    }
)

# An error's type when the span says ERROR but sets no error.type (OTel exception event).
EXCEPTION_EVENT: Final = "exception"
EXCEPTION_TYPE_KEY: Final = "exception.type"
OTHER_ERROR: Final = "_OTHER"

SERVICE_NAME_KEY: Final = "service.name"
UNKNOWN_SERVICE: Final = "unknown_service"
DEFAULT_TENANT_ATTRIBUTES: tuple[str, ...] = ("tenant.id", "tenant_id", "enduser.id", "user.id")

# Provider values -> OTel gen_ai.provider.name values (deprecated semconv values, other conventions'
# spellings). Keys are lower-case; values not listed are kept (lower-cased).
PROVIDER_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "vertex_ai": "gcp.vertex_ai",
        "gemini": "gcp.gemini",
        "az.ai.inference": "azure.ai.inference",
        "az.ai.openai": "azure.ai.openai",
        "azure": "azure.ai.openai",  # OpenInference llm.provider
        "xai": "x_ai",
        "google": "gcp.gen_ai",  # OpenInference llm.provider
        "aws": "aws.bedrock",  # OpenInference llm.provider
        "bedrock": "aws.bedrock",
        "mistralai": "mistral_ai",  # OpenInference llm.system
        "mistral": "mistral_ai",
        "moonshot": "moonshot_ai",
    }
)

# Vercel AI SDK provider ids look like "openai.chat" or "google.generative-ai": the part before the
# first dot names the provider (Vercel's own mapProviderName table).
VERCEL_PROVIDER_PREFIXES: Mapping[str, str] = MappingProxyType(
    {
        "anthropic": "anthropic",
        "openai": "openai",
        "azure-openai": "azure.ai.openai",
        "azure": "azure.ai.openai",
        "google": "gcp.gen_ai",
        "google-vertex": "gcp.vertex_ai",
        "google-generative-ai": "gcp.gemini",
        "vertex": "gcp.vertex_ai",
        "mistral": "mistral_ai",
        "cohere": "cohere",
        "amazon-bedrock": "aws.bedrock",
        "bedrock": "aws.bedrock",
        "groq": "groq",
        "deepseek": "deepseek",
        "perplexity": "perplexity",
        "xai": "x_ai",
    }
)

# OTel provider names that contain a dot and must not be read as Vercel "prefix.api" ids.
CANONICAL_PROVIDERS: frozenset[str] = frozenset(
    {
        "openai",
        "anthropic",
        "aws.bedrock",
        "azure.ai.inference",
        "azure.ai.openai",
        "cohere",
        "deepseek",
        "gcp.gemini",
        "gcp.gen_ai",
        "gcp.vertex_ai",
        "groq",
        "ibm.watsonx.ai",
        "mistral_ai",
        "perplexity",
        "x_ai",
        "moonshot_ai",
    }
)

# OTel provider name -> genai-prices provider id, where the two differ.
GENAI_PRICES_PROVIDERS: Mapping[str, str] = MappingProxyType(
    {
        "aws.bedrock": "aws",
        "azure.ai.openai": "azure",
        "azure.ai.inference": "azure",
        "gcp.gemini": "google",
        "gcp.vertex_ai": "google",
        "gcp.gen_ai": "google",
        "x_ai": "x-ai",
        "mistral_ai": "mistral",
        "moonshot_ai": "moonshotai",
    }
)

# Bounds that make a value absurd rather than large (refused and counted, never aggregated).
MAX_TOKENS: Final = 1_000_000_000
MAX_SECONDS: Final = 86_400.0
MAX_COST_USD: Final = 1_000_000.0
MAX_LABEL_LENGTH: Final = 256
