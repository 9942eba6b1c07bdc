"""GenAI spans -> token, cost, latency, error, agent and tool metrics, whatever library emitted them.

Two parts:

* ``SpanReader.read(span)`` makes one pass over a span's attributes and returns a ``GenAIRecord``
  (or ``None`` for a span of no GenAI convention). The ``key -> (field, priority, converter)``
  dict is built once from ``conventions.py`` and the tenant keys of the config, so a plain HTTP or
  DB span costs one dict lookup per attribute; values are read straight from the protobuf AnyValue.
* ``GenAIProcessor`` is the pipeline stage: it reads every span of a traces batch and aggregates
  records into the metric store, pricing leaf calls through ``pricing.Pricer`` (a dict hit and a few
  multiplications per span once a model has been seen).

Counting each call once: tokens and cost come only from *leaf* inference spans (chat,
text_completion, generate_content, embeddings; OpenInference LLM/EMBEDDING; Vercel ``.doGenerate``,
``.doStream``, ``.doEmbed``). Agent and workflow spans repeat their children's usage, so they only
feed the duration histogram (with their agent and tool names).

Bad values (a negative count, a string where a count belongs, a billion-token call) are refused,
counted in ``gateway_genai_refused_attributes_total{attribute,reason}`` and never aggregated; the
processor never raises into the pipeline.
"""

from __future__ import annotations

import contextlib
import math
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import orjson
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from gateway.component import Batch
from gateway.derive.attributes import KEY_TAG, AttributeCache, key_bytes
from gateway.derive.config import GenAIConfig
from gateway.derive.conventions import (
    ATTRIBUTE_ROWS,
    CANONICAL_PROVIDERS,
    CONVENTIONS,
    EXCEPTION_EVENT,
    EXCEPTION_TYPE_KEY,
    FIELD_COUNT,
    KIND_ROWS,
    MAX_COST_USD,
    MAX_LABEL_LENGTH,
    MAX_SECONDS,
    MAX_TOKENS,
    OTHER_ERROR,
    PASS_THROUGH,
    PROVIDER_ALIASES,
    SERVICE_NAME_KEY,
    TTFT_EVENTS,
    UNKNOWN_SERVICE,
    VERCEL_PROVIDER_PREFIXES,
    Field,
    KindRow,
    SpanKind,
    ValueKind,
)
from gateway.derive.pricing import LinearPrice, PriceQuote, Pricer
from gateway.log import get_logger
from gateway.metrics.store import (
    CounterFamily,
    HistogramFamily,
    HistogramSeries,
    LabelKey,
    MetricStore,
    SpanRef,
)
from proto_handlers.raw_attributes import status_code

Converter: TypeAlias = Callable[[Any], Any]
Target: TypeAlias = tuple[int, int, Converter]  # (field index, priority: lower wins, converter)
KeyMap: TypeAlias = dict[str, tuple[Target, ...]]
UsageSink: TypeAlias = Callable[[str, int, float], None]  # (tenant, tokens, usd) of one leaf record
RecordFields: TypeAlias = tuple[Any, ...]  # a GenAIRecord's fields, in order (SpanReader.read_fields)

COMMON_LABELS: Final = (
    "service_name",
    "tenant_id",
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
)
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TTFT_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
FIXUP_CACHE_ADDED: Final = "cache_tokens_added_to_input"
FIXUP_REASONING_ADDED: Final = "reasoning_tokens_added_to_output"
_STATUS_CODE_ERROR: Final = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
_UNSET_PRIORITY: Final = 1 << 30
DEFAULT_MAX_ATTRIBUTES: Final = 128  # limits.max_attributes_per_span (the OTel SDKs' attribute count limit)
TOO_MANY_ATTRIBUTES: Final = ("span.attributes", "too_many")  # (attribute, reason) of a truncated span
_CACHE_LIMIT: Final = 4096
_CLASS_REPR = re.compile(r"<class '([^']+)'>")
# Field members as plain ints for the per-span code: reading an IntEnum member costs ~0.2 us (a
# plain int index ~0.02 us), and a GenAI span used to read about twenty (benchmarks/RESULTS.md).
_F_AGENT_NAME: Final = int(Field.AGENT_NAME)
_F_CACHE_READ_TOKENS: Final = int(Field.CACHE_READ_TOKENS)
_F_CACHE_WRITE_TOKENS: Final = int(Field.CACHE_WRITE_TOKENS)
_F_COST_USD: Final = int(Field.COST_USD)
_F_ERROR_TYPE: Final = int(Field.ERROR_TYPE)
_F_INPUT_TOKENS: Final = int(Field.INPUT_TOKENS)
_F_OPERATION: Final = int(Field.OPERATION)
_F_OUTPUT_TOKENS: Final = int(Field.OUTPUT_TOKENS)
_F_PROVIDER: Final = int(Field.PROVIDER)
_F_REASONING_TOKENS: Final = int(Field.REASONING_TOKENS)
_F_REQUEST_MODEL: Final = int(Field.REQUEST_MODEL)
_F_RESPONSE_MODEL: Final = int(Field.RESPONSE_MODEL)
_F_SERVER_ADDRESS: Final = int(Field.SERVER_ADDRESS)
_F_TENANT: Final = int(Field.TENANT)
_F_TOOL_NAME: Final = int(Field.TOOL_NAME)
_F_TOTAL_TOKENS: Final = int(Field.TOTAL_TOKENS)
_F_TTFT_SECONDS: Final = int(Field.TTFT_SECONDS)


