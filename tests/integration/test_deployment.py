"""The deployment files against live processes.

1. The demo stack without Docker: a gateway running config/compose/gateway.yaml (the compose stack's
   config, with budgets and the Jaeger + Tempo exporters pointed at local stand-ins), fed by the compose
   demo app itself (config/compose/demo/app.py: the real openai client, openai-v2 instrumentation, the
   fake LLM), scraped by a real Prometheus started from config/prometheus/prometheus.yml with the rule
   files loaded. Every Grafana dashboard expression must run on it and return data; every metric name
   a dashboard or an alert reads must be on the gateway's live /metrics; every rule must evaluate.
2. The image without Docker: the Dockerfile's build steps into a clean virtualenv, then its ENTRYPOINT
   and CMD as the image's non-root user, as PID 1 of a new PID namespace, checked with its HEALTHCHECK
   command and stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from prometheus_client.parser import text_string_to_metric_families

from gateway.settings import ExporterSettings, Settings, parse_settings
from proto_handlers import decode_request
from tests.conftest import RunningGateway, sample_value, start_gateway
from tests.support.deployment import (
    COMPOSE_FILE,
    CONFIG,
    PROMETHEUS_CONFIG,
    PROMETHEUS_SCRAPE_SERIES,
    REPO,
    RULES,
    Query,
    copy_sources,
    dashboard_queries,
    env_assignments,
    exec_form,
    healthcheck_command,
    load_dashboards,
    load_rules,
    metric_names,
    read_dockerfile,
    recorded_names,
    rule_files,
)
from tests.support.exporting import post
from tests.support.otel_sdk import make_spans
from tests.support.otlp_backend import BlackHole, FakeOtlpBackend, black_hole, fake_backend
from tests.support.prometheus import free_port, prometheus_binary

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

DEMO_APP = CONFIG / "compose" / "demo" / "app.py"
NOISY_SPAN_NAMES = 150  # distinct span names from one service: more than the series cap below
SERIES_CAP = 100


# --- a real Prometheus with the repository's prometheus.yml -------------------------------------------


class PrometheusServer:
    """config/prometheus/prometheus.yml with its rule files, scraping one target every second."""

    def __init__(self, target: str, directory: Path) -> None:
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
        config["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
        config["rule_files"] = [str(path) for path in rule_files()]
        job = next(j for j in config["scrape_configs"] if j["job_name"] == "otel-ai-gateway")
        job.update({"scrape_interval": "1s", "static_configs": [{"targets": [target]}]})
        config["scrape_configs"] = [job]
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.url = f"http://127.0.0.1:{free_port()}"
        self._stderr = (directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        self._session = aiohttp.ClientSession()

    async def get(self, path: str, **params: str) -> Any:
        if self.process.poll() is not None:
            pytest.fail(f"prometheus exited with {self.process.returncode}; see {self._stderr.name}")
        async with self._session.get(f"{self.url}{path}", params=params) as response:
            return await response.json()

    async def query(self, promql: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.get("/api/v1/query", query=promql)
        return body

    async def value(self, promql: str) -> float | None:
        """The single sample of a query, or None while it has none."""
        try:
            result = (await self.query(promql))["data"]["result"]
        except (aiohttp.ClientConnectionError, aiohttp.ContentTypeError):
            return None  # not listening yet, or 503 "Service Unavailable" (plain text) while starting
        return float(result[0]["value"][1]) if len(result) == 1 else None

    async def stop(self) -> None:
        await self._session.close()
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
        self._stderr.close()


async def until(probe: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll an async probe until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


# --- the demo stack, without Docker -------------------------------------------------------------------


@dataclasses.dataclass
class Stack:
    gateway: RunningGateway
    prometheus: PrometheusServer
    jaeger: FakeOtlpBackend
    tempo: BlackHole
    exposition: str  # /metrics after all the traffic

    @property
    def served(self) -> set[str]:
        """Names of the samples on the live /metrics (with _total, _bucket, ... as Prometheus stores them)."""
        return {s.name for family in text_string_to_metric_families(self.exposition) for s in family.samples}


def compose_gateway_settings(jaeger: FakeOtlpBackend, tempo: BlackHole, state: Path) -> Settings:
    """config/compose/gateway.yaml with its ${env:...} pointed at loopback stand-ins, then three changes
    that make the failure paths happen within seconds: Tempo (a black hole) times out fast, retries
    briefly and has a 16 KiB queue; the series cap is low enough for the noisy service to overflow."""
    environ = {
        "GATEWAY_GRPC_ENDPOINT": "127.0.0.1:0",
        "GATEWAY_HTTP_ENDPOINT": "127.0.0.1:0",
        "GATEWAY_METRICS_ENDPOINT": "127.0.0.1:0",
        "JAEGER_OTLP_GRPC_ENDPOINT": jaeger.grpc_endpoint,
        "TEMPO_OTLP_HTTP_ENDPOINT": f"http://127.0.0.1:{tempo.port}",
        "GATEWAY_STATE_DIR": str(state),
    }
    settings = parse_settings((CONFIG / "compose" / "gateway.yaml").read_text(encoding="utf-8"), environ)

    def faulty(exporter: ExporterSettings) -> ExporterSettings:
        if exporter.name != "tempo":
            return exporter
        options = dict(exporter.options)
        options.update(
            timeout="300ms",
            retry={"initial_interval": "20ms", "max_interval": "50ms", "max_elapsed_time": "500ms"},
            batch={"timeout": "10ms"},
            queue={**options["queue"], "max_bytes": "16KiB", "drain_timeout": "100ms"},
        )
        return dataclasses.replace(exporter, options=options)

    return dataclasses.replace(
        settings,
        exporters=tuple(faulty(e) for e in settings.exporters),
        prometheus=dataclasses.replace(settings.prometheus, max_series_per_metric=SERIES_CAP),
    )


def demo_services() -> dict[str, tuple[list[str], dict[str, str]]]:
    """The compose services built from the demo Dockerfile: their command and environment."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return {
        name: (service.get("command", []), service["environment"])
        for name, service in compose["services"].items()
        if service.get("build", {}).get("dockerfile") == "config/compose/demo/Dockerfile"
    }


