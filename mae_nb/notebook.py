"""Conventions every chapter notebook follows, and the lint that checks them.

A chapter ``notebooks/NN_topic.ipynb`` opens with a markdown cell (title, what you will
learn, where its measured run time is, Colab and Binder badges pointing at the notebook itself),
then the install cell (a no-op where ``mae_nb`` is importable, so Colab users get the
package from the repository), then exactly one ``parameters``-tagged cell with at least
``SMOKE``, then derived values. Outputs and execution counts are never committed.

Prose cannot go stale: markdown cells hold no measured number (``stale_numbers`` lists the
ones a cell has); a number that comes from the run is formatted into Markdown by a code cell
(``show_markdown``). Run times are measured figures too: the header's run-time line is written
by a tool from the record of the last runs (``docs/run_times.json``, which ``mae-nb run --record``
writes), never by hand: :func:`run_time_line` makes it, :func:`set_run_time_line` puts it in a
notebook, and only a line of exactly that generated form escapes the stale-number rule (a test
checks it matches the record). A chapter without a record points at the README's table instead.

``new_chapter`` builds such a notebook from cells, so authors write prose and code and the
conventions come for free; ``lint_notebook`` lists what a notebook gets wrong.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from mae_nb.editions import LEARNERS_SUBDIR, lint_exercises
from mae_nb.errors import InputError

#: GitHub repository and default branch that the launch badges and the Colab install cell use.
REPOSITORY = "mae-nb/mae-nb"
DEFAULT_BRANCH = "main"

#: Environment variable a test sets to install ``mae_nb`` from a working tree instead of GitHub.
INSTALL_SPEC_ENV = "MAE_NB_INSTALL_SPEC"
INSTALL_SPEC = f"mae-nb @ git+https://github.com/{REPOSITORY}@{DEFAULT_BRANCH}"

INSTALL_CELL = (
    "# Colab or a fresh environment: install the course's package first"
    " (a no-op when it is there).\n"
    "import importlib.util, os, subprocess, sys\n"
    "\n"
    'if importlib.util.find_spec("mae_nb") is None:\n'
    f'    spec = os.environ.get("{INSTALL_SPEC_ENV}", "{INSTALL_SPEC}")\n'
    '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", spec], check=True)'
)


def _repository_path(notebook: str | Path, learner: bool) -> str:
    """The notebook's path in the repository: under notebooks/, or notebooks/learners/."""
    folder = f"notebooks/{LEARNERS_SUBDIR}" if learner else "notebooks"
    return f"{folder}/{Path(notebook).name}"


def colab_url(notebook: str | Path, *, learner: bool = False) -> str:
    """The Colab link that opens ``notebook`` (or its learner edition) from the repository."""
    return (
        f"https://colab.research.google.com/github/{REPOSITORY}/blob/{DEFAULT_BRANCH}"
        f"/{_repository_path(notebook, learner)}"
    )


def binder_url(notebook: str | Path, *, learner: bool = False) -> str:
    """The Binder link that opens ``notebook`` (or its learner edition) in JupyterLab."""
    labpath = _repository_path(notebook, learner).replace("/", "%2F")
    return f"https://mybinder.org/v2/gh/{REPOSITORY}/{DEFAULT_BRANCH}?labpath={labpath}"


def _badge_pair(notebook: str | Path, learner: bool) -> str:
    return (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({colab_url(notebook, learner=learner)}) "
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder_url(notebook, learner=learner)})"
    )


#: The words before each edition's badges in a chapter's header.
EDITION_LABELS = (
    "**Instructor edition** (exercises solved):",
    "**Learner edition** (exercises to fill in):",
)


def badges(notebook: str | Path) -> str:
    """Markdown for the Colab and Binder badges of ``notebook``'s two editions, on one line."""
    instructor, learner = EDITION_LABELS
    return f"{instructor} {_badge_pair(notebook, False)} · {learner} {_badge_pair(notebook, True)}"


#: The header's run-time line: run times are measured, so they live in the README's table.
RUN_TIME_LINE = (
    "**Estimated run time on a laptop CPU:** see the measured figures in the"
    f" [README](https://github.com/{REPOSITORY}#measured-figures) (full and smoke runs of every"
    " chapter). Set `SMOKE = True` in the parameters cell for a run of seconds."
)


#: Where the record of the last runs lives in the repository (written by ``mae-nb run --record``).
RUN_TIMES_URL = f"https://github.com/{REPOSITORY}/blob/{DEFAULT_BRANCH}/docs/run_times.json"

