"""Two editions from one source: the committed notebooks (instructor) and the learner edition.

An exercise in a chapter is a run of consecutive cells: a markdown cell tagged ``exercise``
(the task), one or more cells tagged ``solution`` (what the learner must write), and, after
code solution cells, a code cell tagged ``check`` that calls ``exercises.answered(...)`` and
then ``exercises.check``/``exercises.close``. Untagged code cells inside the run are code the
learner is given. The learner edition (:func:`learner_edition`, ``mae-nb build learners``)
turns every ``solution`` cell into a stub:

- a code solution keeps its comment lines (the hints), and every top-level assignment
  ``name = <anything>`` becomes ``name = ...``; every other top-level statement is dropped. A
  cell with no assignment left becomes ``...  # your code here``;
- a markdown solution (a model answer) becomes ``**Your answer:** ...``.

The checks stay, so a learner edition fails at its first check with an ``ExerciseError`` that
says which name still is ``...``. :func:`lint_exercises` finds exercises that break the format.
"""

from __future__ import annotations

import ast
import copy
import io
import re
import tokenize
from pathlib import Path
from typing import Any

from mae_nb.errors import InputError, MissingFileError, NotebookError, OutputExistsError

#: Cell tags of the exercise format.
EXERCISE_TAG, SOLUTION_TAG, CHECK_TAG = "exercise", "solution", "check"
#: Where the learner edition of ``notebooks/NN_topic.ipynb`` lives, relative to ``notebooks/``.
LEARNERS_SUBDIR = "learners"
#: What a markdown solution (a model answer) becomes in the learner edition.
ANSWER_STUB = "**Your answer:** ..."
#: What a code solution without any assignment becomes in the learner edition.
CODE_STUB = "...  # your code here"
#: The chapters of a folder (the same pattern as the runner's).
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"

_MAGIC = re.compile(r"^\s*[%!]")


