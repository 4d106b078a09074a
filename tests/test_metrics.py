"""Image metrics over valid pixels, and classification scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_nb.metrics import classification_report, mse, psnr, ssim


def test_psnr_matches_its_definition_and_accepts_tensors():
    t = np.zeros((2, 8, 8))
    p = t + 0.1
    assert mse(p, t) == pytest.approx(0.01)
    assert psnr(p, t, 1.0) == pytest.approx(20.0)
    assert psnr(torch.tensor(p), torch.tensor(t), data_range=1.0) == pytest.approx(20.0)
    assert psnr(p * 2, t, data_range=2.0) == pytest.approx(20.0)


def test_per_band_scores():
    t = np.zeros((2, 8, 8))
    p = np.stack([t[0] + 0.1, t[1] + 0.01])
    np.testing.assert_allclose(psnr(p, t, 1.0, per_band=True), [20.0, 40.0])


def test_nodata_and_nan_pixels_are_left_out():
    t = np.random.default_rng(0).random((3, 16, 16))
    p = t.copy()
    p[:, :4] = np.nan  # a hole in the prediction
    valid = np.ones((16, 16), bool)
    valid[-4:] = False  # nodata in the source
    p[:, -4:] += 5  # garbage where there is no data
    assert mse(p, t, valid=valid) == 0.0
    assert ssim(p, t, 1.0, valid=valid) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no valid pixel"):
        mse(p, t, valid=np.zeros((16, 16), bool))


def test_ssim_falls_with_noise():
    rng = np.random.default_rng(0)
    t = rng.random((1, 32, 32))
    assert ssim(t, t, 1.0) == pytest.approx(1.0)
    assert ssim(t + 0.2 * rng.standard_normal(t.shape), t, 1.0) < 0.8


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((3, 8, 8)), np.zeros((3, 8, 9)), 1.0)


def test_data_range_is_required_and_positive():
    t = np.zeros((1, 16, 16))
    with pytest.raises(TypeError):
        psnr(t + 0.1, t)  # no silent 1.0: the caller names the source's range
    with pytest.raises(TypeError):
        ssim(t + 0.1, t)
    for bad in (0, -1.0, float("nan"), None):
        with pytest.raises(ValueError, match="data_range"):
            psnr(t + 0.1, t, bad)


def test_psnr_region_is_valid_and_region():
    rng = np.random.default_rng(1)
    t = rng.random((2, 16, 16))
    p = t + rng.normal(0, 0.1, t.shape)
    region = np.zeros((16, 16), bool)
    region[4:12, 4:12] = True
    valid = np.ones((16, 16), bool)
    valid[4:6] = False
    assert psnr(p, t, 1.0, valid=valid, region=region) == pytest.approx(
        psnr(p, t, 1.0, valid=valid & region)
    )


def _zero_fill_ssim(pred, target, data_range, keep):
    """The old formula: pixels outside ``keep`` set to 0 in both images, map averaged on keep."""
    from skimage.metrics import structural_similarity

    vals = []
    for b in range(target.shape[0]):
        _, smap = structural_similarity(
            np.where(keep, target[b], 0.0), np.where(keep, pred[b], 0.0),
            data_range=data_range, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, full=True,
        )  # fmt: skip
        vals.append(smap[keep].mean())
    return float(np.mean(vals))


def test_masked_ssim_is_not_flattered_by_zeros_around_the_region():
    """Isolated masked patches: zero-filling the context (identical in both images) inflated
    the score; the map on the full images does not depend on what "not scored" is filled with."""
    rng = np.random.default_rng(0)
    t = 5000 + 2000 * rng.random((3, 64, 64))  # reflectance-like values, range 10000
    p = t.copy()
    region = np.zeros((64, 64), bool)
    for r, c in [(8, 8), (8, 40), (40, 24)]:  # three isolated 8 x 8 "masked patches"
        region[r : r + 8, c : c + 8] = True
    p[:, region] += rng.normal(0, 800, (3, int(region.sum())))  # a bad prediction there
    new = ssim(p, t, 10000.0, region=region)
    old = _zero_fill_ssim(p, t, 10000.0, region)
    assert old > new + 0.05  # the zeros, identical in both images, raised the old score
    # the old formula scored other images: the same ones with invented zeros for context
    p0, t0 = np.where(region, p, 0.0), np.where(region, t, 0.0)
    assert ssim(p0, t0, 10000.0, region=region) == pytest.approx(old)
    # the new score is the full-image map averaged over the region
    full = [
        __import__("skimage.metrics", fromlist=["x"]).structural_similarity(
            t[b], p[b], data_range=10000.0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, full=True,
        )[1][region].mean()
        for b in range(3)
    ]  # fmt: skip
    assert new == pytest.approx(float(np.mean(full)))


def test_ssim_nodata_is_filled_alike_and_never_scored():
    rng = np.random.default_rng(2)
    t = rng.random((2, 32, 32))
    p = t + rng.normal(0, 0.05, t.shape)
    valid = np.ones((32, 32), bool)
    valid[:, :6] = False
    region = np.zeros((32, 32), bool)
    region[8:24, 4:24] = True  # overlaps the nodata strip: only its valid part counts
    a = ssim(p, t, 1.0, valid=valid, region=region)
    p2, t2 = p.copy(), t.copy()
    p2[:, ~valid], t2[:, ~valid] = np.nan, 123.0  # whatever nodata holds
    assert ssim(p2, t2, 1.0, valid=valid, region=region) == pytest.approx(a)
    assert ssim(p, t, 1.0, valid=valid, region=region) == pytest.approx(
        ssim(p, t, 1.0, valid=valid, region=region & valid)
    )
    with pytest.raises(ValueError, match="no valid pixel in the region"):
        ssim(p, t, 1.0, valid=valid, region=~valid)


def test_classification_report_on_a_known_confusion():
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 1, 2, 0]
    r = classification_report(y_true, y_pred)
    assert r["oa"] == pytest.approx(6 / 8)
    assert r["aa"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    po, pe = 6 / 8, (4 * 4 + 2 * 3 + 2 * 1) / 64
    assert r["kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert r["confusion"].tolist() == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]
    r2 = classification_report([0, 1, -1], [0, 0, 1], ignore_label=-1)
    assert r2["oa"] == 0.5
