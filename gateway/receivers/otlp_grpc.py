"""OTLP/gRPC receiver: TraceService, MetricsService and LogsService ``Export`` on grpc.aio.

Handlers are generic with no deserializer, so the request arrives as the raw bytes the sender
serialized: they are decoded once for derivation and forwarded as they are. gRPC itself inflates
gzip (``grpc-encoding``) and enforces ``max_recv_msg_size`` (RESOURCE_EXHAUSTED) before we run.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import grpc

from gateway.auth import ApiKeyAuthenticator, Unauthenticated
from gateway.errors import GatewayError, RetryableError, wire_status
from gateway.exporters.retry import retry_info_trailers
from gateway.log import get_logger
from gateway.receivers.ingest import Ingest
from gateway.settings import GrpcReceiverSettings
from proto_handlers import DecodeError, Signal, encode_export_response

SERVICES: dict[Signal, str] = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}

Handler = Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Coroutine[Any, Any, bytes]]


class OtlpGrpcReceiver:
    def __init__(
        self,
        settings: GrpcReceiverSettings,
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
        self._server: grpc.aio.Server | None = None
        self._log = get_logger("receiver/otlp_grpc")
        self.port: int | None = None
        self._empty_response = {signal: encode_export_response(signal, "protobuf") for signal in SERVICES}

    def _handler(self, signal: Signal) -> Handler:
        ingest = self._ingest.ingest
        telemetry = self._ingest.telemetry
        empty = self._empty_response[signal]
        authenticator = self._authenticator

        async def export(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            tenant: str | None = None
            if authenticator is not None:  # before decoding: no parsing for strangers
                authorization = next(
                    (str(v) for k, v in context.invocation_metadata() or () if k == "authorization"), None
                )
                denied: str | None = None
                try:
                    tenant = authenticator.authenticate(authorization)
                except Unauthenticated as exc:
                    telemetry.refuse_request("grpc", signal, "unauthenticated")
                    denied = exc.reason
                if denied is not None:  # aborted outside the except block: see below
                    del request
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, denied)
            failure: tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]] | None = None
            try:
                result = await ingest(signal, request, "protobuf", "grpc", tenant)
            except DecodeError as exc:
                failure = (grpc.StatusCode.INVALID_ARGUMENT, exc.reason, ())
            except GatewayError as exc:
                code = wire_status(exc).grpc_code
                # RetryInfo: without it, collector-style clients treat RESOURCE_EXHAUSTED as permanent.
                trailers = (
                    retry_info_trailers(exc.retry_after or 1.0, code.value[0], exc.reason)
                    if isinstance(exc, RetryableError)
                    else ()
                )
                failure = (code, exc.reason, trailers)
            if failure is not None:
                # Abort outside the except block, without the body: an abort raised while handling
                # the refusal chains it (__context__), and its traceback keeps the frames holding the
                # body and the decoded request alive in reference cycles until the cyclic GC runs.
                # Under a flood of refused requests that was hundreds of MiB (test_flood: 960 MiB).
                del request
                await context.abort(failure[0], failure[1], trailing_metadata=failure[2])
            if result.rejected or result.message:
                return encode_export_response(signal, "protobuf", result.rejected, result.message)
            return empty

        return export

    async def start(self) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._settings.max_recv_msg_size),
                ("grpc.so_reuseport", 1 if self._reuse_port else 0),
            ]
        )
        handlers = [
            grpc.method_handlers_generic_handler(
                service,
                {"Export": grpc.unary_unary_rpc_method_handler(self._handler(signal))},
            )
            for signal, service in SERVICES.items()
        ]
        server.add_generic_rpc_handlers(handlers)
        endpoint = self._settings.endpoint
        tls = self._settings.tls
        try:
            if tls is None:
                self.port = server.add_insecure_port(str(endpoint))
            else:
                self.port = server.add_secure_port(str(endpoint), tls.grpc_credentials())
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {endpoint} (gRPC): {exc}") from exc
        await server.start()
        self._server = server
        self._log.info("receiver_started", endpoint=f"{endpoint.host}:{self.port}", tls=tls is not None)

    def ready(self) -> bool:
        return self._server is not None

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight RPCs finish within the grace period."""
        server, self._server = self._server, None
        if server is None:
            return
        await server.stop(self._grace)
        self._log.info("receiver_stopped")
