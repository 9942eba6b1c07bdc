"""Span attributes read by their serialized bytes: a bounded memo shared by the trace processors.

Spans reach processors as ``RawAttributesTraceRequest`` (``proto_handlers/raw_attributes.py``):
each span attribute is the bytes of its ``KeyValue``. Spans of one instrumentation repeat the same
attribute bytes (model, provider, operation, tenant, most token counts), so a processor reads a
span's attributes with ``map(cache.__getitem__, span.attributes)``: a hash lookup each, in C, and a
Python call only for bytes not in the cache.

Bounded, and shaped by what real traffic sends besides repeating attributes: values that never
repeat (response, conversation and session ids, client addresses, body sizes). Three rules:

* **Two generations.** When the cache is full its entries become the previous generation and it
  starts empty; a miss that finds its bytes there moves the entry back (one dict lookup, no
  re-read). Attributes in use survive a turnover; one-off values age out with the previous
  generation. (Clearing everything instead made every span re-read its model, provider and tenant
  after each turnover: on a load of unique ids that was most spans.)
* **An attribute the reader has no use for (a falsy entry: a key no convention or dimension
  reads) is kept for at most ``MAX_VALUES_PER_KEY`` values of its key a generation**: further
  values of such a key (ids, sizes, addresses) are looked at every time and never stored, so they
  do not push the repeating attributes out. Attributes that mean something are always kept: a
  token count that is seen again is not parsed again.
* **Attributes longer than ``MAX_KEPT_BYTES``** (prompts, payloads) are read every time and never
  kept, so memory does not grow with what spans carry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

MAX_ENTRIES: Final = 32_768
"""Entries of one generation (two are kept: at most twice this many)."""
MAX_KEPT_BYTES: Final = 256
MAX_VALUES_PER_KEY: Final = 1_024
"""Values of one unused attribute key kept per generation; a key past it is an id, a size or a timestamp."""
KEY_TAG: Final = 0x0A  # KeyValue.key: field 1, length-delimited
_ABSENT: Final = object()

_V = TypeVar("_V")


def key_bytes(raw: bytes) -> bytes | None:
    """The key of a serialized KeyValue, read off its bytes: field 1 first and shorter than 128
    bytes, as every SDK writes it; ``None`` for any other layout (the caller parses it)."""
    if len(raw) > 2 and raw[0] == KEY_TAG and raw[1] < 0x80:
        return raw[2 : 2 + raw[1]]
    return None


class AttributeCache(dict[bytes, _V]):
    """Serialized KeyValue -> ``read(raw)``, computed on first sight (see the module docstring)."""

    def __init__(self, read: Callable[[bytes], _V]) -> None:
        super().__init__()
        self._read = read
        self._previous: dict[bytes, _V] = {}
        self._kept_per_key: dict[bytes | None, int] = {}

    def __missing__(self, raw: bytes) -> _V:
        # A default, not try/except: most misses are values never seen (ids, counts), and a raised
        # KeyError cost about as much as the rest of the miss.
        found = self._previous.pop(raw, _ABSENT)
        if found is not _ABSENT:
            entry: _V = found  # type: ignore[assignment]
        else:
            entry = self._read(raw)
            if len(raw) > MAX_KEPT_BYTES:
                return entry
            if not entry:  # an attribute that means nothing to the reader: bounded per key
                key = key_bytes(raw)
                kept = self._kept_per_key.get(key, 0)
                if kept >= MAX_VALUES_PER_KEY:
                    return entry
                self._kept_per_key[key] = kept + 1
        if len(self) >= MAX_ENTRIES:
            self._turn_over()
        self[raw] = entry
        return entry

    def _turn_over(self) -> None:
        """The current entries become the previous generation; the cache starts empty."""
        self._previous = dict(self)
        self.clear()
        self._kept_per_key.clear()
