"""Every third-party module the service imports comes from a distribution its pyproject declares.

`make run` installs only `[project.dependencies]`; the test extras pull in more (the OTel SDK
exporters bring googleapis-common-protos, for one). A module that only a test extra happens to
install passes the suite and breaks `make run` and the Docker image, as `google.rpc` once did.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from importlib.metadata import distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PACKAGES = ("gateway", "proto_handlers")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        _normalized(re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0]) for requirement in project["dependencies"]
    }


def _imported_modules() -> set[str]:
    """Absolute imports of the service's modules, outside the standard library and the service itself."""
    found: set[str] = set()
    for package in SERVICE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in SERVICE_PACKAGES and top != "__future__":
                        found.add(name)
    return found


def _owners() -> dict[str, str]:
    """Installed file, relative to its site directory (as RECORD lists it) -> its distribution."""
    owners: dict[str, str] = {}
    for dist in distributions():
        name = _normalized(dist.metadata["Name"])
        for line in (dist.read_text("RECORD") or "").splitlines():  # RECORD: path,hash,size (paths have no commas here)
            owners[line.partition(",")[0]] = name
    return owners


def _relative_to_sys_path(origin: Path) -> list[str]:
    return [
        origin.relative_to(entry).as_posix()
        for entry in map(Path, sys.path)
        if entry.is_absolute() and origin.is_relative_to(entry)
    ]


def test_every_imported_distribution_is_a_declared_runtime_dependency() -> None:
    owners = _owners()
    declared = _declared()
    undeclared: dict[str, str] = {}
    for module in sorted(_imported_modules()):
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{module} is imported by the service but not installed"
        locations = list(spec.submodule_search_locations or ())
        origin = Path(spec.origin) if spec.origin not in (None, "namespace") else Path(locations[0]) / "__init__.py"
        owner = next((owners[path] for path in _relative_to_sys_path(origin) if path in owners), None)
        assert owner is not None, f"no installed distribution owns {module} ({origin})"
        if owner not in declared:
            undeclared[module] = owner
    assert undeclared == {}