async def run_demo(gateway: RunningGateway, command: list[str], environment: dict[str, str]) -> None:
    """The demo app as compose runs it, for 5 quick iterations, sending to this gateway."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ.update(environment)
    environ.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{gateway.grpc_target}",
        PYTHONPATH=str(REPO / "tests" / "support"),  # fake_openai.py, which the demo image copies beside app.py
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(DEMO_APP), *command, "--iterations", "5", "--interval", "0", "--seed", "7",
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert 0 == process.returncode, output.decode(errors="replace")


def export(target: str, spans: Any) -> None:
    """One OTLP/gRPC request with these spans, by the SDK's exporter."""
    exporter = OTLPSpanExporter(endpoint=target, insecure=True, timeout=10)
    try:
        exporter.export(spans)
    finally:
        exporter.shutdown()


async def feed(gateway: RunningGateway) -> None:
    """The traffic that makes every panel and every self-metric family exist."""
    # A chat span with a negative token count (gateway_genai_refused_attributes); small enough to sit in
    # Tempo's queue until its retries run out (gateway_exporter_send_failed_spans_total).
    bad = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
           "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": -5}  # fmt: skip
    await asyncio.to_thread(export, gateway.grpc_target, make_spans(1, "chatbot", bad))
    # An undecodable request (gateway_receiver_refused_requests_total{reason="invalid"}).
    status, _, _ = await post(f"{gateway.http_url}/v1/traces", b"\xff\xff\xff")
    assert 400 == status
    # The demo services, as compose runs them.
    await asyncio.gather(*(run_demo(gateway, *spec) for spec in demo_services().values()))
    # One service with a span name per request id: span metrics overflow (gateway_metric_series_overflow),
    # and one request too large for Tempo's queue (refused there, accepted by Jaeger: partial success).
    noisy = make_spans(NOISY_SPAN_NAMES, "batch-jobs", {"padding": "x" * 200})
    await asyncio.to_thread(export, gateway.grpc_target, noisy)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp("deployment")
    async with fake_backend() as jaeger, black_hole() as tempo:
        gateway = await start_gateway(compose_gateway_settings(jaeger, tempo, directory))
        prometheus = PrometheusServer(gateway.metrics_url.removeprefix("http://"), directory)
        try:
            await until(lambda: prometheus.value('up{job="otel-ai-gateway"}'), "Prometheus scraping the gateway")
            await feed(gateway)

            async def settled() -> str | None:
                exposition = await gateway.scrape()
                if sample_value(exposition, "gateway_exporter_send_failed_spans_total", {}) == 0:
                    return None  # Tempo's retries have not run out yet
                accepted = sample_value(exposition, "gateway_receiver_accepted_spans_total", {})
                seen = await prometheus.value("sum(gateway_receiver_accepted_spans_total)")
                failed = await prometheus.value("sum(gateway_exporter_send_failed_spans_total)")
                return exposition if seen == accepted and failed else None

            exposition = await until(settled, "the traffic to be counted and scraped")
            settled_at = time.time()

            async def scraped_twice_more() -> bool:  # and rules evaluated on them (every second)
                latest = await prometheus.value('timestamp(up{job="otel-ai-gateway"})')
                return latest is not None and latest > settled_at + 2

            await until(scraped_twice_more, "two more scrapes after the traffic")
            yield Stack(gateway, prometheus, jaeger, tempo, exposition)
        finally:
            await prometheus.stop()
            await gateway.gateway.shutdown()


