"""The two editions: the learner edition's stubs, the exercise lint, the build, and its sync.

``tests/test_learner_editions.py`` executes the committed learner edition of every chapter.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

import mae_nb.cli
from mae_nb import exercises
from mae_nb.editions import (
    ANSWER_STUB,
    CODE_STUB,
    LEARNERS_SUBDIR,
    build_learners,
    learner_edition,
    lint_exercises,
    stub_code,
)
from mae_nb.errors import InputError, MaeNbError, NotebookError, OutputExistsError
from mae_nb.notebook import binder_url, colab_url, lint_notebook, new_chapter
from mae_nb.runner import list_notebooks, run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


# ----------------------------------------------------------------------------- the checks


def test_answered_names_every_placeholder_and_says_what_to_do():
    exercises.answered(a=0, b=None, c=[])  # filled in, even when falsy
    with pytest.raises(exercises.ExerciseError) as info:
        exercises.answered(a=1, share=..., pair=(..., ...))
    message = str(info.value)
    assert message.startswith(
        "`share`, `pair` are still `...`: replace the `...` in the cell above"
    )
    assert "the comment there is the hint" in message
    assert "`a`" not in message


def test_an_exercise_error_is_a_mae_nb_error_and_an_assertion_error():
    with pytest.raises(MaeNbError):
        exercises.check(False, "count the tiles")
    with pytest.raises(AssertionError, match="Not yet: count the tiles"):
        exercises.check(False, "count the tiles")
    exercises.check(True, "never shown")


def test_close_checks_the_tolerance_and_never_gives_the_answer_away():
    exercises.close(0.58, 0.578125, 0.01, "hint")
    with pytest.raises(exercises.ExerciseError) as info:
        exercises.close(0.75, 0.578125, 0.01, "a patch survives a pass with probability 0.75")
    assert "got 0.75" in str(info.value) and "0.578" not in str(info.value)
    assert str(info.value).endswith("a patch survives a pass with probability 0.75")
    with pytest.raises(exercises.ExerciseError, match=r"is still `\.\.\.`"):
        exercises.close(..., 1.0, 0.1, "hint")
    with pytest.raises(exercises.ExerciseError, match="expected a number, got list"):
        exercises.close([0.5, 1.0], 1.0, 0.1, "hint")
    with pytest.raises(exercises.ExerciseError):
        exercises.close(float("nan"), 1.0, 0.1, "hint")


# ----------------------------------------------------------------------------- stubs


def test_a_code_solution_keeps_its_comments_and_stubs_its_assignments():
    source = (
        "# the share masked at least once by 3 passes of 25 %\n"
        "expected_share = 1 - (1 - 0.25) ** 3\n"
    )
    assert stub_code(source) == (
        "# the share masked at least once by 3 passes of 25 %\nexpected_share = ..."
    )


def test_stubs_keep_the_targets_of_every_kind_of_assignment():
    source = "\n".join(
        [
            "n_hidden = n - int(n * 0.7)  # your answer",
            "a = b = f()",
            "i, j = np.unravel_index(k, shape)",
            "first, *rest = items",
            "(p, q), r = g()",
            "single, = [1]",
            "n: int = 5",
            "declared: float",
            "total = 0",
        ]
    )
    assert stub_code(source).splitlines() == [
        "n_hidden = ...  # your answer",
        "a = b = ...",
        "i, j = ..., ...",
        "first, rest = ..., ...",
        "(p, q), r = (..., ...), ...",
        "single, = ...,",
        "n: int = ...",
        "declared: float",
        "total = ...",
    ]
    namespace: dict = {}
    exec(stub_code(source).replace("declared: float", "declared = 1.0"), namespace)  # it runs
    assert namespace["i"] is ... and namespace["rest"] is ... and namespace["single"] is ...


def test_stubs_drop_every_other_statement_but_keep_its_comments():
    source = (
        "import math\n"
        "print('hello')\n"
        "for b in range(3):\n"
        "    # one probe per encoder block\n"
        "    scores[b] = probe(b)  # macro-F1\n"
        "scores['x'] = 1\n"
        "obj.attr = 2\n"
        "count += 1\n"
        "%time slow()\n"
        "by_block = {\n"
        "    # a comment inside the statement\n"
        "    0: 1,\n"
        "}\n"
    )
    assert stub_code(source).splitlines() == [
        "# one probe per encoder block",
        "# macro-F1",
        "# a comment inside the statement",
        "by_block = ...",
    ]


def test_a_solution_without_assignments_becomes_a_placeholder():
    assert stub_code("print(1)") == CODE_STUB
    assert stub_code("# plot it\nviz.show(x)") == f"# plot it\n{CODE_STUB}"
    assert stub_code("") == CODE_STUB


def test_a_solution_that_does_not_parse_is_an_input_error():
    with pytest.raises(InputError, match="does not parse"):
        stub_code("x = (")


def exercise_notebook() -> nbformat.NotebookNode:
    """A notebook with a code exercise, a prompt with a model answer, and prose around them."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    cells = [
        (new_markdown_cell("# Title"), []),
        (new_code_cell("from mae_nb import exercises\nx = 2"), []),
        (new_markdown_cell("## Exercises"), []),
        (new_markdown_cell("**Exercise 1 · Square.** Square x."), ["exercise"]),
        (new_code_cell("y = 1  # given"), []),
        (new_code_cell("# x squared\nsquare = x**2\nprint(square)"), ["solution"]),
        (
            new_code_cell(
                "exercises.answered(square=square)\nexercises.close(square, 4, 0, 'x * x')"
            ),
            ["check"],
        ),  # fmt: skip
        (new_markdown_cell("**What did you see, and why?**"), ["exercise"]),
        (new_markdown_cell("Four, because two times two."), ["solution"]),
        (new_markdown_cell("## Summary"), []),
    ]
    for cell, tags in cells:
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="out")]
    nb.cells[1].execution_count = 3
    return nb


