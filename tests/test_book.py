"""The course's website (``mae-nb build book``): its inputs, its pages, its checks.

The fast tests build nothing with Sphinx: they check what the build refuses (no run, a missing
chapter, a chapter that failed, in that case naming the cell), how a widget and the links are
prepared for the site, and that :func:`mae_nb.book.check_site` catches each kind of broken page.
One test builds a site of a two-chapter course end to end (Sphinx), and one, after the smoke run
of the real chapters (``tests/test_notebooks.py``), builds the course's site from those executed
copies and checks every chapter page (``smoke_book`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from mae_nb import book
from mae_nb.book import BookError, check_site, find_chapters, page_notebook
from mae_nb.cli import main
from mae_nb.notebook import badges, binder_url, colab_url
from mae_nb.runner import list_notebooks, verdict_lines

ROOT = Path(__file__).resolve().parents[1]
PNG = (  # a 1 x 1 PNG, base64
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WIDGET = "application/vnd.jupyter.widget-view+json"
needs_sphinx = pytest.mark.skipif(
    bool(book.missing_tools()), reason="the docs extra is not installed (pip install -e '.[docs]')"
)


def chapter_nb(
    title: str, *, name="00_a.ipynb", image=True, widget=None, error=False, verdict=None
):
    """A small executed chapter: a title with its launch badges, a code cell with its outputs."""
    out = nbformat.v4
    outputs = [out.new_output("stream", name="stdout", text="hello\n")]
    if image:
        outputs.append(out.new_output("display_data", data={"image/png": PNG, "text/plain": "F"}))
    if widget is not None:
        data = {WIDGET: {"model_id": "x", "version_major": 2, "version_minor": 0}}
        data["text/plain"] = "VBox(children=(Box(children=(FloatSlider(value=0.5, ...)"
        if widget == "strip":
            data["image/jpeg"] = PNG  # stands in for the strip's bytes
        outputs.append(out.new_output("display_data", data=data))
    if verdict:
        outputs.append(out.new_output("display_data", data={"text/markdown": f"- {verdict}"}))
    if error:
        outputs.append(out.new_output("error", ename="ValueError", evalue="bad", traceback=[]))
    code = out.new_code_cell("f()", outputs=outputs, execution_count=3)
    nb = out.new_notebook(
        cells=[
            out.new_markdown_cell(f"# {title}\n\n{badges(name)}\n\nSee [the next](01_b.ipynb)."),
            code,
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    return nb


@pytest.fixture
def course(tmp_path):
    """A two-chapter course (sources and a run of them) with a README and docs/instructors.md."""
    root = tmp_path / "course"
    (root / "notebooks").mkdir(parents=True)
    (root / "docs" / "images").mkdir(parents=True)
    (root / "docs" / "images" / "pic.png").write_bytes(b"\x89PNG fake")
    (root / "docs" / "instructors.md").write_text(
        "# Instructors\n\n[Chapter a](../notebooks/00_a.ipynb)\n"
    )
    (root / "README.md").write_text(
        "# A course\n\n## Two commands\n\n[chapter b](notebooks/01_b.ipynb) · "
        "[kit](docs/instructors.md) · [data](data/README.md) · [run](#two-commands)\n\n"
        "![pic](docs/images/pic.png)\n"
    )
    executed = tmp_path / "run" / "executed"
    executed.mkdir(parents=True)
    for name, nb in (
        ("00_a.ipynb", chapter_nb("A", verdict="Claim: SUPPORTED (+1.0 ± 0.2)")),
        ("01_b.ipynb", chapter_nb("B", name="01_b.ipynb", widget="strip")),
    ):
        clean = chapter_nb("x", name=name)
        nbformat.write(clean, root / "notebooks" / name)
        nbformat.write(nb, executed / name)
    return root, executed


def test_no_run_is_refused_with_what_to_do(course, tmp_path):
    root, _ = course
    with pytest.raises(BookError, match=r"no executed notebooks .*run `make run`"):
        find_chapters(tmp_path / "nothing", root / "notebooks")


def test_a_chapter_without_executed_copy_is_named(course):
    root, executed = course
    (executed / "01_b.ipynb").unlink()
    with pytest.raises(BookError, match=r"no executed copy of 01_b.*make run NB=\"01\""):
        find_chapters(executed, root / "notebooks")


def test_an_error_output_fails_the_build_naming_chapter_and_cell(course):
    root, executed = course
    nbformat.write(chapter_nb("B", name="01_b.ipynb", error=True), executed / "01_b.ipynb")
    with pytest.raises(BookError, match=r"01_b.ipynb: cell 2 \(execution count 3\).*ValueError"):
        find_chapters(executed, root / "notebooks")


def test_a_copy_older_than_its_chapter_is_stale(course):
    root, executed = course
    chapters = find_chapters(executed, root / "notebooks")
    old = chapters[0].source.stat().st_mtime - 100
    os.utime(chapters[0].executed, (old, old))
    assert [c.stale for c in chapters] == [True, False]


def test_a_widget_becomes_its_strip_and_a_launch_line(course, tmp_path):
    root, executed = course
    chapters = find_chapters(executed, root / "notebooks")
    links = book._Links(root, tmp_path / "src", {"notebooks/01_b.ipynb": "notebooks/01_b.ipynb"})
    nb = page_notebook(chapters[1], links)
    outputs = nb.cells[1].outputs
    widget = outputs[2]
    assert WIDGET not in widget.data and "text/plain" not in widget.data
    assert widget.data["image/jpeg"] == PNG
    launch = outputs[3].data["text/html"]
    assert binder_url("01_b.ipynb") in launch and colab_url("01_b.ipynb") in launch
    assert book.image_outputs(nb) == 2
    # a widget that left no strip says so, in words, and never as VBox(...) text
    nbformat.write(chapter_nb("B", name="01_b.ipynb", widget="bare"), executed / "01_b.ipynb")
    nb = page_notebook(chapters[1], links)
    assert "left no static strip" in nb.cells[1].outputs[2].data["text/html"]
    assert "VBox" not in nbformat.writes(nb)
    # a progress bar (tqdm's widget) is left out: only its first state, 0 %, was saved
    bar = nbformat.read(executed / "01_b.ipynb", as_version=4)
    bar.cells[1].outputs[2].data["text/plain"] = (
        "training:   0%|          | 0/66 [00:00<?, ?batch/s]"
    )
    nbformat.write(bar, executed / "01_b.ipynb")
    nb = page_notebook(chapters[1], links)
    assert len(nb.cells[1].outputs) == 2 and "0/66" not in nbformat.writes(nb)


def test_links_stay_on_the_site_or_go_to_github(course, tmp_path):
    root, _ = course
    src = tmp_path / "src"
    pages = {"README.md": "index.md", "notebooks/00_a.ipynb": "notebooks/00_a.ipynb"}
    links = book._Links(root, src, pages)
    text = links.rewrite(
        "[a](../notebooks/00_a.ipynb#x) [r](../README.md#data) [d](../data/README.md) "
        "![p](../docs/images/pic.png) [w](https://example.org) [h](#here)",
        "docs/instructors.md",
    )
    assert "[a](../notebooks/00_a.ipynb#x)" in text and "[r](../index.md#data)" in text
    assert "[d](https://github.com/mae-nb/mae-nb/blob/main/data/README.md)" in text
    assert "![p](images/pic.png)" in text and (src / "docs/images/pic.png").is_file()
    assert "[w](https://example.org)" in text and "[h](#here)" in text


def page(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><body>{body}</body></html>")


def sound_site(site: Path) -> None:
    launch = f'<a href="{colab_url("00_a.ipynb")}">C</a><a href="{binder_url("00_a.ipynb")}">B</a>'
    page(site / "index.html", '<a href="notebooks/00_a.html#top">a</a><h1 id="top">x</h1>')
    page(
        site / "notebooks" / "00_a.html",
        f'<h1 id="top">A</h1>{launch}<img src="../_images/one.png"><p>Claim: <b>SUPPORTED</b> '
        '(+1.0 ± 0.2)</p><a href="../index.html#top">home</a>',
    )
    (site / "_images").mkdir()
    (site / "_images" / "one.png").write_bytes(b"png")


def test_check_site_passes_a_sound_site_and_catches_each_fault(course, tmp_path):
    _, executed = course
    site = tmp_path / "site"
    sound_site(site)
    want = {"00_a": 1}
    runs = {"00_a": executed / "00_a.ipynb"}
    assert verdict_lines(runs["00_a"]) == ["Claim: SUPPORTED (+1.0 ± 0.2)"]
    assert check_site(site, want, runs) == []

    assert check_site(site, {"00_a": 2}) == ["00_a: the page shows 1 images, its run produced 2"]
    assert check_site(site, {"01_b": 0}) == ["01_b: no page notebooks/01_b.html"]
    (site / "_images" / "one.png").unlink()
    assert check_site(site, want) == [
        "notebooks/00_a.html: <img> points at ../_images/one.png, which is not in the site"
    ]
    sound_site(tmp_path / "site2")
    site = tmp_path / "site2"
    text = (site / "notebooks" / "00_a.html").read_text()
    (site / "notebooks" / "00_a.html").write_text(
        text.replace("index.html#top", "index.html#gone")
        .replace("SUPPORTED", "CONTRADICTED")
        .replace("</body>", '<div class="output traceback">E</div><pre>VBox(children=(</pre>')
        .replace("mybinder.org", "binder.example")
    )
    problems = check_site(site, want, runs)
    assert problems == [
        "00_a: the page shows 1 error output(s)",
        "00_a: a widget is shown as text (VBox(children=...)",
        f"00_a: no link to its Binder launch ({binder_url('00_a.ipynb')})",
        "00_a: the verdict 'Claim: SUPPORTED (+1.0 ± 0.2)' of the run is not on the page",
        "notebooks/00_a.html: <a> points at ../index.html#gone, an anchor that is not there",
    ]


def test_the_command_says_to_run_first(tmp_path, capsys):
    assert (
        main(["build", "book", "--executed", str(tmp_path / "none"), "--out", str(tmp_path / "b")])
        == 2
    )
    err = capsys.readouterr().err
    assert "no executed notebooks" in err and "make run" in err
    assert not (tmp_path / "b").exists()


@needs_sphinx
def test_a_course_builds_into_a_checked_site_and_a_failed_build_keeps_the_old_one(course, tmp_path):
    root, executed = course
    out = tmp_path / "site"
    report = book.build_book(executed, out, folder=root / "notebooks", echo=lambda s: None)
    assert report.chapters == ["00_a", "01_b"] and report.images == {"00_a": 1, "01_b": 2}
    index = (out / "index.html").read_text()
    assert "A course" in index and 'href="notebooks/01_b.html"' in index
    assert "github.com/mae-nb/mae-nb/blob/main/data/README.md" in index
    assert (out / "docs" / "instructors.html").is_file() and (out / "data.html").is_file()
    assert "landsat7-rgb" in (out / "data.html").read_text()  # generated from the registry
    assert "markdown_table" in (out / "api" / "mae_nb.stats.html").read_text()
    assert "A slider: it moves in a live notebook" in (out / "notebooks" / "01_b.html").read_text()

    # a chapter that failed: the build stops before writing, the old site stays, no temp folder
    nbformat.write(chapter_nb("B", name="01_b.ipynb", error=True), executed / "01_b.ipynb")
    with pytest.raises(BookError, match="01_b.ipynb: cell 2"):
        book.build_book(executed, out, folder=root / "notebooks", echo=lambda s: None)
    assert (out / "index.html").read_text() == index
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".site")] == []


# --------------------------------------------------------------------------- the course's site

VERDICT_CHAPTERS = ("pretrained_mae_spatial_images", "mae_features", "label_efficiency")


@pytest.mark.notebook
def test_the_course_site_from_the_smoke_run(smoke_book):
    """Every chapter page of the site built from the suite's smoke run: there, with its images
    (at least as many as its run produced), its verdicts, its launch links, no error, no widget
    as text, no broken internal link (``build_book`` ran ``check_site``; checked again here)."""
    report, executed = smoke_book
    chapters = list_notebooks(ROOT / "notebooks")
    assert report.chapters == [p.stem for p in chapters]
    runs = {p.stem: executed / p.name for p in chapters}
    assert check_site(report.out, report.images, runs) == []
    for topic in VERDICT_CHAPTERS:  # found by what the chapter is about, not by its number
        (stem,) = [p.stem for p in chapters if p.stem[3:].endswith(topic)]
        lines = verdict_lines(runs[stem])
        assert lines, f"{stem}: the run printed no verdict"
        text = (report.out / "notebooks" / f"{stem}.html").read_text()
        assert re.search(r"SUPPORTED|CONTRADICTED|INCONCLUSIVE", text)
    for stem, n in report.images.items():
        assert n > 0 or stem[:2] == "00", f"{stem}: its run produced no image"
    print(
        f"smoke book: {report.seconds:.1f} s, {report.bytes / 1e6:.1f} MB, images per chapter "
        + ", ".join(f"{k[:2]} {v}" for k, v in report.images.items())
    )
