"""``python -m benchmarks.bare_loop --sink HOST:PORT|none``: the bare Python loop of issue 6, as a target.

Issue 6 quotes a reference figure: "A bare Python loop (grpc.aio, upb protobuf) that decodes, reads
three gen_ai attributes per span and forwards the original bytes: about 147k spans per CPU-second;
without forwarding about 190k." This is that loop and nothing more, so the benchmark can measure it
on the same machine, load and pinning as rotel and the gateway: a floor for any Python forwarder.

Per request, on both receivers (OTLP/gRPC on grpc.aio, OTLP/HTTP protobuf on aiohttp):

* ``ExportTraceServiceRequest.FromString(raw)`` (upb);
* for every span, one pass over its attributes reading ``gen_ai.request.model``,
  ``gen_ai.usage.input_tokens`` and ``gen_ai.usage.output_tokens`` (the token counts are summed and
  the last model kept, in module totals, so the work is not dead code);
* with ``--sink``: the received bytes, unchanged and uncompressed, as one OTLP/gRPC ``Export`` call to
  the sink, awaited before answering (nothing is queued, batched or retried);
* an empty ``ExportTraceServiceResponse``.

No metrics endpoint, no compression, no auth, no limits beyond a 64 MiB message. Both servers bind
127.0.0.1 port 0; once both listen, one JSON line on stderr gives the ports in the shape of the
gateway's ``gateway_started`` event (``metrics_port`` is null), which is how the harness starts it.
SIGTERM or SIGINT stops it cleanly (exit 0), after a last line with the totals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

LOOPBACK = "127.0.0.1"
TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
TRACE_EXPORT_METHOD = f"/{TRACE_SERVICE}/Export"
MODEL = "gen_ai.request.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
PROTOBUF = "application/x-protobuf"
_MAX_MESSAGE = 64 * 1024 * 1024
_FORWARD_TIMEOUT_S = 10.0
_STOP_GRACE_S = 2.0
_EMPTY_RESPONSE: bytes = ExportTraceServiceResponse().SerializeToString()

Forward = Callable[[bytes], Awaitable[None]]


@dataclass(slots=True)
class Totals:
    """What the loop read, kept so that the attribute reads are not dead code."""

    requests: int = 0
    spans: int = 0
    tokens: int = 0
    model: str = ""


TOTALS = Totals()


def read_genai(raw: bytes) -> None:
    """Decode one request and read the three gen_ai attributes of every span into ``TOTALS``."""
    request = ExportTraceServiceRequest.FromString(raw)
    spans = tokens = 0
    model = TOTALS.model
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans += 1
                for attribute in span.attributes:
                    key = attribute.key
                    if key == MODEL:
                        model = attribute.value.string_value
                    elif key in (INPUT_TOKENS, OUTPUT_TOKENS):
                        tokens += attribute.value.int_value
    TOTALS.requests += 1
    TOTALS.spans += spans
    TOTALS.tokens += tokens
    TOTALS.model = model


def sink_forwarder(channel: Any) -> Forward:
    """One uncompressed OTLP/gRPC Export call per request, bytes as received; the answer is ignored."""
    export = channel.unary_unary(TRACE_EXPORT_METHOD, request_serializer=None, response_deserializer=None)

    async def forward(raw: bytes) -> None:
        await export(raw, timeout=_FORWARD_TIMEOUT_S)

    return forward


def grpc_handler(forward: Forward | None) -> Any:
    """The generic handler: request bytes in (no deserializer), the empty response's bytes out."""

    async def export(raw: bytes, context: Any) -> bytes:
        read_genai(raw)
        if forward is not None:
            try:
                await forward(raw)
            except grpc.aio.AioRpcError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"sink: {exc.code().name}")
        return _EMPTY_RESPONSE

    return grpc.method_handlers_generic_handler(
        TRACE_SERVICE,
        {"Export": grpc.unary_unary_rpc_method_handler(export, request_deserializer=None, response_serializer=None)},
    )


def http_app(forward: Forward | None) -> web.Application:
    """``POST /v1/traces`` with a protobuf body, uncompressed; anything else is 415."""

    async def traces(request: web.Request) -> web.Response:
        if request.content_type != PROTOBUF:
            return web.Response(status=415, text=f"only {PROTOBUF} is accepted")
        if request.headers.get("Content-Encoding", "identity").lower() != "identity":
            return web.Response(status=415, text="no compression is accepted")
        raw = await request.read()
        read_genai(raw)
        if forward is not None:
            try:
                await forward(raw)
            except grpc.aio.AioRpcError as exc:
                return web.Response(status=503, text=f"sink: {exc.code().name}")
        return web.Response(body=_EMPTY_RESPONSE, content_type=PROTOBUF)

    app = web.Application(client_max_size=_MAX_MESSAGE)
    app.router.add_post("/v1/traces", traces)
    return app


async def serve(sink: str | None) -> None:
    """Run both receivers until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    channel = (
        grpc.aio.insecure_channel(sink, options=[("grpc.max_send_message_length", _MAX_MESSAGE)])
        if sink is not None
        else None
    )
    forward = sink_forwarder(channel) if channel is not None else None
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", _MAX_MESSAGE)])
    server.add_generic_rpc_handlers([grpc_handler(forward)])
    grpc_port: int = server.add_insecure_port(f"{LOOPBACK}:0")
    runner = web.AppRunner(http_app(forward), access_log=None, auto_decompress=False)
    await runner.setup()
    try:
        await server.start()
        await web.TCPSite(runner, LOOPBACK, 0).start()
        http_port: int = runner.addresses[0][1]
        started = {
            "event": "gateway_started",
            "component": "benchmarks/bare_loop",
            "grpc_port": grpc_port,
            "http_port": http_port,
            "metrics_port": None,
            "sink": sink,
        }
        print(json.dumps(started), file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await server.stop(_STOP_GRACE_S)
        await runner.cleanup()
        if channel is not None:
            await channel.close()
    print(json.dumps({"event": "bare_loop_stopped", **asdict(TOTALS)}), file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_loop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sink", required=True, metavar="HOST:PORT|none", help="OTLP/gRPC sink, or none")
    args = parser.parse_args(argv)
    sink: str = args.sink
    asyncio.run(serve(None if sink == "none" else sink))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
