"""The deployable files (Dockerfile, compose, Kubernetes, Prometheus rules, Grafana dashboards) checked
against the tools and schemas that will read them: promtool, the compose-spec JSON schema, the
Kubernetes OpenAPI schemas (kubernetes-validate) and the gateway's own config loader.

Live checks (a real Prometheus querying every dashboard expression against a gateway fed by the demo
app, the image's build and run steps without Docker) are in tests/integration/test_deployment.py.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.registry import build_exporter
from gateway.settings import Settings, parse_settings
from tests.support.deployment import (
    COMPOSE_FILE,
    CONFIG,
    DOCKERFILES,
    K8S_FILES,
    PROMETHEUS_CONFIG,
    REPO,
    RULES,
    RULES_TEST,
    copy_sources,
    dashboard_queries,
    dockerignore_excludes,
    dockerignore_patterns,
    exec_form,
    healthcheck_command,
    load_dashboards,
    load_rules,
    metric_names,
    panels,
    read_dockerfile,
    substitute_grafana_variables,
)

KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())  # native sidecars need 1.29
PODMONITOR_SCHEMA = REPO / "tests" / "data" / "schemas" / "podmonitor-v1-subset.json"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: `make test` installs the Debian package prometheus (needs root + apt)")
    return subprocess.run([path, *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


def validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_errors(schema: dict[str, Any], document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(schema).iter_errors(document)]


def compose_schema() -> dict[str, Any]:
    """The compose-spec schema as check-jsonschema ships it (vendored from compose-spec/compose-spec)."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))
    return schema


def kubernetes_errors(document: dict[str, Any], version: str) -> list[str]:
    if document["kind"] == "PodMonitor":
        return schema_errors(json.loads(PODMONITOR_SCHEMA.read_text(encoding="utf-8")), document)
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path))}: {exc.message}"]
    return []


def kubernetes_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}:{document['kind']}/{document['metadata']['name']}", document)
        for path in K8S_FILES
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))
    ]


def validated_settings(text: str, environ: dict[str, str]) -> Settings:
    """Parse a gateway config as the gateway does and validate every exporter's options."""
    settings = parse_settings(text, environ)
    for exporter in settings.exporters:
        build_exporter(exporter)
    return settings


# --- Prometheus -----------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts rules.yml."""
    result = promtool("check", "rules", RULES)
    assert (0, "") == (result.returncode, result.stderr), result.stdout


def test_alert_rule_unit_tests_pass() -> None:
    """`promtool test rules` passes the unit tests in config/prometheus/tests/."""
    result = promtool("test", "rules", RULES_TEST)
    assert 0 == result.returncode, result.stdout + result.stderr


def test_prometheus_config_loads_both_rule_files() -> None:
    """prometheus.yml is valid (promtool also loads and checks every rule file it names), and it names
    the gateway's rules and the budget rules."""
    result = promtool("check", "config", PROMETHEUS_CONFIG)
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert (0, ["rules.yml", "budget-rules.yml"]) == (result.returncode, config["rule_files"]), result.stdout


