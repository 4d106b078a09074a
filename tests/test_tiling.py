"""mae_nb.data.tiling: tiles with positions, back to an image, and the training split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_nb.data import tile, untile
from mae_nb.data.synthetic import synthetic_scene
from mae_nb.data.tiling import BandScaler, tile_split


def test_tiles_cover_the_image_with_the_last_ones_flush():
    img = np.arange(3 * 50 * 70, dtype=float).reshape(3, 50, 70)
    t = tile(img, 32, stride=32)
    assert sorted(set(t.rows)) == [0, 18] and sorted(set(t.cols)) == [0, 32, 38]
    for tl, r, c in zip(t.tiles, t.rows, t.cols):
        np.testing.assert_array_equal(tl, img[:, r : r + 32, c : c + 32])


def test_untile_restores_the_image_with_overlaps_averaged():
    img = np.random.default_rng(0).random((2, 40, 40)).astype(np.float32)
    t = tile(img, 16, stride=8)
    np.testing.assert_allclose(untile(t), img, rtol=1e-6)


def test_tiles_with_too_much_nodata_are_dropped():
    img = np.ones((1, 32, 32))
    valid = np.ones((32, 32), bool)
    valid[:16, :16] = False
    assert len(tile(img, 16, valid=valid, min_valid=1.0)) == 3
    assert len(tile(img, 16, valid=valid, min_valid=0.0)) == 4


def test_tile_centres_in_map_coordinates():
    s = synthetic_scene(32, 32, 3, seed=0)
    t = tile(s.image, 16)
    xs, ys = t.centres_xy(s.transform)
    assert xs[0] == pytest.approx(500_000 + 8 * 10) and ys[0] == pytest.approx(5_300_000 - 8 * 10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=64), "larger than the image"),
        (dict(size=8, stride=0), "must be positive"),
        (dict(size=8, min_valid=2), "min_valid"),
    ],
)
def test_bad_tiling_requests(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tile(np.zeros((1, 32, 32)), **kwargs)


# --------------------------------------------------------------------------- the training split


def test_tile_split_is_spatially_disjoint_and_scaled():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (4, 64, 96)).astype(np.uint8)
    labels = np.ones((64, 96), np.uint8)
    labels[:, 48:] = 3
    split = tile_split(image, size=16, stride=8, val_fraction=0.25, labels=labels)
    assert split.boundary == 72
    assert (split.train_tiles.cols + 16 <= 72).all() and (split.val_tiles.cols >= 72).all()
    assert split.train.shape[1:] == (4, 16, 16) and split.train.dtype == torch.float32
    assert float(split.train.min()) >= 0 and float(split.train.max()) <= 1
    assert set(split.val_labels) == {3}
    assert len(split.train_labels) == len(split.train)


def test_tile_split_marks_nodata_as_nan():
    image = np.ones((2, 64, 64), np.float32)
    image[:, :, 10] = 5.0
    valid = np.ones((64, 64), bool)
    valid[3, 3] = False
    split = tile_split(image, valid, size=16, min_valid=0.9, val_fraction=0.5)
    assert torch.isnan(split.train[0, :, 3, 3]).all()
    assert torch.isfinite(split.train).sum() == split.train.numel() - 2


def test_empty_dataset_after_nodata_filtering():
    image = np.ones((3, 64, 64), np.float32)
    valid = np.zeros((64, 64), bool)
    valid[:8, :8] = True
    with pytest.raises(
        ValueError,
        match=r"no training tiles left after dropping tiles with less than 90% valid pixels",
    ):
        tile_split(image, valid, size=16, min_valid=0.9)
    with pytest.raises(ValueError, match="narrower than one 16 px tile"):
        tile_split(image, size=16, val_fraction=0.1)


def test_band_scaler_maps_percentiles_to_0_1_and_back():
    image = np.stack([np.linspace(0, 100, 400).reshape(20, 20), np.full((20, 20), 7.0)])
    image[0, 0, 0] = np.nan
    scaler = BandScaler.fit(image, percentiles=(0, 100))
    scaled = scaler.transform(image)
    assert scaled.dtype == np.float32 and np.isnan(scaled[0, 0, 0])
    assert np.nanmin(scaled[0]) == pytest.approx(0, abs=1e-6) and np.nanmax(scaled[0]) == 1
    assert np.all(scaled[1] == 0)  # a constant band gets a unit range, not a division by zero
    np.testing.assert_allclose(scaler.inverse(scaled)[0, 1:], image[0, 1:], rtol=1e-5)
    with pytest.raises(ValueError, match="band 1 has no valid pixel"):
        BandScaler.fit(np.full((1, 4, 4), np.nan))


def test_tile_blocks_group_overlapping_tiles():
    t = tile(np.zeros((1, 64, 64)), 16, stride=8)
    keys = t.blocks(32)
    assert keys.shape == (len(t),)
    for r, c, key in zip(t.rows, t.cols, keys):
        assert key == (r // 32) * 2 + c // 32
    assert set(keys.tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="block size must be a positive"):
        t.blocks(0)


def test_split_scores_in_the_sources_units_with_its_range():
    """``split.units``: scaled tiles back in the source's units (the scaler's inverse, a model's
    output clipped to [0, 1] first) with the source's data range: the course's convention."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (3, 48, 64)).astype(np.uint8)
    split = tile_split(image, size=16, stride=8)
    assert split.data_range == 255.0 and split.units.data_range == 255.0  # uint8
    raw = torch.from_numpy(split.val_tiles.tiles).double()
    back = split.units(split.val)
    inside = (split.val > 0) & (split.val < 1)  # not clipped by the percentile scaling
    torch.testing.assert_close(back[inside], raw[inside], rtol=1e-5, atol=1e-3)
    assert float(split.units(split.val + 5).max()) == pytest.approx(split.scaler.high.max())
    reflectance = rng.uniform(500, 4000, (2, 48, 64)).astype(np.float32)
    assert tile_split(reflectance, size=16).data_range == pytest.approx(
        float(reflectance.max() - reflectance.min())
    )
    assert tile_split(reflectance, size=16, data_range=10000).units.data_range == 10000.0
    with pytest.raises(ValueError, match="data_range"):
        tile_split(reflectance, size=16, data_range=0)
