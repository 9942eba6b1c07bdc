"""TLS and mutual TLS for the receivers, with the collector's key names.

``tls: {cert_file, key_file, client_ca_file}``: with ``client_ca_file`` set, clients must present a
certificate signed by that CA (mTLS). Files are read at start-up, so a missing or unreadable file
stops the gateway with the key path instead of failing on the first connection.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from gateway.validation import ConfigError, read_str, reject_unknown


def _read_file(value: Any, path: str) -> str:
    name = read_str(value, path)
    try:
        Path(name).read_bytes()
    except OSError as exc:
        raise ConfigError(path, f"cannot read {name}: {exc.strerror}") from exc
    return name


@dataclass(frozen=True, slots=True)
class TlsServerSettings:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    @staticmethod
    def from_mapping(raw: Mapping[str, Any], path: str) -> TlsServerSettings:
        reject_unknown(raw, ("cert_file", "key_file", "client_ca_file"), path)
        for required in ("cert_file", "key_file"):
            if required not in raw:
                raise ConfigError(f"{path}.{required}", "missing (a server certificate needs both files)")
        return TlsServerSettings(
            cert_file=_read_file(raw["cert_file"], f"{path}.cert_file"),
            key_file=_read_file(raw["key_file"], f"{path}.key_file"),
            client_ca_file=_read_file(raw["client_ca_file"], f"{path}.client_ca_file")
            if raw.get("client_ca_file") is not None
            else None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A server context for aiohttp: TLS 1.2+, client certificates required with a client CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(self.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def grpc_credentials(self) -> grpc.ServerCredentials:
        key = Path(self.key_file).read_bytes()
        cert = Path(self.cert_file).read_bytes()
        client_ca = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
        )
