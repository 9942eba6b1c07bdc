"""The Prometheus endpoint and health checks: ``/metrics``, ``/health/live``, ``/health/ready``.

``/metrics`` negotiates the format as the Prometheus server asks for it: OpenMetrics (with exemplars)
when the scraper accepts ``application/openmetrics-text``, the classic text format otherwise.
The registry is the gateway's own ``CollectorRegistry``, never the process-global one. With an
``Exposition`` (the gateway always passes one) the body is rendered by it and streamed in chunks, so
a large scrape does not stall ingest; the registry path stays for embedding and tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_1_0_0

from gateway.log import get_logger
from gateway.metrics.exposition import Exposition
from gateway.settings import Endpoint

Readiness = Callable[[], Mapping[str, bool]]
# Informational state that must not flip readiness (e.g. a degraded budget store: ingest goes on).
Details = Callable[[], Mapping[str, object]]
Settled = Callable[[], Awaitable[None]]  # returns once derivation has caught up with accepted data
# A worker's whole metric state as data (gateway/workers/snapshot.py), for the supervisor's merge.
StateDump = Callable[[], Awaitable[bytes]]
STATE_PATH = "/internal/state"


class MetricsServer:
    def __init__(
        self,
        endpoint: Endpoint,
        registry: CollectorRegistry,
        readiness: Readiness,
        exposition: Exposition | None = None,
        details: Details | None = None,
        settled: Settled | None = None,
        state: StateDump | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._state = state
        self._settled = settled
        self._details = details
        self._registry = registry
        self._exposition = exposition
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self._log = get_logger("metrics/http")
        self.port: int | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health/live", self._live)
        app.router.add_get("/health/ready", self._ready)
        if self._state is not None:  # only a worker's private loopback endpoint serves it
            app.router.add_get(STATE_PATH, self._state_dump)
        return app

    async def _state_dump(self, request: web.Request) -> web.Response:
        assert self._state is not None
        if self._settled is not None:
            await self._settled()  # as for /metrics: every accepted batch is in the numbers
        return web.Response(body=await self._state(), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        if self._settled is not None:
            await self._settled()  # every batch accepted before the scrape is in the numbers
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        if self._exposition is None:
            return web.Response(body=encoder(self._registry), headers={"Content-Type": content_type})
        # choose_encoder only decides the format; the exposition renders OpenMetrics 1.0.0 or text 0.0.4.
        openmetrics = content_type.startswith("application/openmetrics-text")
        response = web.StreamResponse(
            headers={"Content-Type": OPENMETRICS_1_0_0 if openmetrics else CONTENT_TYPE_PLAIN_0_0_4}
        )
        await response.prepare(request)
        await self._exposition.write_to(response.write, openmetrics)
        await response.write_eof()
        return response

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def _ready(self, request: web.Request) -> web.Response:
        components = dict(self._readiness())
        ready = bool(components) and all(components.values())
        body: dict[str, object] = {"status": "ready" if ready else "not_ready", "components": components}
        details = dict(self._details()) if self._details is not None else {}
        if details:
            body["details"] = details
        return web.json_response(body, status=200 if ready else 503)

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