class Refused(Exception):
    """A value of the wrong type or outside sane bounds; ``reason`` becomes a metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class GenAIRecord:
    """What one span says about one GenAI operation, normalized to OTel semantics.

    Token counts are OTel-inclusive (input includes cache read/write, output includes reasoning);
    ``None`` means the span did not say. ``cost_usd`` is a cost the span itself carried.
    """

    service_name: str
    tenant: str
    operation: str
    leaf: bool
    provider: str
    request_model: str
    response_model: str
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    cost_usd: float | None
    ttft_seconds: float | None
    duration_seconds: float | None
    error_type: str
    agent_name: str
    tool_name: str
    server_address: str
    span: SpanRef  # the span's raw ids, for exemplars (hex-encoded only when /metrics shows one)
    start_unix_nano: int
    end_unix_nano: int
    fixups: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()

    @property
    def trace_id(self) -> str:
        return self.span[0].hex()

    @property
    def span_id(self) -> str:
        return self.span[1].hex()


# --- value converters: AnyValue -> python value, None (absent) or Refused ------------------------


# The common case is read first (a non-empty string_value, a non-zero int_value can only be what
# was set); WhichOneof, which costs as much as the read, is asked only to tell the rest apart.


def _string(value: Any) -> str | None:
    text: str = value.string_value
    if not text:
        if value.WhichOneof("value") not in (None, "string_value"):
            raise Refused("wrong_type")
        return None
    if len(text) > MAX_LABEL_LENGTH:
        raise Refused("too_long")
    return text


def _tokens(value: Any) -> int:
    count: int = value.int_value
    if count:
        if count < 0:
            raise Refused("negative")
        if count > MAX_TOKENS:
            raise Refused("too_large")
        return count
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return 0
    if kind == "double_value":
        number: float = value.double_value
        if not math.isfinite(number) or number != int(number):
            raise Refused("not_integer")
        count = int(number)
    else:
        raise Refused("wrong_type")
    if count < 0:
        raise Refused("negative")
    if count > MAX_TOKENS:
        raise Refused("too_large")
    return count


def _number(value: Any) -> float:
    kind = value.WhichOneof("value")
    if kind == "double_value":
        number: float = value.double_value
    elif kind == "int_value":
        number = float(value.int_value)
    else:
        raise Refused("wrong_type")
    if not math.isfinite(number):
        raise Refused("not_finite")
    if number < 0:
        raise Refused("negative")
    return number


def _seconds(value: Any) -> float:
    seconds = _number(value)
    if seconds > MAX_SECONDS:
        raise Refused("too_large")
    return seconds


def _milliseconds(value: Any) -> float:
    seconds = _number(value) / 1000.0
    if seconds > MAX_SECONDS:
        raise Refused("too_large")
    return seconds


def _usd(value: Any) -> float:
    cost = _number(value)
    if cost > MAX_COST_USD:
        raise Refused("too_large")
    return cost


def _json_model(value: Any) -> str | None:
    text = _string_unbounded(value)
    if text is None:
        return None
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise Refused("invalid_json") from None
    model = parsed.get("model") if isinstance(parsed, dict) else None
    if not isinstance(model, str) or not model:
        return None
    if len(model) > MAX_LABEL_LENGTH:
        raise Refused("too_long")
    return model


def _string_unbounded(value: Any) -> str | None:
    if value.WhichOneof("value") != "string_value":
        raise Refused("wrong_type")
    text: str = value.string_value
    return text or None


def _tenant(value: Any) -> str | None:
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return str(value.int_value)
    return _string(value)


def _bounded_cache(function: Callable[[str], str]) -> Callable[[str], str]:
    """Memoize a str -> str normalization; cleared when full (inputs come from the network)."""
    cache: dict[str, str] = {}

    def cached(raw: str) -> str:
        try:
            return cache[raw]
        except KeyError:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            result = cache[raw] = function(raw)
            return result

    return cached


@_bounded_cache
def normalize_provider(raw: str) -> str:
    """Any convention's provider value -> the OTel ``gen_ai.provider.name`` spelling."""
    low = raw.strip().lower()
    if low in CANONICAL_PROVIDERS:
        return low
    alias = PROVIDER_ALIASES.get(low)
    if alias is not None:
        return alias
    mapped = VERCEL_PROVIDER_PREFIXES.get(low.partition(".")[0])
    return low if mapped is None else mapped