def test_the_learner_edition_stubs_solutions_keeps_tags_and_ids_and_clears_outputs():
    nb = exercise_notebook()
    learner = learner_edition(nb)
    assert learner.cells[5].source == "# x squared\nsquare = ..."
    assert learner.cells[8].source == ANSWER_STUB
    for before, after in zip(nb.cells, learner.cells):
        assert after.get("id") == before.get("id")
        assert after.metadata.get("tags") == before.metadata.get("tags")
        if "solution" not in before.metadata.get("tags", []):
            assert after.source == before.source
    assert learner.cells[1].outputs == [] and learner.cells[1].execution_count is None
    assert nb.cells[5].source.endswith("print(square)") and nb.cells[1].outputs  # not changed
    nbformat.validate(learner)


# ----------------------------------------------------------------------------- the format's lint


def test_a_notebook_in_the_format_has_no_problems():
    assert lint_exercises(exercise_notebook()) == []


def lint_after(change) -> list[str]:
    nb = exercise_notebook()
    change(nb.cells)
    return lint_exercises(nb)


def test_lint_finds_an_exercise_without_solution():
    def drop_solutions(cells):
        del cells[5:7]
        cells[6].metadata["tags"] = []  # the model answer is now untagged prose

    problems = lint_after(drop_solutions)
    assert any(p.startswith("exercise cell 3 has no `solution` cell") for p in problems), problems


def test_lint_finds_a_solution_outside_an_exercise():
    def untag_task(cells):
        cells[3].metadata["tags"] = []

    problems = lint_after(untag_task)
    assert problems[0].startswith("solution cell 5 is outside an exercise"), problems


def test_lint_finds_a_code_solution_without_its_check():
    def untag_check(cells):
        cells[6].metadata["tags"] = []

    problems = lint_after(untag_check)
    assert problems[0].startswith("code solution cell 5 is not followed by a `check` cell"), (
        problems
    )


