"""The course as a static website: the chapters of the last run, rendered with Sphinx and MyST-NB.

:func:`build_book` renders the executed copies that ``mae-nb run`` left (``build/executed/``)
and executes nothing itself: every figure, table and verdict on the site is the run's own output.
The site (``build/book/`` by ``make book``) has a landing page made from the README, the chapters
in course order (``mae_nb.runner.list_notebooks``) with a sidebar, ``docs/instructors.md``, a page
of the data registry generated from ``mae_nb.data.registry`` and the ``mae_nb`` API reference
generated from the docstrings (autodoc). Each chapter page links its Colab and Binder launch.

A slider cannot move without a kernel: run by the runner, each of the course's widgets leaves a
static strip of a few slider positions in its output (``mae_nb.widgets.static_strip``); the site
shows that strip instead of the widget, with a line that launches the chapter to interact.

The build refuses what would make a wrong site, before it writes anything: no executed copy of a
chapter (run ``make run`` first), an executed copy holding an error output (named by chapter and
cell). An executed copy older than its chapter is reported as stale. The site is built in a
temporary folder, checked (:func:`check_site`: every chapter page with at least as many images as
its run produced, no error output, no widget shown as text, no broken internal link or image)
and only then moved into place, so a failed build never leaves half a site.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pkgutil
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from mae_nb.errors import BookError
from mae_nb.notebook import DEFAULT_BRANCH, REPOSITORY, binder_url, colab_url
from mae_nb.runner import list_notebooks, notebooks_dir, verdict_lines

#: The packages the site is built with (the ``docs`` extra of pyproject.toml).
BUILD_MODULES = ("sphinx", "myst_nb", "sphinx_book_theme")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".gif")
#: Text that must never be on a page: a widget shown as its Python repr, or its error.
WIDGET_TEXT = re.compile(r"\b[VH]?Box\(children=|Error displaying widget")
GITHUB = f"https://github.com/{REPOSITORY}"


@dataclass
class Chapter:
    """One chapter of the site: its source notebook and the executed copy shown."""

    source: Path
    executed: Path

    @property
    def stem(self) -> str:
        return self.source.stem

    @property
    def stale(self) -> bool:
        """Whether the executed copy is older than the chapter (edited since it ran)."""
        return self.executed.stat().st_mtime < self.source.stat().st_mtime


@dataclass
class BookReport:
    """What a build made: where, from which run, how long it took, how big it is."""

    out: Path
    chapters: list[str]
    images: dict[str, int]
    seconds: float
    bytes: int
    run: str
    stale: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- inputs


def find_chapters(executed_dir: str | Path, folder: Path | None = None) -> list[Chapter]:
    """Each chapter with its executed copy in ``executed_dir``, in course order.

    Raises :class:`BookError` when there is no executed copy at all or a chapter lacks one,
    and when an executed copy holds an error output (naming the chapter and the cell).
    """
    executed_dir = Path(executed_dir)
    sources = list_notebooks(folder)
    if not sources:
        raise BookError(f"no chapters (NN_name.ipynb) found in {folder or notebooks_dir()}")
    if not executed_dir.is_dir() or not any(executed_dir.glob("*.ipynb")):
        raise BookError(
            f"no executed notebooks in {executed_dir}: the book shows the outputs of a run and "
            "executes nothing itself; run `make run` (or `make run SMOKE=1`) first"
        )
    missing = [s.stem for s in sources if not (executed_dir / s.name).is_file()]
    if missing:
        raise BookError(
            f"{executed_dir} has no executed copy of {', '.join(missing)}: run them first "
            f'(`make run`, or `make run NB="{" ".join(m[:2] for m in missing)}"`)'
        )
    chapters = [Chapter(s, executed_dir / s.name) for s in sources]
    for chapter in chapters:
        failed = error_cells(chapter.executed)
        if failed:
            index, count, what = failed[0]
            raise BookError(
                f"{chapter.executed.name}: cell {index} (execution count {count}) holds an error "
                f"output ({what}); the book shows the run's outputs, so fix the chapter and run "
                f"it again (`make run NB={chapter.stem[:2]}`)"
            )
    return chapters


def error_cells(executed: str | Path) -> list[tuple[int, int | None, str]]:
    """The cells of an executed notebook that hold an error output: (cell number counting from 1,
    execution count, ``ename: evalue``)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells, 1):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                found.append((i, cell.get("execution_count"), f"{out.ename}: {out.evalue}"))
    return found