@_bounded_cache
def normalize_error_type(raw: str) -> str:
    """One spelling per error across instrumentations: the exception class' short name.

    OpenAI's v2 instrumentation writes ``<class 'openai.BadRequestError'>``, OpenLLMetry
    ``BadRequestError`` and OpenInference's exception event ``openai.BadRequestError``; all become
    ``BadRequestError``. Values without a dotted class path (``timeout``, ``500``) are kept.
    """
    match = _CLASS_REPR.fullmatch(raw)
    text = match.group(1) if match else raw
    if "." in text and text[0].isalpha():
        text = text.rsplit(".", 1)[1] or text
    return text


def _provider(value: Any) -> str | None:
    text = _string(value)
    return None if text is None else normalize_provider(text)


_CONVERTERS: Mapping[ValueKind, Converter] = {
    ValueKind.STRING: _string,
    ValueKind.PROVIDER: _provider,
    ValueKind.TOKENS: _tokens,
    ValueKind.SECONDS: _seconds,
    ValueKind.MILLISECONDS: _milliseconds,
    ValueKind.USD: _usd,
    ValueKind.JSON_MODEL: _json_model,
    ValueKind.TENANT: _tenant,
}


def _kind_converter(row: KindRow) -> Converter:
    values = dict(row.values)
    other = row.other
    passthrough: dict[str, SpanKind] = {}
    if not values and other is not None and other is not PASS_THROUGH:
        marker = other

        def present(value: Any) -> SpanKind:  # a marker attribute: its presence is the answer
            return marker

        return present

    def convert(value: Any) -> SpanKind | None:
        text = _string(value)
        if text is None:
            return None
        kind = values.get(text)
        if kind is not None:
            return kind
        if other is PASS_THROUGH:
            kind = passthrough.get(text)
            if kind is None:
                if len(passthrough) >= _CACHE_LIMIT:
                    passthrough.clear()
                kind = passthrough[text] = SpanKind(text, leaf=False)
            return kind
        return other

    return convert


def build_keymap(tenant_attributes: Sequence[str]) -> KeyMap:
    """The start-up dict: attribute key -> every (field, priority, converter) it can fill."""
    targets: dict[str, list[Target]] = {}
    for index, kind_row in enumerate(KIND_ROWS):
        priority = CONVENTIONS[kind_row.convention] * 1000 + index
        targets.setdefault(kind_row.key, []).append((_F_OPERATION, priority, _kind_converter(kind_row)))
    for index, row in enumerate(ATTRIBUTE_ROWS):
        priority = CONVENTIONS[row.convention] * 1000 + index
        targets.setdefault(row.key, []).append((int(row.field), priority, _CONVERTERS[row.kind]))
    for index, key in enumerate(tenant_attributes):
        targets.setdefault(key, []).append((_F_TENANT, index, _tenant))
    return {key: tuple(found) for key, found in targets.items()}


# One attribute as derivation knows it: for each (field, priority) its KeyValue can fill, the value
# converted once (or the Refused reason), and the key for refusal counting. ``()`` for other keys.
AttributeTargets: TypeAlias = tuple[tuple[int, int, Any, str], ...]