def test_lint_finds_a_check_that_does_not_call_answered():
    def skip_answered(cells):
        cells[6].source = "exercises.close(square, 4, 0, 'x * x')"

    problems = lint_after(skip_answered)
    assert problems == [
        "check cell 6 does not call exercises.answered(...): call it first with every name the"
        " learner fills in, so the learner edition fails with a hint, not a NameError"
    ]


def test_lint_finds_a_check_that_reads_a_filled_name_without_answered():
    def forget_a_name(cells):
        cells[5].source = "# x squared\nsquare = x**2\ncube = x**3"
        cells[6].source = "exercises.answered(square=square)\nexercises.check(cube == 8, 'x**3')"

    problems = lint_after(forget_a_name)
    assert problems == [
        "check cell 6 reads `cube`, which the learner fills in, without passing it to"
        " exercises.answered: add cube=cube to that call"
    ]


def test_lint_finds_misplaced_tags_and_imports():
    def misplace(cells):
        cells[5].source = "import math\nsquare = math.pow(x, 2)"
        cells[9].metadata["tags"] = ["check"]

    problems = lint_after(misplace)
    assert any(p.startswith("solution cell 5 imports at its top level") for p in problems)
    assert any(p.startswith("cell 9 is tagged `check` but is markdown") for p in problems)


def test_lint_notebook_applies_the_exercise_lint(tmp_path):
    path = new_chapter(
        tmp_path / "00_ok.ipynb",
        "00 · OK",
        ["x"],
        "1",
        "SMOKE = False",
        [("code", "import mae_nb\nmae_nb.record_metrics({'x': 1.0})")],
    )
    assert lint_notebook(path) == []
    nb = nbformat.read(path, as_version=4)
    cell = new_code_cell("answer = 1")
    cell.metadata["tags"] = ["solution"]
    nb.cells.append(cell)
    nbformat.write(nb, path)
    problems = lint_notebook(path)
    assert any(f"solution cell {len(nb.cells) - 1} is outside an exercise" in p for p in problems)


# ----------------------------------------------------------------------------- the build


def write_course(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("00_one.ipynb", "01_two.ipynb"):
        nbformat.write(exercise_notebook(), folder / name)
    return folder


def test_build_learners_writes_every_chapter_without_outputs(tmp_path):
    src = write_course(tmp_path / "notebooks")
    written = build_learners(src, tmp_path / "learners")
    assert [p.name for p in written] == ["00_one.ipynb", "01_two.ipynb"]
    nb = nbformat.read(written[0], as_version=4)
    assert nb.cells[5].source == "# x squared\nsquare = ..."
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_build_learners_refuses_a_folder_that_holds_files_unless_overwrite(tmp_path):
    src = write_course(tmp_path / "notebooks")
    out = tmp_path / "handout"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "09_gone.ipynb").write_text("{}")
    with pytest.raises(OutputExistsError, match="already holds 2 files .* --overwrite"):
        build_learners(src, out)
    assert sorted(p.name for p in out.iterdir()) == ["09_gone.ipynb", "notes.txt"]
    build_learners(src, out, overwrite=True)
    # the chapters replaced, a chapter the source no longer has removed, other files kept
    assert sorted(p.name for p in out.iterdir()) == ["00_one.ipynb", "01_two.ipynb", "notes.txt"]


