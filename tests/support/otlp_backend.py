"""A scriptable OTLP backend (HTTP on aiohttp, gRPC on grpc.aio) and a TCP black hole, for fault tests.

``FakeOtlpBackend`` records every request it receives (decompressed body, headers, arrival time) and
answers from a script of ``Reply`` objects (then OK): 503/429 with Retry-After, RESOURCE_EXHAUSTED
with RetryInfo, a slow answer, partial success. ``BlackHole`` accepts TCP connections and never
answers. Both listen on port 0 (or a port chosen ahead, to come up "later") and are awaited,
never slept on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
from aiohttp import web

from gateway.exporters.retry import retry_info_trailers
from proto_handlers import Signal, WireFormat, count_items, decode_request, decompress, encode_export_response

_PATHS: dict[str, Signal] = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}
_SERVICES: dict[Signal, str] = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


_PENDING = -1


@dataclass(frozen=True)
class Reply:
    """One scripted answer. HTTP uses ``http_status``/``retry_after``; gRPC ``grpc_code``/``retry_delay``."""

    http_status: int = 200
    retry_after: str | None = None
    grpc_code: grpc.StatusCode = grpc.StatusCode.OK
    retry_delay: float | None = None
    delay: float = 0.0
    rejected: int = 0
    message: str = ""


@dataclass
class Received:
    signal: Signal
    body: bytes
    transport: str
    at: float
    headers: dict[str, str] = field(default_factory=dict)
    answered: int = 200  # HTTP status or gRPC code value[0] of the answer; -1 until answered

    @property
    def items(self) -> int:
        return count_items(self.signal, decode_request(self.signal, self.body, "protobuf"))


class FakeOtlpBackend:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.received: list[Received] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._server: grpc.aio.Server | None = None
        self.http_endpoint = ""
        self.grpc_endpoint = ""

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def accepted(self, signal: Signal = "traces") -> list[Received]:
        """Requests answered OK (2xx / gRPC OK)."""
        return [r for r in self.received if r.signal == signal and r.answered in (0, 200)]

    def accepted_items(self, signal: Signal = "traces") -> int:
        return sum(r.items for r in self.accepted(signal))

    async def wait_until(self, predicate: Callable[[FakeOtlpBackend], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def wait_for_items(self, count: int, signal: Signal = "traces", timeout: float = 10.0) -> None:
        try:
            await self.wait_until(lambda b: b.accepted_items(signal) >= count, timeout)
        except TimeoutError:
            raise AssertionError(f"backend accepted {self.accepted_items(signal)} items, expected {count}") from None

    async def _record(self, received: Received) -> None:
        self.received.append(received)
        async with self._changed:
            self._changed.notify_all()

    async def _answered(self, received: Received, status: int) -> None:
        received.answered = status
        async with self._changed:
            self._changed.notify_all()

    def _next_reply(self) -> Reply:
        return self.replies.popleft() if self.replies else Reply()

    async def _http(self, request: web.Request) -> web.Response:
        signal = _PATHS[request.path]
        body = decompress(await request.read(), request.headers.get("Content-Encoding"), 64 << 20)
        reply = self._next_reply()
        received = Received(signal, body, "http", time.monotonic(), dict(request.headers), _PENDING)
        await self._record(received)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        await self._answered(received, reply.http_status)
        if reply.http_status != 200:
            headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else {}
            return web.Response(status=reply.http_status, text=reply.message or "refused", headers=headers)
        fmt: WireFormat = "json" if request.content_type == "application/json" else "protobuf"
        if fmt == "json":  # keep the recorded body protobuf, whatever the wire encoding
            received.body = decode_request(signal, body, "json").SerializeToString()
        response = encode_export_response(signal, fmt, reply.rejected, reply.message)
        return web.Response(body=response, content_type=request.content_type)

    def _grpc_handler(self, signal: Signal) -> grpc.RpcMethodHandler:
        async def export(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            reply = self._next_reply()
            metadata = {k: str(v) for k, v in context.invocation_metadata() or ()}
            received = Received(signal, request, "grpc", time.monotonic(), metadata, _PENDING)
            await self._record(received)
            if reply.delay:
                await asyncio.sleep(reply.delay)  # a client past its deadline cancels this handler here
            await self._answered(received, reply.grpc_code.value[0] or 200)
            if reply.grpc_code != grpc.StatusCode.OK:
                trailers = (
                    retry_info_trailers(reply.retry_delay, reply.grpc_code.value[0], reply.message)
                    if reply.retry_delay is not None
                    else ()
                )
                await context.abort(reply.grpc_code, reply.message or "refused", trailing_metadata=trailers)
            return encode_export_response(signal, "protobuf", reply.rejected, reply.message)

        return grpc.unary_unary_rpc_method_handler(export)

    async def start(self, http_port: int = 0, grpc_port: int = 0) -> None:
        app = web.Application(client_max_size=64 << 20)
        for path in _PATHS:
            app.router.add_post(path, self._http)
        runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", http_port)
        await site.start()
        self._runner = runner
        self.http_endpoint = f"http://127.0.0.1:{runner.addresses[0][1]}"
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(service, {"Export": self._grpc_handler(signal)})
                for signal, service in _SERVICES.items()
            ]
        )
        port = server.add_insecure_port(f"127.0.0.1:{grpc_port}")
        await server.start()
        self._server = server
        self.grpc_endpoint = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@contextlib.asynccontextmanager
async def fake_backend(http_port: int = 0, grpc_port: int = 0) -> AsyncIterator[FakeOtlpBackend]:
    backend = FakeOtlpBackend()
    await backend.start(http_port, grpc_port)
    try:
        yield backend
    finally:
        await backend.stop()


class BlackHole:
    """Accepts TCP connections and never answers (nor closes them until stopped)."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.port = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[BlackHole]:
    hole = BlackHole()
    await hole.start()
    try:
        yield hole
    finally:
        await hole.stop()
