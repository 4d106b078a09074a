"""mae_nb.data.hsi: loaders, standardization, leak-free spatial splits, label fractions, patches."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from mae_nb.data import hsi


def _write_scene(tmp_path, cube, labels, cube_key="cube", labels_key="gt"):
    cube_path, labels_path = tmp_path / "cube.mat", tmp_path / "gt.mat"
    scipy.io.savemat(cube_path, {cube_key: cube})
    scipy.io.savemat(labels_path, {labels_key: labels})
    return cube_path, labels_path


@pytest.fixture(scope="module")
def scene():
    return hsi.synthetic_hsi(64, 32, seed=3)


# --------------------------------------------------------------------------- loaders


def test_synthetic_scene_is_a_labelled_hyperspectral_cube():
    s = hsi.synthetic_hsi(64, 96, seed=0)
    assert s.cube.shape == (64, 64, 96) and s.cube.dtype == np.float32
    assert s.labels.dtype == np.int64 and s.labels.shape == (64, 64)
    assert s.source == "synthetic" and len(s.wavelengths) == 96
    # classes renumbered 1..K over the classes present, each with its name
    assert set(np.unique(s.labels)) == set(range(1, s.n_classes + 1))
    assert all(isinstance(n, str) for n in s.class_names)
    again = hsi.synthetic_hsi(64, 96, seed=0)
    np.testing.assert_array_equal(s.cube, again.cube)


def _closest_classes(s) -> float:
    """Smallest distance between two class-mean spectra, relative to the mean spectrum's norm."""
    means = np.stack([s.cube[s.labels == c].mean(0) for c in range(1, s.n_classes + 1)])
    d = np.linalg.norm(means[:, None] - means[None], axis=-1)
    d[np.eye(len(means), dtype=bool)] = np.inf
    return float(d.min() / np.linalg.norm(means, axis=1).mean())


def test_the_hard_preset_has_more_and_closer_classes_and_mixed_pixels():
    hard = hsi.synthetic_hsi(64, 48, seed=0, preset="hard")
    again = hsi.load_hsi("synthetic-hard", size=64, bands=48, seed=0)
    np.testing.assert_array_equal(hard.cube, again.cube)  # deterministic, and by name
    np.testing.assert_array_equal(hard.labels, again.labels)
    assert hard.name == "synthetic-hard" and hard.source == "synthetic"
    assert hard.class_names == hsi.HARD_CLASS_NAMES and hard.n_classes == 12
    assert set(np.unique(hard.labels)) == set(range(1, 13))  # every class present
    assert not np.array_equal(hard.cube, hsi.synthetic_hsi(64, 48, seed=1, preset="hard").cube)
    default = hsi.synthetic_hsi(64, 48, seed=0)
    assert hard.n_classes > default.n_classes
    assert _closest_classes(hard) < 0.5 * _closest_classes(default)
    # mixed pixels: at a boundary between two classes, a pixel's spectrum lies between the two
    # class means (abundance t of the neighbour's class), not on its own class's mean
    means = np.stack([hard.cube[hard.labels == c].mean(0) for c in range(1, 13)])
    lab = hard.labels
    edge = np.argwhere(lab[:, :-1] != lab[:, 1:])
    a, b = lab[edge[:, 0], edge[:, 1]], lab[edge[:, 0], edge[:, 1] + 1]
    x = hard.cube[edge[:, 0], edge[:, 1]]
    d = means[b - 1] - means[a - 1]
    t = ((x - means[a - 1]) * d).sum(1) / (d * d).sum(1)
    inner = np.ones_like(lab, bool)  # pixels whose 5 x 5 neighbourhood is one class
    for dr in range(-2, 3):
        for dc in range(-2, 3):
            inner &= np.roll(lab, (dr, dc), (0, 1)) == lab
    inner[:2], inner[-2:], inner[:, :2], inner[:, -2:] = False, False, False, False
    rows, cols = np.nonzero(inner)
    x_in = hard.cube[rows, cols]
    own = means[lab[rows, cols] - 1]
    # boundary pixels move towards the neighbour by a large share on average; inner ones do not
    assert np.median(t) > 0.15 and np.mean((t > 0.1) & (t < 0.9)) > 0.4
    neighbour_pull = np.median(np.linalg.norm(x - means[a - 1], axis=1))
    inner_spread = np.median(np.linalg.norm(x_in - own, axis=1))
    assert neighbour_pull > inner_spread
    with pytest.raises(ValueError, match="preset must be one of"):
        hsi.synthetic_hsi(32, 16, preset="easy")
    with pytest.raises(ValueError, match="at least 16 px"):
        hsi.synthetic_hsi(8, 16, preset="hard")


