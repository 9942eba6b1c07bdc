"""The attribute memo: repeated attributes are read once, ids do not push them out, memory stays bounded."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from gateway.derive import attributes
from gateway.derive.attributes import AttributeCache, key_bytes


def kv(key: str, value: str) -> bytes:
    return KeyValue(key=key, value=AnyValue(string_value=value)).SerializeToString()


class CountingReader:
    """A reader that says which attributes it was asked about; ``useful`` keys map to their value."""

    def __init__(self, *useful: str) -> None:
        self.useful = set(useful)
        self.reads: list[bytes] = []

    def __call__(self, raw: bytes) -> str:
        self.reads.append(raw)
        parsed = KeyValue.FromString(raw)
        return parsed.value.string_value if parsed.key in self.useful else ""


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attributes, "MAX_ENTRIES", 4)
    monkeypatch.setattr(attributes, "MAX_VALUES_PER_KEY", 2)


def test_a_repeated_attribute_is_read_once() -> None:
    reader = CountingReader("gen_ai.request.model")
    cache = AttributeCache(reader)
    model = kv("gen_ai.request.model", "gpt-4o")
    assert ["gpt-4o", "gpt-4o", "gpt-4o"] == [cache[model] for _ in range(3)]
    assert [model] == reader.reads


@pytest.mark.usefixtures("small")
def test_an_attribute_in_use_survives_a_turnover_without_being_read_again() -> None:
    """Full: the entries become the previous generation, and one seen again moves back unread."""
    reader = CountingReader("model")
    cache = AttributeCache(reader)
    model = kv("model", "m")
    cache[model]
    for n in range(6):  # fills the generation, turns it over, fills the next one halfway
        cache[kv("model", f"other-{n}")]
    assert model not in cache
    assert "m" == cache[model]
    assert 1 == reader.reads.count(model)
    assert model in cache


@pytest.mark.usefixtures("small")
def test_an_attribute_unused_for_two_generations_is_read_again() -> None:
    reader = CountingReader("model")
    cache = AttributeCache(reader)
    model = kv("model", "m")
    cache[model]
    for n in range(8):  # two turnovers: the first generation is gone
        cache[kv("model", f"other-{n}")]
    cache[model]
    assert 2 == reader.reads.count(model)


@pytest.mark.usefixtures("small")
def test_values_of_an_unused_key_are_kept_up_to_the_per_key_bound() -> None:
    """An id the reader has no use for is kept for two values (the bound here), then looked at every time."""
    reader = CountingReader("model")
    cache = AttributeCache(reader)
    ids = [kv("conversation.id", f"c-{n}") for n in range(4)]
    for raw in ids * 2:
        assert "" == cache[raw]
    assert (set(ids[:2]), [*ids, *ids[2:]]) == (set(cache), reader.reads)


@pytest.mark.usefixtures("small")
def test_values_of_a_useful_key_are_kept_past_the_per_key_bound() -> None:
    reader = CountingReader("tokens")
    cache = AttributeCache(reader)
    counts = [kv("tokens", str(n)) for n in range(3)]
    for raw in counts * 2:
        cache[raw]
    assert (set(counts), counts) == (set(cache), reader.reads)


def test_a_long_attribute_is_read_every_time_and_never_kept() -> None:
    reader = CountingReader("prompt")
    cache = AttributeCache(reader)
    prompt = kv("prompt", "x" * 1000)
    assert ["x" * 1000] * 2 == [cache[prompt], cache[prompt]]
    assert ([prompt, prompt], 0) == (reader.reads, len(cache))


@pytest.mark.usefixtures("small")
def test_memory_is_bounded_by_two_generations() -> None:
    cache = AttributeCache(CountingReader("k"))
    for n in range(100):
        cache[kv("k", str(n))]
    assert len(cache) <= 4 and len(cache._previous) <= 4


def test_key_bytes_reads_the_key_off_a_serialized_key_value() -> None:
    assert b"gen_ai.system" == key_bytes(kv("gen_ai.system", "openai"))
    assert None is key_bytes(b"\x12\x02\x0a\x00")  # value first: another layout, left to a parser