def image_outputs(nb) -> int:
    """How many images the outputs of a notebook (a ``NotebookNode``) hold."""
    return sum(
        any(m in out.get("data", {}) for m in IMAGE_MIMES)
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def describe_run(executed_dir: Path) -> str:
    """``smoke run`` or ``full run``, with its date, from the runner's ``summary.json``."""
    summary = executed_dir.parent / "summary.json"
    newest = max(p.stat().st_mtime for p in executed_dir.glob("*.ipynb"))
    date = time.strftime("%Y-%m-%d", time.gmtime(newest))
    if summary.is_file():
        mode = "smoke run" if json.loads(summary.read_text()).get("smoke") else "full run"
        return f"{mode} of {date}"
    return f"run of {date}"


# --------------------------------------------------------------------------- sources


def _repo_root(folder: Path | None) -> Path:
    return (folder or notebooks_dir()).resolve().parent


class _Links:
    """Rewrites the relative links of a Markdown text written for the repository to the site:
    pages of the site stay links, pictures are copied into it, anything else points at GitHub."""

    LINK = re.compile(r"(\]\(|<img [^>]*src=\")(?!https?:|mailto:|#|data:)([^)\s\"]+)")

    def __init__(self, root: Path, src: Path, pages: dict[str, str]):
        self.root, self.src, self.pages = root, src, pages  # pages: repo path -> site path

    def rewrite(self, text: str, location: str) -> str:
        here = posixpath.dirname(location)
        site_here = posixpath.dirname(self.pages.get(location, location))

        def swap(match: re.Match) -> str:
            target, _, fragment = match.group(2).partition("#")
            repo_path = posixpath.normpath(posixpath.join(here, unquote(target)))
            anchor = f"#{fragment}" if fragment else ""
            if repo_path in self.pages:
                new = posixpath.relpath(self.pages[repo_path], site_here) + anchor
            elif repo_path.lower().endswith(IMAGE_SUFFIXES) and (self.root / repo_path).is_file():
                copy = self.src / repo_path
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(self.root / repo_path, copy)
                new = posixpath.relpath(repo_path, site_here)
            else:
                kind = "tree" if (self.root / repo_path).is_dir() else "blob"
                new = f"{GITHUB}/{kind}/{DEFAULT_BRANCH}/{repo_path}{anchor}"
            return match.group(1) + new

        return self.LINK.sub(swap, text)


def _launch_html(chapter: str, strip: bool) -> str:
    what = (
        "Above, what it shows at a few positions, drawn by the run."
        if strip
        else "The run that made this page left no static strip of it (it did not go through "
        "<code>mae-nb run</code>)."
    )
    return (
        '<p class="mae-nb-launch"><strong>A slider: it moves in a live notebook.</strong> '
        f"{what} Launch the chapter to move it yourself: "
        f'<a href="{binder_url(chapter)}">Binder</a> · <a href="{colab_url(chapter)}">Colab</a></p>'
    )


#: The text a widget shows without a kernel: its Python repr (``VBox(children=...)``).
_WIDGET_REPR = re.compile(r"^\w+\((?:children|value|description)=")


def page_notebook(chapter: Chapter, links: _Links):
    """The executed copy as the site shows it: links rewritten for the site, each widget replaced
    by its static strip and a line that launches the chapter to interact, progress bars left out
    (a widget's last state is not saved: a bar would show 0 %)."""
    import nbformat

    nb = nbformat.read(chapter.executed, as_version=4)
    location = f"notebooks/{chapter.source.name}"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = links.rewrite(cell.source, location)
            continue
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME not in data:
                outputs.append(out)
                continue
            data.pop(WIDGET_MIME)
            plain = data.pop("text/plain", "")  # "VBox(children=...)": a repr, never shown
            strip = any(m in data for m in IMAGE_MIMES)
            if not strip and not _WIDGET_REPR.match(plain):
                continue  # a progress bar: its last state is not saved, so it would show 0 %
            if strip:
                outputs.append(out)
            launch = _launch_html(chapter.source.name, strip)
            outputs.append(nbformat.v4.new_output("display_data", data={"text/html": launch}))
        cell.outputs = outputs
    return nb


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def registry_page() -> str:
    """The data registry as a Markdown page: names, sources, licences, sizes and citations."""
    from mae_nb.data.registry import REGISTRY, size_text
    from mae_nb.stats import markdown_table

    rows = [
        {
            "name": f"`{d.name}`",
            "what": _cell(d.title),
            "kind": d.kind,
            "files": len(d.files),
            "size": size_text(d.size),
            "licence": _cell(d.licence),
            "source": f"[{_cell(urlsplit(d.homepage).netloc or d.homepage)}]({d.homepage})"
            if d.homepage
            else "",
        }
        for d in REGISTRY.values()
    ]
    cites = [f"- `{d.name}`: {d.citation}" for d in REGISTRY.values() if d.citation]
    return "\n".join(
        [
            "# The data registry",
            "",
            "Every dataset and checkpoint the course can use, generated from "
            "`mae_nb.data.registry`. `mae-nb data fetch NAME` downloads one into the cache "
            "with a checksum check; folders named in `MAE_NB_DATA_MIRRORS` are searched first, "
            "matched by sha256. Without them, every chapter runs on the synthetic scene.",
            "",
            markdown_table(rows),
            "",
            "## Citations",
            "",
            *cites,
            "",
        ]
    )


def api_modules() -> list[str]:
    """Every module of ``mae_nb`` (but ``__main__``), sorted: one API page each."""
    import mae_nb

    names = ["mae_nb"] + [
        m.name
        for m in pkgutil.walk_packages(mae_nb.__path__, "mae_nb.")
        if not m.name.endswith("__main__")
    ]
    return sorted(names)


def _api_pages(src: Path) -> None:
    """One reStructuredText page per module (the docstrings are reStructuredText, so autodoc
    must run in an .rst page: in a MyST page they would be read as Markdown)."""
    api = src / "api"
    api.mkdir()
    modules = api_modules()
    title = "API reference"
    (api / "index.rst").write_text(
        f"{title}\n{'=' * len(title)}\n\nThe package ``mae_nb`` that backs the course, one page "
        "per module, generated from its docstrings.\n\n.. toctree::\n   :maxdepth: 1\n\n"
        + "".join(f"   {name}\n" for name in modules)
    )
    for name in modules:
        head = f"``{name}``"
        (api / f"{name}.rst").write_text(
            f"{head}\n{'=' * len(head)}\n\n.. automodule:: {name}\n   :members:\n"
            "   :show-inheritance:\n"
        )


CONF = """\
# Generated by mae_nb.book for one build of the course's website.
project = "mae-nb"
author = "mae-nb contributors"
html_title = "mae-nb: masked autoencoders for spatial imagery"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
nb_execution_mode = "off"  # the outputs of the course's run, never a second execution
nb_merge_streams = True
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
autodoc_member_order = "bysource"
smartquotes = False  # the run's text as printed: a verdict line on the page is the line it printed
html_theme = "sphinx_book_theme"
html_copy_source = False
html_show_sourcelink = False
html_css_files = ["mae-nb.css"]
html_static_path = ["_static"]
html_theme_options = {{
    "repository_url": "{github}",
    "repository_branch": "{branch}",
    "path_to_docs": "",
    "use_repository_button": True,
    "use_download_button": False,
    "home_page_in_toc": True,
    "launch_buttons": {{
        "binderhub_url": "https://mybinder.org",
        "colab_url": "https://colab.research.google.com",
        "notebook_interface": "jupyterlab",
    }},
}}
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type"]
"""

CSS = """\
.mae-nb-launch { border-left: 4px solid #2a7ae2; padding: 0.4em 0.8em; background: #f3f7fd; }
"""


def write_sources(
    chapters: list[Chapter], src: Path, *, run: str, folder: Path | None = None
) -> dict[str, int]:
    """Write the Sphinx project of the site into ``src``; returns each chapter's image count."""
    import nbformat

    root = _repo_root(folder)
    src.mkdir(parents=True, exist_ok=True)
    (src / "_static").mkdir(exist_ok=True)
    (src / "_static" / "mae-nb.css").write_text(CSS)
    (src / "conf.py").write_text(CONF.format(github=GITHUB, branch=DEFAULT_BRANCH))
    pages = {"README.md": "index.md"}
    pages.update({f"notebooks/{c.source.name}": f"notebooks/{c.source.name}" for c in chapters})
    instructors = root / "docs" / "instructors.md"
    if instructors.is_file():
        pages["docs/instructors.md"] = "docs/instructors.md"
    links = _Links(root, src, pages)

    images = {}
    (src / "notebooks").mkdir(exist_ok=True)
    for chapter in chapters:
        nb = page_notebook(chapter, links)
        images[chapter.stem] = image_outputs(nb)
        nbformat.write(nb, src / "notebooks" / chapter.source.name)

    readme = root / "README.md"
    text = readme.read_text() if readme.is_file() else "# mae-nb\n"
    text = links.rewrite(text, "README.md")
    note = (
        f"\n:::{{note}}\nEvery figure, table and verdict on the chapter pages is the output of "
        f"one run of the notebooks (`make run`): this site shows a **{run}**. Each chapter "
        "page launches its notebook on Binder or Colab.\n:::\n"
    )
    title_end = text.find("\n") + 1
    text = text[:title_end] + note + text[title_end:]
    toc = ["", "```{toctree}", ":hidden:", ":caption: Chapters", ""]
    toc += [f"notebooks/{c.stem}" for c in chapters] + ["```", ""]
    toc += ["```{toctree}", ":hidden:", ":caption: Reference", ""]
    toc += (["docs/instructors"] if "docs/instructors.md" in pages else []) + ["data", "api/index"]
    toc += ["```", ""]
    (src / "index.md").write_text(text + "\n" + "\n".join(toc))
    if "docs/instructors.md" in pages:
        (src / "docs").mkdir(exist_ok=True)
        (src / "docs" / "instructors.md").write_text(
            links.rewrite(instructors.read_text(), "docs/instructors.md")
        )
    (src / "data.md").write_text(registry_page())
    _api_pages(src)
    return images


# --------------------------------------------------------------------------- checks


class _Page(HTMLParser):
    """What :func:`check_site` reads from one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []  # (tag, url)
        self.images: list[str] = []
        self.tracebacks = 0
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key) and (key == "id" or tag == "a"):
                self.ids.add(a[key])
        if "traceback" in (a.get("class") or "").split():
            self.tracebacks += 1
        url = a.get("src") if tag in ("img", "script") else a.get("href")
        if url and tag in ("img", "script", "a", "link"):
            self.refs.append((tag, url))
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def _read_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def _plain(text: str) -> str:
    """Text as a reader sees it: Markdown code marks and links reduced, spaces collapsed."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"\s+", " ", text.replace("`", "").replace("*", "")).strip()


def check_site(
    site: str | Path, expected_images: dict[str, int], executed: dict[str, Path] | None = None
) -> list[str]:
    """Problems of a built site (empty when it is sound).

    ``expected_images``: chapter stem -> images its run produced; each chapter page
    ``notebooks/<stem>.html`` must exist and show at least that many (local) images, link its
    Colab and Binder launch, hold no error output and no widget shown as text. ``executed``
    (stem -> executed notebook): each verdict line the run printed must be on the page. Across
    every page: no internal link, image, script or stylesheet that points at a missing file or
    at an anchor its page does not have.
    """
    site = Path(site)
    problems: list[str] = []
    cache: dict[Path, _Page] = {}

    def page_of(path: Path) -> _Page:
        if path not in cache:
            cache[path] = _read_page(path)
        return cache[path]

    for stem, wanted in expected_images.items():
        path = site / "notebooks" / f"{stem}.html"
        if not path.is_file():
            problems.append(f"{stem}: no page notebooks/{stem}.html")
            continue
        page = page_of(path)
        local = [s for s in page.images if not urlsplit(s).scheme]
        if len(local) < wanted:
            problems.append(
                f"{stem}: the page shows {len(local)} images, its run produced {wanted}"
            )
        if page.tracebacks:
            problems.append(f"{stem}: the page shows {page.tracebacks} error output(s)")
        text = " ".join(page.text)
        if WIDGET_TEXT.search(text):
            problems.append(f"{stem}: a widget is shown as text ({WIDGET_TEXT.search(text)[0]}...)")
        hrefs = {url for tag, url in page.refs if tag == "a"}
        for name, url in (
            ("Colab", colab_url(f"{stem}.ipynb")),
            ("Binder", binder_url(f"{stem}.ipynb")),
        ):
            if url not in hrefs:
                problems.append(f"{stem}: no link to its {name} launch ({url})")
        if executed and stem in executed:
            plain = _plain(text)
            for line in verdict_lines(executed[stem]):
                if _plain(line) not in plain:
                    problems.append(f"{stem}: the verdict {line!r} of the run is not on the page")

    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site)
        if rel.parts[0] in ("_static", "_sources"):
            continue
        page = page_of(path)
        for tag, url in page.refs:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:")):
                continue
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{rel}: <{tag}> points at {url}, which is not in the site")
                continue
            if parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in page_of(target).ids:
                    problems.append(f"{rel}: <{tag}> points at {url}, an anchor that is not there")
    return problems


# --------------------------------------------------------------------------- build


def missing_tools() -> list[str]:
    """The site's build packages that are not installed (``pip install -e '.[docs]'``)."""
    return [m for m in BUILD_MODULES if importlib.util.find_spec(m) is None]


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build_book(
    executed_dir: str | Path = "build/executed",
    out: str | Path = "build/book",
    *,
    folder: Path | None = None,
    echo: Callable[[str], None] = print,
) -> BookReport:
    """Build the course's website from the executed chapters in ``executed_dir`` into ``out``.

    Nothing is executed. Checks the inputs first (:func:`find_chapters`), builds in a temporary
    folder next to ``out``, checks the site (:func:`check_site`) and only then replaces ``out``;
    any failure raises :class:`BookError` and leaves ``out`` as it was.
    """
    start = time.perf_counter()
    missing = missing_tools()
    if missing:
        raise BookError(
            f"building the book needs {', '.join(missing)}: install the docs extra "
            "(`pip install -e '.[docs]'`; `make book` does it)"
        )
    executed_dir, out = Path(executed_dir), Path(out)
    chapters = find_chapters(executed_dir, folder)
    stale = [c.stem for c in chapters if c.stale]
    for stem in stale:
        echo(
            f"warning: the executed copy of {stem} is older than the chapter (edited since the "
            f"run): the site shows the old run; `make run NB={stem[:2]}` updates it"
        )
    run = describe_run(executed_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-building-", dir=out.parent))
    try:
        src, html = work / "src", work / "html"
        images = write_sources(chapters, src, run=run, folder=folder)
        echo(f"rendering {len(chapters)} chapters of the {run} with Sphinx ...")
        env = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg")
        done = subprocess.run(
            [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-d", str(work / "doctrees")]
            + [str(src), str(html)],
            capture_output=True,
            text=True,
            env=env,
        )
        warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
        if done.returncode != 0:
            raise BookError(
                f"Sphinx failed (exit {done.returncode}) building the book:\n"
                + "\n".join(done.stderr.splitlines()[-20:])
            )
        executed = {c.stem: c.executed for c in chapters}
        problems = check_site(html, images, executed)
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            hints = [w for w in warnings if "docstring" in w][:5]
            hint = (
                "\nSphinx warned about docstrings that are not valid reStructuredText (a broken "
                "one becomes a broken link):\n  " + "\n  ".join(hints)
                if hints
                else ""
            )
            raise BookError(
                f"the built site has {len(problems)} problem(s):\n  {shown}{more}{hint}"
            )
        if out.exists():
            out.rename(work / "previous")
        html.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BookReport(
        out=out,
        chapters=[c.stem for c in chapters],
        images=images,
        seconds=round(time.perf_counter() - start, 1),
        bytes=_size(out),
        run=run,
        stale=stale,
        warnings=warnings,
    )