def test_build_learners_refuses_bad_sources_and_writes_nothing(tmp_path):
    src = write_course(tmp_path / "notebooks")
    with pytest.raises(InputError, match="cannot replace its source"):
        build_learners(src, src, overwrite=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaeNbError, match="no chapters"):
        build_learners(tmp_path / "empty", tmp_path / "x")
    with pytest.raises(MaeNbError, match="no notebook folder"):
        build_learners(tmp_path / "missing", tmp_path / "x")
    nb = exercise_notebook()
    nb.cells[3].metadata["tags"] = []  # the solution is now outside an exercise
    nbformat.write(nb, src / "01_two.ipynb")
    with pytest.raises(NotebookError, match="01_two.ipynb: solution cell 5 is outside"):
        build_learners(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_build_command_writes_and_then_refuses(tmp_path, capsys):
    src = write_course(tmp_path / "notebooks")
    out = tmp_path / "learners"
    args = ["build", "learners", "--src", str(src), "--out", str(out)]
    assert mae_nb.cli.main(args) == 0
    assert "wrote the learner edition of 2 chapters" in capsys.readouterr().out
    assert mae_nb.cli.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert mae_nb.cli.main([*args, "--overwrite"]) == 0


# ----------------------------------------------------------------------------- the course


def test_the_committed_learner_edition_is_in_sync_with_the_chapters(tmp_path):
    fresh = build_learners(NOTEBOOKS, tmp_path / "learners")
    committed = NOTEBOOKS / LEARNERS_SUBDIR
    assert sorted(p.name for p in committed.glob("*.ipynb")) == sorted(p.name for p in fresh)
    stale = [p.name for p in fresh if p.read_text() != (committed / p.name).read_text()]
    assert not stale, f"notebooks/{LEARNERS_SUBDIR} is out of date for {stale}: run `make learners`"


def test_the_readme_links_both_editions_of_every_chapter():
    readme = (ROOT / "README.md").read_text()
    missing = [
        url(path, learner=learner)
        for path in list_notebooks(NOTEBOOKS)
        for learner in (False, True)
        for url in (colab_url, binder_url)
        if url(path, learner=learner) not in readme
    ]
    assert not missing, f"README.md lacks the links {missing}"


def test_the_runner_and_the_chapter_tests_do_not_take_the_learner_edition():
    chapters = list_notebooks(NOTEBOOKS)
    assert chapters and all(p.parent == NOTEBOOKS for p in chapters)


def test_every_chapter_has_exercises_in_the_format():
    for path in list_notebooks(NOTEBOOKS):
        nb = nbformat.read(path, as_version=4)
        tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
        assert tags.count("exercise") >= 1 and tags.count("check") >= 1, path.name


def test_a_learner_edition_fails_at_its_first_check_and_the_instructor_edition_passes(tmp_path):
    nb = exercise_notebook()
    nb.cells.append(
        new_code_cell("import mae_nb\nmae_nb.record_metrics({'square': float(square)})")
    )
    parameters = new_code_cell("SMOKE = False")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells.insert(1, parameters)
    src = tmp_path / "notebooks"
    src.mkdir()
    nbformat.write(nb, src / "00_square.ipynb")
    learner = build_learners(src, tmp_path / "learners")[0]

    instructor = run_notebook(src / "00_square.ipynb", tmp_path / "out_instructor", timeout=120)
    assert instructor.status == "ok", instructor.error
    assert instructor.metrics == {"square": 4.0}

    result = run_notebook(learner, tmp_path / "out_learner", timeout=120)
    assert result.status == "failed"
    assert first_failure(Path(result.output)) == (first_check(learner), "ExerciseError")


def first_check(path: Path) -> str:
    """The id of the first cell tagged ``check`` in the notebook at ``path``."""
    nb = nbformat.read(path, as_version=4)
    return next(c.id for c in nb.cells if "check" in c.metadata.get("tags", []))


def first_failure(executed: Path) -> tuple[str, str]:
    """(cell id, exception name) of the cell that failed in an executed notebook.

    Every code cell before it must have run without error, and none after it.
    """
    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = [
        i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.get("outputs", []))
    ]
    assert len(failed) == 1, f"expected one failing cell, got {len(failed)}"
    i = failed[0]
    assert all(c.execution_count is not None for c in code[:i]), "a cell before it did not run"
    assert all(c.execution_count is None for c in code[i + 1 :]), "a cell after it ran"
    error = next(o for o in code[i].outputs if o.output_type == "error")
    return code[i].id, error.ename
