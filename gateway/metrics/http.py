"""The Prometheus endpoint and health checks: ``/metrics``, ``/health/live``, ``/health/ready``.

``/metrics`` negotiates the format as the Prometheus server asks for it: OpenMetrics (with exemplars)
when the scraper accepts ``application/openmetrics-text``, the classic text format otherwise.
The registry is the gateway's own ``CollectorRegistry``, never the process-global one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from gateway.log import get_logger
from gateway.settings import Endpoint

Readiness = Callable[[], Mapping[str, bool]]


class MetricsServer:
    def __init__(self, endpoint: Endpoint, registry: CollectorRegistry, readiness: Readiness) -> None:
        self._endpoint = endpoint
        self._registry = registry
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self._log = get_logger("metrics/http")
        self.port: int | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health/live", self._live)
        app.router.add_get("/health/ready", self._ready)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self._registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def _ready(self, request: web.Request) -> web.Response:
        components = dict(self._readiness())
        ready = bool(components) and all(components.values())
        return web.json_response(
            {"status": "ready" if ready else "not_ready", "components": components}, status=200 if ready else 503
        )

    async def start(self) -> None:
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._endpoint.host, self._endpoint.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        self._log.info("metrics_server_started", endpoint=f"{self._endpoint.host}:{self.port}")

    async def shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            self._log.info("metrics_server_stopped")
