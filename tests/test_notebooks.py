"""Every chapter: follows the conventions, runs in smoke mode, and keeps its metrics.

Notebooks run in order in one session cache (chapter 03 saves its model there; chapters 04 and 05
run on the course's open MAE shipped in the package, and fall back to chapter 03's model without
it), and their recorded metrics are compared with ``tests/baselines/<notebook>.json`` for the
data they ran on (``synthetic`` or ``real``): a silent quality regression fails here, not only a
crash.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mae_nb.notebook import lint_notebook, unshown_figures
from mae_nb.runner import list_notebooks, recorded_seconds, run_notebook, within_factor

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = list_notebooks(ROOT / "notebooks")
BASELINES = ROOT / "tests" / "baselines"
SMOKE_BUDGET_S = 90


def test_the_course_has_its_first_chapter():
    assert NOTEBOOKS, "no notebooks found"
    assert NOTEBOOKS[0].name == "00_spatial_data_tour.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_follows_the_conventions(path):
    assert lint_notebook(path) == []


def check_against_baseline(metrics: dict, data: str, baseline: dict) -> list[str]:
    """Problems of ``metrics`` against ``baseline[data]``: {name: {min|max|value+atol}}."""
    if data not in baseline:
        return [f"no baseline for {data!r} data (sections: {sorted(baseline)})"]
    problems = []
    for name, spec in baseline[data].items():
        if name not in metrics:
            problems.append(f"metric {name!r} was not recorded")
            continue
        v = metrics[name]
        if "min" in spec and v < spec["min"]:
            problems.append(f"{name} = {v:.4g} fell below its baseline minimum {spec['min']}")
        if "max" in spec and v > spec["max"]:
            problems.append(f"{name} = {v:.4g} rose above its baseline maximum {spec['max']}")
        if "value" in spec and abs(v - spec["value"]) > spec.get("atol", 0):
            problems.append(
                f"{name} = {v:.4g} differs from {spec['value']} by more than {spec.get('atol', 0)}"
            )
    return problems


def test_baseline_check_catches_regressions():
    base = {"synthetic": {"psnr": {"min": 20}, "loss": {"value": 0.1, "atol": 0.01}}}
    assert check_against_baseline({"psnr": 25, "loss": 0.105}, "synthetic", base) == []
    assert "fell below" in check_against_baseline({"psnr": 19, "loss": 0.1}, "synthetic", base)[0]
    assert "differs" in check_against_baseline({"psnr": 25, "loss": 0.2}, "synthetic", base)[0]
    assert "not recorded" in check_against_baseline({"loss": 0.1}, "synthetic", base)[0]
    assert "no baseline" in check_against_baseline({}, "real", base)[0]


#: Each chapter's claimed comparisons with a trivial baseline, recorded as differences (model minus
#: baseline): the baseline file must bound each one ("min" or "max") for synthetic AND real data,
#: so that a model that stopped learning fails the smoke run, not only a crash.
CLAIMED_COMPARISONS: dict[str, tuple[str, ...]] = {
    # chapter 00 makes no model-vs-baseline claim (it tours the data)
    "01": ("psnr_conv_minus_tile_mean",),  # conv AE minus the per-tile mean, held-out PSNR
    "02": ("hidden_psnr_masked_minus_fill",),  # masked model minus visible-mean fill, hidden px
    "03": (  # MAE minus mean fill, masked-patch PSNR; and on held-out crops the course's model
        "psnr_masked_mae_minus_mean_fill",  # minus chapter 03's, the blur and the mean fill
        "heldout_course_minus_chapter03_25",
        "heldout_course_minus_blur_25",
        "heldout_course_minus_mean_fill_75",
        # and the course model's mean attention distance (most local block) below uniform's
        "attention_distance_uniform_minus_course",
    ),
    "04": ("gain_over_blur_25",),  # model minus blur at 25 %, masked-patch PSNR
    "05": (  # the course model's features minus raw pixels and minus its untrained copy, macro-F1
        "probe_f1_tiny_minus_pixels",
        "probe_f1_tiny_minus_untrained",
    ),
    "06": (  # full fine-tuning and the linear probe minus the best constant answer, test OA
        "oa_full_minus_majority_low",
        "oa_probe_minus_majority_low",
    ),
    "07": ("mse_model_minus_visible_mean",),  # masked MSE, model minus visible-mean fill
    "08": (  # pretrained SST minus random init, and every model minus the majority-class rate
        "gain_pretraining_low",
        *(f"oa_{m}_minus_majority_low" for m in ("sst_pretrained", "sst_random_init", "vit")),
        *(f"oa_{m}_minus_majority_low" for m in ("3dcnn", "svm", "rf")),
    ),
}


def comparison_problems(chapter: str, baseline: dict) -> list[str]:
    """What ``baseline`` lacks for ``chapter``'s claimed comparisons (see CLAIMED_COMPARISONS)."""
    problems = []
    for name in CLAIMED_COMPARISONS.get(chapter, ()):
        for data in ("synthetic", "real"):
            spec = baseline.get(data, {}).get(name)
            if spec is None:
                problems.append(f"{data}: the comparison {name!r} has no baseline")
            elif "min" not in spec and "max" not in spec:
                problems.append(f"{data}: {name!r} needs a 'min' or 'max' bound, got {spec}")
    return problems