def _attribute_reader(keymap: KeyMap) -> Callable[[bytes], AttributeTargets]:
    """What a serialized KeyValue means for derivation: ``()`` for a key no convention uses (read off
    the bytes, the value left unparsed); otherwise, for every field the key can fill, the value
    parsed and converted once (or the ``Refused`` of a bad one)."""
    by_bytes = {key.encode(): (key, targets) for key, targets in keymap.items()}

    def read(raw: bytes) -> AttributeTargets:
        # key_bytes written out (~1.6 % fewer instructions per GenAI span: a miss is ~2 a span)
        found = by_bytes.get(
            raw[2 : 2 + raw[1]] if len(raw) > 2 and raw[0] == KEY_TAG and raw[1] < 0x80 else _key_bytes(raw)
        )
        if found is None:
            return ()
        key, targets = found
        value = KeyValue.FromString(raw).value
        if len(targets) == 1:  # most keys fill one field
            field, priority, convert = targets[0]
            try:
                return ((field, priority, convert(value), key),)
            except Refused as exc:  # kept in the cache: without its traceback, which holds the frames
                return ((field, priority, exc.with_traceback(None), key),)
        converted: list[tuple[int, int, Any, str]] = []
        for field, priority, convert in targets:
            try:
                converted.append((field, priority, convert(value), key))
            except Refused as exc:
                converted.append((field, priority, exc.with_traceback(None), key))
        return tuple(converted)

    return read


def _key_bytes(raw: bytes) -> bytes:
    """The key of a serialized KeyValue: read off the bytes in the layout every SDK writes, else parsed."""
    key = key_bytes(raw)
    if key is not None:
        return key
    text: str = KeyValue.FromString(raw).key
    return text.encode()