def test_synthetic_needs_hyperspectral_band_counts():
    with pytest.raises(ValueError, match="at least 8 bands"):
        hsi.synthetic_hsi(32, 4)


def test_load_hsi_none_is_synthetic():
    s = hsi.load_hsi(None, size=48, bands=64)
    assert s.source == "synthetic" and s.cube.shape == (48, 48, 64) and s.notice == ""


def test_load_hsi_falls_back_with_a_visible_notice(cache, no_mirrors, capsys):
    with pytest.warns(UserWarning, match="salinas-a"):
        s = hsi.load_hsi("salinas-a", download=False, size=32, bands=40)
    assert s.source == "synthetic" and "NOTICE" in s.notice
    assert "salinas-a" in capsys.readouterr().out


def test_load_hsi_rejects_a_non_hyperspectral_dataset():
    with pytest.raises(ValueError, match="not a hyperspectral scene"):
        hsi.load_hsi("landsat7-olinda", download=False)


def test_mat_scene_round_trip_and_remap(tmp_path):
    rng = np.random.default_rng(0)
    cube = rng.integers(0, 1000, (6, 5, 12)).astype(np.int16)
    labels = np.array([[0, 1, 10, 11, 12]] * 6, np.uint8)
    c, g = _write_scene(tmp_path, cube, labels)
    s = hsi.load_mat_scene(
        c,
        g,
        cube_key="cube",
        labels_key="gt",
        class_ids=[1, 10, 11, 12],
        class_names=["a", "b", "c", "d"],
    )
    assert s.cube.dtype == np.float32 and s.labels.dtype == np.int64
    np.testing.assert_array_equal(s.cube, cube.astype(np.float32))
    np.testing.assert_array_equal(s.labels[0], [0, 1, 2, 3, 4])
    # a single variable per file needs no key
    assert hsi.load_mat_scene(c, g).cube.shape == (6, 5, 12)


def test_mat_without_the_expected_key_names_the_keys_found(tmp_path):
    c, g = _write_scene(tmp_path, np.zeros((4, 4, 3)), np.zeros((4, 4)), cube_key="paviaU")
    with pytest.raises(ValueError, match=r"no variable 'indian_pines_corrected'.*\['paviaU'\]"):
        hsi.load_mat_scene(c, g, cube_key="indian_pines_corrected", labels_key="gt")