def all_queries() -> list[Query]:
    return [query for name, dashboard in load_dashboards().items() for query in dashboard_queries(name, dashboard)]


async def test_every_dashboard_expression_runs_and_returns_data(stack: Stack) -> None:
    """Each panel and variable query of both dashboards, as Grafana sends it, is valid PromQL for a real
    Prometheus and returns at least one series once the demo app has run."""
    failures = []
    for query in all_queries():
        body = await stack.prometheus.query(query.promql)
        if body["status"] != "success":
            failures.append(f"{query.dashboard} {query.where}: {body.get('error')}")
        elif not body["data"]["result"]:
            failures.append(f"{query.dashboard} {query.where}: no data for {query.promql}")
    assert [] == failures


async def test_dashboards_read_only_metrics_the_gateway_serves(stack: Stack) -> None:
    """Every metric name in a dashboard expression is on the gateway's live /metrics, or is one of
    Prometheus' own series for the scrape target, or is recorded by a rule file prometheus.yml loads."""
    allowed = stack.served | PROMETHEUS_SCRAPE_SERIES | recorded_names()
    missing = {
        name: query.where for query in all_queries() for name in metric_names(query.promql) if name not in allowed
    }
    assert {} == missing


async def test_alert_rules_read_only_metrics_the_gateway_serves(stack: Stack) -> None:
    """Every metric an alert of rules.yml reads is on the gateway's live /metrics (or is Prometheus' up)."""
    allowed = stack.served | PROMETHEUS_SCRAPE_SERIES
    missing = {
        name: rule["alert"] for rule in load_rules(RULES) for name in metric_names(rule["expr"]) if name not in allowed
    }
    assert {} == missing


async def test_prometheus_scrape_series_used_exist_for_the_gateway(stack: Stack) -> None:
    """The scrape series the dashboards and rules use exist for the otel-ai-gateway job."""
    empty = []
    for name in sorted(PROMETHEUS_SCRAPE_SERIES):
        if not (await stack.prometheus.query(f'{name}{{job="otel-ai-gateway"}}'))["data"]["result"]:
            empty.append(name)
    assert [] == empty


