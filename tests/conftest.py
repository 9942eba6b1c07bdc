"""Shared fixtures: a real gateway on free loopback ports, scraping, and reading /metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway
from gateway.settings import (
    Endpoint,
    GrpcReceiverSettings,
    HttpReceiverSettings,
    Settings,
)

LOOPBACK = "127.0.0.1"


def loopback_settings(base: Settings | None = None, **changes: object) -> Settings:
    """Settings with every listener on 127.0.0.1 port 0 (the OS picks a free port)."""
    settings = base or Settings()
    settings = dataclasses.replace(
        settings,
        grpc=dataclasses.replace(settings.grpc or GrpcReceiverSettings(), endpoint=Endpoint(LOOPBACK, 0)),
        http=dataclasses.replace(settings.http or HttpReceiverSettings(), endpoint=Endpoint(LOOPBACK, 0)),
        prometheus=dataclasses.replace(settings.prometheus, endpoint=Endpoint(LOOPBACK, 0)),
    )
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


class RunningGateway:
    """A started Gateway plus the addresses a client needs."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        assert gateway.grpc is not None and gateway.http is not None
        self.grpc_target = f"{LOOPBACK}:{gateway.grpc.port}"
        self.http_url = f"http://{LOOPBACK}:{gateway.http.port}"
        self.metrics_url = f"http://{LOOPBACK}:{gateway.metrics_server.port}"

    async def scrape(self, accept: str | None = None) -> str:
        headers = {"Accept": accept} if accept else {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.metrics_url}/metrics", headers=headers) as response,
        ):
            assert response.status == 200
            return await response.text()

    async def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The value of one sample on /metrics; 0.0 when the series does not exist."""
        return sample_value(await self.scrape(), name, labels or {})


def sample_value(exposition: str, name: str, labels: Mapping[str, str]) -> float:
    """Sum of samples named ``name`` whose labels include ``labels`` (0.0 when none match)."""
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def start_gateway(settings: Settings) -> RunningGateway:
    gateway = Gateway(settings)
    await gateway.start()
    return RunningGateway(gateway)


@pytest.fixture
async def running_gateway() -> AsyncIterator[RunningGateway]:
    """A gateway on its default settings (debug exporter), on loopback port 0."""
    running = await start_gateway(loopback_settings())
    try:
        yield running
    finally:
        await running.gateway.shutdown()
