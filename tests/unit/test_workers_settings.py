"""``workers``: validated at start-up like every key, and what each worker process gets of its own."""

from __future__ import annotations

import os

import pytest

from gateway.settings import ConfigError, Endpoint, parse_settings
from gateway.workers.worker import WorkerSpec, worker_settings

BUDGETS = "genai: {budgets: [{tenant: acme, period: daily, tokens: 1000}], budget_state_file: /state/budgets.json}\n"


def test_workers_defaults_to_one() -> None:
    """Without the key the gateway is the single process it always was."""
    assert 1 == parse_settings("{}", {}).workers


def test_workers_auto_is_the_cores_this_process_may_use() -> None:
    """auto counts the CPU affinity (a container's cpuset), not the machine's cores."""
    assert len(os.sched_getaffinity(0)) == parse_settings("workers: auto\n", {}).workers


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "workers: must be >= 1 or 'auto', got 0"),
        ("two", "workers: expected an integer >= 1 or 'auto', got 'two'"),
        ("true", "workers: expected an integer >= 1 or 'auto', got True"),
        ("1.5", "workers: expected an integer >= 1 or 'auto', got 1.5"),
    ],
)
def test_invalid_workers_name_the_key(value: str, message: str) -> None:
    """A bad value stops start-up with the key path."""
    with pytest.raises(ConfigError) as caught:
        parse_settings(f"workers: {value}\n", {})
    assert message == str(caught.value)


def test_budgets_with_several_workers_need_a_shared_store() -> None:
    """Each worker counts only its share of a tenant's usage: without Redis the gauges would be wrong."""
    with pytest.raises(ConfigError) as caught:
        parse_settings("workers: 2\n" + BUDGETS, {})
    assert "genai.budget_store" == caught.value.path


def test_budgets_with_several_workers_and_redis_are_accepted() -> None:
    settings = parse_settings("workers: 2\n" + BUDGETS.replace("}\n", ", budget_store: 'redis://r:6379/0'}\n"), {})
    assert (2, "redis://r:6379/0") == (settings.workers, settings.genai.budgets.store)


def test_each_worker_gets_its_own_endpoint_queue_directory_and_state_file() -> None:
    """Shared: the receiver ports (reserved ones replace 0). Own: /metrics, disk queue, budget state file."""
    settings = parse_settings(
        """
workers: 2
receivers: {otlp: {grpc: {endpoint: "0.0.0.0:0"}, http: {endpoint: "0.0.0.0:4318"}}}
exporters:
  tempo: {type: otlp_http, endpoint: "http://tempo:4318", queue: {directory: /queue/tempo}}
  console: {type: debug}
pipelines: {traces: {exporters: [tempo, console]}}
genai:
  budgets: [{tenant: acme, period: daily, tokens: 1000}]
  budget_state_file: /state/budgets.json
  budget_store: redis://r:6379/0
""",
        {},
    )
    mine = worker_settings(settings, WorkerSpec(1, "gateway.yaml", grpc_port=40001))
    assert mine.grpc is not None and mine.http is not None
    assert (Endpoint("0.0.0.0", 40001), Endpoint("0.0.0.0", 4318)) == (mine.grpc.endpoint, mine.http.endpoint)
    assert Endpoint("127.0.0.1", 0) == mine.prometheus.endpoint
    assert {"directory": "/queue/tempo/worker-1"} == mine.exporters[0].options["queue"]
    assert settings.exporters[1] == mine.exporters[1]
    assert "/state/budgets.worker-1.json" == mine.genai.budgets.state_file
