"""mae_nb.studies.scenarios: chapter 04's comparison, its baseline, its statistics and verdict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_mae

from mae_nb import stats
from mae_nb.data import synthetic_scene, value_range
from mae_nb.precision import choose
from mae_nb.reconstruct import normalization
from mae_nb.studies.scenarios import (
    STUDY_SCENARIOS,
    ScenarioComparison,
    compare_masking_scenarios,
    detail_ratio,
    interpolate_masked,
    mask_seed,
    pick_crops,
    training_pull,
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
                        pull_num=(0.6 if better else 0.0) + jitter,
                        blur_pull_num=0.1 + jitter / 2,
                        pull_den=1.0 + jitter,
                    )
                )
    return out


def test_compare_masking_scenarios_table_and_verdict(model):
    s = synthetic_scene(64, 64, 3, seed=0, collar=True)
    crops = pick_crops(s.image, 32, 2, s.valid)
    assert len(crops) == 2 and all(s.valid[r : r + 32, c : c + 32].all() for r, c in crops)
    cmp = compare_masking_scenarios(
        model, s.image, crops, seeds=(0, 1), valid=s.valid, progress=False, model_name="tiny"
    )
    assert len(cmp.rows) == len(crops) * 2 * 4
    assert cmp.precision == choose("auto", model)  # the precision that ran, "auto" resolved
    summary = cmp.summary()
    assert list(summary) == list(STUDY_SCENARIOS)
    assert summary["covering 25%"]["masked_share"][0] == 1.0
    assert summary["25%"]["masked_share"][0] == 0.25 and summary["50%"]["masked_share"][0] == 0.5
    # fewer replaced patches, better crop
    assert summary["25%"]["psnr"][0] > summary["50%"]["psnr"][0]
    table = cmp.table()
    assert table.count("\n|") >= 5 and "3x25%" in table and "blur baseline" in table
    assert f"{len(crops) * 2} runs per scenario ({len(crops)} crops x 2 seeds" in table
    verdict = cmp.verdict()
    assert len(verdict) == 5 and all(
        any(w in v for w in (*stats.VERDICTS.values(), "Reference")) for v in verdict
    )
    basis = f"({len(crops)} crops x 2 seeds; standard errors clustered by crop)"
    assert all(basis in v for v in verdict), verdict
    assert verdict[0].startswith("Claim 1 (as stated)") and "training data" in verdict[0]
    assert verdict[1].startswith("Check: beats a blur of the visible pixels")
    # the verdict follows the numbers: claim 3's word agrees with the paired difference it quotes
    if stats.direction(cmp.paired("3x25%", "25%", "ssim_masked")) < 0:
        assert "Claim 3" in verdict[3] and "CONTRADICTED" in verdict[3]
    assert "pull of the model" in cmp.pull_table() and "covering 25%" in cmp.pull_table()


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
    assert "Claim 1 (as stated)" in good[0] and ": SUPPORTED" in good[0]
    assert "Claim 1 (as stated)" in bad[0] and ": CONTRADICTED" in bad[0]
    assert "Check: beats a blur" in good[1] and ": SUPPORTED" in good[1]
    assert "Claim 3" in good[3] and ": SUPPORTED" in good[3]
    assert "Claim 3" in bad[3] and ": CONTRADICTED" in bad[3]
    assert "Reference" in good[4] and "18.02 dB vs 10.02 dB" in good[4]
    assert all("(3 crops x 3 seeds; standard errors clustered by crop)." in v for v in good)


def test_a_single_crop_is_inconclusive_not_infinitely_uncertain():
    """One crop (however many seeds): one cluster, the spread is unknown, every claim is
    inconclusive (stats' single-sample rule), and the sentences say why."""
    for seeds in (1, 3):
        cmp = ScenarioComparison(study_rows(True, crops=1, seeds=seeds), STUDY_SCENARIOS)
        est = cmp.paired("3x25%", "25%", "psnr_masked")
        assert est.clusters == 1 and np.isnan(est.se) and est.mean == pytest.approx(5.0)
        verdict = cmp.verdict()
        assert all(": INCONCLUSIVE" in v for v in verdict[:4]), verdict
        assert all("one crop gives no verdict" in v for v in verdict[:2])
        assert "inf" not in " ".join(verdict)
        assert f"(1 crop x {seeds} seed" in verdict[0]
        assert np.isnan(cmp.pull("25%").se) and cmp.pull("25%").clusters == 1


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


def _disjoint(crops, size):
    return all(
        abs(a[0] - b[0]) >= size or abs(a[1] - b[1]) >= size
        for i, a in enumerate(crops)
        for b in crops[i + 1 :]
    )


def test_pick_crops_are_disjoint_valid_spread_and_deterministic():
    s = synthetic_scene(200, 200, 3, seed=0, collar=True)
    crops = pick_crops(s.image, 48, 5, s.valid)
    assert len(crops) == 5 and _disjoint(crops, 48)
    assert all(s.valid[r : r + 48, c : c + 48].all() for r, c in crops)
    assert crops == pick_crops(s.image, 48, 5, s.valid)
    rows = [r for r, _ in crops]
    assert max(rows) - min(rows) >= 96  # spread over the scene, not packed in one corner
    # a 3 x 3 grid of 64 px crops fits exactly in 192 px: all nine are found
    full = np.zeros((3, 192, 192), np.float32)
    nine = pick_crops(full, 64, 9)
    assert sorted(nine) == [(r, c) for r in (0, 64, 128) for c in (0, 64, 128)]


def test_pick_crops_with_room_for_fewer_returns_them_with_a_notice(capsys):
    image = np.zeros((3, 100, 150), np.float32)
    with pytest.warns(UserWarning, match="only 2 disjoint 64 x 64 crop"):
        crops = pick_crops(image, 64, 5)
    assert len(crops) == 2 and _disjoint(crops, 64)
    assert "5 were asked" in capsys.readouterr().out
    nodata = image.copy()
    nodata[:, 50, 75] = np.nan  # one NaN pixel in the middle: no crop may hold it
    with pytest.warns(UserWarning):
        for r, c in pick_crops(nodata, 64, 5, quiet=True):
            assert not (r <= 50 < r + 64 and c <= 75 < c + 64)


def test_every_crop_and_seed_draws_its_own_masks(model):
    seeds = {mask_seed(seed, crop) for seed in range(5) for crop in range(5)}
    assert len(seeds) == 25 and mask_seed(1, 2) == mask_seed(1, 2)
    s = synthetic_scene(96, 96, 3, seed=0)
    crops = pick_crops(s.image, 32, 3, s.valid)
    cmp = compare_masking_scenarios(
        model, s.image, crops, seeds=(0,), scenarios={"25%": (0.25, 1, "chained")},
        progress=False,
    )  # fmt: skip
    assert len({r["mask_seed"] for r in cmp.rows}) == 3


def test_scores_use_the_whole_images_data_range_or_the_one_given(model):
    s = synthetic_scene(96, 96, 3, seed=0)
    crops = pick_crops(s.image, 32, 2, s.valid)
    one = {"25%": (0.25, 1, "chained")}
    whole = value_range(s.image, s.valid)
    kw = dict(seeds=(0,), scenarios=one, valid=s.valid, progress=False)
    default = compare_masking_scenarios(model, s.image, crops, **kw)
    given = compare_masking_scenarios(model, s.image, crops, data_range=whole, **kw)
    double = compare_masking_scenarios(model, s.image, crops, data_range=2 * whole, **kw)
    for metric in ("psnr_masked", "baseline_psnr_masked", "psnr"):
        np.testing.assert_allclose(default.values("25%", metric), given.values("25%", metric))
        np.testing.assert_allclose(
            double.values("25%", metric) - given.values("25%", metric),
            20 * np.log10(2),
            atol=1e-6,
        )
    with pytest.raises(ValueError, match="data_range must be a positive number"):
        compare_masking_scenarios(model, s.image, crops, data_range=0, **kw)


def fake_mae(kind: str):
    """A tiny MAE whose predictions are the training statistics or the truth.

    ``"training"``: every predicted pixel is +1 or -1 (a checkerboard) in the model's normalized
    units, so the predicted patches have per-band mean 0 and standard deviation 1 exactly, the
    statistics of the training data; ``"copy"``: the prediction is the model's (unmasked) input.
    """
    m = tiny_mae()
    encode = m.forward_encoder

    def forward_encoder(imgs, mask_ratio, noise=None):
        m._seen = imgs
        return encode(imgs, mask_ratio, noise=noise)

    def forward_decoder(latent, ids_restore):
        x = m._seen
        if kind == "training":
            n, c, h, w = x.shape
            yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            x = (((yy + xx) % 2) * 2.0 - 1.0).expand(n, c, h, w).contiguous()
        return m.patchify(x)

    m.forward_encoder, m.forward_decoder = forward_encoder, forward_decoder
    return m


def test_claim_1_pull_is_one_for_training_statistics_and_zero_for_the_truth():
    s = synthetic_scene(96, 96, 3, seed=0)
    crops = pick_crops(s.image, 32, 3, s.valid)
    kw = dict(seeds=(0, 1), valid=s.valid, progress=False)
    training = compare_masking_scenarios(fake_mae("training"), s.image, crops, **kw)
    copy = compare_masking_scenarios(fake_mae("copy"), s.image, crops, **kw)
    for name in STUDY_SCENARIOS:
        assert training.pull(name).mean == pytest.approx(1.0, abs=1e-4)
        assert copy.pull(name).mean == pytest.approx(0.0, abs=1e-4)
        # the blur does not depend on the model: the same pull on the same pixels
        assert training.pull(name, "blur").mean == pytest.approx(copy.pull(name, "blur").mean)
        extra = training.pull_over_blur(name)
        assert extra.mean == pytest.approx(1.0 - training.pull(name, "blur").mean)
        assert extra.clusters == 3 and extra.n == 6
    assert training.claim1() == "supported" and "Claim 1 (as stated)" in training.verdict()[0]
    assert copy.claim1() != "supported"
    # one image: the same reading by hand
    norm = normalization(s.image, "per-band", s.valid)
    region = np.zeros((96, 96), bool)
    region[:32, :32] = True
    truth = s.image.astype(np.float32)
    assert training_pull(truth, truth, region, norm) == pytest.approx(0.0, abs=1e-6)
    z = norm.apply(truth)
    z[:, region] = np.where(np.indices((96, 96)).sum(0)[region] % 2, 1.0, -1.0)
    assert training_pull(norm.invert(z), truth, region, norm) == pytest.approx(1.0, abs=1e-4)


def test_the_comparison_plot():
    from matplotlib.figure import Figure

    from mae_nb import viz

    fig = viz.plot_scenario_comparison(ScenarioComparison(study_rows(True), STUDY_SCENARIOS))
    assert isinstance(fig, Figure) and len(fig.axes) == 3


def test_pick_crops_may_allow_a_little_nodata():
    """Scattered nodata pixels (as in a real scene) rule out whole crops unless a crop may hold
    a few; ``min_valid`` says how few."""
    image = np.zeros((3, 128, 128), np.float32)
    image[:, 32::64, 32::64] = np.nan  # one hole in the middle of each 64 px quadrant
    with pytest.raises(ValueError, match="no 64 x 64 crop without nodata fits"):
        pick_crops(image, 64, 4)  # every 64 px window holds a hole
    crops = pick_crops(image, 64, 4, min_valid=0.99)
    assert sorted(crops) == [(0, 0), (0, 64), (64, 0), (64, 64)]
    with pytest.raises(ValueError, match="min_valid must be in"):
        pick_crops(image, 64, 4, min_valid=0)
