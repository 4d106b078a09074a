"""mae_nb.studies.scenarios: chapter 04's comparison, its baseline, its statistics and verdict."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_mae

from mae_nb import stats
from mae_nb.data import synthetic_scene
from mae_nb.studies.scenarios import (
    STUDY_SCENARIOS,
    ScenarioComparison,
    compare_masking_scenarios,
    detail_ratio,
    interpolate_masked,
    pick_crops,
)


@pytest.fixture(scope="module")
def model():
    return tiny_mae()


def study_rows(better=True, crops=3, seeds=3, crop_effect=0.0):
    """Rows of a made-up comparison: 3 x 25 % better (or worse) than 25 % on every crop/seed;
    ``crop_effect`` adds a per-crop shift to the 3 x 25 % scores (seeds of a crop move together)."""
    out = []
    for crop in range(crops):
        for seed in range(seeds):
            jitter = 0.01 * (crop + seed)
            for name, base in (
                ("25%", 20.0),
                ("50%", 19.0),
                ("3x25%", (25.0 if better else 15.0) + crop_effect * (crop - 1)),
                ("covering 25%", 18.0),
            ):
                out.append(
                    dict(
                        scenario=name,
                        crop=crop,
                        seed=seed,
                        psnr_masked=base + jitter,
                        ssim_masked=base / 30 + jitter,
                        psnr=base,
                        ssim=0.5,
                        masked_share=0.5,
                        detail=0.8,
                        baseline_psnr_masked=10.0 + jitter,
                    )
                )
    return out


def test_compare_masking_scenarios_table_and_verdict(model):
    s = synthetic_scene(64, 64, 3, seed=0, collar=True)
    crops = pick_crops(s.image, 32, 3, s.valid)
    assert len(crops) >= 2 and all(s.valid[r : r + 32, c : c + 32].all() for r, c in crops)
    cmp = compare_masking_scenarios(
        model, s.image, crops, seeds=(0, 1), valid=s.valid, progress=False, model_name="tiny"
    )
    assert len(cmp.rows) == len(crops) * 2 * 4
    summary = cmp.summary()
    assert list(summary) == list(STUDY_SCENARIOS)
    assert summary["covering 25%"]["masked_share"][0] == 1.0
    assert summary["25%"]["masked_share"][0] == 0.25 and summary["50%"]["masked_share"][0] == 0.5
    # fewer replaced patches, better crop
    assert summary["25%"]["psnr"][0] > summary["50%"]["psnr"][0]
    table = cmp.table()
    assert table.count("\n|") >= 5 and "3x25%" in table and "blur baseline" in table
    assert f"{len(crops) * 2} runs per scenario" in table
    verdict = cmp.verdict()
    assert len(verdict) == 4 and all(
        any(w in v for w in (*stats.VERDICTS.values(), "Reference")) for v in verdict
    )
    # the verdict follows the numbers: claim 3's word agrees with the paired difference it quotes
    if stats.direction(cmp.paired("3x25%", "25%", "ssim_masked")) < 0:
        assert "Claim 3" in verdict[2] and "CONTRADICTED" in verdict[2]


def test_a_sample_or_raster_gives_the_same_comparison(model):
    from mae_nb.data import Raster

    s = synthetic_scene(64, 64, 3, seed=0, collar=True)
    raster = Raster(array=s.image, valid=s.valid, crs=None, transform=None)
    crops = pick_crops(s.image, 32, 2, s.valid)
    a = compare_masking_scenarios(model, raster, crops, seeds=(0,), progress=False)
    b = compare_masking_scenarios(model, s.image, crops, seeds=(0,), valid=s.valid, progress=False)
    np.testing.assert_allclose(a.values("25%", "psnr"), b.values("25%", "psnr"))


def test_verdict_is_computed_from_the_numbers():
    good = ScenarioComparison(study_rows(True), STUDY_SCENARIOS).verdict()
    bad = ScenarioComparison(study_rows(False), STUDY_SCENARIOS).verdict()
    assert "Claim 1" in good[0] and ": SUPPORTED" in good[0]
    assert "Claim 3" in good[2] and ": SUPPORTED" in good[2]
    assert "Claim 3" in bad[2] and ": CONTRADICTED" in bad[2]
    assert "Reference" in good[3] and "18.02 dB vs 10.02 dB" in good[3]


def test_a_single_crop_is_inconclusive_not_infinitely_uncertain():
    """One crop (however many seeds): one cluster, the spread is unknown, every claim is
    inconclusive (stats' single-sample rule), and the sentences say why."""
    for seeds in (1, 3):
        cmp = ScenarioComparison(study_rows(True, crops=1, seeds=seeds), STUDY_SCENARIOS)
        est = cmp.paired("3x25%", "25%", "psnr_masked")
        assert est.clusters == 1 and np.isnan(est.se) and est.mean == pytest.approx(5.0)
        verdict = cmp.verdict()
        assert all(": INCONCLUSIVE" in v for v in verdict[:3]), verdict
        assert "one crop gives no verdict" in verdict[0] and "inf" not in " ".join(verdict)


def test_clustering_by_crop_widens_the_standard_error_when_seeds_repeat_a_crop():
    """Seeds of one crop share the crop: they are not independent samples of the image."""
    cmp = ScenarioComparison(study_rows(True, crops=4, seeds=5, crop_effect=1.0), STUDY_SCENARIOS)
    est = cmp.paired("3x25%", "25%", "psnr_masked")
    naive = stats.paired_difference(
        cmp.values("3x25%", "psnr_masked"), cmp.values("25%", "psnr_masked")
    )
    assert est.n == naive.n == 20 and est.clusters == 4 and naive.clusters == 20
    assert est.mean == pytest.approx(naive.mean)
    assert est.se > 1.5 * naive.se
    assert cmp.crops("25%").tolist() == [c for c in range(4) for _ in range(5)]


def test_scenarios_on_other_crops_cannot_be_paired():
    rows = study_rows(True)
    rows = [r for r in rows if not (r["scenario"] == "50%" and r["crop"] == 0)]
    with pytest.raises(ValueError, match="not run on the same crops and seeds"):
        ScenarioComparison(rows, STUDY_SCENARIOS).paired("50%", "25%", "psnr")


def test_baseline_and_detail_helpers():
    img = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (3, 32, 1))  # a smooth ramp
    hole = np.zeros((32, 32), bool)
    hole[8:16, 8:16] = True
    filled = interpolate_masked(img, hole, np.ones((32, 32), bool), sigma=4)
    np.testing.assert_array_equal(filled[:, ~hole], img[:, ~hole])
    assert np.abs(filled[:, hole] - img[:, hole]).max() < 0.05  # a ramp is easy to interpolate
    assert detail_ratio(img, img, hole) == pytest.approx(1.0)
    texture = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    flat = texture.copy()
    flat[:, hole] = texture[:, hole].mean()
    assert detail_ratio(flat, texture, hole) < 0.6  # a flat fill has less detail than the texture
    assert np.isnan(detail_ratio(img, img, np.zeros((32, 32), bool)))


def test_pick_crops_without_room_says_so():
    s = synthetic_scene(40, 40, 3, seed=0, collar=True)
    with pytest.raises(ValueError, match="no 40 x 40 crop without nodata fits"):
        pick_crops(s.image, 40, 3, s.valid)


def test_the_comparison_plot():
    from matplotlib.figure import Figure

    from mae_nb import viz

    fig = viz.plot_scenario_comparison(ScenarioComparison(study_rows(True), STUDY_SCENARIOS))
    assert isinstance(fig, Figure) and len(fig.axes) == 3
