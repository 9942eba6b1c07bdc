"""Test helpers shared by unit and integration tests (fake upstream services)."""
