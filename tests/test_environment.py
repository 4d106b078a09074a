"""The launch environments agree with the package: conda (Binder) deps, postBuild, CI, README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names of PyPI packages where they differ
CONDA_NAME = {"torch": "pytorch-cpu"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].strip().lower()


def test_environment_yml_lists_every_dependency_of_the_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {CONDA_NAME.get(_name(d), _name(d)) for d in pyproject["project"]["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"], "environment.yml must resolve from conda-forge alone"
    listed = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    assert needed - listed == set(), f"environment.yml lacks {sorted(needed - listed)}"
    assert "pytorch" not in listed, (
        "use pytorch-cpu from conda-forge, not the frozen pytorch package"
    )
    assert "torchvision" in listed, "timm needs torchvision"


def test_postbuild_installs_the_package_and_stops_on_errors():
    text = (ROOT / "postBuild").read_text()
    assert re.search(r"^set -e", text, re.M), "postBuild must stop on the first error (set -e)"
    assert re.search(r"pip install .*--no-deps.* -e \.|pip install .*-e \.", text), (
        "postBuild must install mae_nb"
    )


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make run" in readme
    assert re.search(r"^make test$", ci, re.M)


def test_make_test_runs_ruff_then_the_import_contract_then_pytest():
    # the conventions run in CI (`.ci/run` is `make test`), cheapest first; make stops at the
    # first failing line
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "the Makefile has no test target"
    lines = [line.strip() for line in recipe.group(1).splitlines()]
    assert lines == ["$(VENV)/bin/ruff check", "$(VENV)/bin/lint-imports", "$(PY) -m pytest"]
    assert "[tool.importlinter]" in (ROOT / "pyproject.toml").read_text()


def test_python_requirement_is_at_least_310():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.10"
    assert pyproject["project"]["scripts"]["mae-nb"] == "mae_nb.cli:main"


def test_environment_yml_provides_what_postbuild_builds_with():
    # postBuild installs with --no-build-isolation (pip must not touch the conda packages), so
    # pip and the build backend pyproject names must come from environment.yml itself:
    # conda-forge's pip no longer pulls in setuptools and wheel. (tests/test_launch.py runs
    # postBuild in a fresh environment.)
    text = (ROOT / "postBuild").read_text()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    assert "pip" in listed, "postBuild runs pip: environment.yml must list pip"
    if "--no-build-isolation" in text:
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
        backend = {_name(r) for r in pyproject["build-system"]["requires"]}
        assert backend - listed == set(), (
            "postBuild builds without isolation, so environment.yml must list "
            f"{sorted(backend - listed)} (pyproject's build-system.requires)"
        )
