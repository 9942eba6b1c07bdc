"""Span attributes read by their serialized bytes: a bounded memo shared by the trace processors.

Spans reach processors as ``RawAttributesTraceRequest`` (``proto_handlers/raw_attributes.py``):
each span attribute is the bytes of its ``KeyValue``. Spans of one instrumentation repeat the same
attribute bytes (model, provider, operation, tenant, most token counts), so a processor reads a
span's attributes with ``map(cache.__getitem__, span.attributes)``: a hash lookup each, in C, and a
call of its ``read`` function only for bytes never seen. Bounded: cleared when full (the next spans
re-read their few distinct attributes), and attributes longer than ``MAX_KEPT_BYTES`` (prompts,
payloads) are read every time and never kept, so memory does not grow with what spans carry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

MAX_ENTRIES: Final = 65_536
MAX_KEPT_BYTES: Final = 256

_V = TypeVar("_V")


class AttributeCache(dict[bytes, _V]):
    """Serialized KeyValue -> ``read(raw)``, computed on first sight."""

    def __init__(self, read: Callable[[bytes], _V]) -> None:
        super().__init__()
        self._read = read

    def __missing__(self, raw: bytes) -> _V:
        entry = self._read(raw)
        if len(raw) <= MAX_KEPT_BYTES:
            if len(self) >= MAX_ENTRIES:
                self.clear()
            self[raw] = entry
        return entry
