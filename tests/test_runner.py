"""The papermill runner: order, parameters, failures, metrics and the summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mae_nb.errors import NotebookError
from mae_nb.notebook import lint_notebook, new_chapter
from mae_nb.runner import parse_value, record_metrics, resolve_notebooks, run_notebooks


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A two-chapter course: one that records metrics, one that fails in its third code cell."""
    folder = tmp_path_factory.mktemp("notebooks")
    new_chapter(
        folder / "00_ok.ipynb",
        "00 · ok",
        ["x"],
        "1 s",
        "SMOKE = False\nSCALE = 2",
        [
            (
                "code",
                "import os, pathlib\nvalue = 21 * SCALE\nprint('cwd', pathlib.Path.cwd().name)",
            ),
            (
                "code",
                "import mae_nb\n"
                "mae_nb.record_metrics({'value': value, 'smoke': SMOKE}, data='synthetic')",
            ),
        ],
    )
    new_chapter(
        folder / "01_broken.ipynb",
        "01 · broken",
        ["x"],
        "1 s",
        "SMOKE = False",
        [
            ("code", "x = 1"),
            ("code", "raise ValueError('the model diverged')"),
            ("code", "import mae_nb\nmae_nb.record_metrics({'x': x})"),
        ],
    )
    return folder


def test_generated_chapters_pass_the_lint(course):
    assert lint_notebook(course / "00_ok.ipynb") == []


def test_run_records_metrics_runs_in_the_notebooks_folder_and_writes_a_summary(course, tmp_path):
    results = run_notebooks(
        ["00"], smoke=True, parameters={"SCALE": 3}, out_dir=tmp_path, folder=course
    )
    (r,) = results
    assert r.status == "ok", r.error
    assert r.metrics == {"value": 63.0, "smoke": 1.0} and r.data == "synthetic"
    assert r.peak_memory_mb > 10
    executed = json.loads((tmp_path / "executed" / "00_ok.ipynb").read_text())
    outputs = "".join(
        "".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", [])
    )
    assert f"cwd {course.name}" in outputs
    summary = (tmp_path / "summary.md").read_text()
    assert "| [00_ok](executed/00_ok.ipynb) | ok |" in summary and "value=63" in summary
    assert (
        json.loads((tmp_path / "summary.json").read_text())["notebooks"][0]["metrics"]["value"]
        == 63.0
    )


def test_a_run_prints_only_what_helps_the_user(course, tmp_path, capfd):
    # the kernel's own warning about unencrypted TCP came once per notebook; capfd also sees
    # what the kernel process writes to the terminal directly
    echoed = []
    (r,) = run_notebooks(["00"], out_dir=tmp_path, folder=course, echo=echoed.append)
    assert r.status == "ok", r.error
    out, err = capfd.readouterr()
    assert "without encryption" not in out + err, out + err
    assert "WARNING" not in err, err
    assert echoed[0] == "[1/1] 00_ok ..." and echoed[1].startswith("[1/1] 00_ok: ok in ")


def test_a_failing_notebook_names_its_cell_and_the_others_still_run(course, tmp_path):
    results = run_notebooks(None, out_dir=tmp_path, folder=course)
    assert [r.status for r in results] == ["ok", "failed"]
    assert (
        "01_broken.ipynb: cell" in results[1].error
        and "ValueError: the model diverged" in results[1].error
    )
    assert "## Failures" in (tmp_path / "summary.md").read_text()


def test_unknown_parameter_fails_before_anything_runs(course, tmp_path):
    with pytest.raises(
        NotebookError,
        match=r"00_ok.ipynb has no parameter 'SCALEE'; its parameters are: SMOKE, SCALE",
    ):
        run_notebooks(["00"], parameters={"SCALEE": 1}, out_dir=tmp_path, folder=course)
    assert not (tmp_path / "executed").exists()


def test_a_notebook_without_kernel_or_unreadable_is_refused_in_one_line(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()  # as some editors save it: no kernelspec, no language
    nb.cells = [nbformat.v4.new_code_cell("SMOKE = False", metadata={"tags": ["parameters"]})]
    nbformat.write(nb, tmp_path / "00_bare.ipynb")
    with pytest.raises(NotebookError, match="00_bare.ipynb names no kernel .* save it"):
        run_notebooks(["00"], out_dir=tmp_path / "out", folder=tmp_path)
    (tmp_path / "00_bare.ipynb").write_text("<<<<<<< HEAD\n")  # a merge conflict, say
    with pytest.raises(NotebookError, match="00_bare.ipynb is not a notebook Jupyter can read"):
        run_notebooks(["00"], out_dir=tmp_path / "out", folder=tmp_path)


def test_missing_notebook_lists_the_course(course):
    with pytest.raises(
        NotebookError,
        match=r"'07' is not a notebook of the course; expected one of: 00_ok, 01_broken",
    ):
        resolve_notebooks(["07"], course)


def test_parameter_values_are_read_like_papermill():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2] and parse_value("landsat7-rgb") == "landsat7-rgb"


def test_record_metrics_refuses_what_is_not_a_finite_number(monkeypatch, tmp_path):
    monkeypatch.setenv("MAE_NB_METRICS_FILE", str(tmp_path / "m.json"))
    with pytest.raises(ValueError, match="metric 'psnr' is nan"):
        record_metrics({"psnr": float("nan")})
    with pytest.raises(ValueError, match="must be a number"):
        record_metrics({"name": "ok"})
    with pytest.raises(ValueError, match="data must be"):
        record_metrics({"x": 1}, data="imagenet")
    record_metrics({"a": 1})
    record_metrics({"b": 2}, data="real")
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["metrics"] == {"a": 1.0, "b": 2.0} and saved["data"] == "real"


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the fork/exec carry-over is Linux's"
)
def test_peak_memory_is_the_processes_own_not_its_parents():
    # Linux's ru_maxrss carries the parent's peak over fork + exec: a kernel started by a
    # large process would report that process's memory. The child here uses ~30 MiB itself.
    parent = (
        "import subprocess, sys\n"
        "ballast = bytearray(600 * 2**20)\n"
        "for i in range(0, len(ballast), 4096): ballast[i] = 1\n"
        "print(subprocess.run([sys.executable, '-c', 'from mae_nb.runner import peak_memory_mb; "
        "print(peak_memory_mb())'], capture_output=True, text=True, check=True).stdout)\n"
    )
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, check=True)
    assert 5 < float(out.stdout) < 400, out.stdout
