"""The seams between the packages, read from the source (no import, no server).

``service/`` is exactly what the bento ships: it imports neither MLflow nor Prefect, and every module it
imports from ``features/`` and ``training/`` (transitively) is in ``bentofile.yaml``'s ``include``. The layers
go one way: flows → service → training → features. The telemetry settings have one source
(``features.telemetry``), and no tracked file names a path outside the repository.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from features.telemetry import NO_PHONE_HOME
from flows import packaging

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "training", "service", "flows")
BUILD_TOOLS = {"mlflow", "prefect"}


def _imports(path: Path) -> set[str]:
    """Every absolute module name the file imports, at any depth of its code (functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from features import schema` imports the module features/schema.py
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _module_file(name: str) -> Path | None:
    """The project file of a module name (None for a third-party module or a name that is not a module)."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _closure(start: set[Path]) -> set[Path]:
    """The project files ``start`` imports, transitively, with their packages' ``__init__.py``."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c imports a and a.b first
                found = _module_file(".".join(parts[:depth]))
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def _service_files() -> set[Path]:
    return set((REPO_ROOT / "service").rglob("*.py"))


def test_the_closure_follows_imports_inside_functions(tmp_path: Path):
    """The checker itself: an import inside a function body counts, a third-party one is ignored."""
    module = tmp_path / "m.py"
    module.write_text(
        "import numpy\n\ndef f():\n    from features import schema\n    import mlflow.xgboost\n"
    )
    assert {"features.schema", "mlflow.xgboost", "numpy"} <= _imports(module)
    assert REPO_ROOT / "features" / "schema.py" in _closure({module})


@pytest.mark.parametrize("path", sorted(_service_files()), ids=lambda p: p.name)
def test_nothing_the_bento_ships_imports_mlflow_or_prefect(path: Path):
    for shipped in _closure({path}):
        tops = {name.split(".")[0] for name in _imports(shipped)}
        assert not tops & BUILD_TOOLS, f"{shipped.relative_to(REPO_ROOT)} imports {tops & BUILD_TOOLS}"


def test_every_module_the_service_imports_is_in_the_bento():
    needed = _closure(_service_files())
    included = set(packaging.included_files())
    missing = sorted(p.relative_to(REPO_ROOT).as_posix() for p in needed - included)
    assert not missing, f"add to bentofile.yaml include: {missing}"
    assert _service_files() <= included
    assert not {p for p in needed if p.parts[len(REPO_ROOT.parts)] == "flows"}


def test_the_layers_go_one_way():
    """features imports no other layer; training only features; service no flows."""
    allowed = {"features": {"features"}, "training": {"features", "training"}}
    allowed["service"] = allowed["training"] | {"service"}
    for package, ok in allowed.items():
        for path in (REPO_ROOT / package).rglob("*.py"):
            used = {n.split(".")[0] for n in _imports(path)} & set(PACKAGES)
            assert used <= ok, f"{path.relative_to(REPO_ROOT)} imports {used - ok}"


def _shell_settings(text: str) -> dict[str, str]:
    """``NAME=value`` / ``NAME := value`` assignments of the telemetry variables in a shell script or Makefile."""
    names = "|".join(NO_PHONE_HOME)
    return dict(re.findall(rf"\b({names})\s*:?=\s*([^\s#]+)", text))


@pytest.mark.parametrize(
    ("path", "required"),
    [
        ("Makefile", set(NO_PHONE_HOME)),
        ("bench/common.sh", {"BENTOML_DO_NOT_TRACK", "DO_NOT_TRACK"}),
        ("scripts/test_container.sh", {"BENTOML_DO_NOT_TRACK", "DO_NOT_TRACK"}),
    ],
)
def test_the_shell_copies_of_the_telemetry_settings_match_the_one_source(path: str, required: set[str]):
    found = _shell_settings((REPO_ROOT / path).read_text())
    assert required <= set(found), f"{path} lacks {required - set(found)}"
    assert found == {k: NO_PHONE_HOME[k] for k in found}


def test_the_bento_sets_the_telemetry_settings_of_the_one_source():
    envs = {e["name"]: e["value"] for e in yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())["envs"]}
    shared = {k: v for k, v in envs.items() if k in NO_PHONE_HOME}
    assert {"BENTOML_DO_NOT_TRACK", "DO_NOT_TRACK"} <= set(shared)
    assert shared == {k: NO_PHONE_HOME[k] for k in shared}


def test_no_tracked_file_names_a_path_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = re.compile(r"(?<![\w./:])/(work|root|home)/\w")  # not a file:/// URL in sample data
    offenders = [
        f
        for f in tracked
        if f != "uv.lock" and (REPO_ROOT / f).is_file() and outside.search(_text(REPO_ROOT / f))
    ]
    assert not offenders


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError:
        return ""
