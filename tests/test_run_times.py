"""Run times and the expected-results sheet: the record of the last runs (``docs/run_times.json``,
``mae-nb run --record``), the header line written from it, and ``summary.md``'s per-chapter
numbers and verdict lines.

``tests/test_notebooks.py`` checks that each chapter's smoke run stays within a factor of two of
its recorded smoke run time.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from mae_nb.cli import main
from mae_nb.notebook import (
    RUN_TIME_LINE,
    format_run_time,
    header,
    header_run_time_line,
    lint_notebook,
    new_chapter,
    run_time_line,
    set_run_time_line,
    set_track_run_times,
    stale_numbers,
    track_run_times,
)
from mae_nb.runner import (
    NotebookResult,
    list_notebooks,
    load_run_times,
    record_run_times,
    recorded_seconds,
    run_times_path,
    verdict_lines,
    within_factor,
    write_summary,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = list_notebooks(ROOT / "notebooks")
RECORD = {
    "full": {"00_x": {"seconds": 467.0, "cores": 2}},
    "smoke": {"00_x": {"seconds": 11.4, "cores": 2}},
}


def test_the_record_is_the_repositorys():
    assert run_times_path() == ROOT / "docs" / "run_times.json"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_header_states_the_recorded_run_time(path):
    """The line is written from the record (`mae-nb run --record`), never by hand."""
    run_times = load_run_times()
    assert path.stem in run_times["full"] and path.stem in run_times["smoke"], (
        f"no recorded full and smoke run of {path.stem}: run `mae-nb run {path.stem[:2]} --record`"
        " and `mae-nb run --smoke --record`"
    )
    first = nbformat.read(path, as_version=4).cells[0].source
    assert header_run_time_line(first) == run_time_line(path, run_times), (
        "the header's run time differs from docs/run_times.json: "
        "rewrite it with mae_nb.notebook.set_run_time_line (mae-nb run --record does)"
    )


def test_the_line_rounds_the_record_and_passes_the_stale_number_rule():
    line = run_time_line("00_x.ipynb", RECORD)
    assert "about 8 min (smoke run: about 11 s)" in line and "2-core CPU" in line
    assert (
        stale_numbers(line) == [] and stale_numbers(header("00_x.ipynb", "x", ["a"], RECORD)) == []
    )
    # the same words typed with other numbers than the generated form allows are flagged
    assert stale_numbers(line.replace("about 8 min", "about 8.5 min"))
    assert stale_numbers(line + " It takes 3 min on a laptop.")
    # a chapter without a record points at the README's measured figures
    assert run_time_line("01_y.ipynb", RECORD) == RUN_TIME_LINE
    assert [format_run_time(s) for s in (0.2, 7.4, 89.4, 90, 467)] == [
        "1 s",
        "7 s",
        "89 s",
        "2 min",
        "8 min",
    ]


def test_set_run_time_line_rewrites_only_that_line(tmp_path):
    path = new_chapter(
        tmp_path / "00_x.ipynb",
        "00 · x",
        ["a"],
        None,
        "SMOKE = False",
        [("code", "import mae_nb\nmae_nb.record_metrics({'psnr': 23.0})")],
    )
    before = nbformat.read(path, as_version=4)
    assert set_run_time_line(path, RECORD) is True
    after = nbformat.read(path, as_version=4)
    old, new = before.cells[0].source.splitlines(), after.cells[0].source.splitlines()
    assert [i for i, (a, b) in enumerate(zip(old, new)) if a != b] == [len(old) - 1]
    assert new[-1] == run_time_line(path, RECORD)
    assert [c.source for c in after.cells[1:]] == [c.source for c in before.cells[1:]]
    assert lint_notebook(path) == []
    assert set_run_time_line(path, RECORD) is False  # nothing to change


def test_record_run_times_keeps_other_chapters_and_skips_failures(tmp_path):
    where = tmp_path / "docs" / "run_times.json"
    ok = NotebookResult("00_x", "ok", 12.3, "")
    record_run_times([ok, NotebookResult("01_y", "failed", 1.0, "")], smoke=True, path=where)
    record_run_times([NotebookResult("01_y", "ok", 40.0, "")], smoke=False, path=where)
    assert recorded_seconds("00_x", smoke=True, path=where) == 12.3
    assert recorded_seconds("01_y", smoke=True, path=where) is None
    assert recorded_seconds("01_y", smoke=False, path=where) == 40.0
    entry = json.loads(where.read_text())["smoke"]["00_x"]
    assert entry["source"] == "mae-nb run --record --smoke" and entry["cores"] >= 1


def test_within_a_factor_of_two():
    assert within_factor(20, 11) and within_factor(11, 20) and not within_factor(45, 20)
    assert not within_factor(100, 467) and within_factor(3, 8)  # short runs count as 10 s


def test_record_refuses_runs_with_other_parameters(capsys):
    assert main(["run", "00", "--record", "-p", "SEED", "3"]) == 2
    assert "--record records the run times of the chapters' default runs" in capsys.readouterr().err


def _executed(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    printed = new_code_cell("print(...)")
    printed.outputs = [
        new_output(
            "stream",
            name="stdout",
            text="loss 0.1\n- gain over blur: SUPPORTED. +1.2 ± 0.3 dB over 5 crops\n",
        )
    ]
    shown = new_code_cell("show_markdown(...)")
    shown.outputs = [
        new_output(
            "display_data",
            data={
                "text/markdown": "**Claim 2 · 50 % gives more detail: CONTRADICTED** (-0.5 dB)",
                "text/plain": "<IPython.core.display.Markdown object>",
            },
        )
    ]
    nb.cells = [new_markdown_cell("# x"), printed, shown]
    nbformat.write(nb, path)
    return path


def test_summary_is_an_expected_results_sheet(tmp_path):
    executed = _executed(tmp_path / "04_x.ipynb")
    assert verdict_lines(executed) == [
        "gain over blur: SUPPORTED. +1.2 ± 0.3 dB over 5 crops",
        "Claim 2 · 50 % gives more detail: CONTRADICTED (-0.5 dB)",
    ]
    results = [
        NotebookResult(
            "04_x",
            "ok",
            14.0,
            str(executed),
            metrics={"gain_over_blur_25": 1.234567},
            data="real",
            peak_memory_mb=900.0,
            verdicts=verdict_lines(executed),
        ),
        NotebookResult("00_y", "ok", 7.0, str(tmp_path / "00_y.ipynb"), data="synthetic"),
    ]
    text = write_summary(results, tmp_path / "out", smoke=True, parameters={}).read_text()
    sheet = text.split("## Expected results")[1]
    part04, part00 = sheet.split("### 04_x")[1].split("### 00_y")
    assert "ok, 14.0 s, peak 900 MiB, real data." in part04
    assert "| gain_over_blur_25 | 1.235 |" in part04
    assert "- gain over blur: SUPPORTED. +1.2 ± 0.3 dB over 5 crops" in part04
    assert "- Claim 2 · 50 % gives more detail: CONTRADICTED (-0.5 dB)" in part04
    assert "No verdict lines." in part00 and "synthetic data" in part00


def test_the_instructors_track_states_the_recorded_run_times():
    """docs/instructors.md's one-day track: every chapter, with the recorded times."""
    guide = ROOT / "docs" / "instructors.md"
    run_times = load_run_times()
    rows = track_run_times(guide.read_text())
    assert sorted(rows) == [p.stem for p in NOTEBOOKS]
    for stem, (full, smoke) in rows.items():
        assert (full, smoke) == (
            format_run_time(run_times["full"][stem]["seconds"]),
            format_run_time(run_times["smoke"][stem]["seconds"]),
        ), f"{stem}: run `make run RECORD=1` (it rewrites the table) or fix the table by hand"
    assert "(docs/instructors.md)" in (ROOT / "README.md").read_text()


def test_set_track_run_times_rewrites_only_the_time_columns(tmp_path):
    guide = tmp_path / "instructors.md"
    guide.write_text(
        "| order | chapter | full run | smoke run | in class |\n|---|---|---|---|---|\n"
        "| 1 | [00_x](../notebooks/00_x.ipynb) | 1 s | 1 s | 30 min |\n"
        "| 2 | [01_y](../notebooks/01_y.ipynb) | 5 s | 2 s | 45 min |\n"
    )
    assert set_track_run_times(guide, RECORD) is True
    assert track_run_times(guide.read_text()) == {"00_x": ("8 min", "11 s"), "01_y": ("5 s", "2 s")}
    assert "| 8 min | 11 s | 30 min |" in guide.read_text()
    assert set_track_run_times(guide, RECORD) is False