def test_every_alert_fires_in_a_unit_test() -> None:
    """Each alert of rules.yml is expected to fire in at least one promtool test case."""
    tests = yaml.safe_load(RULES_TEST.read_text(encoding="utf-8"))["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert {rule["alert"] for rule in load_rules() if "alert" in rule} == fired


def test_every_alert_has_severity_summary_and_a_runbook_that_exists() -> None:
    """Every alert carries a severity, a summary, a description and a runbook_url pointing at a heading
    of docs/deployment.md."""
    headings = re.findall(r"^#+\s+(.+)$", (REPO / "docs" / "deployment.md").read_text(encoding="utf-8"), re.MULTILINE)
    anchors = {re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-") for heading in headings}
    problems = []
    for rule in load_rules():
        if "alert" not in rule:
            continue
        annotations = rule.get("annotations", {})
        runbook = annotations.get("runbook_url", "")
        page, _, anchor = runbook.partition("#")
        if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append(f"{rule['alert']}: severity")
        if not annotations.get("summary") or not annotations.get("description"):
            problems.append(f"{rule['alert']}: summary/description")
        if page != "docs/deployment.md" or anchor not in anchors:
            problems.append(f"{rule['alert']}: runbook_url {runbook!r}")
    assert [] == problems


# --- Grafana --------------------------------------------------------------------------------------


def test_dashboards_are_the_two_expected_ones() -> None:
    """AI overview and Gateway health, with distinct uids, a Prometheus data source variable, and the
    service, tenant and model variables on the AI overview."""
    dashboards = load_dashboards()
    summary = {name: (d["title"], [v["name"] for v in d["templating"]["list"]]) for name, d in dashboards.items()}
    assert {
        "ai-overview.json": ("AI overview", ["datasource", "service", "tenant", "model", "period"]),
        "gateway-health.json": ("Gateway health", ["datasource", "instance"]),
    } == summary
    assert len({d["uid"] for d in dashboards.values()}) == len(dashboards)


@pytest.mark.parametrize("name", ["ai-overview.json", "gateway-health.json"])
def test_dashboard_panels_are_well_formed(name: str) -> None:
    """Unique panel ids; every panel queries through the $datasource variable with unique refIds; the
    grid has no overlaps and stays within 24 columns; every expression uses only known variables."""
    dashboard = load_dashboards()[name]
    problems = []
    ids = [panel["id"] for panel in panels(dashboard)]
    if len(ids) != len(set(ids)):
        problems.append("duplicate panel ids")
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        if grid["x"] + grid["w"] > 24:
            problems.append(f"{panel['title']}: wider than the grid")
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    problems.append(f"{panel['title']} overlaps {cells[(x, y)]}")
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        if not targets or len({t["refId"] for t in targets}) != len(targets):
            problems.append(f"{panel['title']}: no targets or duplicate refIds")
        for source in [panel.get("datasource"), *(t.get("datasource") for t in targets)]:
            if source != {"type": "prometheus", "uid": "${datasource}"}:
                problems.append(f"{panel['title']}: datasource {source}")
    for query in dashboard_queries(name, dashboard):
        try:
            substitute_grafana_variables(query.expr)
        except KeyError as exc:
            problems.append(str(exc))
    assert [] == sorted(set(problems))


def test_every_dashboard_expression_reads_a_metric() -> None:
    """The name extraction the live test relies on finds at least one metric in every expression."""
    empty = [
        q.where for n, d in load_dashboards().items() for q in dashboard_queries(n, d) if not metric_names(q.promql)
    ]
    assert [] == empty


def test_metric_name_extraction() -> None:
    """Functions, keywords, label names, strings and durations are not metric names."""
    expr = (
        'histogram_quantile(0.95, sum by (le, model) (rate(a_bucket{x=~"b|c", y!=""}[5m]))) > 0.5\n'
        "and on (job) b_total offset 10m or vector(0) unless ignoring (z) group_left c:rec"
    )
    assert {"a_bucket", "b_total", "c:rec"} == metric_names(expr)
    assert {"d_count"} == metric_names('label_values(d_count{service_name=~"$service"}, tenant_id)')


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    """The dashboard provider reads the folder compose mounts the dashboards into, and the data sources
    are Prometheus (default, exemplars to Tempo), Tempo and Jaeger at their compose service names."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in compose["services"]["grafana"]["volumes"])
    provider = yaml.safe_load((CONFIG / "grafana/provisioning/dashboards/dashboards.yml").read_text(encoding="utf-8"))
    sources = yaml.safe_load((CONFIG / "grafana/provisioning/datasources/datasources.yml").read_text(encoding="utf-8"))
    assert mounts["../grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    assert {
        ("prometheus", "http://prometheus:9090", True),
        ("tempo", "http://tempo:3200", False),
        ("jaeger", "http://jaeger:16686", False),
    } == {(s["uid"], s["url"], s.get("isDefault", False)) for s in sources["datasources"]}
    prometheus = next(s for s in sources["datasources"] if s["uid"] == "prometheus")
    assert "tempo" == prometheus["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"]


# --- compose --------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec() -> None:
    """docker-compose.yml validates against the compose-spec JSON schema."""
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert [] == schema_errors(compose_schema(), document)


def test_compose_schema_check_is_not_vacuous() -> None:
    """A misspelt service key is reported (the schema really constrains services)."""
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    document["services"]["gateway"]["healthchek"] = {"test": ["CMD", "true"]}
    assert any("healthchek" in error for error in schema_errors(compose_schema(), document))


def test_compose_references_files_that_exist() -> None:
    """Every bind mount, build context and Dockerfile the compose file names exists, and the stack has
    the services the demo needs."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    base = COMPOSE_FILE.parent
    missing = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(".") and not (base / source).exists():
                missing.append(f"{name}: {source}")
        if "build" in service:
            context = base / service["build"]["context"]
            if not (context / service["build"]["dockerfile"]).is_file():
                missing.append(f"{name}: {service['build']}")
    assert [] == missing
    assert {"gateway", "demo-chatbot", "demo-rag", "jaeger", "tempo", "prometheus", "grafana"} == set(
        compose["services"]
    )


def test_compose_gateway_exports_to_jaeger_over_grpc_and_to_tempo_over_http() -> None:
    """The mounted gateway config is valid and has the two exporters of the stack."""
    settings = validated_settings((CONFIG / "compose/gateway.yaml").read_text(encoding="utf-8"), {})
    exporters = {e.name: (e.type, e.options["endpoint"]) for e in settings.exporters}
    assert {"jaeger": ("otlp_grpc", "jaeger:4317"), "tempo": ("otlp_http", "http://tempo:4318")} == exporters
    assert ("jaeger", "tempo") == settings.pipelines["traces"].exporters
    assert settings.genai.budgets.enabled


# --- Kubernetes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_objects_match_their_schemas(version: str) -> None:
    """Every object of config/k8s validates (strict: no unknown fields) against the Kubernetes schemas
    of that version; PodMonitors against the Prometheus Operator's CRD schema (the subset we use)."""
    errors = {name: kubernetes_errors(document, version) for name, document in kubernetes_documents()}
    assert {name: [] for name in errors} == errors


def test_kubernetes_schema_check_is_not_vacuous() -> None:
    """A misspelt probe in the Deployment and a misspelt endpoint key in the PodMonitor are reported."""
    documents = dict(kubernetes_documents())
    deployment = copy.deepcopy(documents["sidecar.yaml:Deployment/chatbot"])
    deployment["spec"]["template"]["spec"]["initContainers"][0]["livenesProbe"] = {}
    monitor = copy.deepcopy(documents["sidecar.yaml:PodMonitor/otel-ai-gateway"])
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    assert kubernetes_errors(deployment, KUBERNETES_VERSIONS[0])
    assert kubernetes_errors(monitor, KUBERNETES_VERSIONS[0])


def test_sidecar_sends_to_the_gateway_on_localhost_and_probes_its_health() -> None:
    """The app container exports to the sidecar's gRPC port on localhost; the sidecar's probes use
    /health/ready and /health/live on its metrics port; it has resource requests; the pod is annotated
    for scraping on that port."""
    deployment = dict(kubernetes_documents())["sidecar.yaml:Deployment/chatbot"]
    pod = deployment["spec"]["template"]
    sidecar = pod["spec"]["initContainers"][0]
    app = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in app["env"]}
    assert "http://localhost:4317" == env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert ("Always", "127.0.0.1:4317") == (
        sidecar["restartPolicy"],
        {e["name"]: e["value"] for e in sidecar["env"]}["GATEWAY_GRPC_ENDPOINT"],
    )
    probes = {kind: sidecar[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {
        "startupProbe": "/health/ready",
        "readinessProbe": "/health/ready",
        "livenessProbe": "/health/live",
    } == probes
    assert {"cpu", "memory"} <= set(sidecar["resources"]["requests"])
    assert ("true", "9464") == (
        pod["metadata"]["annotations"]["prometheus.io/scrape"],
        pod["metadata"]["annotations"]["prometheus.io/port"],
    )


def test_gateway_configs_of_the_kubernetes_files_are_valid() -> None:
    """The tier's ConfigMap and the sidecar's environment (over the image's config) both load."""
    documents = dict(kubernetes_documents())
    tier = validated_settings(documents["gateway-tier.yaml:ConfigMap/otel-ai-gateway"]["data"]["gateway.yaml"], {})
    sidecar = documents["sidecar.yaml:Deployment/chatbot"]["spec"]["template"]["spec"]["initContainers"][0]
    environ = {e["name"]: e["value"] for e in sidecar["env"]}
    image = validated_settings((CONFIG / "container/gateway.yaml").read_text(encoding="utf-8"), environ)
    assert tier.grpc is not None and image.grpc is not None
    assert ("0.0.0.0", ("tempo", "jaeger")) == (tier.grpc.endpoint.host, tier.pipelines["traces"].exporters)
    assert ("127.0.0.1", ("otlp",)) == (image.grpc.endpoint.host, image.pipelines["traces"].exporters)


# --- container image ------------------------------------------------------------------------------


def test_container_config_binds_all_interfaces_and_forwards_nothing_by_default() -> None:
    """With no GATEWAY_* variables the image listens on 0.0.0.0 and has no exporter in any pipeline;
    every exporter is still valid, so listing one is enough to use it."""
    settings = validated_settings((CONFIG / "container/gateway.yaml").read_text(encoding="utf-8"), {})
    assert settings.grpc is not None and settings.http is not None
    hosts = {settings.grpc.endpoint.host, settings.http.endpoint.host, settings.prometheus.endpoint.host}
    assert ({"0.0.0.0"}, [(), (), ()]) == (hosts, [p.exporters for p in settings.pipelines.values()])


def test_dockerfile_is_multi_stage_non_root_with_health_check_and_exec_form() -> None:
    """Two stages on a slim Python 3.11 base; the runtime stage runs as a numeric non-root user, exposes
    the three ports, checks /health/ready with Python (no curl) and starts the gateway in exec form."""
    stages = read_dockerfile(REPO / "Dockerfile")
    runtime = stages[-1]
    assert 2 == len(stages)
    assert {"${PYTHON_IMAGE}"} == {stage.base for stage in stages}
    assert "python:3.11-slim" in (REPO / "Dockerfile").read_text(encoding="utf-8")
    user = runtime.last("USER").split(":")[0]
    assert user.isdigit() and int(user) >= 1000
    assert {"4317", "4318", "9464"} == set(" ".join(runtime.all("EXPOSE")).split())
    health = healthcheck_command(runtime.last("HEALTHCHECK"))
    assert ("python", True) == (health[0], "/health/ready" in health[-1])
    assert ["/opt/otel-ai-gateway/bin/otel-ai-gateway"] == exec_form(runtime.last("ENTRYPOINT"))
    assert ["--config", "/etc/otel-ai-gateway/gateway.yaml"] == exec_form(runtime.last("CMD"))


def test_dockerignore_keeps_what_the_dockerfiles_copy_and_nothing_big() -> None:
    """Every COPY source of both Dockerfiles is in the build context; the venv and tests are not."""
    patterns = dockerignore_patterns()
    copied = [
        source
        for dockerfile in DOCKERFILES
        for stage in read_dockerfile(dockerfile)
        for args in stage.all("COPY")
        for source in copy_sources(args)[0]
        if "from" not in copy_sources(args)[2]
    ]
    assert [] == [source for source in copied if dockerignore_excludes(source, patterns)]
    assert [] == [source for source in copied if not (REPO / source).exists()]
    assert all(dockerignore_excludes(path, patterns) for path in (".venv/bin/python", "tests/unit/x.py", ".git/HEAD"))