class SpanReader:
    """Turns spans of ``RawAttributesTraceRequest`` (attributes as KeyValue bytes) into GenAIRecords.

    Reading a span is one C-level pass of its attributes through an ``AttributeCache``, then a
    Python pass over the few it knows: for each field, the value of the best-ranked key wins (a
    refused value is counted, as long as no better-ranked key already gave the field a value, and
    the field stays open). Not thread-safe by design: it runs on the event loop.
    """

    def __init__(self, tenant_attributes: Sequence[str], max_attributes: int = DEFAULT_MAX_ATTRIBUTES) -> None:
        self.keymap = build_keymap(tenant_attributes)
        self._max_attributes = max_attributes
        self._tenant_keys = {key: index for index, key in enumerate(tenant_attributes)}
        self._attributes: AttributeCache[AttributeTargets] = AttributeCache(_attribute_reader(self.keymap))
        self._blank_priorities = [_UNSET_PRIORITY] * FIELD_COUNT

    @property
    def attribute_cache(self) -> Mapping[bytes, AttributeTargets]:
        """The serialized attributes read so far and what they mean (bounded, see ``AttributeCache``)."""
        return self._attributes

    def resource_context(self, resource: Any) -> tuple[str, str]:
        """(service_name, tenant) from resource attributes; read once per ResourceSpans."""
        service = UNKNOWN_SERVICE
        tenant = ""
        tenant_rank = _UNSET_PRIORITY
        for kv in resource.attributes:
            key = kv.key
            if key == SERVICE_NAME_KEY:
                with contextlib.suppress(Refused):
                    service = _string(kv.value) or UNKNOWN_SERVICE
            rank = self._tenant_keys.get(key)
            if rank is not None and rank < tenant_rank:
                try:
                    found = _tenant(kv.value)
                except Refused:
                    continue
                if found is not None:
                    tenant, tenant_rank = found, rank
        return service, tenant

    def read(self, span: Any, service_name: str = UNKNOWN_SERVICE, resource_tenant: str = "") -> GenAIRecord | None:
        """The span's GenAIRecord; ``None`` when no convention says it is a GenAI span."""
        fields = self.read_fields(span, service_name, resource_tenant)
        return None if fields is None else GenAIRecord(*fields)

    def read_fields(
        self, span: Any, service_name: str = UNKNOWN_SERVICE, resource_tenant: str = ""
    ) -> RecordFields | None:
        """``read`` as a plain tuple in ``GenAIRecord``'s field order: what the processor unpacks.

        Building the dataclass costs ~0.6 us (24 attribute stores), a tuple ~0.1 us, and the
        processor reads every field once anyway."""
        attributes = span.attributes
        refused: list[tuple[str, str]] | None = None
        if len(attributes) > self._max_attributes:  # limits.max_attributes_per_span: the rest is not read
            attributes = attributes[: self._max_attributes]
            refused = [TOO_MANY_ATTRIBUTES]
        known = [*filter(None, map(self._attributes.__getitem__, attributes))]
        if not known:
            return None
        values: list[Any] = [None] * FIELD_COUNT
        priorities = self._blank_priorities.copy()
        for targets in known:
            for field, priority, value, key in targets:
                if priority < priorities[field]:
                    if value.__class__ is Refused:
                        if refused is None:
                            refused = []
                        refused.append((key, value.reason))
                    elif value is not None:
                        values[field] = value
                        priorities[field] = priority
        kind: SpanKind | None = values[_F_OPERATION]
        if kind is None:
            return None
        return self._fields(span, kind, values, service_name, resource_tenant, refused)

    def _fields(
        self,
        span: Any,
        kind: SpanKind,
        values: list[Any],
        service_name: str,
        resource_tenant: str,
        refused: list[tuple[str, str]] | None,
    ) -> RecordFields:
        start = span.start_time_unix_nano
        end = span.end_time_unix_nano
        duration: float | None = (end - start) / 1e9 if 0 < start <= end else None
        if duration is None:
            refused = [*(refused or ()), ("span.end_time_unix_nano", "before_start")]

        input_tokens: int | None = values[_F_INPUT_TOKENS]
        output_tokens: int | None = values[_F_OUTPUT_TOKENS]
        cache_read: int | None = values[_F_CACHE_READ_TOKENS]
        cache_write: int | None = values[_F_CACHE_WRITE_TOKENS]
        reasoning: int | None = values[_F_REASONING_TOKENS]
        total: int | None = values[_F_TOTAL_TOKENS]
        if input_tokens is None and total is not None and total >= (output_tokens or 0):
            input_tokens = total - (output_tokens or 0)
        fixups: tuple[str, ...] = ()
        cached = (cache_read or 0) + (cache_write or 0)
        if input_tokens is not None and cached > input_tokens:
            # Anthropic-style disjoint numbers copied as is: OTel's input includes the cache buckets.
            input_tokens += cached
            fixups = (FIXUP_CACHE_ADDED,)
        if output_tokens is not None and reasoning is not None and reasoning > output_tokens:
            output_tokens += reasoning
            fixups = (*fixups, FIXUP_REASONING_ADDED)

        error_type = ""
        raw_error: str | None = values[_F_ERROR_TYPE]
        if raw_error is not None:
            error_type = normalize_error_type(raw_error)
        elif status_code(span.status) == _STATUS_CODE_ERROR:
            error_type = _exception_type(span.events) or OTHER_ERROR

        ttft: float | None = None
        if kind.leaf:
            ttft = values[_F_TTFT_SECONDS]
            if ttft is None and len(span.events):
                ttft = _first_token_seconds(span.events, start)
            if ttft is not None and duration is not None and ttft >= duration:
                ttft = None  # a "first token" at the very end is a non-streamed call (OpenLIT sets ttft = duration)

        return (
            service_name,
            values[_F_TENANT] or resource_tenant,
            kind.operation,
            kind.leaf,
            values[_F_PROVIDER] or "",
            values[_F_REQUEST_MODEL] or "",
            values[_F_RESPONSE_MODEL] or "",
            input_tokens,
            output_tokens,
            cache_read,
            cache_write,
            reasoning,
            values[_F_COST_USD],
            ttft,
            duration,
            error_type,
            values[_F_AGENT_NAME] or "",
            values[_F_TOOL_NAME] or "",
            values[_F_SERVER_ADDRESS] or "",
            (span.trace_id, span.span_id, end // 1_000_000 / 1e3),
            start,
            end,
            fixups,
            tuple(refused) if refused else (),
        )


def _first_token_seconds(events: Iterable[Any], start: int) -> float | None:
    for event in events:
        if event.name in TTFT_EVENTS:
            at = event.time_unix_nano
            return (at - start) / 1e9 if at >= start > 0 else None
    return None


def _exception_type(events: Iterable[Any]) -> str | None:
    for event in events:
        if event.name == EXCEPTION_EVENT:
            for kv in event.attributes:
                if kv.key == EXCEPTION_TYPE_KEY and kv.value.string_value:
                    return normalize_error_type(kv.value.string_value[:MAX_LABEL_LENGTH])
    return None


class GenAIProcessor:
    """The GenAI derivation stage (a ``Processor``): traces batches in, metric families updated."""

    def __init__(
        self,
        config: GenAIConfig,
        store: MetricStore,
        usage_sink: UsageSink | None = None,
        max_attributes: int = DEFAULT_MAX_ATTRIBUTES,
    ) -> None:
        self._log = get_logger("processor/genai")
        # Called once per leaf record with (tenant, input + output tokens, counted USD): tenant budgets.
        self._usage_sink = usage_sink
        self.reader = SpanReader(config.tenant_attributes, max_attributes)
        self.pricer = Pricer(config.prices.overrides)
        self._trust_span_cost = config.prices.span_cost == "trust"
        # A span is a GenAI span only if it has one of the span-kind keys, and protobuf stores keys as
        # their UTF-8 bytes: a request whose bytes contain none of them has no GenAI span and is
        # skipped after a few memchr-speed scans instead of a Python pass over every attribute
        # (Trace10kSPS-like traffic: ~10x less derivation CPU, see benchmarks/RESULTS.md).
        self._kind_keys = tuple(dict.fromkeys(row.key.encode() for row in KIND_ROWS))
        self._failed_kinds: set[str] = set()
        self._checked_raw: bytes | None = None
        self._raw_has_kind = True
        self.token_usage = store.histogram(
            "gen_ai_client_token_usage",
            "Tokens used per GenAI operation (OTel gen_ai.client.token.usage), input and output.",
            (*COMMON_LABELS, "gen_ai_token_type"),
            TOKEN_BUCKETS,
        )
        self.tokens = store.counter(
            "gen_ai_client_tokens",
            "Tokens used by GenAI leaf operations, by type. cache_read and cache_creation are subsets of "
            "input, reasoning is a subset of output: do not add them to input or output.",
            (*COMMON_LABELS, "gen_ai_token_type"),
        )
        self.duration = store.histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of GenAI operations (chat, embeddings, execute_tool, invoke_agent, ...) from span times.",
            (*COMMON_LABELS, "error_type", "gen_ai_agent_name", "gen_ai_tool_name"),
            DURATION_BUCKETS,
        )
        self.ttft = store.histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first token or chunk of streamed GenAI operations, as reported by the span.",
            COMMON_LABELS,
            TTFT_BUCKETS,
        )
        self.cost = store.counter(
            "gen_ai_client_cost_usd",
            "Cost of GenAI leaf operations in USD; cost_source: span (carried by the span), override "
            "(config price), genai_prices (bundled price data).",
            (*COMMON_LABELS, "cost_source"),
        )
        self.unpriced = store.counter(
            "gen_ai_client_unpriced_operations",
            "GenAI leaf operations with token usage that no price source could price.",
            ("gen_ai_provider_name", "gen_ai_request_model"),
        )
        self.refused = store.counter(
            "gateway_genai_refused_attributes",
            "GenAI span attributes ignored because of a wrong type or an absurd value, by attribute and reason.",
            ("attribute", "reason"),
            expires=False,
        )
        self.fixups = store.counter(
            "gateway_genai_normalization_fixups",
            "Spans whose token counts were normalized to OTel containment (cache in input, reasoning in output).",
            ("fixup",),
            expires=False,
        )
        self.failures = store.counter(
            "gateway_genai_span_failures",
            "Spans the GenAI processor could not handle (a bug: please report), by exception type.",
            ("exception",),
            expires=False,
        )
        self._store = store
        self._generation = store.generation
        self._label_sets: dict[LabelKey, _LabelSet] = {}

    async def start(self) -> None:
        self._log.info(
            "genai_processor_started",
            attribute_keys=len(self.reader.keymap),
            conventions=len(CONVENTIONS),
            price_overrides=len(self.pricer.overrides),
        )

    async def shutdown(self) -> None:
        self._log.info("genai_processor_stopped")

    def process(self, batch: Batch) -> None:
        """Derive metrics from every span of a traces batch; never raises (failures are counted).

        Series are updated in place through references kept per label set (``_LabelSet``): one dict
        lookup per span finds every series the span touches, instead of building and hashing a
        label tuple per observation. The references are dropped whenever the store deleted series.
        """
        if batch.signal != "traces":
            return
        raw = batch.raw
        if raw is not self._checked_raw:  # a batch derived in slices shares its raw bytes: scan them once
            self._checked_raw = raw
            self._raw_has_kind = not raw or any(key in raw for key in self._kind_keys)
        if not self._raw_has_kind:
            return
        store = self._store
        if store.generation != self._generation or len(self._label_sets) >= _LABEL_SET_LIMIT:
            self._label_sets.clear()
            self._generation = store.generation
        reader = self.reader
        read = reader.read_fields
        aggregate = self._aggregate
        tenant_override = batch.tenant
        try:
            for resource_spans in batch.request.resource_spans:
                service, resource_tenant = reader.resource_context(resource_spans.resource)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        try:
                            fields = read(span, service, resource_tenant)
                            if fields is not None:
                                aggregate(fields, tenant_override)
                        except Exception as exc:  # a bug must not stop ingest: count it, log each kind once
                            self._failed(exc)
        except Exception as exc:  # not even the batch's shape could be read
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        name = type(exc).__name__
        self.failures.inc((name,))
        if name not in self._failed_kinds and len(self._failed_kinds) < 64:
            self._failed_kinds.add(name)
            self._log.error("genai_span_failed", exception=name, error=repr(exc))

    def _label_set(self, common: LabelKey) -> _LabelSet:
        label_set = _LabelSet(common, self.pricer.lookup(common[3], common[4], common[5]))
        self._label_sets[common] = label_set
        return label_set

    def _aggregate(self, fields: RecordFields, tenant_override: str | None) -> None:
        """Add one record (``SpanReader.read_fields``) to the store through its label set's series references."""
        (
            service_name,
            tenant,
            operation,
            leaf,
            provider,
            request_model,
            response_model,
            input_tokens,
            output_tokens,
            cache_read,
            cache_write,
            reasoning,
            span_cost,
            ttft,
            duration,
            error_type,
            agent_name,
            tool_name,
            _server_address,
            span,
            start,
            _end,
            fixups,
            refused,
        ) = fields
        if refused:
            for attribute, reason in refused:
                self.refused.inc((attribute, reason))
        for fixup in fixups:
            self.fixups.inc((fixup,))
        common = (
            service_name,
            tenant if tenant_override is None else tenant_override,
            operation,
            provider,
            request_model,
            response_model,
        )
        label_set = self._label_sets.get(common)
        if label_set is None:
            label_set = self._label_set(common)
        now = self._store.now
        if duration is not None:
            extra = (error_type, agent_name, tool_name)
            series = label_set.durations.get(extra)
            if series is None:
                series = label_set.durations[extra] = self.duration.series_for((*common, *extra))
            _observe(series, self.duration.buckets, duration, span, now)
        if not leaf:
            return
        slots = label_set.slots
        if ttft is not None:
            _histogram(self.ttft, common, (), slots, _TTFT, ttft, span, now)
        if input_tokens is not None:
            self._token_usage(common, _INPUT_TYPE, slots, _USAGE_INPUT, _INPUT, input_tokens, span, now)
        if output_tokens is not None:
            self._token_usage(common, _OUTPUT_TYPE, slots, _USAGE_OUTPUT, _OUTPUT, output_tokens, span, now)
        if cache_read:
            _counter(self.tokens, common, ("cache_read",), slots, _CACHE_READ, float(cache_read), span, now)
        if cache_write:
            _counter(self.tokens, common, ("cache_creation",), slots, _CACHE_CREATION, float(cache_write), span, now)
        if reasoning:
            _counter(self.tokens, common, ("reasoning",), slots, _REASONING, float(reasoning), span, now)
        if span_cost is not None and self._trust_span_cost:
            usd: float = span_cost
            _counter(self.cost, common, ("span",), slots, _COST_SPAN, usd, span, now)
        elif input_tokens is None and output_tokens is None:
            usd = 0.0  # nothing was used (a failed call) or nothing was said: nothing to price
        elif label_set.quote is None:
            self.unpriced.inc((provider, request_model))
            usd = 0.0
        else:
            cost = _priced(
                label_set,
                input_tokens or 0,
                output_tokens or 0,
                cache_read or 0,
                cache_write or 0,
                reasoning or 0,
                start,
            )
            usd = 0.0
            if 0.0 <= cost < math.inf:  # a price table could only make this negative through a bug: never poison
                usd = cost
                _counter(self.cost, common, (label_set.source,), slots, _COST_QUOTE, cost, span, now)
        if self._usage_sink is not None and (input_tokens or output_tokens or usd):
            self._usage_sink(common[1], (input_tokens or 0) + (output_tokens or 0), usd)

    def _token_usage(
        self,
        common: LabelKey,
        token_type: LabelKey,
        slots: list[Any],
        usage_slot: int,
        counter_slot: int,
        tokens: int,
        span: SpanRef,
        now: float,
    ) -> None:
        """One token type of a leaf call: its histogram observation and, if not zero, its counter.

        The bodies of ``_observe`` and ``_counter``, written out: one call per token type instead of
        two is measurable on the hot path (benchmarks/RESULTS.md, "Hot-path changes")."""
        amount = float(tokens)
        exemplar = (span, amount)
        usage = slots[usage_slot]
        if usage is None:
            usage = slots[usage_slot] = self.token_usage.series_for((*common, *token_type))
        index = bisect_left(self.token_usage.buckets, amount)
        usage.counts[index] += 1
        usage.sum += amount
        usage.count += 1
        usage.updated = now
        usage.exemplars[index] = exemplar
        if usage.overflow is not None:
            usage.overflow.value += 1.0
            usage.overflow.updated = now
        if not tokens:
            return
        total = slots[counter_slot]
        if total is None:
            total = slots[counter_slot] = self.tokens.series_for((*common, *token_type))
        total.value += amount
        total.updated = now
        total.exemplar = exemplar
        if total.overflow is not None:
            total.overflow.value += 1.0
            total.overflow.updated = now