def test_labels_and_cube_of_different_shape(tmp_path):
    c, g = _write_scene(tmp_path, np.zeros((4, 5, 3)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"differ in spatial shape"):
        hsi.load_mat_scene(c, g)


def test_nan_in_the_cube_raises_or_is_filled(tmp_path):
    cube = np.ones((4, 4, 3))
    cube[1, 2, 0] = np.nan
    labels = np.ones((4, 4), np.uint8)
    c, g = _write_scene(tmp_path, cube, labels)
    with pytest.raises(
        ValueError, match=r"NaN/inf values in 1 pixels \(first at row 1, col 2\).*nan='fill'"
    ):
        hsi.load_mat_scene(c, g)
    s = hsi.load_mat_scene(c, g, nan="fill")
    assert np.isfinite(s.cube).all() and s.cube[1, 2, 0] == 1.0
    assert (
        s.labels[1, 2] == 0 and s.labels.sum() == 15
    )  # the repaired pixel is not trusted as a label


def test_remap_rejects_unknown_ids():
    with pytest.raises(ValueError, match=r"label ids \[7\] are not among"):
        hsi.remap_labels(np.array([[0, 1, 7]]), [1, 2])


def test_houston2018_from_rasters(tmp_path):
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(0)
    cube = rng.random((48, 10, 12)).astype(np.float32)  # (B, H, W) at 1 m
    labels = np.repeat(np.repeat(rng.integers(0, 21, (10, 12)), 2, 0), 2, 1).astype(
        np.uint8
    )  # 0.5 m
    crs = rasterio.crs.CRS.from_epsg(26915)
    with rasterio.open(
        tmp_path / "hsi.tif",
        "w",
        driver="GTiff",
        height=10,
        width=12,
        count=48,
        dtype="float32",
        crs=crs,
        transform=Affine(1, 0, 100, 0, -1, 200),
    ) as dst:
        dst.write(cube)
    with rasterio.open(
        tmp_path / "gt.tif",
        "w",
        driver="GTiff",
        height=20,
        width=24,
        count=1,
        dtype="uint8",
        crs=crs,
        transform=Affine(0.5, 0, 100, 0, -0.5, 200),
    ) as dst:
        dst.write(labels[None])
    s = hsi.load_houston2018(tmp_path / "hsi.tif", tmp_path / "gt.tif")
    assert s.cube.shape == (10, 12, 48) and s.labels.shape == (10, 12)
    np.testing.assert_allclose(s.cube, np.moveaxis(cube, 0, -1))
    np.testing.assert_array_equal(s.labels, labels[1::2, 1::2])
    assert s.n_classes == 20 and s.wavelengths[0] == 380 and s.wavelengths[-1] == 1050


@pytest.mark.realdata
def test_salinas_a_is_loaded_and_remapped():
    s = hsi.load_hsi("salinas-a", download=False)
    assert s.source == "real" and s.cube.shape == (83, 86, 204) and s.cube.dtype == np.float32
    assert sorted(np.unique(s.labels)) == [0, 1, 2, 3, 4, 5, 6]
    assert s.class_counts() == {
        "Brocoli_green_weeds_1": 391,
        "Corn_senesced_green_weeds": 1343,
        "Lettuce_romaine_4wk": 616,
        "Lettuce_romaine_5wk": 1525,
        "Lettuce_romaine_6wk": 674,
        "Lettuce_romaine_7wk": 799,
    }
    assert len(s.wavelengths) == 204 and 400 <= s.wavelengths[0] < s.wavelengths[-1] <= 2500


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name,shape,n_labelled,n_classes",
    [
        ("indian-pines", (145, 145), 10249, 16),
        ("pavia-university", (610, 340), 42776, 9),
        ("salinas", (512, 217), 54129, 16),
    ],
)
def test_label_maps_of_the_standard_scenes(name, shape, n_labelled, n_classes):
    labels, names = hsi.load_hsi_labels(name, download=False)
    assert labels.shape == shape and int((labels > 0).sum()) == n_labelled
    assert labels.max() == n_classes == len(names)


# --------------------------------------------------------------------------- standardization


