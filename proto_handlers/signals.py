"""The names the OTLP wire layer is keyed by.

A ``Signal`` selects the request, response and partial-success types of one OTLP service; a
``WireFormat`` selects how a body is encoded. Both are plain string literals rather than enums so
that they read naturally in config, URL paths (``/v1/traces``) and metric labels, while mypy still
rejects a misspelt value.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

Signal: TypeAlias = Literal["traces", "metrics", "logs"]
WireFormat: TypeAlias = Literal["protobuf", "json"]

SIGNALS: tuple[Signal, ...] = ("traces", "metrics", "logs")
"""Every signal, in the order OTLP defines them; iterate this instead of repeating the literals."""
