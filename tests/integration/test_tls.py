"""TLS and mutual TLS on both receivers, with certificates made in the test and the real SDK exporters."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import trustme
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from gateway.settings import GrpcReceiverSettings, HttpReceiverSettings, Settings
from gateway.tls import TlsServerSettings
from tests.conftest import LOOPBACK, RunningGateway, loopback_settings, start_gateway
from tests.support.otel_sdk import make_spans


@dataclasses.dataclass
class Pki:
    ca: trustme.CA
    ca_file: Path
    server: TlsServerSettings
    client_cert: Path
    client_key: Path


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pki:
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's `verify` (the SDK's
    # certificate_file), so with those set, as on some CI images, the test CA would be ignored.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    ca = trustme.CA()
    server = ca.issue_cert(LOOPBACK, "localhost")
    client = ca.issue_cert("client@example.test")
    paths = {name: tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem", "client.pem", "client.key")}
    ca.cert_pem.write_to_path(str(paths["ca.pem"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert.pem"]))
    server.private_key_pem.write_to_path(str(paths["key.pem"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client.pem"]))
    client.private_key_pem.write_to_path(str(paths["client.key"]))
    return Pki(
        ca,
        paths["ca.pem"],
        TlsServerSettings(str(paths["cert.pem"]), str(paths["key.pem"])),
        paths["client.pem"],
        paths["client.key"],
    )


async def tls_gateway(tls: TlsServerSettings) -> RunningGateway:
    base = Settings(grpc=GrpcReceiverSettings(tls=tls), http=HttpReceiverSettings(tls=tls))
    return await start_gateway(loopback_settings(base))


@pytest.fixture
async def tls_only(pki: Pki) -> AsyncIterator[RunningGateway]:
    running = await tls_gateway(pki.server)
    try:
        yield running
    finally:
        await running.gateway.shutdown()


@pytest.fixture
async def mutual_tls(pki: Pki) -> AsyncIterator[RunningGateway]:
    running = await tls_gateway(dataclasses.replace(pki.server, client_ca_file=str(pki.ca_file)))
    try:
        yield running
    finally:
        await running.gateway.shutdown()


async def export(exporter: GrpcSpanExporter | HttpSpanExporter) -> SpanExportResult:
    try:
        return await asyncio.to_thread(exporter.export, make_spans(3))
    finally:
        exporter.shutdown()


def https_url(gateway: RunningGateway) -> str:
    return gateway.http_url.replace("http://", "https://") + "/v1/traces"


async def test_grpc_over_tls_is_accepted(tls_only: RunningGateway, pki: Pki) -> None:
    """The SDK's gRPC exporter trusting the test CA delivers over TLS."""
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_file.read_bytes())
    exporter = GrpcSpanExporter(endpoint=tls_only.grpc_target, credentials=credentials, timeout=5)
    assert SpanExportResult.SUCCESS == await export(exporter)
    assert 3.0 == await tls_only.value("gateway_receiver_accepted_spans_total", {"transport": "grpc"})


async def test_http_over_tls_is_accepted(tls_only: RunningGateway, pki: Pki) -> None:
    """The SDK's HTTP exporter with the CA file delivers over HTTPS."""
    exporter = HttpSpanExporter(endpoint=https_url(tls_only), certificate_file=str(pki.ca_file), timeout=5)
    assert SpanExportResult.SUCCESS == await export(exporter)
    assert 3.0 == await tls_only.value("gateway_receiver_accepted_spans_total", {"transport": "http"})


async def test_plaintext_grpc_to_a_tls_receiver_fails(tls_only: RunningGateway) -> None:
    """An insecure client cannot talk to a TLS listener; nothing is accepted."""
    exporter = GrpcSpanExporter(endpoint=tls_only.grpc_target, insecure=True, timeout=1)
    assert SpanExportResult.FAILURE == await export(exporter)
    assert 0.0 == await tls_only.value("gateway_receiver_accepted_spans_total", {"transport": "grpc"})


async def test_mtls_refuses_grpc_clients_without_a_certificate(mutual_tls: RunningGateway, pki: Pki) -> None:
    """With client_ca_file set, a client that trusts the server but shows no certificate is refused."""
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_file.read_bytes())
    exporter = GrpcSpanExporter(endpoint=mutual_tls.grpc_target, credentials=credentials, timeout=1)
    assert SpanExportResult.FAILURE == await export(exporter)


async def test_mtls_accepts_grpc_clients_with_a_ca_signed_certificate(mutual_tls: RunningGateway, pki: Pki) -> None:
    """A client certificate signed by the configured CA is accepted over gRPC."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_file.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    )
    exporter = GrpcSpanExporter(endpoint=mutual_tls.grpc_target, credentials=credentials, timeout=5)
    assert SpanExportResult.SUCCESS == await export(exporter)


async def test_mtls_over_http(mutual_tls: RunningGateway, pki: Pki) -> None:
    """Over HTTPS, no client certificate fails and a CA-signed one succeeds."""
    without = HttpSpanExporter(endpoint=https_url(mutual_tls), certificate_file=str(pki.ca_file), timeout=1)
    assert SpanExportResult.FAILURE == await export(without)
    with_cert = HttpSpanExporter(
        endpoint=https_url(mutual_tls),
        certificate_file=str(pki.ca_file),
        client_certificate_file=str(pki.client_cert),
        client_key_file=str(pki.client_key),
        timeout=5,
    )
    assert SpanExportResult.SUCCESS == await export(with_cert)
    assert 3.0 == await mutual_tls.value("gateway_receiver_accepted_spans_total", {"transport": "http"})


def test_missing_certificate_file_names_the_key(tmp_path: Path) -> None:
    """A tls section pointing at a file that is not there fails at start-up, naming the key."""
    from gateway.settings import ConfigError, parse_settings

    text = f"receivers: {{otlp: {{http: {{tls: {{cert_file: {tmp_path}/none.pem, key_file: {tmp_path}/none.key}}}}}}}}"
    with pytest.raises(ConfigError, match=r"^receivers\.otlp\.http\.tls\.cert_file: cannot read"):
        parse_settings(text, {})
