"""Where OTLP/JSON puts trace and span ids, and a walker that rewrites them in place.

OTLP/JSON deviates from the standard protobuf JSON mapping in one way: ``trace_id`` and
``span_id`` fields are hex strings instead of base64 (the spec's "JSON Protobuf Encoding").
``google.protobuf.json_format`` only knows the standard mapping, so encoding converts the ids
back to hex after ``MessageToDict``. (Decoding no longer uses ``ParseDict``: ``_json_wire``
reads hex ids itself.)

Only the places ids can be are visited (not every string in the document), and both the
lowerCamelCase key the spec mandates and the original snake_case field name are recognised,
because ``ParseDict`` accepts both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from proto_handlers.errors import DecodeError
from proto_handlers.signals import Signal

TRACE_ID_BYTES: Final = 16
SPAN_ID_BYTES: Final = 8

IdConverter: TypeAlias = Callable[[Any, int], Any]
"""Maps an id value found in the document and the id's size in bytes to its replacement.

Raises ``BadIdError`` with a description of the problem; the walker adds where it was found.
"""


class BadIdError(ValueError):
    """An id value that cannot be converted; the walker turns it into a ``DecodeError``."""


@dataclass(frozen=True, slots=True)
class _Node:
    """The shape of one JSON object on the way to ids: its id keys and the keys leading further.

    Keys are ``(camelCase, snake_case)`` pairs. ``lists`` hold arrays of objects (repeated
    messages), ``objects`` single nested objects (the data oneof of a metric).
    """

    ids: tuple[tuple[str, str, int], ...] = ()
    lists: tuple[tuple[str, str, _Node], ...] = ()
    objects: tuple[tuple[str, str, _Node], ...] = ()


_TRACE_AND_SPAN_ID: Final = (
    ("traceId", "trace_id", TRACE_ID_BYTES),
    ("spanId", "span_id", SPAN_ID_BYTES),
)
_WITH_TRACE_AND_SPAN_ID: Final = _Node(ids=_TRACE_AND_SPAN_ID)

# traces: resourceSpans[].scopeSpans[].spans[].{traceId, spanId, parentSpanId, links[].{traceId, spanId}}
_SPAN: Final = _Node(
    ids=(*_TRACE_AND_SPAN_ID, ("parentSpanId", "parent_span_id", SPAN_ID_BYTES)),
    lists=(("links", "links", _WITH_TRACE_AND_SPAN_ID),),
)
_SCOPE_SPANS: Final = _Node(lists=(("spans", "spans", _SPAN),))
_RESOURCE_SPANS: Final = _Node(lists=(("scopeSpans", "scope_spans", _SCOPE_SPANS),))
_TRACES: Final = _Node(lists=(("resourceSpans", "resource_spans", _RESOURCE_SPANS),))

# metrics: resourceMetrics[].scopeMetrics[].metrics[].<data>.dataPoints[].exemplars[].{traceId, spanId}
# Summary data points carry no exemplars, so a summary holds no ids.
_DATA_POINT: Final = _Node(lists=(("exemplars", "exemplars", _WITH_TRACE_AND_SPAN_ID),))
_METRIC_DATA: Final = _Node(lists=(("dataPoints", "data_points", _DATA_POINT),))
_METRIC: Final = _Node(
    objects=(
        ("gauge", "gauge", _METRIC_DATA),
        ("sum", "sum", _METRIC_DATA),
        ("histogram", "histogram", _METRIC_DATA),
        ("exponentialHistogram", "exponential_histogram", _METRIC_DATA),
    )
)
_SCOPE_METRICS: Final = _Node(lists=(("metrics", "metrics", _METRIC),))
_RESOURCE_METRICS: Final = _Node(lists=(("scopeMetrics", "scope_metrics", _SCOPE_METRICS),))
_METRICS: Final = _Node(lists=(("resourceMetrics", "resource_metrics", _RESOURCE_METRICS),))

# logs: resourceLogs[].scopeLogs[].logRecords[].{traceId, spanId}
_SCOPE_LOGS: Final = _Node(lists=(("logRecords", "log_records", _WITH_TRACE_AND_SPAN_ID),))
_RESOURCE_LOGS: Final = _Node(lists=(("scopeLogs", "scope_logs", _SCOPE_LOGS),))
_LOGS: Final = _Node(lists=(("resourceLogs", "resource_logs", _RESOURCE_LOGS),))

_ROOTS: Final[dict[Signal, _Node]] = {"traces": _TRACES, "metrics": _METRICS, "logs": _LOGS}


def convert_ids(signal: Signal, document: dict[str, Any], convert: IdConverter) -> None:
    """Replace, in place, every id of an OTLP/JSON ``signal`` request with ``convert(value, size)``.

    Values of the wrong JSON type on the way (a list where an object belongs, ...) are skipped:
    ``ParseDict`` reports them afterwards with its own, more precise message.
    Raises ``DecodeError`` naming the id's path, e.g. ``resourceSpans[0].scopeSpans[0].spans[2].traceId``.
    """
    _walk(document, _ROOTS[signal], convert, [])


def _walk(obj: dict[str, Any], node: _Node, convert: IdConverter, path: list[str | int]) -> None:
    for camel, snake, size in node.ids:
        key = camel if camel in obj else snake if snake in obj else None
        if key is None:
            continue
        try:
            obj[key] = convert(obj[key], size)
        except BadIdError as exc:
            raise DecodeError(f"{_format_path([*path, key])}: {exc}") from None
    for camel, snake, child in node.lists:
        key = camel if camel in obj else snake if snake in obj else None
        if key is None:
            continue
        items = obj[key]
        if not isinstance(items, list):
            continue
        path.append(key)
        for index, item in enumerate(items):
            if isinstance(item, dict):
                path.append(index)
                _walk(item, child, convert, path)
                path.pop()
        path.pop()
    for camel, snake, child in node.objects:
        key = camel if camel in obj else snake if snake in obj else None
        if key is None:
            continue
        value = obj[key]
        if isinstance(value, dict):
            path.append(key)
            _walk(value, child, convert, path)
            path.pop()


def _format_path(path: list[str | int]) -> str:
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else part)
    return "".join(out)
