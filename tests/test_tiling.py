"""Tiling images into patches with positions, and back."""

from __future__ import annotations

import numpy as np
import pytest

from mae_nb.data import tile, untile
from mae_nb.data.synthetic import synthetic_scene


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
