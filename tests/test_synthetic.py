"""The synthetic scene: deterministic, any band count, plausible spectra, useful labels."""

from __future__ import annotations

import numpy as np
import pytest

from mae_nb.data import CLASS_NAMES, load_sample, read_raster, synthetic_scene
from mae_nb.data.synthetic import signatures


def test_same_seed_same_scene_other_seed_other_scene():
    a, b = synthetic_scene(96, 96, 6, seed=1), synthetic_scene(96, 96, 6, seed=1)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = synthetic_scene(96, 96, 6, seed=2)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize("bands", [3, 4, 6, 13, 204])
def test_any_band_count_and_non_square(bands):
    s = synthetic_scene(40, 72, bands, seed=0)
    assert s.image.shape == (bands, 40, 72) and s.image.dtype == np.float32
    assert s.labels.shape == (40, 72) and len(s.wavelengths) == bands == len(s.band_names)
    assert 0 < s.image.min() and s.image.max() <= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bands=0), "bands must be at least 1"),
        (dict(height=0), "height must be a positive"),
        (dict(height=16, width=0), "width must be a positive"),
    ],
)
def test_degenerate_scenes_are_refused(kwargs, message):
    args = dict(height=16, bands=3) | kwargs
    with pytest.raises(ValueError, match=message):
        synthetic_scene(**args)


def test_every_land_cover_class_appears_in_a_default_scene():
    s = synthetic_scene(256, 256, 6, seed=0)
    assert set(np.unique(s.labels)) == set(range(1, len(CLASS_NAMES) + 1))


def test_spectra_behave_like_the_real_thing():
    wl = np.array([485, 560, 660, 835, 1650, 2220.0])
    sig = dict(zip(CLASS_NAMES, signatures(wl)))
    ndvi = {k: (v[3] - v[2]) / (v[3] + v[2]) for k, v in sig.items()}
    assert ndvi["forest"] > 0.7 and ndvi["mature crop"] > 0.7 and ndvi["water"] < 0
    assert (
        sig["water"][3] < 0.02 and sig["water"][3] < sig["water"][1] / 2
    )  # water is dark in the NIR
    assert sig["bare soil"][4] > sig["bare soil"][1]  # soil brightens towards the SWIR
    full = signatures(np.array([1000, 1400.0, 1900]))
    assert np.all(full[:, 1] < full[:, 0]) and np.all(
        full[:, 2] < full[:, 0]
    )  # water-vapour absorption


def test_labels_are_learnable_but_not_trivial_on_a_disjoint_half():
    from sklearn.linear_model import LogisticRegression

    s = synthetic_scene(256, 256, 6, seed=0)
    x, y = s.image.reshape(6, -1).T, s.labels.ravel()
    left = np.tile(np.arange(256), 256) < 128
    idx = np.random.default_rng(0).choice(np.flatnonzero(left), 4000, replace=False)
    clf = LogisticRegression(max_iter=2000).fit(x[idx], y[idx])
    acc = (clf.predict(x[~left]) == y[~left]).mean()
    assert 0.8 < acc < 0.97, acc  # measured 0.885: spectra carry the classes, texture still matters


def test_geotiff_round_trip_with_labels(tmp_path):
    s = synthetic_scene(50, 60, 4, seed=5, collar=True)
    s.to_geotiff(tmp_path / "s.tif", tmp_path / "s_labels.tif")
    img, lab = read_raster(tmp_path / "s.tif"), read_raster(tmp_path / "s_labels.tif")
    np.testing.assert_allclose(img.array[:, s.valid] / 10000, s.image[:, s.valid], atol=1e-4)
    np.testing.assert_array_equal(lab.array[0], s.labels)
    assert img.crs.to_epsg() == 32633 and not img.valid.all()


def test_load_sample_falls_back_to_synthetic_with_a_notice(cache, no_mirrors, monkeypatch, capsys):
    from mae_nb.data import registry

    monkeypatch.setattr(
        registry,
        "_download",
        lambda *a, **k: (_ for _ in ()).throw(registry.DataUnavailableError("offline")),
    )
    with pytest.warns(UserWarning, match="NOTICE"):
        sample = load_sample("landsat7-olinda", bands=6, size=64)
    assert sample.source == "synthetic" and sample.labels is not None
    assert sample.image.shape == (6, 64, 64) and sample.rgb == [3, 2, 1]
    assert "Falling back to the synthetic scene" in capsys.readouterr().out


@pytest.mark.realdata
def test_load_sample_reads_the_real_olinda_scene(cache):
    sample = load_sample("landsat7-olinda")
    assert sample.source == "real" and sample.image.shape == (6, 352, 349)
    assert sample.raster.band_names[3] == "nir" and sample.rgb == [3, 2, 1]
