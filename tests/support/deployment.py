"""Readers for the deployable files under config/ and the Dockerfile, shared by
tests/unit/test_deploy_files.py and tests/integration/test_deployment.py.

Nothing here validates: it parses (Dockerfile instructions, .dockerignore patterns, Grafana dashboards,
Prometheus rules) and extracts (PromQL metric names) so the tests can check the files against real
tools and a live gateway.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
DASHBOARDS = CONFIG / "grafana" / "dashboards"
RULES = CONFIG / "prometheus" / "rules.yml"
RULES_TEST = CONFIG / "prometheus" / "tests" / "rules_test.yml"
PROMETHEUS_CONFIG = CONFIG / "prometheus" / "prometheus.yml"
COMPOSE_FILE = CONFIG / "compose" / "docker-compose.yml"
K8S_FILES = (CONFIG / "k8s" / "sidecar.yaml", CONFIG / "k8s" / "gateway-tier.yaml")
DOCKERFILES = (REPO / "Dockerfile", CONFIG / "compose" / "demo" / "Dockerfile")

# Series Prometheus writes itself for every scrape target: the only names a dashboard or rule may use
# that the gateway does not serve (the tests check they exist in a real Prometheus scraping it).
PROMETHEUS_SCRAPE_SERIES = frozenset({"up", "scrape_samples_scraped", "scrape_duration_seconds"})

# What the dashboards' Grafana variables stand for when an expression is sent to Prometheus directly.
GRAFANA_VARIABLES: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "service": ".*",
    "tenant": ".*",
    "model": ".*",
    "period": ".*",
    "instance": ".*",
}

# --- PromQL ---------------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?=\s*(\(|\{|\[|\)|,|$|\s|[-+*/^%=!<>]))")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
     "atan2", "inf", "nan", "Inf", "NaN"}
)  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers that are not functions, keywords, labels,
    strings or durations. ``label_values(selector, label)`` (a Grafana variable query) is read as its
    selector."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\blabel_values\s*\(([^,()]*(?:\{[^{}]*\})?)\s*,\s*\w+\s*\)", r"\1", text)
    text = _MATCHERS.sub("{}", text)
    text = _RANGE.sub("[]", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, follower = match.group(1), match.group(2)
        if follower == "(" or name in _KEYWORDS:
            continue
        names.add(name)
    return names


def substitute_grafana_variables(expr: str) -> str:
    """Grafana's ``$var`` / ``${var}`` / ``[[var]]`` replaced as GRAFANA_VARIABLES says (unknown ones fail)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in GRAFANA_VARIABLES:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", replace, expr)


# --- Grafana --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    dashboard: str
    where: str  # panel title and refId, or "variable <name>"
    expr: str  # as written in the dashboard

    @property
    def promql(self) -> str:
        """What Grafana would send: variables substituted, a variable query reduced to its selector."""
        text = substitute_grafana_variables(self.expr)
        match = re.fullmatch(r"\s*label_values\s*\((.*),\s*\w+\s*\)\s*", text, re.DOTALL)
        return match.group(1) if match else text


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included (rows themselves too)."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(name: str, dashboard: Mapping[str, Any]) -> list[Query]:
    queries = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            queries.append(Query(name, f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(
                Query(name, f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query)
            )
    return queries


# --- Prometheus rules -----------------------------------------------------------------------------


def load_rules(path: Path = RULES) -> list[dict[str, Any]]:
    """Every rule of every group of a rules file."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def rule_files() -> list[Path]:
    """The rule files prometheus.yml loads (paths relative to it)."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    return [PROMETHEUS_CONFIG.parent / name for name in config["rule_files"]]


def recorded_names() -> set[str]:
    """Series names written by the recording rules of the rule files prometheus.yml loads."""
    return {rule["record"] for path in rule_files() for rule in load_rules(path) if "record" in rule}


# --- Dockerfile -----------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str:
        found = self.all(instruction)
        assert found, f"stage {self.name or self.base} has no {instruction}"
        return found[-1]


def read_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile: instructions with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    stages: list[Stage] = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            stages.append(Stage(words[0], words[2] if len(words) >= 3 and words[1].upper() == "AS" else None))
        elif stages:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument list; fails for the shell form."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), args
    return value


def copy_sources(args: str) -> tuple[list[str], str, dict[str, str]]:
    """(sources, destination, flags) of a COPY instruction."""
    words = shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return words[:-1], words[-1], flags


def healthcheck_command(args: str) -> list[str]:
    """The exec-form command of ``HEALTHCHECK [options] CMD [...]``."""
    _, sep, command = args.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {args}"
    return exec_form(command)


def env_assignments(args: str) -> dict[str, str]:
    """``ENV A=1 B=2`` (the key=value form)."""
    return dict(word.split("=", 1) for word in shlex.split(args))


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether a context path is left out by .dockerignore patterns (last matching pattern wins; a
    pattern that matches a parent directory matches everything below it)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        matches = body == "**" or any(fnmatch.fnmatchcase(candidate, body) for candidate in candidates)
        if matches or (body.startswith("**/") and any(fnmatch.fnmatchcase(part, body[3:]) for part in parts)):
            excluded = not negated
    return excluded


def dockerignore_patterns() -> list[str]:
    text = (REPO / ".dockerignore").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