# Indexes of a label set's series slots (one per metric and fixed extra label).
_TTFT, _USAGE_INPUT, _USAGE_OUTPUT, _INPUT, _OUTPUT, _CACHE_READ, _CACHE_CREATION, _REASONING = range(8)
_COST_SPAN, _COST_QUOTE = 8, 9
_INPUT_TYPE: Final = ("input",)
_OUTPUT_TYPE: Final = ("output",)
_SLOTS: Final = 10
_LABEL_SET_LIMIT: Final = 20_000


class _LabelSet:
    """References to the series of one (service, tenant, operation, provider, request and response
    model) label set, resolved on first use, and the price of that model, looked up once.

    A slot holds ``None`` until first used, then the series (the metric's overflow series once
    its series limit was reached; each observation into it is counted as overflow).
    """

    __slots__ = ("common", "durations", "linear", "quote", "slots", "source")

    def __init__(self, common: LabelKey, quote: PriceQuote | None) -> None:
        self.common = common
        self.slots: list[Any] = [None] * _SLOTS
        self.durations: dict[tuple[str, str, str], HistogramSeries] = {}
        self.quote = quote
        self.source = "" if quote is None else quote.source
        # The one linear price of a single-tier, unconditional quote (``_priced``'s fast path).
        self.linear: LinearPrice | None = None
        if quote is not None and len(quote.pricing.tiers) == 1 and not quote.pricing.variants:
            self.linear = quote.pricing.tiers[0][1]


