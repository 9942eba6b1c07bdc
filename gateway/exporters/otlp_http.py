"""``type: otlp_http``: forward to any OTLP/HTTP endpoint (Tempo, Jaeger, a collector, another gateway).

``endpoint`` is the base URL; ``/v1/traces``, ``/v1/metrics`` and ``/v1/logs`` are appended per
signal, as the OTel SDK does with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``traces_endpoint`` etc. give a
full URL for one signal instead). Bodies are the received protobuf bytes, concatenated; with
``encoding: json`` each batch is decoded once and written as OTLP/JSON.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import aiohttp
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped, unused-ignore]

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
from gateway.exporters.retry import RetryConfig, http_is_retryable, parse_retry_after, retry_config
from gateway.validation import ConfigError, read_str, reject_unknown
from proto_handlers import SIGNALS, Signal, compress, decode_request, encode_request_json

Encoding = Literal["protobuf", "json"]
_KEYS: Final = (
    "endpoint",
    "traces_endpoint",
    "metrics_endpoint",
    "logs_endpoint",
    "encoding",
    "headers",
    "compression",
    "timeout",
    "tls",
    "batch",
    "retry",
    "queue",
)
_CONTENT_TYPES: Final[dict[Encoding, str]] = {"protobuf": "application/x-protobuf", "json": "application/json"}
_INLINE_COMPRESS_BYTES: Final = 256 * 1024
"""Bodies up to this size are compressed on the event loop; larger ones in a thread (see docs)."""
_ERROR_TEXT_LIMIT: Final = 300


@dataclass(frozen=True, slots=True)
class OtlpHttpExporterConfig:
    endpoint: str
    signal_urls: Mapping[Signal, str] = field(default_factory=dict)
    encoding: Encoding = "protobuf"
    headers: tuple[tuple[str, str], ...] = ()
    compression: Compression = "gzip"
    timeout: float = 10.0
    tls: TlsConfig = field(default_factory=TlsConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)

    @staticmethod
    def from_mapping(options: Mapping[str, Any], path: str) -> OtlpHttpExporterConfig:
        reject_unknown(options, _KEYS, path)
        base = options.get("endpoint")
        if base is None and not all(f"{s}_endpoint" in options for s in SIGNALS):
            raise ConfigError(f"{path}.endpoint", "missing (e.g. endpoint: http://tempo:4318)")
        base_url = _url(base, f"{path}.endpoint") if base is not None else None
        urls: dict[Signal, str] = {}
        for signal in SIGNALS:
            key = f"{signal}_endpoint"
            if key in options:
                urls[signal] = _url(options[key], f"{path}.{key}")
            else:
                assert base_url is not None
                urls[signal] = f"{base_url.rstrip('/')}/v1/{signal}"
        encoding = options.get("encoding", "protobuf")
        if encoding not in _CONTENT_TYPES:
            raise ConfigError(f"{path}.encoding", f"expected protobuf or json, got {encoding!r}")
        return OtlpHttpExporterConfig(
            endpoint=base_url or urls["traces"],
            signal_urls=urls,
            encoding=encoding,
            headers=read_headers(options.get("headers"), f"{path}.headers"),
            compression=read_compression(options["compression"], f"{path}.compression")
            if "compression" in options
            else "gzip",
            timeout=read_timeout(options["timeout"], f"{path}.timeout") if "timeout" in options else 10.0,
            tls=tls_config(options.get("tls"), f"{path}.tls"),
            batch=batch_config(options.get("batch"), f"{path}.batch"),
            retry=retry_config(options.get("retry"), f"{path}.retry"),
            queue=queue_config(options.get("queue"), f"{path}.queue"),
        )


def _url(value: Any, path: str) -> str:
    text = read_str(value, path)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(path, f"expected an http:// or https:// URL, got {text!r}")
    return text


def ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """The client TLS context of ``tls``: system roots unless ``ca_file``; a client cert if given."""
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file and tls.key_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class OtlpHttpSender:
    def __init__(self, config: OtlpHttpExporterConfig, connections: int = 4) -> None:
        self._config = config
        self._connections = connections
        self.endpoint = config.endpoint
        self._session: aiohttp.ClientSession | None = None
        headers = {name: value for name, value in config.headers}
        headers["Content-Type"] = _CONTENT_TYPES[config.encoding]
        headers.setdefault("User-Agent", f"otel-ai-gateway/{gateway.__version__}")
        if config.compression != "none":
            headers["Content-Encoding"] = config.compression
        self._headers = headers

    async def start(self) -> None:
        uses_tls = any(url.startswith("https:") for url in self._config.signal_urls.values())
        connector = aiohttp.TCPConnector(
            limit=self._connections, ssl=ssl_context(self._config.tls) if uses_tls else False
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._config.timeout),
            headers=self._headers,
            auto_decompress=True,
        )

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, signal: Signal, body: bytes) -> SendResult:
        assert self._session is not None, "send before start"
        config = self._config
        if config.encoding == "json":
            body = encode_request_json(signal, decode_request(signal, body, "protobuf"))
        if config.compression != "none":
            if len(body) <= _INLINE_COMPRESS_BYTES:
                body = compress(body, config.compression)
            else:
                body = await asyncio.to_thread(compress, body, config.compression)
        try:
            async with self._session.post(config.signal_urls[signal], data=body) as response:
                content = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
                content_type = response.content_type
        except TimeoutError:
            raise RetryableError(f"no answer within {config.timeout}s") from None
        except aiohttp.ClientError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            fmt: Literal["protobuf", "json"] = "json" if content_type == "application/json" else "protobuf"
            return parse_export_response(signal, content, fmt)
        message = f"HTTP {status}: {_error_text(content, content_type)}"
        if http_is_retryable(status):
            raise RetryableError(message, retry_after=parse_retry_after(retry_after))
        raise PermanentError(message)


def _error_text(content: bytes, content_type: str) -> str:
    """The message of a ``google.rpc.Status`` body, else the start of the body as text."""
    if content_type in ("application/x-protobuf", "application/protobuf"):
        try:
            return str(Status.FromString(content).message)[:_ERROR_TEXT_LIMIT]
        except Exception:
            pass
    return content[:_ERROR_TEXT_LIMIT].decode("utf-8", "replace").strip()


def create_otlp_http_exporter(name: str, options: Mapping[str, Any], path: str) -> QueuedExporter:
    config = OtlpHttpExporterConfig.from_mapping(options, path)
    return QueuedExporter(
        name,
        "otlp_http",
        OtlpHttpSender(config, connections=config.queue.num_consumers),
        batch=config.batch,
        retry=config.retry,
        queue=config.queue,
    )
