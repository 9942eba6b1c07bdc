"""``type: otlp_grpc``: forward to any OTLP/gRPC endpoint (Jaeger, Tempo, a collector, another gateway).

The call is a generic unary ``Export`` with no serializer, so the received protobuf bytes go out
untouched (concatenated into batches). ``endpoint`` is ``host:port`` or ``http(s)://host:port``:
``http://`` or ``tls.insecure: true`` means plaintext, anything else TLS (the collector's rule).
gRPC's own reconnect backoff follows ``retry`` so a backend that comes back is reached promptly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import grpc

import gateway
from gateway.errors import PermanentError, RetryableError
from gateway.exporters.base import QueuedExporter
from gateway.exporters.config import (
    BatchConfig,
    Compression,
    TlsConfig,
    batch_config,
    read_compression,
    read_headers,
    read_timeout,
    tls_config,
)
from gateway.exporters.queue import QueueConfig, queue_config
from gateway.exporters.response import SendResult, parse_export_response
from gateway.exporters.retry import RetryConfig, grpc_is_retryable, grpc_retry_delay, retry_config
from gateway.validation import ConfigError, read_str, reject_unknown
from proto_handlers import SIGNALS, Signal

METHODS: Final[dict[Signal, str]] = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_KEYS: Final = ("endpoint", "headers", "compression", "timeout", "tls", "batch", "retry", "queue")
_GRPC_COMPRESSION: Final[dict[Compression, Any]] = {
    "gzip": grpc.Compression.Gzip,
    "none": grpc.Compression.NoCompression,
}


@dataclass(frozen=True, slots=True)
class OtlpGrpcExporterConfig:
    endpoint: str  # host:port, as the channel target
    insecure: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    compression: Compression = "gzip"
    timeout: float = 10.0
    tls: TlsConfig = field(default_factory=TlsConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)

    @staticmethod
    def from_mapping(options: Mapping[str, Any], path: str) -> OtlpGrpcExporterConfig:
        reject_unknown(options, _KEYS, path)
        if "endpoint" not in options:
            raise ConfigError(f"{path}.endpoint", "missing (e.g. endpoint: jaeger:4317)")
        tls = tls_config(options.get("tls"), f"{path}.tls")
        target, scheme = _target(options["endpoint"], f"{path}.endpoint")
        if tls.insecure_skip_verify:
            raise ConfigError(
                f"{path}.tls.insecure_skip_verify",
                "not supported by gRPC's Python transport; give the server's CA as tls.ca_file instead",
            )
        headers = read_headers(options.get("headers"), f"{path}.headers")
        return OtlpGrpcExporterConfig(
            endpoint=target,
            insecure=scheme == "http" or (scheme is None and tls.insecure),
            headers=tuple((name.lower(), value) for name, value in headers),
            compression=read_compression(options["compression"], f"{path}.compression", ("gzip", "none"))
            if "compression" in options
            else "gzip",
            timeout=read_timeout(options["timeout"], f"{path}.timeout") if "timeout" in options else 10.0,
            tls=tls,
            batch=batch_config(options.get("batch"), f"{path}.batch"),
            retry=retry_config(options.get("retry"), f"{path}.retry"),
            queue=queue_config(options.get("queue"), f"{path}.queue"),
        )


def _target(value: Any, path: str) -> tuple[str, str | None]:
    """``host:port`` and the scheme given (``http``, ``https`` or None)."""
    text = read_str(value, path)
    scheme: str | None = None
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(path, f"expected host:port or http(s)://host:port, got {text!r}")
        scheme, text = parts.scheme, parts.netloc
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(path, f"expected host:port or http(s)://host:port, got {value!r}")
    return text, scheme


class OtlpGrpcSender:
    def __init__(self, config: OtlpGrpcExporterConfig) -> None:
        self._config = config
        self.endpoint = config.endpoint
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[Signal, Any] = {}
        self._metadata = config.headers

    def _options(self) -> list[tuple[str, Any]]:
        retry = self._config.retry
        initial_ms = max(1, int(retry.initial_interval * 1000))
        return [
            ("grpc.primary_user_agent", f"otel-ai-gateway/{gateway.__version__}"),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", 4 * 1024 * 1024),
            ("grpc.initial_reconnect_backoff_ms", initial_ms),
            ("grpc.min_reconnect_backoff_ms", initial_ms),
            ("grpc.max_reconnect_backoff_ms", max(initial_ms, int(retry.max_interval * 1000))),
        ]

    async def start(self) -> None:
        config = self._config
        compression = _GRPC_COMPRESSION[config.compression]
        if config.insecure:
            channel = grpc.aio.insecure_channel(config.endpoint, options=self._options(), compression=compression)
        else:
            tls = config.tls
            credentials = grpc.ssl_channel_credentials(
                root_certificates=Path(tls.ca_file).read_bytes() if tls.ca_file else None,
                private_key=Path(tls.key_file).read_bytes() if tls.key_file else None,
                certificate_chain=Path(tls.cert_file).read_bytes() if tls.cert_file else None,
            )
            channel = grpc.aio.secure_channel(
                config.endpoint, credentials, options=self._options(), compression=compression
            )
        self._channel = channel
        self._calls = {
            signal: channel.unary_unary(METHODS[signal], request_serializer=None, response_deserializer=None)
            for signal in SIGNALS
        }

    async def shutdown(self) -> None:
        channel, self._channel = self._channel, None
        self._calls = {}
        if channel is not None:
            await channel.close()

    async def send(self, signal: Signal, body: bytes) -> SendResult:
        call = self._calls[signal]
        try:
            response = await call(body, timeout=self._config.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            delay = grpc_retry_delay(exc.trailing_metadata())
            message = f"gRPC {code.name}: {exc.details()}"
            if grpc_is_retryable(code, delay):
                raise RetryableError(message, retry_after=delay) from None
            raise PermanentError(message) from None
        return parse_export_response(signal, response or b"", "protobuf")


def create_otlp_grpc_exporter(name: str, options: Mapping[str, Any], path: str) -> QueuedExporter:
    config = OtlpGrpcExporterConfig.from_mapping(options, path)
    return QueuedExporter(
        name, "otlp_grpc", OtlpGrpcSender(config), batch=config.batch, retry=config.retry, queue=config.queue
    )
