"""How people launch the course: each notebook's Colab and Binder badges, the Colab install cell.

The install cell is run for real, in a fresh virtual environment that has no ``mae_nb``: like
Colab, which comes with PyTorch, NumPy and friends but not with this course, the environment sees
the run-time dependencies of ``mae_nb`` (and nothing else: no test extras, no JupyterLab unless
``mae_nb`` needs it) through a path file pointing at links into this project's environment, and
can reach the package index. With ``MAE_NB_INSTALL_SPEC`` pointing at a copy of the working tree,
the cell must install ``mae_nb`` there with pip, and then every ``import`` of every notebook must
succeed in that environment. Binder's side (environment.yml and postBuild) is in
``tests/test_environment.py``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import nbformat
import pytest

import mae_nb
from mae_nb.editions import LEARNERS_SUBDIR
from mae_nb.notebook import INSTALL_CELL, INSTALL_SPEC, INSTALL_SPEC_ENV, binder_url, colab_url
from mae_nb.runner import list_notebooks

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# PyPI names of environment.yml's conda-forge packages where they differ (python itself: none)
PYPI_NAME = {"pytorch-cpu": "torch", "python": None}
NOTEBOOKS = list_notebooks(ROOT / "notebooks")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What a pip install of the package needs from the working tree (what an sdist would hold).
PACKAGE_FILES = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "setup.py",
    "setup.cfg",
    "MANIFEST.in",
    "mae_nb",
)
_LINK = re.compile(r"\]\((https?://[^)\s]+)\)")


def first_cell_links(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return _LINK.findall(nb.cells[0].source)


def homepage_repository() -> str:
    url = PYPROJECT["project"]["urls"]["Homepage"]
    m = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)/?", url)
    assert m, f"pyproject's Homepage {url} is not a GitHub repository"
    return m.group(1)


# --------------------------------------------------------------------------- badges


def test_repository_and_default_branch_agree_everywhere():
    assert mae_nb.REPOSITORY == homepage_repository()
    assert (
        INSTALL_SPEC
        == f"mae-nb @ git+https://github.com/{mae_nb.REPOSITORY}@{mae_nb.DEFAULT_BRANCH}"
    )
    if (ROOT / ".git").exists() and shutil.which("git"):
        refs = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "for-each-ref",
                "--format=%(refname)",
                "refs/heads",
                "refs/remotes",
            ],
            capture_output=True,
            text=True,
        ).stdout.split()
        branches = {
            r.split("/", 3)[-1] if r.startswith("refs/remotes/") else r.split("/", 2)[-1]
            for r in refs
        }
        if branches - {"HEAD"}:
            assert mae_nb.DEFAULT_BRANCH in branches, (
                f"the badges point at branch {mae_nb.DEFAULT_BRANCH!r}, which this repository "
                f"lacks: {sorted(branches)}"
            )
        head = subprocess.run(
            ["git", "-C", str(ROOT), "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if head:
            assert head.rsplit("/", 1)[-1] == mae_nb.DEFAULT_BRANCH, (
                f"origin's default branch is {head}"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_badges_open_both_editions_of_this_notebook_on_the_default_branch(path):
    instructor = path.relative_to(ROOT).as_posix()  # notebooks/NN_topic.ipynb
    learner = f"notebooks/{LEARNERS_SUBDIR}/{path.name}"  # its learner edition
    links = first_cell_links(path)
    colab = [u for u in links if u.startswith("https://colab.research.google.com/github/")]
    binder = [u for u in links if u.startswith("https://mybinder.org/v2/gh/")]
    assert len(colab) == 2 and len(binder) == 2, (
        f"expected a Colab and a Binder link for each edition, got {links}"
    )

    for rel, colab_link, binder_link, is_learner in zip(
        (instructor, learner), colab, binder, (False, True)
    ):
        m = re.fullmatch(
            r"https://colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/([^/]+)/(.+)",
            colab_link,
        )
        assert m, f"not a Colab GitHub link: {colab_link}"
        assert m.groups() == (homepage_repository(), mae_nb.DEFAULT_BRANCH, rel), colab_link

        url = urlsplit(binder_link)
        parts = url.path.split("/")  # ['', 'v2', 'gh', owner, repo, branch]
        assert len(parts) == 6, binder_link
        assert ("/".join(parts[3:5]), parts[5]) == (
            homepage_repository(),
            mae_nb.DEFAULT_BRANCH,
        ), binder_link
        assert [unquote(p) for p in parse_qs(url.query)["labpath"]] == [rel], binder_link

        assert (ROOT / rel).is_file(), f"{rel} is missing: run `make learners`"
        assert (colab_link, binder_link) == (  # the builders agree
            colab_url(path, learner=is_learner),
            binder_url(path, learner=is_learner),
        )
    images = [u for u in links if u.endswith(".svg")]
    assert "https://colab.research.google.com/assets/colab-badge.svg" in images
    assert "https://mybinder.org/badge_logo.svg" in images


def test_every_notebook_has_the_same_install_cell():
    cells = {nbformat.read(p, as_version=4).cells[1].source.strip() for p in NOTEBOOKS}
    assert cells == {INSTALL_CELL}


# --------------------------------------------------------------------------- a fresh environment


def runtime_closure(
    requirements: list[str] | None = None, missing: set[str] | None = None
) -> set[str]:
    """Distributions needed at run time by ``requirements``, recursively.

    ``requirements`` defaults to pyproject's dependencies of ``mae_nb``; markers (and requested
    extras) are evaluated for this interpreter. A distribution not installed here fails, unless
    ``missing`` is a set to collect its name in.
    """
    if requirements is None:
        requirements = PYPROJECT["project"]["dependencies"]
    todo = [(Requirement(r), "") for r in requirements]
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        for ex in [""] + sorted(req.extras):
            if (name, ex) in seen:
                continue
            seen.add((name, ex))
            names.add(name)
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                if missing is None:
                    pytest.fail(f"{name} (needed by mae_nb) is not installed in {sys.prefix}")
                missing.add(name)
                names.discard(name)
                continue
            todo += [(Requirement(r), ex) for r in dist.requires or []]
    return names


def link_distributions(names: set[str], folder: Path) -> Path:
    """A folder of links to the installed files of ``names`` (top-level packages and metadata)."""
    folder.mkdir(parents=True)
    for name in sorted(names):
        dist = metadata.distribution(name)
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        tops |= (
            {Path(dist._path).name} if hasattr(dist, "_path") else set()
        )  # the .dist-info folder
        for top in tops:
            if top in ("..", "__pycache__") or top.endswith(".pth") or not (base / top).exists():
                continue
            if not (folder / top).exists():
                (folder / top).symlink_to(base / top)
    return folder


def make_venv(where: Path, visible: Path, *, with_pip: bool = True) -> Path:
    """A fresh virtual environment that also sees the packages linked in ``visible``; its python."""
    args = [sys.executable, "-m", "venv", str(where)] + ([] if with_pip else ["--without-pip"])
    subprocess.run(args, check=True, capture_output=True, timeout=180)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "_course_dependencies.pth").write_text(f"{visible}\n")
    return python


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return {**env, **extra}


def copy_package(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in PACKAGE_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.is_file():
            shutil.copy2(src, dst / name)
    return dst


def notebook_imports(path: Path) -> list[str]:
    """Every ``import``/``from ... import`` statement in a notebook's code cells."""
    nb = nbformat.read(path, as_version=4)
    lines = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(
            line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                lines.append(ast.unparse(node))
    return lines


_CHECK_IMPORTS = """
import json, sys
failed = {}
for notebook, lines in json.loads(sys.argv[1]).items():
    for line in lines:
        try:
            exec(line, {})
        except Exception as exc:
            failed.setdefault(notebook, []).append(f"{line}: {type(exc).__name__}: {exc}")
print(json.dumps(failed))
"""


@pytest.mark.timeout(600)
def test_colab_install_cell_installs_the_working_tree_and_every_notebook_imports(tmp_path):
    work = tmp_path / "work"  # never the repository: there ``import mae_nb`` would find the source
    work.mkdir()
    deps = link_distributions(runtime_closure() - {"mae-nb"}, tmp_path / "deps")
    python = make_venv(tmp_path / "venv", deps)
    env = clean_env()

    def run(code: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(python), "-c", code],
            cwd=work,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=400,
        )

    # Fresh: no mae_nb, but its dependencies at versions pyproject accepts (pip only adds mae_nb).
    probe = run(
        "import importlib.util, json, sys; from importlib import metadata;"
        "print(json.dumps([importlib.util.find_spec('mae_nb') is None, sys.prefix,"
        "{d.metadata['Name'].lower(): d.version for d in metadata.distributions()}]))"
    )
    assert probe.returncode == 0, probe.stderr
    fresh, prefix, versions = json.loads(probe.stdout)
    assert fresh, "the fresh environment can already import mae_nb"
    assert Path(prefix) == tmp_path / "venv"
    for spec in PYPROJECT["project"]["dependencies"]:
        req = Requirement(spec)
        have = versions.get(canonicalize_name(req.name)) or versions.get(req.name.lower())
        assert have and req.specifier.contains(have, prereleases=True), (
            f"{req} not satisfied: {have}"
        )

    # The notebook's own install cell, as Colab runs it, with the spec pointing at the working tree.
    tree = copy_package(tmp_path / "tree")
    cell = nbformat.read(NOTEBOOKS[0], as_version=4).cells[1].source
    installed = run(cell, **{INSTALL_SPEC_ENV: f"mae-nb @ {tree.as_uri()}"})
    assert installed.returncode == 0, (
        f"the install cell failed:\n{installed.stdout}\n{installed.stderr}"
    )
    where = run("import mae_nb; print(mae_nb.__file__, mae_nb.__version__)")
    assert where.returncode == 0, where.stderr
    file, version = where.stdout.split()
    assert Path(file).is_relative_to(tmp_path / "venv"), (
        f"mae_nb came from {file}, not the fresh environment"
    )
    assert version == mae_nb.__version__

    # Run again, it is a no-op (it must not call pip: this spec could not be installed).
    again = run(cell, **{INSTALL_SPEC_ENV: str(tmp_path / "no-such-package")})
    assert again.returncode == 0, again.stderr

    imports = {p.stem: notebook_imports(p) for p in NOTEBOOKS}
    assert all(imports.values()), (
        f"notebooks without imports: {[k for k, v in imports.items() if not v]}"
    )
    checked = subprocess.run(
        [str(python), "-c", _CHECK_IMPORTS, json.dumps(imports)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout.strip().splitlines()[-1]) == {}


@pytest.mark.timeout(300)
def test_binder_postbuild_installs_the_package_into_what_environment_yml_lists(tmp_path):
    """Binder builds environment.yml, then runs postBuild in the repository. Here: a fresh
    environment that sees only environment.yml's packages (and what they need), a copy of the
    working tree, and postBuild run there as repo2docker runs it."""
    import yaml

    listed = [
        d
        for d in yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
        if isinstance(d, str)
    ]
    names = []
    for spec in listed:
        name = re.split(r"[<>=!~ ]", spec, maxsplit=1)[0].strip()
        pypi = PYPI_NAME.get(name, name)
        if pypi is not None:
            names.append(pypi)
    absent: set[str] = (
        set()
    )  # listed, but not installed here (e.g. wheel): cannot be part of the copy
    deps = link_distributions(runtime_closure(names, absent) - {"mae-nb"}, tmp_path / "deps")
    python = make_venv(
        tmp_path / "venv", deps, with_pip=False
    )  # pip comes from environment.yml, as on Binder
    tree = copy_package(tmp_path / "repo")
    shutil.copy2(ROOT / "postBuild", tree / "postBuild")
    env = clean_env(PATH=f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    built = subprocess.run(
        ["bash", "./postBuild"], cwd=tree, env=env, capture_output=True, text=True, timeout=240
    )
    assert built.returncode == 0, (
        "postBuild failed in an environment holding what environment.yml lists "
        f"({', '.join(sorted(names))}; not installed here, so left out: "
        f"{sorted(absent) or 'none'}):\n"
        f"{built.stdout[-2000:]}\n{built.stderr[-3000:]}"
    )
    assert f"mae_nb {mae_nb.__version__} installed" in built.stdout
    where = subprocess.run(
        [str(python), "-c", "import mae_nb; print(mae_nb.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(tree), (
        "postBuild did not install the repository's package"
    )
