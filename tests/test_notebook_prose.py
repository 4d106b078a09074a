"""Prose that cannot go stale: markdown cells hold no hand-typed measured number.

``mae_nb.notebook.stale_numbers`` is the rule; ``lint_notebook`` applies it to every markdown
cell, so ``tests/test_notebooks.py::test_notebook_follows_the_conventions`` enforces it for
every chapter. These tests pin down what the rule flags and what it lets through.
"""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

from mae_nb.notebook import RUN_TIME_LINE, header, lint_notebook, new_chapter, stale_numbers

FLAGGED = [
    "The model reaches 23.0 dB both, measured while writing this chapter.",
    "The full run took 68 s.",
    "**Estimated run time on a laptop CPU:** about 3 min.",
    "about 3 minutes (smoke: under a minute)",
    "It classifies 12.5 % of the tiles as cloud.",
    "OA reaches 98.6 percent with 1 % of the labels.",
    "peak memory 1404 MiB",
    "the ViT-L alone needs 2 GB",
    "24.9 tiles/s",
    "a gain of +1.5 points over random init",
    "about 1.6x slower",
    "0.4 dB better than the mean fill",
    "took 0.26 seconds per slider update",
    "values measured when writing the chapter",
    "0.05 % of the pixels",
]

ALLOWED = [
    "Hide 25 % of the patches.",
    "three passes of 25 % each (3 x 25 %) against one pass of 75 %",
    "with 1 % of the labels, and 0.1 % (at least one pixel per class), 0.5 %",
    "patches of 16 px on a 224 px crop",
    "Landsat's 30 m pixels",
    "`23.0 dB` in a code span, ``12.5 %`` in a double one",
    "```python\nprint('68 s')\n```",
    "math: $10 \\log_{10} 2 \\approx 3$ dB per halving, $$\\mathrm{PSNR} = 12.5\\,\\mathrm{dB}$$",
    "[a link](https://example.org/run-68s/12.5%25)",
    "5 seeds, 3 crops, 10 epochs, chapter 03",
    "the paper reports a gain of 7-8 points",
    "10 log10(1 / MSE) in dB",
    RUN_TIME_LINE,
]


@pytest.mark.parametrize("text", FLAGGED)
def test_a_measured_number_in_prose_is_flagged(text):
    assert stale_numbers(text), f"{text!r} was not flagged"


@pytest.mark.parametrize("text", ALLOWED)
def test_design_constants_code_and_math_are_not_flagged(text):
    assert stale_numbers(text) == []


def test_the_rule_names_the_number_and_why():
    found = stale_numbers("PSNR 23.0 dB, 12.5 % cloud, measured while writing")
    assert [text for text, _ in found] == ["23.0 dB", "12.5 %", "measured while writing"]
    assert all(reason for _, reason in found)


def test_the_header_quotes_no_run_time():
    assert stale_numbers(header("00_x.ipynb", "00 · x", ["a"])) == []


def test_lint_flags_a_markdown_cell_but_not_a_computed_display(tmp_path):
    path = new_chapter(tmp_path / "00_x.ipynb", "00 · x", ["a"], None, "SMOKE = False", [
        ("code", "import mae_nb\nmae_nb.record_metrics({'psnr': 23.0})"),
        ("code", "from mae_nb.notebook import show_markdown\nshow_markdown(f'{23.0:.1f} dB')"),
    ])
    assert lint_notebook(path) == []
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(new_markdown_cell("The model scored 23.0 dB (measured while writing)."))
    nb.cells.append(new_code_cell("x = '68 s'"))  # code is not prose
    nbformat.write(nb, path)
    problems = lint_notebook(path)
    assert len(problems) == 2
    assert all(f"markdown cell {len(nb.cells) - 2}" in p for p in problems)
    assert "'23.0 dB'" in problems[0] and "show_markdown" in problems[0]


def test_show_markdown_displays_markdown(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    from mae_nb.notebook import show_markdown

    show_markdown("**23.0 dB**")
    assert isinstance(shown[0], IPython.display.Markdown) and shown[0].data == "**23.0 dB**"
