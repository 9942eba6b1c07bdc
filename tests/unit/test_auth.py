"""The API-key authenticator and its config."""

from __future__ import annotations

import pytest

from gateway.auth import ApiKey, ApiKeyAuthenticator, AuthSettings, Unauthenticated, hash_key
from gateway.validation import ConfigError


def authenticator() -> ApiKeyAuthenticator:
    return ApiKeyAuthenticator([ApiKey(hash_key("k-acme"), "acme"), ApiKey(hash_key("k-globex"), "globex")])


def test_a_valid_key_yields_its_tenant() -> None:
    """Each key maps to the tenant it was configured with; the scheme is case-insensitive."""
    assert "globex" == authenticator().authenticate("bearer k-globex")
    assert "acme" == authenticator().authenticate("Bearer k-acme")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Authorization"),
        ("", "missing Authorization"),
        ("Basic azphY21l", "Bearer scheme"),
        ("Bearer k-other", "invalid API key"),
    ],
)
def test_bad_credentials_are_refused_with_a_reason(header: str | None, reason: str) -> None:
    """Missing, wrong-scheme and unknown keys each get their own reason."""
    with pytest.raises(Unauthenticated, match=reason):
        authenticator().authenticate(header)


def test_config_reads_hashes_and_tenants() -> None:
    """auth.api_keys holds {sha256, tenant} pairs; hashes are normalised to lower case."""
    digest = hash_key("x")
    settings = AuthSettings.from_mapping({"api_keys": [{"sha256": digest.upper(), "tenant": "acme"}]})
    assert AuthSettings((ApiKey(digest, "acme"),)) == settings


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"api_keys": [{"sha256": "abc", "tenant": "t"}]}, "auth.api_keys[0].sha256: expected 64 hex digits"),
        ({"api_keys": [{"sha256": "a" * 64}]}, "auth.api_keys[0].tenant: expected a non-empty string"),
        ({"api_keys": [{"key": "plain", "tenant": "t"}]}, "auth.api_keys[0].key: unknown key"),
        (
            {"api_keys": [{"sha256": "a" * 64, "tenant": "t"}, {"sha256": "A" * 64, "tenant": "u"}]},
            "auth.api_keys[1].sha256: the same key is listed twice",
        ),
    ],
)
def test_bad_auth_config_names_the_key(raw: dict[str, object], message: str) -> None:
    """Plain-text keys, short hashes, missing tenants and duplicates are refused at start-up."""
    with pytest.raises(ConfigError) as caught:
        AuthSettings.from_mapping(raw)
    assert str(caught.value).startswith(message)
