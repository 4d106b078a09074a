"""Tests of mae_nb.studies.mask_ratio: tiny MAEs trained at several mask ratios, each scored at
several inference ratios next to the blur, their features probed, and the verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_mae

from mae_nb import pretraining
from mae_nb.data import synthetic_scene
from mae_nb.errors import InputError, MaeNbError
from mae_nb.studies.heldout import HeldoutScores
from mae_nb.studies.mask_ratio import (
    MaskRatioStudy,
    check_ratios,
    mask_ratio_study,
    ratio_name,
    train_at_ratios,
)


def test_bad_ratios_are_clear_errors():
    assert check_ratios([0.25, 0.5]) == (0.25, 0.5)
    for bad, match in (
        ([], "at least one"),
        ([0.0, 0.5], r"in \(0, 1\)"),
        ([1.0], r"\[0, 1\)"),
        ([0.5, 0.5], "distinct"),
        (["half"], "numbers"),
    ):
        with pytest.raises(MaeNbError, match=match):
            check_ratios(bad)
    image = np.zeros((3, 64, 64), np.float32)
    with pytest.raises(InputError, match="sets mask_ratio itself"):
        train_at_ratios(image, ratios=[0.5], mask_ratio=0.75)
    with pytest.raises(InputError, match="training mask ratios must be distinct"):
        train_at_ratios(image, ratios=[0.5, 0.5])
    with pytest.raises(InputError, match="give both probe_image and probe_labels"):
        mask_ratio_study({0.5: tiny_mae(img_size=32)}, [], probe_image=image)


def _rows(psnr):
    """Held-out rows: psnr[train][test] per crop (a list), blur 20 dB."""
    rows = []
    for t, per_test in psnr.items():
        for q, values in per_test.items():
            for k, v in enumerate(values):
                rows.append(
                    dict(model=ratio_name(t), scene="s", ratio=q, crop=k, psnr=v, blur=20.0,
                         mean_fill=15.0)
                )  # fmt: skip
    return rows


def test_grid_and_verdicts_follow_the_measurements():
    crops = 6
    rng = np.random.default_rng(0)
    noise = lambda: list(rng.normal(0, 0.05, crops))  # noqa: E731
    psnr = {
        0.25: {0.25: [31 + e for e in noise()], 0.75: [22 + e for e in noise()]},
        0.75: {0.25: [30 + e for e in noise()], 0.75: [26 + e for e in noise()]},
    }
    probe = [
        dict(source=ratio_name(t), seed=0, fold=f, accuracy=acc + 0.01 * f, macro_f1=acc)
        for t, acc in ((0.25, 0.6), (0.75, 0.8))
        for f in range(1, 5)
    ]
    study = MaskRatioStudy((0.25, 0.75), (0.25, 0.75), HeldoutScores(_rows(psnr)), probe)
    grid = study.grid()
    assert [r["model"] for r in grid] == ["trained at 25%", "trained at 75%", "blur (no model)"]
    assert grid[0]["masked 25%"] == pytest.approx(np.mean(psnr[0.25][0.25]))
    assert grid[1]["masked 75%"] == pytest.approx(np.mean(psnr[0.75][0.75]))
    assert grid[2]["masked 75%"] == 20.0
    rec = study.best_reconstruction()
    # 75 % wins on average (28 dB vs 26.5 dB) though 25 % is best when tested at 25 %
    assert rec["best"] == 0.75
    assert rec["gaps"][0.25].mean == pytest.approx(1.5, abs=0.1)
    feat = study.best_features()
    assert feat["best"] == 0.75 and feat["verdict"] == "supported"
    assert feat["gaps"][0.25].mean == pytest.approx(0.2)
    assert [r["accuracy"] for r in study.probe_table()] == pytest.approx([0.625, 0.825])
    text = study.verdict()
    assert f"the model trained at 75% ({rec['means'][0.75]:.2f} dB averaged" in text
    assert "at 25% the model trained at 25%" in text and "at 75% the model trained at 75%" in text
    assert "Best features" in text and "0.02): the model trained at 75%" in text
    # a practical margin: a gain within it is not a clear winner, however small its error
    assert study.best_features(margin=0.5)["verdict"] == "inconclusive"


def test_one_crop_leaves_the_reconstruction_verdict_inconclusive():
    psnr = {0.25: {0.5: [25.0]}, 0.75: {0.5: [27.0]}}
    study = MaskRatioStudy((0.25, 0.75), (0.5,), HeldoutScores(_rows(psnr)))
    rec = study.best_reconstruction()
    assert rec["best"] == 0.75 and rec["verdict"] == "inconclusive"
    assert "INCONCLUSIVE" in study.verdict() and "features" not in study.verdict()


def test_study_runs_models_on_the_same_crops_and_probes_land_cover():
    inputs = [{"synthetic": {"seeds": [1000], "sizes": [64], "bands": 3}}]
    sources = pretraining.open_sources(inputs, holdout=0.25, crop_size=32, quiet=True)
    pretraining.band_statistics(sources, "scene")
    models = {0.25: tiny_mae(seed=1), 0.75: tiny_mae(seed=2)}
    scene = synthetic_scene(64, 64, bands=3, seed=1000)
    study = mask_ratio_study(
        models, sources, test_ratios=(0.25, 0.75), crop_size=32, crops=2, seed=0,
        probe_image=scene.image, probe_labels=scene.labels,
    )  # fmt: skip
    rows = study.held.rows
    assert len(rows) == 2 * 2 * 2  # models x test ratios x crops
    # the blur is scored on the same crops and masks for both models
    for q in (0.25, 0.75):
        blur = {(r["crop"], r["model"]): r["blur"] for r in rows if r["ratio"] == q}
        assert blur[(0, ratio_name(0.25))] == blur[(0, ratio_name(0.75))]
    assert {r["source"] for r in study.probe} == {ratio_name(0.25), ratio_name(0.75)}
    assert all(0 <= r["accuracy"] <= 1 for r in study.probe if np.isfinite(r["accuracy"]))
    assert np.isfinite(study.psnr(0.25, 0.75)) and np.isfinite(study.blur(0.25))


def test_train_at_ratios_changes_only_the_mask_ratio():
    rng = np.random.default_rng(0)
    image = (rng.random((3, 64, 64)) * 100).astype(np.float32)
    runs = train_at_ratios(
        image, ratios=(0.25, 0.75), tile_size=32, stride=32, epochs=1, batch_size=4,
        progress=False,
    )  # fmt: skip
    assert sorted(runs) == [0.25, 0.75]
    cfg = {r: run.model.pretrained_cfg for r, run in runs.items()}
    assert cfg[0.25]["mask_ratio"] == 0.25 and cfg[0.75]["mask_ratio"] == 0.75
    assert cfg[0.25]["epochs"] == cfg[0.75]["epochs"] == 1
    assert np.array_equal(runs[0.25].train_tiles.numpy(), runs[0.75].train_tiles.numpy())
