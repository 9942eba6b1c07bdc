"""OTLP/HTTP receiver: ``POST /v1/traces|metrics|logs``, protobuf or JSON, gzip/zstd/deflate.

Bodies are inflated here (aiohttp's own decompression is off) so the decompressed size is capped
while inflating: a zip bomb is refused at the limit, not after it filled memory. Answers follow the
OTLP/HTTP spec: the response in the request's encoding, a ``google.rpc.Status`` body on errors,
415 for unknown content types or encodings, 413 over the size limit, 429/503 with Retry-After
when the gateway pushes back.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.auth import ApiKeyAuthenticator, Unauthenticated
from gateway.errors import GatewayError, RetryableError, wire_status
from gateway.log import get_logger
from gateway.receivers.ingest import Ingest
from gateway.settings import HttpReceiverSettings
from proto_handlers import (
    DecodeError,
    PayloadTooLargeError,
    Signal,
    UnsupportedEncodingError,
    WireFormat,
    decompress,
    encode_export_response,
    encode_status,
)

PATHS: dict[str, Signal] = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}
CONTENT_TYPES: dict[str, WireFormat] = {
    "application/x-protobuf": "protobuf",
    "application/protobuf": "protobuf",
    "application/json": "json",
}
RESPONSE_TYPES: dict[WireFormat, str] = {"protobuf": "application/x-protobuf", "json": "application/json"}

# google.rpc.Code values for the Status body
_INVALID_ARGUMENT = 3
_RESOURCE_EXHAUSTED = 8

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _status_response(http_status: int, code: int, message: str, fmt: WireFormat) -> web.Response:
    return web.Response(status=http_status, body=encode_status(code, message, fmt), content_type=RESPONSE_TYPES[fmt])


def _plain(http_status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=http_status, text=message, headers=headers)


class OtlpHttpReceiver:
    def __init__(
        self,
        settings: HttpReceiverSettings,
        ingest: Ingest,
        shutdown_grace: float = 5.0,
        authenticator: ApiKeyAuthenticator | None = None,
        *,
        reuse_port: bool = False,
    ) -> None:
        self._settings = settings
        # SO_REUSEPORT only for the worker processes of one gateway (docs/workers.md): a second,
        # unrelated gateway on the same port must fail to bind rather than silently share it.
        self._reuse_port = reuse_port
        self._authenticator = authenticator
        self._ingest = ingest
        self._grace = shutdown_grace
        self._runner: web.AppRunner | None = None
        self._log = get_logger("receiver/otlp_http")
        self.port: int | None = None
        self._ok = {
            (signal, fmt): encode_export_response(signal, fmt) for signal in PATHS.values() for fmt in RESPONSE_TYPES
        }

    def _app(self) -> web.Application:
        # Allow one byte more than the limit so an over-limit body is seen and answered 413 by us.
        app = web.Application(client_max_size=self._settings.max_request_body_size + 1)
        for path, signal in PATHS.items():
            app.router.add_route("*", path, self._handler(signal))
        return app

    def _handler(self, signal: Signal) -> Handler:
        limit = self._settings.max_request_body_size
        telemetry = self._ingest.telemetry
        authenticator = self._authenticator

        async def handle(request: web.Request) -> web.StreamResponse:
            if request.method != "POST":
                telemetry.refuse_request("http", signal, "method_not_allowed")
                return _plain(405, f"{request.method} is not allowed; use POST", {"Allow": "POST"})
            tenant: str | None = None
            if authenticator is not None:  # before reading the body: no parsing for strangers
                try:
                    tenant = authenticator.authenticate(request.headers.get("Authorization"))
                except Unauthenticated as exc:
                    telemetry.refuse_request("http", signal, "unauthenticated")
                    return _plain(401, exc.reason, {"WWW-Authenticate": 'Bearer realm="otel-ai-gateway"'})
            fmt = CONTENT_TYPES.get(request.content_type)
            if fmt is None:
                telemetry.refuse_request("http", signal, "unsupported_media_type")
                return _plain(
                    415,
                    f"unsupported content type {request.content_type!r}; "
                    "use application/x-protobuf or application/json",
                )
            if request.content_length is not None and request.content_length > limit:
                telemetry.refuse_request("http", signal, "too_large")
                return _status_response(
                    413, _RESOURCE_EXHAUSTED, f"request body of {request.content_length} bytes exceeds {limit}", fmt
                )
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                telemetry.refuse_request("http", signal, "too_large")
                return _status_response(413, _RESOURCE_EXHAUSTED, f"request body exceeds {limit} bytes", fmt)
            try:
                payload = decompress(body, request.headers.get("Content-Encoding"), limit)
            except UnsupportedEncodingError as exc:
                telemetry.refuse_request("http", signal, "unsupported_encoding")
                return _plain(415, f"unsupported content encoding {exc.encoding!r}; use gzip, zstd or none")
            except PayloadTooLargeError:
                telemetry.refuse_request("http", signal, "too_large")
                return _status_response(
                    413, _RESOURCE_EXHAUSTED, f"decompressed request body exceeds {limit} bytes", fmt
                )
            except DecodeError as exc:
                telemetry.refuse_request("http", signal, "invalid")
                return _status_response(400, _INVALID_ARGUMENT, exc.reason, fmt)
            try:
                result = await self._ingest.ingest(signal, payload, fmt, "http", tenant)
            except DecodeError as exc:
                return _status_response(400, _INVALID_ARGUMENT, exc.reason, fmt)
            except GatewayError as exc:
                status = wire_status(exc)
                headers = {}
                if isinstance(exc, RetryableError):
                    headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after or 1)))
                # google.rpc.Code numbers are gRPC's: RESOURCE_EXHAUSTED for 413 and 429, UNAVAILABLE
                # for 503, INVALID_ARGUMENT for 400.
                response = _status_response(status.http_status, status.grpc_code.value[0], exc.reason, fmt)
                response.headers.update(headers)
                return response
            if result.rejected or result.message:
                partial = encode_export_response(signal, fmt, result.rejected, result.message)
                return web.Response(body=partial, content_type=RESPONSE_TYPES[fmt])
            return web.Response(body=self._ok[(signal, fmt)], content_type=RESPONSE_TYPES[fmt])

        return handle

    async def start(self) -> None:
        runner = web.AppRunner(self._app(), access_log=None, auto_decompress=False, shutdown_timeout=self._grace)
        await runner.setup()
        endpoint = self._settings.endpoint
        tls = self._settings.tls
        site = web.TCPSite(
            runner,
            endpoint.host,
            endpoint.port,
            reuse_port=self._reuse_port,
            ssl_context=tls.ssl_context() if tls else None,
        )
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        self._log.info("receiver_started", endpoint=f"{endpoint.host}:{self.port}", tls=tls is not None)

    def ready(self) -> bool:
        return self._runner is not None

    async def shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await runner.cleanup()
        self._log.info("receiver_stopped")
