"""Label rasters (mae_nb.data.labels): grid checks, class lists, aligned splits, written maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from mae_nb.data.geotiff import read_raster, write_raster
from mae_nb.data.hsi import spatial_split, subsample_labels
from mae_nb.data.labels import (
    check_same_grid,
    parse_classes,
    read_labels,
    sample_labels,
    tile_regions,
    write_class_map,
)
from mae_nb.errors import InputError, RasterError

UTM = CRS.from_epsg(32633)
GRID = from_origin(500000, 4000000, 10, 10)


@pytest.fixture
def scene(tmp_path):
    """A 3-band 64 x 64 image and its labels: value 10 left, 20 right, 0 on a sparse lattice."""
    rng = np.random.default_rng(0)
    write_raster(tmp_path / "img.tif", rng.random((3, 64, 64)).astype(np.float32), crs=UTM,
                 transform=GRID)  # fmt: skip
    lab = np.zeros((64, 64), np.uint8)
    lab[:, :32], lab[:, 32:] = 10, 20
    lab[::7, ::5] = 0
    write_raster(tmp_path / "lab.tif", lab, crs=UTM, transform=GRID, nodata=255)
    return tmp_path, read_raster(tmp_path / "img.tif"), lab


def test_read_labels_numbers_classes_in_list_order_and_keeps_0_unlabelled(scene):
    d, image, lab = scene
    lm = read_labels(d / "lab.tif", image, {20: "forest", 10: "water"})
    assert lm.class_values == [20, 10] and lm.class_names == ["forest", "water"]
    assert (lm.labels[lab == 20] == 1).all() and (lm.labels[lab == 10] == 2).all()
    assert (lm.labels[lab == 0] == 0).all()
    assert lm.counts() == {"forest": int((lab == 20).sum()), "water": int((lab == 10).sum())}
    auto = read_labels(d / "lab.tif", d / "img.tif")  # the values present, in order
    assert auto.class_values == [10, 20] and not auto.resampled


def test_nodata_value_is_unlabelled(scene):
    d, image, lab = scene
    lab = lab.copy()
    lab[:4] = 99
    write_raster(d / "nd.tif", lab, crs=UTM, transform=GRID, nodata=99)
    lm = read_labels(d / "nd.tif", image, [10, 20])
    assert (lm.labels[:4] == 0).all() and (lm.labels[4:][lab[4:] > 0] > 0).all()


def test_values_outside_the_class_list_are_named_with_the_list(scene):
    d, image, _ = scene
    with pytest.raises(InputError, match=r"outside the class list: 20 \(\d+ px\).*10 \(water\)"):
        read_labels(d / "lab.tif", image, {10: "water"})


def test_class_list_checks():
    assert parse_classes(["water", "forest"]) == ([1, 2], ["water", "forest"])
    assert parse_classes([3, 5]) == ([3, 5], ["class 3", "class 5"])
    with pytest.raises(InputError, match="0 cannot be a class"):
        parse_classes({0: "none", 1: "water"})
    with pytest.raises(InputError, match="given twice"):
        parse_classes([1, 1])
    with pytest.raises(InputError, match="non-empty list"):
        parse_classes([])


@pytest.mark.parametrize(
    "crs, transform, shape, message",
    [
        (CRS.from_epsg(4326), GRID, (64, 64), r"CRS EPSG:4326 \(labels\) vs EPSG:32633 \(image\)"),
        (UTM, from_origin(500000, 4000000, 20, 20), (64, 64), r"transform \(pixel 20 x -20"),
        (UTM, GRID, (60, 64), r"shape 60 x 64 px \(labels\) vs 64 x 64 px \(image\)"),
    ],
)
def test_label_raster_on_another_grid_is_refused_saying_what_differs(
    scene, crs, transform, shape, message
):
    d, image, lab = scene
    write_raster(d / "other.tif", lab[: shape[0], : shape[1]], crs=crs, transform=transform)
    with pytest.raises(RasterError, match=message) as info:
        read_labels(d / "other.tif", image)
    assert "resample" in str(info.value)
    with pytest.raises(RasterError, match=message):
        check_same_grid(d / "img.tif", d / "other.tif")


def test_resampling_onto_the_image_grid_only_when_asked(scene):
    d, image, lab = scene
    coarse = lab[::2, ::2]  # 20 m pixels covering the same 640 m x 640 m
    write_raster(d / "coarse.tif", coarse, crs=UTM, transform=from_origin(500000, 4000000, 20, 20))
    with pytest.raises(RasterError, match="another grid"):
        read_labels(d / "coarse.tif", image)
    lm = read_labels(d / "coarse.tif", image, [10, 20], resample=True)
    assert lm.resampled and lm.labels.shape == (64, 64)
    expected = np.repeat(np.repeat(coarse, 2, 0), 2, 1)  # nearest neighbour: each 20 m pixel x 4
    assert np.array_equal(lm.labels, np.select([expected == 10, expected == 20], [1, 2], 0))


def test_fractional_label_values_are_refused(scene):
    d, image, _ = scene
    write_raster(d / "float.tif", np.full((64, 64), 1.5, np.float32), crs=UTM, transform=GRID)
    with pytest.raises(InputError, match=r"not whole numbers \(1.5\)"):
        read_labels(d / "float.tif", image)


def test_aligned_blocks_keep_every_tile_in_one_region(scene):
    d, image, _ = scene
    lm = read_labels(d / "lab.tif", image)
    split = spatial_split(lm.labels, 1, block_size=16, seed=3)
    assert split.grid == (4, 4)
    for i in range(4):
        for j in range(4):
            block = split.regions[16 * i : 16 * i + 16, 16 * j : 16 * j + 16]
            assert (block == block[0, 0]).all()
    regions = tile_regions(split, 8)
    assert regions.shape == (8, 8) and (regions >= 0).all()
    assert set(np.unique(tile_regions(split, 16))) == {0, 1, 2}
    with pytest.raises(InputError, match="one block"):
        spatial_split(lm.labels, 1, block_size=64)


def test_sample_labels_refuses_a_fraction_that_leaves_a_class_empty(scene):
    d, image, _ = scene
    lm = read_labels(d / "lab.tif", image, {10: "water", 20: "forest"})
    split = spatial_split(lm.labels, 1, block_size=16, seed=0)
    kept = sample_labels(split, lm, 0.1, seed=1)
    assert not (kept & ~split.train).any()
    n = lm.counts(split.train)
    assert lm.counts(kept) == {k: round(0.1 * v) for k, v in n.items()}
    assert (kept <= sample_labels(split, lm, 0.3, seed=1)).all()  # nested
    tiny = 0.4 / max(n.values())
    with pytest.raises(InputError, match=r"leaves class \d \((water|forest), raster value"):
        sample_labels(split, lm, tiny)
    # a class in no training block at all
    split.train &= lm.labels != 2
    with pytest.raises(InputError, match=r"class 2 \(forest, raster value 20\) has no training"):
        sample_labels(split, lm, 0.5)


def test_subsample_labels_works_on_patches_of_tiles():
    labels = np.zeros((5, 4, 4), np.int64)
    labels[:, :2], labels[:, 2:] = 1, 2
    train = np.broadcast_to(np.array([1, 1, 1, 0, 0], bool)[:, None, None], labels.shape)
    kept = subsample_labels(train, labels, 0.5, seed=0)
    assert kept.shape == labels.shape and not kept[3:].any()
    assert (kept & (labels == 1)).sum() == 12 and (kept & (labels == 2)).sum() == 12


def test_class_map_keeps_the_georeferencing_values_and_names(scene):
    d, image, lab = scene
    lm = read_labels(d / "lab.tif", image, {10: "water", 20: "forest"})
    path = write_class_map(d / "map.tif", lm.labels, lm, image)
    with rasterio.open(path) as src:
        assert src.crs == image.crs and src.transform == image.transform
        assert src.nodata == 0 and src.dtypes[0] == "uint8"
        assert np.array_equal(src.read(1), lab)
        assert json.loads(src.tags()["classes"]) == {"10": "water", "20": "forest"}
        assert src.colormap(1)[10] != src.colormap(1)[20]
    with pytest.raises(FileExistsError):
        write_class_map(d / "map.tif", lm.labels, lm, image)
    with pytest.raises(InputError, match="class numbers must be in 0..2"):
        write_class_map(d / "bad.tif", lm.labels + 1, lm, image)
