"""The Gateway: every stage built from Settings in one place, started downstream-first and stopped
upstream-first (receivers stop taking data, in-flight requests finish, then processors and exporters
drain and flush, and the metrics endpoint goes last so a final scrape still sees the totals).
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

import gateway
from gateway.auth import ApiKeyAuthenticator
from gateway.component import Exporter, Processor
from gateway.derive.budgets import BudgetTracker
from gateway.derive.genai import GenAIProcessor
from gateway.derive.spanmetrics import SpanMetricsProcessor
from gateway.log import get_logger
from gateway.metrics.collector import StoreCollector
from gateway.metrics.exposition import Exposition
from gateway.metrics.http import MetricsServer
from gateway.metrics.otlp_translate import OtlpMetricsProcessor
from gateway.metrics.store import MetricStore
from gateway.pipeline import Pipeline
from gateway.receivers.ingest import Ingest, ReceiverTelemetry
from gateway.receivers.limiter import InflightLimiter
from gateway.receivers.otlp_grpc import OtlpGrpcReceiver
from gateway.receivers.otlp_http import OtlpHttpReceiver
from gateway.registry import build_exporter
from gateway.settings import Settings
from proto_handlers import SIGNALS, Signal

SHUTDOWN_GRACE_SECONDS = 5.0


class Gateway:
    def __init__(self, settings: Settings, *, worker: bool = False) -> None:
        """``worker``: one of ``workers: N`` processes (gateway/workers/): the receivers share their
        ports with the other workers (SO_REUSEPORT) and the metrics endpoint also serves the state
        the supervisor merges. False (``workers: 1``) is the single-process gateway, unchanged."""
        self.settings = settings
        self._log = get_logger("gateway")
        self.store = MetricStore(
            max_series=settings.prometheus.max_series_per_metric,
            series_expiration=settings.prometheus.series_expiration,
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = StoreCollector(self.store)
        self.registry.register(self.collector)
        build_info = self.store.gauge(
            "gateway_build_info",
            "Build information of the running gateway; always 1.",
            ("version", "python_version"),
            expires=False,
        )
        build_info.set((gateway.__version__, platform.python_version()), 1.0)

        used = {name for p in settings.pipelines.values() for name in p.exporters}
        # Every defined exporter is validated (a typo in an unused one is still a typo); used ones run.
        built = {e.name: build_exporter(e, self.store if e.name in used else None) for e in settings.exporters}
        self.exporters: dict[str, Exporter] = {name: e for name, e in built.items() if name in used}
        # Tenant budgets: the GenAI processor hands each leaf call's usage over; gauges computed per scrape.
        budgets = settings.genai.budgets
        self.budgets = BudgetTracker(budgets, self.store) if budgets.enabled and settings.genai.enabled else None
        self.genai = GenAIProcessor(
            settings.genai,
            self.store,
            self.budgets.add if self.budgets else None,
            settings.limits.max_attributes_per_span,
        )
        if self.budgets is not None:
            self.collector.add_source(self.budgets.collect)
        self.processors: dict[Signal, list[Processor]] = {
            "traces": [self.genai] if settings.genai.enabled else [],
            "metrics": [],
            "logs": [],
        }
        if settings.spanmetrics.enabled:
            self.processors["traces"].append(SpanMetricsProcessor(self.store, settings.spanmetrics))
        # OTLP metrics from services, re-exposed on /metrics (processing happens with or without exporters).
        self.otlp_metrics = OtlpMetricsProcessor(self.store, settings.prometheus.promote_resource_attributes)
        self.processors["metrics"].append(self.otlp_metrics)
        self.collector.add_native_source(self.otlp_metrics)
        self.exposition = Exposition(self.store, [self.otlp_metrics], self.collector.extra_sources)
        processor_failures = self.store.counter(
            "gateway_processor_failed_batches",
            "Batches a processor failed on; the batch was still forwarded.",
            ("processor",),
            expires=False,
        )
        self.pipelines: Mapping[Signal, Pipeline] = {
            signal: Pipeline(
                signal,
                self.processors[signal],
                [self.exporters[name] for name in settings.pipelines[signal].exporters],
                self.store,
                processor_failures,
            )
            for signal in SIGNALS
        }
        limiter = InflightLimiter(
            settings.limits.max_inflight_bytes,
            settings.limits.max_concurrent_requests,
            self.store.gauge(
                "gateway_receiver_inflight_bytes",
                "Request bytes received and not yet handed to every exporter queue (the memory limiter's measure; "
                "a body walked before decoding counts as its estimated decoded size).",
                (),
                expires=False,
            ),
        )
        self.ingest = Ingest(
            self.pipelines,
            ReceiverTelemetry(self.store),
            settings.resource.attributes,
            limiter,
            settings.limits.max_items_per_request,
        )
        authenticator = ApiKeyAuthenticator(settings.auth.api_keys) if settings.auth.enabled else None
        self.grpc = (
            OtlpGrpcReceiver(settings.grpc, self.ingest, SHUTDOWN_GRACE_SECONDS, authenticator, reuse_port=worker)
            if settings.grpc
            else None
        )
        self.http = (
            OtlpHttpReceiver(settings.http, self.ingest, SHUTDOWN_GRACE_SECONDS, authenticator, reuse_port=worker)
            if settings.http
            else None
        )
        self.metrics_server = MetricsServer(
            settings.prometheus.endpoint,
            self.registry,
            self.readiness,
            exposition=self.exposition,
            details=self.details,
            settled=self.derivation_settled,
            state=self._state_dump if worker else None,
        )
        self._started = False

    def readiness(self) -> dict[str, bool]:
        """Per-component readiness for /health/ready: receivers listening, exporters started."""
        state: dict[str, bool] = {}
        if self.grpc is not None:
            state["receiver/otlp_grpc"] = self.grpc.ready()
        if self.http is not None:
            state["receiver/otlp_http"] = self.http.ready()
        for name, exporter in self.exporters.items():
            state[f"exporter/{name}"] = exporter.ready()
        return state

    async def _state_dump(self) -> bytes:
        from gateway.workers.snapshot import dump_state  # only workers serve it

        return await dump_state(self.store, self.otlp_metrics, self.collector.extra_sources())

    def details(self) -> dict[str, object]:
        """Informational /health/ready state that does not affect readiness (a degraded budget store)."""
        return {} if self.budgets is None else {"budgets": self.budgets.status()}

    async def start(self) -> None:
        """Downstream first, so nothing is received before it has somewhere to go."""
        self._started = True
        try:
            await self.metrics_server.start()
            for exporter in self.exporters.values():
                await exporter.start()
            for processors in self.processors.values():
                for processor in processors:
                    await processor.start()
            if self.budgets is not None:
                await self.budgets.start()  # restores the state file before anything is received
            if self.http is not None:
                await self.http.start()
            if self.grpc is not None:
                await self.grpc.start()
        except BaseException:
            await self.shutdown()
            raise
        self._log.info(
            "gateway_started",
            grpc_port=self.grpc.port if self.grpc else None,
            http_port=self.http.port if self.http else None,
            metrics_port=self.metrics_server.port,
        )

    async def derivation_settled(self) -> None:
        """Return once every pipeline has derived every batch it accepted."""
        await asyncio.gather(*(pipeline.settled() for pipeline in self.pipelines.values()))

    async def shutdown(self) -> None:
        """Upstream first; idempotent and safe without start."""
        if not self._started:
            return
        self._started = False
        self.ingest.close()
        receivers = [r for r in (self.grpc, self.http) if r is not None]
        await asyncio.gather(*(r.shutdown() for r in receivers))
        await self.ingest.shutdown()
        await self.derivation_settled()  # the backlog of accepted batches, before processors stop
        for processors in self.processors.values():
            for processor in processors:
                await processor.shutdown()
        if self.budgets is not None:
            await self.budgets.shutdown()  # after the receivers: the last usage is persisted
        await asyncio.gather(*(e.shutdown() for e in self.exporters.values()))
        await self.metrics_server.shutdown()
        self._log.info("gateway_stopped")

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until ``stop`` is set, then shut down in order."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.shutdown()
