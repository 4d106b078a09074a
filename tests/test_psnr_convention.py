"""One model, one scene, one PSNR: chapter 03's scoring and chapter 04's give the same number.

Chapter 03 scores its validation tiles by hand (per-band standardization, its own noise, the
prediction pasted into the hidden patches, back to the image's units) with
:func:`mae_nb.reconstruct.masked_scores`; chapter 04 calls :func:`mae_nb.reconstruct.reconstruct`
on a crop with the source's ``data_range``. Under the course's convention (the data range is the
source's, :mod:`mae_nb.metrics`) both give the same masked-patch PSNR for the same model, pixels
and mask; a crop's own range would not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_nb import data, metrics
from mae_nb.masking import patch_mask_to_pixels
from mae_nb.reconstruct import masked_scores, reconstruct
from tests.helpers import tiny_mae

RATIO, SEED, TILE = 0.75, 1, 32


@pytest.fixture(scope="module")
def scene():
    sample = data.load_sample(None, bands=6, size=96, seed=0, quiet=True)
    rgb = sample.image[[b - 1 for b in sample.rgb]].astype(np.float32)
    return sample, rgb


@pytest.fixture(scope="module")
def model(scene):
    _, rgb = scene
    m = tiny_mae(3, img_size=TILE, seed=0)
    # what save_course_mae stores and load_mae("course") gives chapter 04: the training statistics
    m.pretrained_cfg = {
        **(getattr(m, "pretrained_cfg", None) or {}),
        "mean": rgb.reshape(3, -1).mean(axis=1).tolist(),
        "std": rgb.reshape(3, -1).std(axis=1).tolist(),
    }
    return m


def chapter03_psnr(model, rgb, top, left, data_range):
    """Chapter 03's cells 6, 23 and 24 on one tile at (top, left)."""
    mean = np.asarray(model.pretrained_cfg["mean"], np.float32)
    std = np.asarray(model.pretrained_cfg["std"], np.float32)
    norm = (rgb - mean[:, None, None]) / std[:, None, None]
    tiles = torch.from_numpy(
        np.ascontiguousarray(norm[None, :, top : top + TILE, left : left + TILE])
    )
    noise = torch.rand(len(tiles), model.num_patches, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        _, pred, mask = model(tiles, RATIO, noise)
    pixel_mask = patch_mask_to_pixels(mask, model.grid_size, model.patch_size)[:, None]
    pasted = tiles * (1 - pixel_mask) + model.unpatchify(pred) * pixel_mask
    units = lambda t: t.numpy() * std[:, None, None] + mean[:, None, None]  # noqa: E731
    hidden = pixel_mask[:, 0].numpy().astype(bool)
    return masked_scores(units(pasted), units(tiles), hidden, data_range)["psnr_masked"]


@pytest.mark.parametrize("top, left", [(0, 0), (32, 64), (64, 32)])
def test_chapter03_and_chapter04_score_one_model_alike(scene, model, top, left):
    sample, rgb = scene
    assert sample.data_range == 10000.0  # the synthetic scene: reflectance x 10000
    ch03 = chapter03_psnr(model, rgb, top, left, sample.data_range)
    crop = rgb[:, top : top + TILE, left : left + TILE]
    ch04 = reconstruct(model, crop, RATIO, seed=SEED, data_range=sample.data_range)
    assert ch04.normalization.kind == "given"  # the model's own statistics, as in chapter 03
    assert abs(ch03 - ch04.psnr_masked) < 1e-6, (ch03, ch04.psnr_masked)
    # the crop's own range (what chapter 04 did before) would have given another number
    own = metrics.psnr(ch04.pasted, ch04.original, data.value_range(crop), valid=ch04.pixel_mask)
    assert abs(own - ch03) > 1.0


def test_a_sample_scores_with_its_declared_range(scene, model):
    sample, _ = scene
    r = reconstruct(model, sample, RATIO, seed=SEED, bands=sample.rgb)
    assert r.data_range == sample.data_range == 10000.0