def test_standardizer_uses_training_pixels_only(scene):
    train = np.zeros(scene.labels.shape, bool)
    train[:20] = True
    std = hsi.fit_standardizer(scene.cube, train)
    np.testing.assert_allclose(std.mean, scene.cube[train].mean(0), rtol=1e-5)
    out = std.apply(scene.cube)
    np.testing.assert_allclose(out[train].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(out[train].std(0), 1, atol=1e-3)
    # changing pixels outside the training mask does not change the statistics
    cube = scene.cube.copy()
    cube[40:] *= 100
    np.testing.assert_allclose(hsi.fit_standardizer(cube, train).std, std.std)
    np.testing.assert_allclose(std.inverse(out), scene.cube, rtol=1e-4, atol=1e-5)


def test_standardizer_constant_band_and_errors():
    cube = np.ones((4, 4, 2), np.float32)
    cube[..., 1] = np.arange(16).reshape(4, 4)
    std = hsi.fit_standardizer(cube)
    assert std.std[0] == 1 and np.all(std.apply(cube)[..., 0] == 0)
    with pytest.raises(ValueError, match="selects no pixel"):
        hsi.fit_standardizer(cube, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="must match"):
        hsi.fit_standardizer(cube, np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="2 bands"):
        std.apply(np.ones((2, 2, 3)))


# --------------------------------------------------------------------------- splits


def _min_chebyshev(a: np.ndarray, b: np.ndarray) -> int:
    pa, pb = np.argwhere(a), np.argwhere(b)
    return int(np.abs(pa[:, None] - pb[None]).max(-1).min())


@pytest.mark.parametrize("patch_size,seed", [(3, 0), (5, 1), (7, 2), (9, 3)])
def test_spatial_split_has_no_test_pixel_inside_a_training_patch(scene, patch_size, seed):
    split = hsi.spatial_split(scene.labels, patch_size, seed=seed)
    r = patch_size // 2
    assert not (split.train & split.test).any() and not (split.train & split.val).any()
    assert not (split.val & split.test).any()
    # the defining property, checked by brute force: every test/val pixel is farther than r
    # (Chebyshev) from every training pixel, so no training patch contains it
    assert _min_chebyshev(split.train, split.test) > r
    assert _min_chebyshev(split.train, split.val) > r
    assert hsi.leaking_pixels(split) == 0
    counts = split.class_counts(scene.labels)
    assert (counts["train"] > 0).all() and (counts["test"] > 0).all()


def test_a_random_pixel_split_would_leak(scene):
    rng = np.random.default_rng(0)
    lab = scene.labels > 0
    train = lab & (rng.random(lab.shape) < 0.5)
    split = hsi.spatial_split(scene.labels, 5)
    assert hsi.leaking_pixels(split, train_mask=train) > 100  # what spatial_split prevents


def test_spatial_split_buffer_and_stripes(scene):
    split = hsi.spatial_split(scene.labels, 5, grid=(6, 1), buffer=4)
    assert _min_chebyshev(split.train, split.test) > 4
    assert (split.regions == -1).any()
    # stripes: each row belongs to one region (or the buffer)
    for row in split.regions:
        assert len(set(row.tolist())) == 1


def test_spatial_split_is_seeded(scene):
    a = hsi.spatial_split(scene.labels, 5, seed=4)
    b = hsi.spatial_split(scene.labels, 5, seed=4)
    np.testing.assert_array_equal(a.regions, b.regions)


def test_a_class_absent_from_the_test_split_is_an_error():
    labels = np.ones((40, 40), np.int64)
    labels[2:5, 2:5] = 2  # a tiny class inside one block: it cannot be in train and test
    with pytest.raises(ValueError, match=r"classes \[2\] never reach the (test|train) split"):
        hsi.spatial_split(labels, 5, grid=(4, 4))
    with pytest.warns(UserWarning, match="missing"):
        split = hsi.spatial_split(labels, 5, grid=(4, 4), require_all_classes=False)
    assert 2 in split.missing.get("test", []) + split.missing.get("train", [])


def test_a_class_missing_from_val_is_warned_and_recorded():
    labels = np.ones((48, 48), np.int64)
    labels[:, 24:] = 2
    labels[0:3, 0:3] = 3  # a corner class: in at most one region
    labels[45:48, 45:48] = 3
    with pytest.warns(UserWarning, match="classes missing per split"):
        split = hsi.spatial_split(
            labels, 3, grid=(4, 4), fractions=(0.6, 0.1, 0.3), require_all_classes=False, seed=1
        )
    assert split.missing  # recorded, never dropped silently
    text = split.describe_missing(("field", "meadow", "pond"))
    for s, classes in split.missing.items():
        assert s in text and all(f"{c} (" in text for c in classes)
    full = hsi.spatial_split(np.ones((48, 48), np.int64), 3, grid=(4, 4))
    assert full.missing == {} and full.describe_missing() == "every class is in train, val and test"


def test_spatial_split_rejects_bad_arguments(scene):
    with pytest.raises(ValueError, match="odd"):
        hsi.spatial_split(scene.labels, 4)
    with pytest.raises(ValueError, match="summing to 1"):
        hsi.spatial_split(scene.labels, 5, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="no labelled pixel"):
        hsi.spatial_split(np.zeros((10, 10), int), 3)


# --------------------------------------------------------------------------- label fractions


def test_label_fractions_per_class_nested_and_seeded(scene):
    split = hsi.spatial_split(scene.labels, 5)
    n_train = split.class_counts(scene.labels)["train"]
    previous = None
    for f in hsi.LABEL_FRACTIONS:
        sub = hsi.subsample_labels(split.train, scene.labels, f, seed=1)
        assert not (sub & ~split.train).any()
        got = np.bincount(scene.labels[sub], minlength=scene.n_classes + 1)[1:]
        np.testing.assert_array_equal(got, np.maximum(1, np.round(f * n_train)).astype(int))
        if previous is not None:
            assert not (previous & ~sub).any(), "smaller fractions must be subsets of larger ones"
        previous = sub
    np.testing.assert_array_equal(
        hsi.subsample_labels(split.train, scene.labels, 0.05, seed=1),
        hsi.subsample_labels(split.train, scene.labels, 0.05, seed=1),
    )
    assert (
        hsi.subsample_labels(split.train, scene.labels, 0.05, seed=2)
        != hsi.subsample_labels(split.train, scene.labels, 0.05, seed=1)
    ).any()
    np.testing.assert_array_equal(hsi.subsample_labels(split.train, scene.labels, 1.0), split.train)


def test_label_fraction_errors():
    labels = np.array([[1] * 200 + [2] * 3])
    train = np.ones_like(labels, bool)
    with pytest.raises(ValueError, match=r"fraction 0.01 leaves class 2 with no pixel \(it has 3"):
        hsi.subsample_labels(train, labels, 0.01, min_per_class=0)
    assert hsi.subsample_labels(train, labels, 0.01)[labels == 2].sum() == 1  # >= 1 per class
    train[labels == 2] = False
    with pytest.raises(ValueError, match="class 2 has no training pixel"):
        hsi.subsample_labels(train, labels, 0.5)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        hsi.subsample_labels(train, labels, 5)


# --------------------------------------------------------------------------- patches


def test_patch_dataset_items_and_reflect_padding():
    cube = np.arange(5 * 6 * 3, dtype=np.float32).reshape(5, 6, 3)
    labels = np.zeros((5, 6), np.int64)
    labels[0, 0], labels[2, 3] = 2, 1
    ds = hsi.PatchDataset(cube, labels, labels > 0, patch_size=3)
    assert len(ds) == 2
    patch, target = ds[0]  # (0, 0): the corner, reflected
    assert patch.shape == (3, 3, 3) and patch.dtype == torch.float32 and int(target) == 1
    expected = np.pad(cube, ((1, 1), (1, 1), (0, 0)), mode="reflect")[0:3, 0:3].transpose(2, 0, 1)
    np.testing.assert_array_equal(patch.numpy(), expected)
    np.testing.assert_array_equal(patch[:, 1, 1].numpy(), cube[0, 0])  # the centre is the pixel
    patch, target = ds[1]
    np.testing.assert_array_equal(patch.numpy(), cube[1:4, 2:5].transpose(2, 0, 1))
    assert int(target) == 0
    np.testing.assert_array_equal(ds.patches().numpy(), torch.stack([ds[0][0], ds[1][0]]).numpy())


def test_patch_dataset_without_labels_serves_every_pixel():
    ds = hsi.PatchDataset(np.zeros((4, 5, 2), np.float32), patch_size=3)
    assert len(ds) == 20 and int(ds[7][1]) == -1
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert batch[0].shape == (8, 2, 3, 3)


def test_patch_dataset_errors():
    cube = np.zeros((4, 4, 2), np.float32)
    with pytest.raises(ValueError, match="odd"):
        hsi.PatchDataset(cube, patch_size=4)
    with pytest.raises(ValueError, match="too large"):
        hsi.PatchDataset(cube, patch_size=9)
    with pytest.raises(ValueError, match="spatial shape"):
        hsi.PatchDataset(cube, np.zeros((3, 4)), patch_size=3)
    bad = cube.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        hsi.PatchDataset(bad, patch_size=3)