def test_every_chapter_is_in_the_comparison_table():
    assert sorted(CLAIMED_COMPARISONS) == sorted(
        p.name[:2] for p in NOTEBOOKS if p.name[:2] != "00"
    )


def test_comparison_check_wants_a_bound_in_both_sections():
    good = {
        "synthetic": {"gain_over_blur_25": {"min": 0.5}},
        "real": {"gain_over_blur_25": {"max": 9}},
    }
    assert comparison_problems("04", good) == []
    assert comparison_problems("00", {}) == []
    loose = {"synthetic": {"gain_over_blur_25": {"value": 1, "atol": 9}}}
    assert comparison_problems("04", loose) == [
        "synthetic: 'gain_over_blur_25' needs a 'min' or 'max' bound, got {'value': 1, 'atol': 9}",
        "real: the comparison 'gain_over_blur_25' has no baseline",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_claimed_comparisons_have_bounds_that_bite(path):
    baseline = json.loads((BASELINES / f"{path.stem}.json").read_text())
    assert comparison_problems(path.name[:2], baseline) == []


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode_and_keeps_its_metrics(path, smoke_run):
    out = smoke_run / "executed"  # the course's website is built from these (tests/test_book.py)
    result = run_notebook(path, out, smoke=True, timeout=600)
    assert result.status == "ok", result.error
    assert result.seconds < SMOKE_BUDGET_S, f"smoke run took {result.seconds:.0f} s"
    recorded = recorded_seconds(path.stem, smoke=True)  # docs/run_times.json, as the header says
    assert recorded is not None and within_factor(result.seconds, recorded), (
        f"smoke run took {result.seconds:.0f} s, not within a factor of two of the recorded "
        f"{recorded} s that the header states: record it again (`mae-nb run --smoke --record`)"
    )
    assert result.peak_memory_mb is not None and result.peak_memory_mb < 2048, (
        f"kernel peak memory {result.peak_memory_mb} MiB exceeds Binder's 2 GB"
    )
    baseline_file = BASELINES / f"{path.stem}.json"
    assert baseline_file.exists(), f"{baseline_file} is missing"
    baseline = json.loads(baseline_file.read_text())
    assert check_against_baseline(result.metrics, result.data, baseline) == []


_BASE_CHECKPOINT = """
import sys, torch
from mae_nb.models import mae
torch.manual_seed(0)
torch.save({"model": mae.create_mae("mae_vit_base_patch16_dec512d8b").state_dict()}, sys.argv[1])
"""


@pytest.mark.notebook
def test_chapter_04_default_run_with_the_base_model_fits_binder(tmp_path):
    """Chapter 04 as Binder users are told to run it (``CHECKPOINT`` = the ViT-B), with the
    course's RGB model next to it (``COMPARE``, on by default). Meta's file cannot be downloaded
    here, so a ViT-B of random weights saved in Meta's format (same shapes, same size, loaded
    the same way) stands in for it."""
    import subprocess
    import sys

    checkpoint = tmp_path / "mae_visualize_vit_base.pth"
    subprocess.run([sys.executable, "-c", _BASE_CHECKPOINT, str(checkpoint)], check=True)
    path = ROOT / "notebooks" / "04_pretrained_mae_spatial_images.ipynb"
    result = run_notebook(path, tmp_path / "run", {"CHECKPOINT": str(checkpoint)}, timeout=900)
    assert result.status == "ok", result.error
    assert result.metrics["model_is_meta"] == 1, (
        "the chapter fell back instead of loading the ViT-B"
    )
    assert result.metrics["compared_with_course"] == 1, (
        "with Meta's model, the chapter should show the course model's reconstruction next to it"
    )
    assert result.peak_memory_mb is not None and result.peak_memory_mb < 2048, (
        f"chapter 04 with the base model peaked at {result.peak_memory_mb} MiB, over Binder's 2 GB"
    )


def test_lint_finds_a_figure_that_is_drawn_and_never_shown():
    """A viz.plot_* call in the middle of a cell (or in a loop or an if) returns a figure nobody
    sees; the last expression, an assignment or display(...) are fine."""
    hidden = "x = 1\nviz.plot_split(a, b)\nprint(x)"
    assert unshown_figures(hidden) == [
        "line 2: the figure of viz.plot_split(...) is never shown (it is not the cell's last "
        "expression); wrap it in display(...)"
    ]
    assert len(unshown_figures("if ok:\n    viz.plot_loss_curve(h)\nelse:\n    print(1)")) == 1
    assert unshown_figures("x = 1\nviz.plot_split(a, b)") == []
    assert unshown_figures("display(viz.plot_split(a, b))\nprint(1)") == []
    assert unshown_figures("fig = viz.plot_split(a, b)\nprint(1)") == []
    assert unshown_figures("%matplotlib inline\nviz.plot_split(a, b)\nx = 1") == []