def tags(cell: Any) -> list[str]:
    """The tags of a notebook cell (an empty list when it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))


def _parse(source: str) -> ast.Module:
    """``source`` parsed, with IPython magics (``%...``, ``!...``) blanked out."""
    lines = ["" if _MAGIC.match(line) else line for line in source.splitlines()]
    return ast.parse("\n".join(lines))


def _comments(source: str) -> dict[int, tuple[str, bool]]:
    """Line number -> (comment text, whether the comment is the whole line)."""
    found: dict[int, tuple[str, bool]] = {}
    lines = source.splitlines()
    text = "\n".join("" if _MAGIC.match(line) else line for line in lines) + "\n"
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                row, col = tok.start
                whole = not lines[row - 1][:col].strip()
                found[row] = (tok.string, whole)
    except (tokenize.TokenError, IndentationError):  # the caller's ast.parse said it parses
        pass
    return found


def _target_text(target: ast.expr) -> tuple[str, str] | None:
    """(target, placeholder value) for an assignment target made of names, else None."""
    if isinstance(target, ast.Name):
        return target.id, "..."
    if isinstance(target, ast.Starred):
        return _target_text(target.value)
    if isinstance(target, (ast.Tuple, ast.List)) and target.elts:
        parts = [_target_text(element) for element in target.elts]
        if any(part is None for part in parts):
            return None
        names = ", ".join(part[0] for part in parts)
        values = ", ".join(part[1] for part in parts)
        if len(parts) == 1:
            names, values = names + ",", values + ","
        return f"({names})", f"({values})"
    return None


def _stub_lines(node: ast.stmt, source: str) -> list[str]:
    """What the learner edition writes for one top-level statement of a code solution."""
    if isinstance(node, ast.Assign):
        texts = [_target_text(target) for target in node.targets]
        texts = [text for text in texts if text is not None]
        if not texts:
            return []
        bare = [(name.removeprefix("(").removesuffix(")"), value) for name, value in texts]
        if all(value == "..." for _, value in bare):
            return [" = ".join(name for name, _ in bare) + " = ..."]
        return [f"{name} = {value.removeprefix('(').removesuffix(')')}" for name, value in bare]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        annotation = ast.get_source_segment(source, node.annotation) or ast.unparse(node.annotation)
        if node.value is None:
            return [f"{node.target.id}: {annotation}"]
        return [f"{node.target.id}: {annotation} = ..."]
    return []


def stub_code(source: str) -> str:
    """The learner edition of a code ``solution`` cell: its comments, and ``name = ...`` stubs.

    Comment lines stay in place (dedented); a top-level assignment keeps its target
    (``a = b = ...``, ``x, y = ..., ...``, ``n: int = ...``) and its end-of-line comment; every
    other top-level statement is dropped, its comments kept as comment lines. Without any
    assignment left, the cell ends with ``...  # your code here``.
    """
    source = source.rstrip()
    try:
        tree = _parse(source)
    except SyntaxError as exc:
        raise InputError(
            f"a solution cell does not parse ({exc.msg}, line {exc.lineno}): fix it in the source"
        ) from None
    comments = _comments(source)
    spans = {node.lineno: node for node in tree.body}
    out: list[str] = []
    stubs = 0
    line, last = 1, len(source.splitlines())
    while line <= last:
        node = spans.get(line)
        if node is None:
            if line in comments:
                out.append(comments[line][0])
            line += 1
            continue
        end = node.end_lineno or line
        inside = [comments[n] for n in range(line, end + 1) if n in comments]
        stub = _stub_lines(node, source)
        if stub:
            out.extend(text for text, whole in inside if whole)
            trailing = [text for text, whole in inside if not whole]
            if trailing:
                stub[-1] = f"{stub[-1]}  {trailing[0]}"
            out.extend(stub)
            stubs += len(stub)
        else:
            out.extend(text for text, _ in inside)
        line = end + 1
    if not stubs:
        out.append(CODE_STUB)
    return "\n".join(out)


def learner_edition(nb: Any) -> Any:
    """A learner edition of the notebook ``nb``: solution cells stubbed, outputs cleared.

    The cells keep their ids and tags (so tests can find the checks); ``nb`` is not changed.
    """
    learner = copy.deepcopy(nb)
    for index, cell in enumerate(learner.cells):
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if SOLUTION_TAG not in tags(cell):
            continue
        if cell.cell_type == "markdown":
            cell.source = ANSWER_STUB
        elif cell.cell_type == "code":
            try:
                cell.source = stub_code(cell.source)
            except InputError as exc:
                raise NotebookError(f"cell {index}: {exc}") from None
    return learner


# --- the format's rules ----------------------------------------------------------------------


def _assigned_names(source: str) -> set[str]:
    """Names a code solution assigns at its top level (those the learner edition stubs)."""
    names: set[str] = set()
    for node in _parse(source).body:
        if isinstance(node, ast.Assign):
            targets = [t for t in node.targets if _target_text(t) is not None]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target] if isinstance(node.target, ast.Name) else []
        else:
            continue
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _answered_calls(tree: ast.Module) -> list[ast.Call]:
    """Calls of ``exercises.answered(...)`` (or a bare ``answered(...)``) in ``tree``."""
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr == "answered") or (
            isinstance(func, ast.Name) and func.id == "answered"
        ):
            calls.append(node)
    return calls


def _check_problems(index: int, source: str, filled: set[str]) -> list[str]:
    """What is wrong with the check cell ``index``, given the names its solutions fill in."""
    try:
        tree = _parse(source)
    except SyntaxError as exc:
        return [f"check cell {index} does not parse ({exc.msg}, line {exc.lineno})"]
    calls = _answered_calls(tree)
    if not calls:
        return [
            f"check cell {index} does not call exercises.answered(...): call it first with every"
            " name the learner fills in, so the learner edition fails with a hint, not a NameError"
        ]
    passed = {kw.arg for call in calls for kw in call.keywords if kw.arg}
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    missing = sorted((read & filled) - passed)
    if missing:
        names = ", ".join(f"{name}={name}" for name in missing)
        return [
            f"check cell {index} reads {', '.join(f'`{n}`' for n in missing)}, which the learner"
            f" fills in, without passing it to exercises.answered: add {names} to that call"
        ]
    return []


def lint_exercises(nb: Any) -> list[str]:
    """Problems with the exercises of notebook ``nb``; an empty list means they follow the format.

    Cells are named by their index in the notebook (0 is the first cell).
    """
    problems: list[str] = []
    cells = nb.cells
    in_run = False  # inside a run of cells that an `exercise` cell opened
    run_start, run_solutions = -1, 0
    filled: set[str] = set()  # names the current run's code solutions fill in

    def close_run() -> None:
        if in_run and not run_solutions:
            problems.append(
                f"exercise cell {run_start} has no `solution` cell: tag the cell(s) with the"
                " answer `solution` (code the learner writes, or a markdown model answer)"
            )

    for i, cell in enumerate(cells):
        tagged = set(tags(cell)) & {EXERCISE_TAG, SOLUTION_TAG, CHECK_TAG}
        if len(tagged) > 1:
            problems.append(f"cell {i} is tagged {sorted(tagged)}: give it one of them")
        if EXERCISE_TAG in tagged:
            if cell.cell_type != "markdown":
                problems.append(f"cell {i} is tagged `exercise` but is code: the task is markdown")
            if not in_run or run_solutions:  # a new exercise (a prompt after a check is one too)
                close_run()
                in_run, run_start, run_solutions = True, i, 0
        elif SOLUTION_TAG in tagged:
            if not in_run:
                problems.append(
                    f"solution cell {i} is outside an exercise: put a markdown cell tagged"
                    " `exercise` (the task) before it, or remove its `solution` tag"
                )
            run_solutions += 1
            if cell.cell_type == "code":
                try:
                    filled |= _assigned_names(cell.source)
                    tree = _parse(cell.source)
                except SyntaxError as exc:
                    problems.append(f"solution cell {i} does not parse ({exc.msg})")
                    tree = ast.Module(body=[], type_ignores=[])
                imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
                if imports:
                    problems.append(
                        f"solution cell {i} imports at its top level, which the learner edition"
                        " drops: move the import to the chapter's import cell"
                    )
                after = cells[i + 1] if i + 1 < len(cells) else None
                if after is None or not (
                    after.cell_type == "code"
                    and (CHECK_TAG in tags(after) or SOLUTION_TAG in tags(after))
                ):
                    problems.append(
                        f"code solution cell {i} is not followed by a `check` cell: add a code"
                        " cell tagged `check` right after it that calls exercises.answered(...)"
                    )
        elif CHECK_TAG in tagged:
            before = cells[i - 1] if i > 0 else None
            if cell.cell_type != "code":
                problems.append(f"cell {i} is tagged `check` but is markdown: a check is code")
            elif before is None or not (
                before.cell_type == "code" and SOLUTION_TAG in tags(before)
            ):
                problems.append(
                    f"check cell {i} does not follow a code `solution` cell: put it right after"
                    " the solution it checks"
                )
            else:
                problems.extend(_check_problems(i, cell.source, filled))
            filled = set()
        elif cell.cell_type == "markdown":  # untagged prose ends a run
            close_run()
            in_run = False
            filled = set()
        # an untagged code cell inside a run is code the learner is given
    close_run()
    return problems


# --- building the learner edition -------------------------------------------------------------


def build_learners(src: str | Path, out: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Write the learner edition of every chapter of ``src`` into ``out``; return the paths.

    ``out`` must be empty or absent unless ``overwrite``; with ``overwrite``, chapters in
    ``out`` that ``src`` no longer has are removed and other files are left alone. A chapter
    whose exercises break the format (:func:`lint_exercises`) stops the build before anything
    is written.
    """
    import nbformat

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise MissingFileError(f"no notebook folder at {src}")
    chapters = sorted(src.glob(CHAPTER_GLOB))
    if not chapters:
        raise MissingFileError(f"no chapters ({CHAPTER_GLOB}) in {src}")
    if out.resolve() == src.resolve():
        raise InputError(f"the learner edition cannot replace its source: --out {out} is {src}")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} is a file, not a folder: give another --out")
    present = sorted(p for p in out.iterdir()) if out.exists() else []
    if present and not overwrite:
        shown = ", ".join(p.name for p in present[:3]) + (", ..." if len(present) > 3 else "")
        raise OutputExistsError(
            f"{out} already holds {len(present)} files ({shown}): give an empty or new folder,"
            " or --overwrite to replace the chapters in it"
        )
    editions = {}
    problems = []
    for path in chapters:
        nb = nbformat.read(path, as_version=4)
        problems += [f"{path.name}: {problem}" for problem in lint_exercises(nb)]
        if not problems:
            editions[path.name] = learner_edition(nb)
    if problems:
        raise NotebookError(
            "the exercises break the format, nothing written:\n  " + "\n  ".join(problems)
        )
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(CHAPTER_GLOB):
        if stale.name not in editions:
            stale.unlink()
    written = []
    for name, nb in editions.items():
        nbformat.validate(nb)
        target = out / name
        nbformat.write(nb, target)
        written.append(target)
    return written
