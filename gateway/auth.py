"""API-key authentication for the receivers (off unless ``auth.api_keys`` is configured).

The config stores only SHA-256 hashes of keys, each bound to the tenant it belongs to; a request's
``Authorization: Bearer <key>`` (HTTP header or gRPC metadata) is hashed and looked up. The lookup
compares every configured digest with ``hmac.compare_digest`` so the time taken does not reveal how
much of a guess matched. A key's tenant overrides any tenant attribute on the spans it sends: one
tenant cannot bill another.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.validation import ConfigError, expect_mapping, read_str, reject_unknown

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class ApiKey:
    sha256: str
    tenant: str


@dataclass(frozen=True, slots=True)
class AuthSettings:
    api_keys: tuple[ApiKey, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys)

    @staticmethod
    def from_mapping(raw: Mapping[str, Any], path: str = "auth") -> AuthSettings:
        reject_unknown(raw, ("api_keys",), path)
        entries = raw.get("api_keys") or []
        if not isinstance(entries, list):
            raise ConfigError(f"{path}.api_keys", "expected a list of {sha256, tenant}")
        keys: list[ApiKey] = []
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            where = f"{path}.api_keys[{index}]"
            item = expect_mapping(entry, where)
            reject_unknown(item, ("sha256", "tenant"), where)
            digest = read_str(item.get("sha256"), f"{where}.sha256").lower()
            if not _HEX64.match(digest):
                raise ConfigError(f"{where}.sha256", "expected 64 hex digits (otel-ai-gateway hash-key prints them)")
            if digest in seen:
                raise ConfigError(f"{where}.sha256", "the same key is listed twice")
            seen.add(digest)
            keys.append(ApiKey(digest, read_str(item.get("tenant"), f"{where}.tenant")))
        return AuthSettings(tuple(keys))


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key, as the config stores it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Unauthenticated(Exception):
    """No or no valid credentials: 401 / UNAUTHENTICATED, before the body is parsed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ApiKeyAuthenticator:
    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self._keys = [(bytes.fromhex(k.sha256), k.tenant) for k in keys]

    def authenticate(self, authorization: str | None) -> str:
        """The tenant of a valid ``Bearer`` key; raises ``Unauthenticated`` otherwise."""
        if not authorization:
            raise Unauthenticated("missing Authorization: Bearer <api key>")
        if not authorization[: len(_BEARER)].lower() == _BEARER:
            raise Unauthenticated("Authorization must use the Bearer scheme")
        digest = hashlib.sha256(authorization[len(_BEARER) :].strip().encode("utf-8")).digest()
        tenant: str | None = None
        for known, owner in self._keys:  # no early exit: every key is compared
            if hmac.compare_digest(known, digest):
                tenant = owner
        if tenant is None:
            raise Unauthenticated("invalid API key")
        return tenant