_RUN_TIME_START = "**Estimated run time on a laptop CPU:**"
_RUN_TIME_TEMPLATE = (
    _RUN_TIME_START + " about {full} (smoke run: about {smoke}), as last recorded by"
    " `mae-nb run --record` on a {cores}-core CPU ([run times]({url})). Set `SMOKE = True` in the"
    " parameters cell for the smoke run."
)
#: A run-time line exactly as :func:`run_time_line` writes it (the numbers come from the record).
GENERATED_RUN_TIME = re.compile(
    "^"
    + re.escape(_RUN_TIME_TEMPLATE)
    .replace(re.escape("{full}"), r"\d+ (?:s|min)")
    .replace(re.escape("{smoke}"), r"\d+ (?:s|min)")
    .replace(re.escape("{cores}"), r"(?:\d+|\?)")
    .replace(re.escape("{url}"), re.escape(RUN_TIMES_URL))
    + "$",
    re.M,
)


def format_run_time(seconds: float) -> str:
    """A run time as a header states it: whole seconds below 90 s, else whole minutes."""
    return f"{max(1, round(seconds))} s" if seconds < 89.5 else f"{round(seconds / 60)} min"


def run_time_line(notebook: str | Path, run_times: Mapping | None = None) -> str:
    """The header's run-time line for ``notebook`` from ``run_times`` (the record
    ``mae-nb run --record`` writes: ``{"full"|"smoke": {stem: {"seconds", "cores", ...}}}``).

    Without both a full and a smoke record of the chapter: :data:`RUN_TIME_LINE`, which points
    at the README's measured figures.
    """
    stem = Path(notebook).stem
    full = (run_times or {}).get("full", {}).get(stem)
    smoke = (run_times or {}).get("smoke", {}).get(stem)
    if not (full and smoke):
        return RUN_TIME_LINE
    return _RUN_TIME_TEMPLATE.format(
        full=format_run_time(full["seconds"]),
        smoke=format_run_time(smoke["seconds"]),
        cores=full.get("cores") or "?",
        url=RUN_TIMES_URL,
    )


def header_run_time_line(header_source: str) -> str | None:
    """The run-time line of a chapter's header cell (``None`` if it has none)."""
    for line in header_source.splitlines():
        if line.startswith(_RUN_TIME_START):
            return line
    return None


