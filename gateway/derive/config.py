"""GenAI derivation config (lead's minimal version; the GenAI engineer owns and extends this file)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_TENANT_ATTRIBUTES = ("tenant.id", "tenant_id", "enduser.id", "user.id")


@dataclass(frozen=True, slots=True)
class GenAIConfig:
    tenant_attributes: tuple[str, ...] = DEFAULT_TENANT_ATTRIBUTES
    span_cost: str = "trust"

    @staticmethod
    def default_config() -> GenAIConfig:
        return GenAIConfig()

    @staticmethod
    def from_mapping(raw: Mapping[str, Any], path: str = "genai") -> GenAIConfig:
        from gateway.validation import read_str_list

        if "tenant_attributes" in raw:
            return GenAIConfig(tenant_attributes=read_str_list(raw["tenant_attributes"], f"{path}.tenant_attributes"))
        return GenAIConfig()
