"""The learner edition of every chapter runs up to its first exercise check and fails there.

Each committed learner notebook (``notebooks/learners/``, kept in sync by ``test_editions.py``)
is executed in smoke mode, as the chapters are by ``tests/test_notebooks.py``: every cell before
the first cell tagged ``check`` must run, and that check must fail with an ``ExerciseError`` that
says which name is still ``...``, not with a ``NameError`` or a ``TypeError``. Papermill stops at
the first error, so the run ends there.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from mae_nb.editions import LEARNERS_SUBDIR
from mae_nb.runner import list_notebooks, run_notebook

ROOT = Path(__file__).resolve().parents[1]
LEARNERS = list_notebooks(ROOT / "notebooks" / LEARNERS_SUBDIR)


def test_every_chapter_has_a_learner_edition():
    chapters = [p.name for p in list_notebooks(ROOT / "notebooks")]
    assert [p.name for p in LEARNERS] == chapters


def first_check(path: Path) -> tuple[int, str]:
    """(index among the code cells, id) of the first cell tagged ``check``."""
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return next((i, c.id) for i, c in enumerate(code) if "check" in c.metadata.get("tags", []))


def failures(executed: Path) -> tuple[list, int, list]:
    """The executed code cells (papermill's injected parameters left out), the index of the
    first that failed (or -1), and its error outputs."""
    nb = nbformat.read(executed, as_version=4)
    code = [
        c
        for c in nb.cells
        if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
    ]
    for i, c in enumerate(code):
        errors = [o for o in c.get("outputs", []) if o.output_type == "error"]
        if errors:
            return code, i, errors
    return code, -1, []


@pytest.mark.notebook
@pytest.mark.parametrize("path", LEARNERS, ids=[p.stem for p in LEARNERS])
def test_learner_edition_fails_exactly_at_its_first_check(path, tmp_path):
    result = run_notebook(path, tmp_path, smoke=True, timeout=600)
    assert result.status == "failed", "the learner edition ran through: its checks pass on `...`"
    code, failed, errors = failures(Path(result.output))
    index, cell_id = first_check(path)
    assert failed >= 0, result.error
    assert (failed, code[failed].id) == (index, cell_id), (
        f"failed at code cell {failed} ({code[failed].id}), not at the first check (code cell"
        f" {index}, {cell_id}): {errors[0].ename}: {errors[0].evalue}"
    )
    assert errors[0].ename == "ExerciseError", f"{errors[0].ename}: {errors[0].evalue}"
    assert "still `...`" in errors[0].evalue
    assert all(c.execution_count is not None for c in code[:failed]), "a cell before it did not run"
