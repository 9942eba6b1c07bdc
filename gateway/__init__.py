"""otel-ai-gateway: OTLP in, GenAI token/cost/latency metrics out, traces forwarded untouched."""

from __future__ import annotations

__version__ = "0.1.0"