async def test_every_rule_loads_and_evaluates(stack: Stack) -> None:
    """Prometheus loaded the groups of rules.yml and budget-rules.yml and evaluated every rule without error."""
    expected = {
        group["name"] for path in rule_files() for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    }

    async def evaluated() -> list[dict[str, Any]] | None:
        groups: list[dict[str, Any]] = (await stack.prometheus.get("/api/v1/rules"))["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return groups if rules and all(rule["health"] != "unknown" for rule in rules) else None

    groups = await until(evaluated, "every rule to be evaluated once")
    unhealthy = {r["name"]: r.get("lastError") for g in groups for r in g["rules"] if r["health"] != "ok"}
    assert (expected, {}) == ({g["name"] for g in groups}, unhealthy)


async def test_demo_spans_reach_jaeger_and_tempo_is_tried(stack: Stack) -> None:
    """Both demo services' spans arrive at the Jaeger stand-in over gRPC; the Tempo exporter connects
    to its (black-holed) endpoint."""
    services = set()
    for received in stack.jaeger.accepted():
        request = decode_request("traces", received.body, "protobuf")
        for resource_spans in request.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"}
    expected = {environment["OTEL_SERVICE_NAME"] for _, environment in demo_services().values()}
    assert ({"chatbot", "rag-search"}, True) == (expected & services, stack.tempo.connections > 0)


# --- the image, without Docker ------------------------------------------------------------------------


def unprivileged_python(uid: int, gid: int) -> str:
    """A Python 3.11 that the image's user can run (the test's own may live under /root)."""
    for candidate in ("/usr/bin/python3.11", "/usr/local/bin/python3.11", sys._base_executable):  # type: ignore[attr-defined]
        if not Path(candidate).exists():
            continue
        probe = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", candidate, "-c",
             "import sys; assert sys.version_info[:2] == (3, 11)"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        if probe.returncode == 0:
            return candidate
    pytest.fail(f"no Python 3.11 that uid {uid} can run (tried /usr/bin/python3.11 and the test's base interpreter)")


@pytest.fixture
def image_root() -> Iterator[Path]:
    """A directory the image's user can traverse (pytest's tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="otel-ai-gateway-image-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def copy_into(source: Path, destination: str, base: Path) -> None:
    """COPY semantics: a directory's contents go into the destination; a file goes into a destination
    ending in / or becomes the destination path."""
    target = base / destination.lstrip("/")
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
        return
    if destination.endswith("/"):
        target = target / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def build_stage(root: Path) -> Path:
    """The build stage: its COPYs into a fresh context, then its pip install into a clean virtualenv."""
    build, _ = read_dockerfile(REPO / "Dockerfile")
    workdir = Path(build.last("WORKDIR"))
    context = root / workdir.relative_to("/")
    context.mkdir(parents=True)
    for args in build.all("COPY"):
        sources, destination, _ = copy_sources(args)
        for source in sources:
            copy_into(REPO / source, destination, context)
    steps = " ".join(build.all("RUN"))
    venv_path = "/opt/otel-ai-gateway"
    assert f"python -m venv {venv_path}" in steps and f"{venv_path}/bin/pip install --no-compile ." in steps, steps
    venv = root / venv_path.lstrip("/")
    uid, gid = image_user()
    subprocess.run([unprivileged_python(uid, gid), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    # The project itself is built and installed exactly as `pip install --no-compile .` does (isolated
    # build); its dependencies come from the test environment instead of being resolved again (that
    # takes a minute and needs the index; `make install` does it on every fresh clone).
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-deps",
         "--no-compile", str(context)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    site = venv / "lib" / "python3.11" / "site-packages"
    (site / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", "-j", "0", str(venv / "lib")], check=True)
    return venv


def image_user() -> tuple[int, int]:
    _, runtime = read_dockerfile(REPO / "Dockerfile")
    uid, _, gid = runtime.last("USER").partition(":")
    return int(uid), int(gid or uid)


def gateway_child(unshare_pid: int) -> int:
    """The host pid of unshare's forked child (the gateway, PID 1 in its namespace)."""
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    assert 1 == len(children), children
    return int(children[0])


def proc_status(pid: int) -> Mapping[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


async def test_image_steps_run_the_gateway_as_non_root_pid_1(image_root: Path) -> None:
    """Build stage into a clean venv; runtime stage's ENTRYPOINT + CMD with its ENV, WORKDIR, USER and
    config as PID 1 of a PID namespace: the HEALTHCHECK passes, a span is forwarded through a disk queue
    in the working directory, SIGTERM ends it with exit code 0."""
    venv = build_stage(image_root)
    _, runtime = read_dockerfile(REPO / "Dockerfile")
    uid, gid = image_user()
    state = image_root / runtime.last("WORKDIR").lstrip("/")
    state.mkdir(parents=True)
    os.chown(state, uid, gid)
    state.chmod(0o750)
    paths = {"/opt/otel-ai-gateway": str(venv), runtime.last("WORKDIR"): str(state)}
    for args in runtime.all("COPY"):
        sources, destination, flags = copy_sources(args)
        if "from" not in flags:  # the config file
            copy_into(REPO / sources[0], destination, image_root)
            paths[destination] = str(image_root / destination.lstrip("/"))

    def mapped(text: str) -> str:
        for image_path, local in sorted(paths.items(), key=lambda item: -len(item[0])):
            text = text.replace(image_path, local)
        return text

    ports = {name: free_port() for name in ("grpc", "http", "metrics")}
    environ = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    for args in runtime.all("ENV"):
        environ.update({k: mapped(v.replace("$PATH", environ["PATH"])) for k, v in env_assignments(args).items()})
    async with fake_backend() as backend:
        environ.update(
            GATEWAY_GRPC_ENDPOINT=f"127.0.0.1:{ports['grpc']}",
            GATEWAY_HTTP_ENDPOINT=f"127.0.0.1:{ports['http']}",
            GATEWAY_METRICS_ENDPOINT=f"127.0.0.1:{ports['metrics']}",
            GATEWAY_HEALTH_URL=f"http://127.0.0.1:{ports['metrics']}/health/ready",
            GATEWAY_TRACES_EXPORTERS="otlp",
            GATEWAY_OTLP_ENDPOINT=backend.grpc_endpoint,
            GATEWAY_OTLP_QUEUE_DIR=mapped("/var/lib/otel-ai-gateway/otlp"),
        )
        command = [mapped(arg) for arg in exec_form(runtime.last("ENTRYPOINT")) + exec_form(runtime.last("CMD"))]
        as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs"]
        log = (image_root / "gateway.log").open("wb")
        process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", *as_user, *command],
            cwd=state, env=environ, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            health = [*as_user, *healthcheck_command(runtime.last("HEALTHCHECK"))]

            async def healthy() -> bool:
                check = await asyncio.to_thread(subprocess.run, health, env=environ, capture_output=True, timeout=10)
                return check.returncode == 0

            await until(healthy, "the image's HEALTHCHECK to pass", timeout=60)
            unhealthy = subprocess.run(
                health, env={**environ, "GATEWAY_HEALTH_URL": f"http://127.0.0.1:{free_port()}/health/ready"},
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
            pid = gateway_child(process.pid)
            status = proc_status(pid)

            await asyncio.to_thread(export, f"127.0.0.1:{ports['grpc']}", make_spans(3, "chatbot"))
            await backend.wait_for_items(3)
            queue_owner = (state / "otlp").stat().st_uid

            os.kill(pid, signal.SIGTERM)
            returncode = await asyncio.to_thread(process.wait, 20)
        finally:
            if process.poll() is None:
                process.kill()  # unshare --kill-child takes the gateway with it
                process.wait()
            log.close()
    output = (image_root / "gateway.log").read_text(errors="replace")
    assert (0, "gateway_stopped") == (returncode, "gateway_stopped" if "gateway_stopped" in output else output)
    where = "import gateway, proto_handlers; print(gateway.__file__, proto_handlers.__file__)"
    imported = subprocess.run(
        [*as_user, str(venv / "bin" / "python"), "-c", where], cwd=state, capture_output=True, text=True, check=True
    ).stdout
    assert [str(venv)] * 2 == [path[: len(str(venv))] for path in imported.split()]  # the wheel, not the work tree
    assert (True, str(uid), "1", uid) == (
        unhealthy.returncode != 0,
        status["Uid"].split()[0],
        status["NSpid"].split()[-1],
        queue_owner,
    )
