"""Every chapter stands alone: opened from its badge on a fresh machine (an empty cache), chapters
04, 05 and 08 run and use the documented model, and say which.

The documented model (``mae_nb.pretrained``): chapter 04 takes ``CHECKPOINT = "auto"`` (Meta's
ViT-L, or its ViT-B where memory is short) when it can be had, else the course's open RGB MAE
shipped in the package; chapter 05 studies the course's open RGB MAE; chapter 08 uses chapter
07's model from the cache, else pretrains one with chapter 07's own recipe (and saves it). Each
chapter runs in its own empty cache, as a learner who opens only that chapter would.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from mae_nb.data import registry
from mae_nb.pretrained import resolve_checkpoint
from mae_nb.runner import run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SMOKE_BUDGET_S = 90  # as tests/test_notebooks.py


def printed(executed: str | Path) -> str:
    """Everything the executed notebook printed (its stream outputs), in order."""
    nb = nbformat.read(executed, as_version=4)
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream"
    )


def run_fresh(stem: str, tmp_path: Path, monkeypatch, budget_s: float = SMOKE_BUDGET_S):
    """Run chapter ``stem`` in smoke mode with an empty cache; the result and what it printed.
    ``budget_s``: a chapter's smoke budget, or two where the chapter must first pretrain with
    another chapter's recipe (it does that chapter's work too)."""
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setenv("MAE_NB_CACHE", str(cache))  # the kernel inherits it
    result = run_notebook(NOTEBOOKS / f"{stem}.ipynb", tmp_path / "run", smoke=True, timeout=600)
    assert result.status == "ok", result.error
    assert result.seconds < budget_s, (
        f"{stem} with an empty cache took {result.seconds} s (budget {budget_s} s)"
    )
    print(f"\n{stem}, empty cache, smoke run: {result.seconds:.1f} s")
    return result, printed(result.output), cache


@pytest.mark.notebook
def test_chapter_04_on_a_fresh_machine_uses_the_documented_model(tmp_path, monkeypatch):
    meta = resolve_checkpoint("auto", quiet=True)
    monkeypatch.setenv("MAE_NB_CACHE", str(tmp_path / "probe"))
    meta_here = registry.locate(meta) is not None  # only a mirror can hold it in an empty cache
    result, out, _ = run_fresh("04_pretrained_mae_spatial_images", tmp_path, monkeypatch)
    assert "checkpoint 'auto': mae_visualize_vit_" in out  # says which of Meta's it asked for
    if meta_here:
        assert result.metrics["model_is_meta"] == 1
    else:
        assert result.metrics["model_is_course"] == 1, out
        assert "Using the course's open MAE 'mae_tiny_course_rgb' instead" in out
        assert "model: mae_tiny_course_rgb" in out and "(course model)" in out


@pytest.mark.notebook
def test_chapter_05_on_a_fresh_machine_uses_the_course_model(tmp_path, monkeypatch):
    result, out, _ = run_fresh("05_mae_features", tmp_path, monkeypatch)
    assert result.metrics["model_is_course"] == 1, out
    assert "tiny MAE mae_tiny_course_rgb (course model)" in out


@pytest.mark.notebook
def test_chapter_08_on_a_fresh_machine_pretrains_with_chapter_07s_recipe(tmp_path, monkeypatch):
    from mae_nb.finetune import load_sst

    # chapter 07's smoke pretraining, then chapter 08's own smoke run: two chapters' budgets
    result, out, cache = run_fresh(
        "08_hyperspectral_label_efficiency", tmp_path, monkeypatch, budget_s=2 * SMOKE_BUDGET_S
    )
    assert "Pretraining here instead with chapter 07's recipe (its smoke run)" in out, out
    assert "pretrained model from chapter 07's recipe" in out
    # saved where chapter 07 saves it, so the next chapter (or run) finds it
    saved = list((cache / "checkpoints").glob("*.safetensors"))
    assert len(saved) == 1
    config = load_sst(saved[0], with_config=True)[1]
    assert config["smoke"] is True and config["test_pixels_seen"] == 0
