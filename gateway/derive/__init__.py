"""Derivation stages: metrics computed from the spans passing through (GenAI usage, cost, latency)."""