def _priced(
    label_set: _LabelSet,
    input_tokens: int,
    output_tokens: int,
    cache_read: int,
    cache_write: int,
    reasoning: int,
    start_unix_nano: int,
) -> float:
    """The USD of one leaf call at the price of its (priced) label set.

    A single-tier, unconditional price (most models, every model of the benchmark load) is applied
    directly, without ``ModelPricing.cost``'s tier and date checks.
    """
    # The buckets are subsets: with a total refused or missing, price at least the parts.
    input_tokens = max(input_tokens, cache_read + cache_write)
    output_tokens = max(output_tokens, reasoning)
    if label_set.linear is not None:
        return label_set.linear.cost(input_tokens, output_tokens, cache_read, cache_write, reasoning)
    assert label_set.quote is not None
    return label_set.quote.pricing.cost(
        input_tokens, output_tokens, cache_read, cache_write, reasoning, start_unix_nano
    )


def _observe(series: HistogramSeries, bounds: tuple[float, ...], value: float, span: SpanRef, now: float) -> None:
    index = bisect_left(bounds, value)
    series.counts[index] += 1
    series.sum += value
    series.count += 1
    series.updated = now
    series.exemplars[index] = (span, value)
    overflow = series.overflow
    if overflow is not None:
        overflow.value += 1.0
        overflow.updated = now


def _histogram(
    family: HistogramFamily,
    common: LabelKey,
    extra: LabelKey,
    slots: list[Any],
    slot: int,
    value: float,
    span: SpanRef,
    now: float,
) -> None:
    series = slots[slot]
    if series is None:
        series = slots[slot] = family.series_for((*common, *extra))
    _observe(series, family.buckets, value, span, now)


def _counter(
    family: CounterFamily,
    common: LabelKey,
    extra: LabelKey,
    slots: list[Any],
    slot: int,
    amount: float,
    span: SpanRef,
    now: float,
) -> None:
    series = slots[slot]
    if series is None:
        series = slots[slot] = family.series_for((*common, *extra))
    series.value += amount
    series.updated = now
    series.exemplar = (span, amount)
    overflow = series.overflow
    if overflow is not None:
        overflow.value += 1.0
        overflow.updated = now
