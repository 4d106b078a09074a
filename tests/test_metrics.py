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
    assert psnr(p, t) == pytest.approx(20.0)
    assert psnr(torch.tensor(p), torch.tensor(t)) == pytest.approx(20.0)
    assert psnr(p * 2, t, data_range=2.0) == pytest.approx(20.0)


def test_per_band_scores():
    t = np.zeros((2, 8, 8))
    p = np.stack([t[0] + 0.1, t[1] + 0.01])
    np.testing.assert_allclose(psnr(p, t, per_band=True), [20.0, 40.0])


def test_nodata_and_nan_pixels_are_left_out():
    t = np.random.default_rng(0).random((3, 16, 16))
    p = t.copy()
    p[:, :4] = np.nan  # a hole in the prediction
    valid = np.ones((16, 16), bool)
    valid[-4:] = False  # nodata in the source
    p[:, -4:] += 5  # garbage where there is no data
    assert mse(p, t, valid=valid) == 0.0
    assert ssim(p, t, valid=valid) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no valid pixel"):
        mse(p, t, valid=np.zeros((16, 16), bool))


def test_ssim_falls_with_noise():
    rng = np.random.default_rng(0)
    t = rng.random((1, 32, 32))
    assert ssim(t, t) == pytest.approx(1.0)
    assert ssim(t + 0.2 * rng.standard_normal(t.shape), t) < 0.8


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((3, 8, 8)), np.zeros((3, 8, 9)))


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
