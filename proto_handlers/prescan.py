"""Count the entries of a serialized request without decoding it, stopping past a limit.

Decoding allocates per message, whatever the message holds: upb turns a 2-byte empty span into
about 176 bytes, so 20 MiB of them (10M spans) decode to about 1.8 GB. This walk reads only
tags and lengths down to the items (spans, metric data points, log records), skips each item's
bytes unread, keeps nothing, and stops as soon as a count passes the limit: a body is known to hold
too many items before a byte of it is decoded, in time bounded by the limit, not by the body.

It counts two things: ``items``, and ``others``: every other field it has to step over on the way,
the resource, scope and metric entries holding the items (each costs 60-100 bytes decoded) and
their own fields (a name, a schema URL, unknown fields). A valid request has a handful of those per
resource, scope or metric, so both counts are bounded by the same limit; and bounding ``others``
bounds the walk's own time: 20 MiB of 2-byte unknown fields, which upb skips in C in 0.07 s, would
take this loop several seconds to step through one by one.

A pure-Python walk was chosen over decoding a "skeleton" message in C (the request's types with
the items declared ``repeated bytes``) by measurement: the skeleton is 3-18x faster on valid
requests (10-60 µs against 100-230 µs for 512 spans) but cannot stop early, and upb keeps 32-43
bytes per item: 410 MB and 1 s for 10M empty spans, where this walk stops at 500k in 60-100 ms and
allocates nothing. See docs/hardening.md.

The counts follow upb's decoder: a field is an item or a container when its number and wire type
are those of the schema (upb keeps a known field of another wire type as an unknown field);
unknown fields and groups are stepped over. Items are counted as ``count_items`` counts them,
except that every data-point container of a metric is counted where a repeated oneof (gauge, then
sum) keeps only the last: upb parses (and allocates) both. Malformed input ends the walk where it
is found, with the counts so far, and never raises: upb refuses such a body, with its own reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from proto_handlers.signals import Signal

_MAX_GROUP_DEPTH: Final = 100  # upb's default nesting limit; deeper input is malformed anyway


@dataclass(frozen=True, slots=True)
class WireCount:
    """What ``count_entries`` found: ``items`` in ``count_items``'s unit, and ``others``: the fields
    it stepped over to reach them (resource, scope and metric entries and their other fields).
    Either is ``limit + 1`` when the walk stopped because of it."""

    items: int
    others: int

    @property
    def entries(self) -> int:
        return self.items + self.others


class _Stop(Exception):
    """The walk is over: a count passed the limit, or the input is malformed."""


# The path from the request down to the items: the tag (field number << 3 | wire type 2) of each
# container level, then the tags whose values hold the items directly.
_LEN = 2
_CONTAINER_TAGS: Final[dict[Signal, tuple[int, ...]]] = {
    # ExportTraceServiceRequest.resource_spans = 1, ResourceSpans.scope_spans = 2
    "traces": (1 << 3 | _LEN, 2 << 3 | _LEN),
    # ExportLogsServiceRequest.resource_logs = 1, ResourceLogs.scope_logs = 2
    "logs": (1 << 3 | _LEN, 2 << 3 | _LEN),
    # ExportMetricsServiceRequest.resource_metrics = 1, ResourceMetrics.scope_metrics = 2,
    # ScopeMetrics.metrics = 2
    "metrics": (1 << 3 | _LEN, 2 << 3 | _LEN, 2 << 3 | _LEN),
}
# Where the items are, inside the innermost container: ScopeSpans.spans = 2, ScopeLogs.log_records
# = 2; Metric.gauge = 5, sum = 7, histogram = 9, exponential_histogram = 10, summary = 11, each of
# which holds data_points = 1.
_ITEM_TAG: Final = 2 << 3 | _LEN
_METRIC_DATA_TAGS: Final = frozenset(number << 3 | _LEN for number in (5, 7, 9, 10, 11))
_DATA_POINTS_TAG: Final = 1 << 3 | _LEN


def count_entries(signal: Signal, body: bytes, limit: int) -> WireCount:
    """Count the items and the other fields of a serialized ``Export*ServiceRequest`` of ``signal``.

    Stops as soon as either count exceeds ``limit`` (it is then ``limit + 1``); the rest of the
    body is not read. Never raises on bad input (see the module docstring).
    """
    walk = _Walk(body, limit)
    inner = walk.metric if signal == "metrics" else walk.items_of
    # IndexError: a varint or a length running off the end of the body.
    with contextlib.suppress(_Stop, IndexError):
        walk.containers_of(0, len(body), _CONTAINER_TAGS[signal], inner)
    return WireCount(walk.items, walk.others)


class _Walk:
    __slots__ = ("body", "items", "limit", "others")

    def __init__(self, body: bytes, limit: int) -> None:
        self.body = body
        self.limit = limit
        self.items = 0
        self.others = 0

    def containers_of(self, pos: int, end: int, levels: tuple[int, ...], inner: Callable[[int, int], None]) -> None:
        """Walk the fields in ``body[pos:end]``, descending into those of tag ``levels[0]``."""
        body = self.body
        tag = levels[0]
        deeper = levels[1:]
        while pos < end:
            self.others += 1  # the container itself, or a field beside it
            if self.others > self.limit:
                raise _Stop
            key = body[pos]
            pos += 1
            if key >= 0x80:
                key, pos = _varint(body, pos - 1)
            if key != tag:
                if key & 0x07 == 0 and key >= 0x08 and body[pos] < 0x80:  # a one-byte varint
                    pos += 1
                else:
                    pos = self.skip(pos, end, key)
                continue
            start, pos = _payload(body, pos, end)
            if start == pos:  # an empty container: nothing inside to count
                continue
            if deeper:
                self.containers_of(start, pos, deeper, inner)
            else:
                inner(start, pos)
        if pos != end:
            raise _Stop

    def items_of(self, pos: int, end: int) -> None:
        """Count the fields of tag ``_ITEM_TAG`` in ``body[pos:end]``."""
        self.count(pos, end, _ITEM_TAG)

    def metric(self, pos: int, end: int) -> None:
        """Count the data points of one ``Metric``: those of every data field it holds."""
        body = self.body
        while pos < end:
            key = body[pos]
            pos += 1
            if key >= 0x80:
                key, pos = _varint(body, pos - 1)
            if key not in _METRIC_DATA_TAGS:
                self.others += 1
                if self.others > self.limit:
                    raise _Stop
                pos = self.skip(pos, end, key)
                continue
            start, pos = _payload(body, pos, end)
            self.count(start, pos, _DATA_POINTS_TAG)
        if pos != end:
            raise _Stop

    def count(self, pos: int, end: int, tag: int) -> None:
        """Count the fields of ``tag`` (length-delimited) in ``body[pos:end]`` as items, the rest as others.

        The hot loop, one step per item: the common case (a one-byte tag, a length of one or two
        bytes) is inlined, and the counts are kept in locals, stored back when the loop ends.
        """
        body = self.body
        items = self.items
        limit = self.limit
        others = self.others
        try:
            while pos < end:
                key = body[pos]
                if key == tag:
                    length = body[pos + 1]
                    if length < 0x80:
                        pos += 2 + length
                    else:
                        high = body[pos + 2]
                        if high < 0x80:
                            pos += 3 + ((length & 0x7F) | high << 7)
                        else:
                            length, pos = _varint(body, pos + 1)
                            pos += length
                    items += 1
                    if items > limit:
                        raise _Stop
                    continue
                pos += 1
                if key >= 0x80:
                    key, pos = _varint(body, pos - 1)
                    if key == tag:  # the same tag as a longer (non-minimal) varint: upb reads it alike
                        length, pos = _varint(body, pos)
                        pos += length
                        items += 1
                        if items > limit:
                            raise _Stop
                        continue
                others += 1
                if others > limit:
                    raise _Stop
                if key & 0x07 == 0 and key >= 0x08 and body[pos] < 0x80:  # a one-byte varint
                    pos += 1
                    continue
                self.others = others
                pos = self.skip(pos, end, key)
                others = self.others
            if pos != end:
                raise _Stop
        finally:
            self.items = items
            self.others = max(self.others, others)  # skip() may have counted more before raising

    def skip(self, pos: int, end: int, key: int) -> int:
        """The position after the value of the field whose tag ``key`` was read just before ``pos``."""
        body = self.body
        if key >> 3 == 0:
            raise _Stop
        wire_type = key & 0x07
        if wire_type == 0:
            _, pos = _varint(body, pos)
        elif wire_type == 2:
            length, pos = _varint(body, pos)
            pos += length
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 3:
            pos = self.skip_group(pos, end, key >> 3)
        else:  # 4 (an end-group with no group open), 6 and 7: not a valid field
            raise _Stop
        if pos > end:
            raise _Stop
        return pos

    def skip_group(self, pos: int, end: int, number: int) -> int:
        """The position after the end-group tag closing the group of field ``number`` opened before ``pos``."""
        body = self.body
        open_groups = [number]
        while open_groups:
            if pos >= end:
                raise _Stop
            self.others += 1  # every field inside a group is stepped over, one by one
            if self.others > self.limit:
                raise _Stop
            key = body[pos]
            pos += 1
            if key >= 0x80:
                key, pos = _varint(body, pos - 1)
            wire_type = key & 0x07
            if wire_type == 0 and key >= 0x08 and body[pos] < 0x80:  # a one-byte varint
                pos += 1
            elif wire_type == 4:
                if key >> 3 != open_groups.pop():
                    raise _Stop
            elif wire_type == 3:
                if len(open_groups) >= _MAX_GROUP_DEPTH:
                    raise _Stop
                open_groups.append(key >> 3)
            else:
                pos = self.skip(pos, end, key)
        return pos


def _payload(body: bytes, pos: int, end: int) -> tuple[int, int]:
    """The bounds of the length-delimited payload whose length starts at ``pos`` (inside ``end``)."""
    length = body[pos]
    pos += 1
    if length >= 0x80:
        length, pos = _varint(body, pos - 1)
    if pos + length > end:
        raise _Stop
    return pos, pos + length


def _varint(body: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it; at most 10 bytes, as upb reads them."""
    result = 0
    for shift in range(0, 70, 7):
        byte = body[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
    raise _Stop
