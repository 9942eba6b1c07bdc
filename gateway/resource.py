"""``resource.attributes`` from config, set on every resource of a decoded request.

This is the one change the gateway makes to data it forwards, so it is made once per received
request, before the fan-out: processors and every exporter see the same resource, and the request
is serialized once for all of them (forwarding otherwise never re-encodes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.settings import AttributeValue
from proto_handlers import Signal

_RESOURCES = {"traces": "resource_spans", "metrics": "resource_metrics", "logs": "resource_logs"}


def set_value(any_value: Any, value: AttributeValue) -> None:
    """Write a config value into an ``AnyValue`` (bool before int: ``True`` is an int in Python)."""
    if isinstance(value, bool):
        any_value.bool_value = value
    elif isinstance(value, int):
        any_value.int_value = value
    elif isinstance(value, float):
        any_value.double_value = value
    else:
        any_value.string_value = value


def apply_resource_attributes(signal: Signal, request: Any, attributes: Sequence[tuple[str, AttributeValue]]) -> None:
    """Upsert ``attributes`` into each resource of ``request`` in place (the config value wins)."""
    for entry in getattr(request, _RESOURCES[signal]):
        existing = entry.resource.attributes
        index = {kv.key: kv for kv in existing}
        for key, value in attributes:
            kv = index.get(key)
            if kv is None:
                kv = existing.add(key=key)
                index[key] = kv
            else:
                kv.value.Clear()
            set_value(kv.value, value)
