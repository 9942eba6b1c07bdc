"""Ingest benchmarks: the gateway against rotel on the same pre-serialized OTLP load.

Entry point: ``python -m benchmarks.ingest`` (see ``benchmarks/RESULTS.md`` for the latest figures).
Nothing here is imported by the gateway; the package exists so the numbers in RESULTS.md can be
reproduced with one command on any 2-core machine.
"""