def set_run_time_line(path: str | Path, run_times: Mapping | None) -> bool:
    """Rewrite only the run-time line of the header of the notebook at ``path`` from
    ``run_times`` (:func:`run_time_line`); every other line and cell stays as it is. Returns
    whether the file changed. A header without a run-time line is an error."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0].source if nb.cells else ""
    old = header_run_time_line(first)
    if old is None:
        raise InputError(f"{path.name}: the header has no line starting with {_RUN_TIME_START}")
    new = run_time_line(path, run_times)
    if new == old:
        return False
    nb.cells[0].source = first.replace(old, new, 1)
    nbformat.write(nb, path)
    return True


_TRACK_ROW = re.compile(
    r"^(\| \d+ \| \[(?P<stem>\d\d_[a-z0-9_]+)\]\([^)]*\) \| )(?P<full>[^|]*?)( \| )"
    r"(?P<smoke>[^|]*?)( \|.*)$",
    re.M,
)


def track_run_times(markdown: str) -> dict[str, tuple[str, str]]:
    """``{chapter stem: (full run, smoke run)}`` as the one-day track's table in
    ``docs/instructors.md`` states them (rows ``| order | [stem](link) | full | smoke | ...``)."""
    return {m["stem"]: (m["full"], m["smoke"]) for m in _TRACK_ROW.finditer(markdown)}


def set_track_run_times(path: str | Path, run_times: Mapping) -> bool:
    """Rewrite the full- and smoke-run columns of the track table in ``path`` (the instructors'
    guide) from ``run_times`` (:func:`format_run_time`); rows of chapters without both records
    stay. Returns whether the file changed."""
    path = Path(path)
    text = path.read_text()

    def row(m: re.Match) -> str:
        full = run_times.get("full", {}).get(m["stem"])
        smoke = run_times.get("smoke", {}).get(m["stem"])
        if not (full and smoke):
            return m.group(0)
        times = format_run_time(full["seconds"]), format_run_time(smoke["seconds"])
        return f"{m.group(1)}{times[0]}{m.group(4)}{times[1]}{m.group(6)}"

    new = _TRACK_ROW.sub(row, text)
    if new == text:
        return False
    path.write_text(new)
    return True


def header(
    notebook: str | Path, title: str, learn: Sequence[str], run_times: Mapping | None = None
) -> str:
    """The first markdown cell of a chapter (its run-time line from ``run_times``)."""
    items = "\n".join(f"- {item}" for item in learn)
    return (
        f"# {title}\n\n{badges(notebook)}\n\n**What you will learn**\n\n{items}\n\n"
        f"{run_time_line(notebook, run_times)}"
    )


def new_chapter(
    path: str | Path,
    title: str,
    learn: Sequence[str],
    minutes: str,
    parameters: str,
    cells: Sequence[tuple[str, str]],
) -> Path:
    """Write a chapter notebook: header, install cell, ``parameters`` cell, then ``cells``.

    ``cells`` are ``("md", text)`` or ``("code", source)`` pairs. ``parameters`` is the source
    of the parameters cell; it must assign ``SMOKE``. ``minutes`` is not written anywhere (a run
    time is a measured figure: the header's run-time line comes from the record of the last runs,
    :func:`run_time_line`, and points at the README until the chapter has one); it is kept so
    that existing callers work.
    """
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    path = Path(path)
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    params = new_code_cell(parameters.strip())
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        new_markdown_cell(header(path, title, learn)),
        new_code_cell(INSTALL_CELL),
        params,
    ]
    for kind, text in cells:
        if kind not in ("md", "code"):
            raise InputError(f"cell kind must be 'md' or 'code', got {kind!r}")
        nb.cells.append(
            new_markdown_cell(text.strip()) if kind == "md" else new_code_cell(text.strip())
        )
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n")
    return path


# --- prose that cannot go stale -------------------------------------------------------------

# Not prose: fenced code blocks, inline code spans, display and inline LaTeX, link targets, HTML.
_NOT_PROSE = re.compile(
    r"```.*?```|~~~.*?~~~"  # fenced code
    r"|(`+).+?\1"  # code span
    r"|\$\$.+?\$\$|(?<![\\\w])\$[^$\n]+?\$"  # LaTeX
    r"|\]\([^)\s]*\)"  # a link's target
    r"|<[^>\n]+>",  # an HTML tag
    re.S,
)
_NUMBER = r"(?<![\w.])[-+±]?\d+(?:[.,]\d+)?"
_UNITS = (
    r"dB|ms|s|secs?|seconds?|min|mins|minutes?|h|hrs?|hours?"
    r"|[KMGT]i?B|[kKMGT]b|bytes"
    r"|(?:tiles|samples|images|it|steps|batches|px)/s"
)
#: What a markdown cell may not contain, with the reason a problem names.
STALE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "a number with a unit of measure (dB, s, min, h, MB, GB, .../s)",
        re.compile(rf"{_NUMBER}(?:\s|&nbsp;|\u00a0)*(?:{_UNITS})(?![\w/])"),
    ),
    (
        "a decimal percentage (only whole percentages and one-digit fractions below 1 % are"
        " design constants)",
        re.compile(
            r"(?<![\w.])[-+±]?(?!0[.,][1-9](?![\d]))\d+[.,]\d+(?:\s|&nbsp;|\u00a0)*(?:%|percent\b)"
        ),
    ),
    (
        "a decimal score difference in points or a speed-up factor",
        re.compile(
            r"(?<![\w.])[-+±]?\d+\.\d+(?:\s|&nbsp;)*(?:points?|pp|p\.p\.)(?!\w)"
            r"|(?<![\w.])\d+\.\d+\s?[x×](?![\w])"
        ),
    ),
    (
        "a hand-written measurement ('measured while/when writing ...')",
        re.compile(r"measured (?:while|when|as|at the time of) (?:writing|this was written)", re.I),
    ),
)


def prose(markdown: str) -> str:
    """``markdown`` without what is not prose (code, LaTeX, link targets, HTML tags, and a
    header's run-time line of the generated form, :data:`GENERATED_RUN_TIME`)."""
    return _NOT_PROSE.sub(" ", GENERATED_RUN_TIME.sub(" ", markdown))


def stale_numbers(markdown: str) -> list[tuple[str, str]]:
    """``(text, reason)`` for each hand-typed measured number in a markdown cell's prose.

    Flagged: a number followed by a unit of measure (``dB``, ``ms``, ``s``, ``sec``,
    ``seconds``, ``min``, ``minutes``, ``h``, ``hours``, ``KB``/``MB``/``GB``/``TB`` and their
    ``KiB``/``MiB``/... forms, ``.../s`` rates such as ``tiles/s``); a decimal percentage
    (``12.5 %``, ``98.6 percent``) except a one-digit fraction below 1 % (``0.1 %``, ``0.5 %``,
    how label fractions are written); a decimal number of points (``+1.5 points``, ``2.4 pp``)
    or a decimal speed-up (``1.57x``); and "measured while writing". Allowed: whole
    percentages (mask ratios ``25 %``, ``3 x 25 %``, label fractions ``1 %``), pixel sizes
    (``16 px``), ground distances (``30 m``), and anything inside a code span, a code block,
    LaTeX or a link's target. Numbers from a run belong in a code cell's ``show_markdown``.
    """
    text = prose(markdown)
    found = []
    for reason, pattern in STALE_PATTERNS:
        found.extend((m.group(0).strip(), reason) for m in pattern.finditer(text))
    return found


def show_markdown(text: str) -> None:
    """Display computed Markdown in a notebook (how a chapter states a number from its run)."""
    from IPython.display import Markdown, display

    display(Markdown(text))


_LINK = re.compile(r"\((https://(?:colab\.research\.google\.com|mybinder\.org)/[^)\s]+)\)")


def unshown_figures(source: str) -> list[str]:
    """The ``viz.plot_*(...)`` calls of a code cell whose figure a reader would never see.

    A figure returned by a call shows only as the cell's last expression: one in the middle of a
    cell, or inside a loop or an ``if``, is drawn and dropped. Assign it or wrap it in
    ``display(...)``. A cell that does not parse (IPython magics) has nothing to report.
    """
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    last = tree.body[-1] if tree.body else None
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
            continue
        name = ast.unparse(node.value.func)
        if name.startswith("viz.plot") and node is not last:
            found.append(
                f"line {node.lineno}: the figure of {name}(...) is never shown (it is not the "
                "cell's last expression); wrap it in display(...)"
            )
    return found


def lint_notebook(path: str | Path) -> list[str]:
    """Problems with a chapter notebook; an empty list means it follows the conventions."""
    import nbformat

    path = Path(path)
    problems: list[str] = []
    if not re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name):
        problems.append(f"name {path.name!r} is not NN_topic.ipynb")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, not a notebook
        return [f"not a readable notebook: {exc}"]
    cells = nb.cells
    if not cells or cells[0].cell_type != "markdown" or not cells[0].source.startswith("# "):
        problems.append("first cell must be a markdown title (# ...)")
    else:
        first = cells[0].source
        links = _LINK.findall(first)
        expected_links = [
            url(path, learner=learner)
            for learner in (False, True)
            for url in (colab_url, binder_url)
        ]
        for expected in expected_links:
            if expected not in links:
                problems.append(f"first cell lacks the badge link {expected}")
        for link in links:
            if link not in expected_links and "assets" not in link and "badge" not in link:
                problems.append(f"badge link {link} does not point at this notebook")
        for needed in ("What you will learn", "Estimated run time"):
            if needed not in first:
                problems.append(f"first cell lacks '{needed}'")
    if len(cells) < 2 or cells[1].cell_type != "code" or cells[1].source.strip() != INSTALL_CELL:
        problems.append("second cell must be the install cell (mae_nb.notebook.INSTALL_CELL)")
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"expected exactly one cell tagged 'parameters', found {len(tagged)}")
    elif not re.search(r"^SMOKE\s*=", tagged[0].source, re.M):
        problems.append("the parameters cell must assign SMOKE")
    for i, c in enumerate(cells):
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            problems.append(f"cell {i} has outputs or an execution count committed (strip them)")
    for i, c in enumerate(cells):
        if c.cell_type == "markdown":
            for text, reason in stale_numbers(c.source):
                problems.append(
                    f"markdown cell {i} types a measured number by hand: {text!r} ({reason});"
                    " format it from the run in a code cell (mae_nb.notebook.show_markdown)"
                )
    problems.extend(lint_exercises(nb))
    for i, c in enumerate(cells):
        if c.cell_type == "code":
            problems.extend(f"code cell {i}: {p}" for p in unshown_figures(c.source))
    sources = "\n".join(c.source for c in cells if c.cell_type == "code")
    if "record_metrics(" not in sources:
        problems.append("no code cell calls record_metrics (the runner and tests need its metrics)")
    return problems
