"""Reading, stretching, compositing and writing GeoTIFFs."""

from __future__ import annotations

import numpy as np
import pytest

from mae_nb.data import composite, read_raster, stretch, synthetic_scene, write_raster
from mae_nb.data.geotiff import open_raster, read_window
from mae_nb.errors import InputError, RasterError


@pytest.fixture
def scene_tif(tmp_path):
    scene = synthetic_scene(64, 80, bands=6, seed=3, collar=True)
    path = scene.to_geotiff(tmp_path / "scene.tif")
    return scene, path


def test_read_keeps_bands_georeferencing_and_nodata(scene_tif):
    scene, path = scene_tif
    r = read_raster(path)
    assert r.array.shape == (6, 64, 80) and r.array.dtype == np.uint16
    assert r.crs == scene.crs and r.transform == scene.transform and r.nodata == 0
    np.testing.assert_array_equal(r.valid, scene.valid)
    assert r.band_names == scene.band_names


def test_read_chosen_bands_and_window(scene_tif):
    scene, path = scene_tif
    full = read_raster(path)
    part = read_raster(path, bands=[4, 3, 2], window=(10, 20, 16, 24))
    np.testing.assert_array_equal(part.array, full.array[[3, 2, 1], 10:26, 20:44])
    # the window's transform puts its first pixel where it was in the full image
    assert part.xy(0, 0) == full.xy(10, 20)


def test_not_a_raster_is_a_clear_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(RasterError, match="not a raster"):
        read_raster(text)
    with pytest.raises(RasterError, match="no file at"):
        read_raster(tmp_path / "missing.tif")


def test_band_out_of_range_names_the_valid_range(scene_tif):
    with pytest.raises(
        RasterError, match=r"band index 7 is out of range .* 6 band\(s\): use 1-based indexes 1..6"
    ):
        read_raster(scene_tif[1], bands=[1, 7])
    with pytest.raises(RasterError, match="band index 0"):
        read_raster(scene_tif[1], bands=[0])


def test_window_outside_the_image_is_refused(scene_tif):
    with pytest.raises(RasterError, match=r"outside .* 64 rows x 80 cols"):
        read_raster(scene_tif[1], window=(60, 0, 10, 10))
    with pytest.raises(RasterError, match="outside"):
        read_raster(scene_tif[1], window=(0, -1, 10, 10))


def test_write_round_trip_and_no_silent_overwrite(scene_tif, tmp_path):
    _, path = scene_tif
    src = read_raster(path)
    out = tmp_path / "copy.tif"
    ratio = src.array[3].astype("float32") / np.maximum(src.array[2], 1)
    write_raster(out, ratio, like=src, nodata=float("nan"), valid=src.valid)
    back = read_raster(out)
    assert back.crs == src.crs and back.transform == src.transform
    np.testing.assert_array_equal(back.valid, src.valid)
    np.testing.assert_allclose(back.array[0][src.valid], ratio[src.valid])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_raster(out, ratio, like=src)
    write_raster(out, ratio * 0, like=src, overwrite=True)
    assert read_raster(out).array[0][src.valid].max() == 0


def test_stretch_ignores_nodata_and_clips():
    band = np.concatenate([np.zeros(50), np.linspace(100, 200, 50)]).reshape(1, 10, 10)
    valid = band[0] > 0
    out = stretch(band, 0, 100, valid=valid)
    assert out[0][valid].min() == 0 and out[0][valid].max() == 1
    assert np.all(out[0][~valid] == 0)
    counted = stretch(band, 0, 100)  # nodata counted: valid pixels squeezed into the top half
    assert counted[0][valid].min() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="percentiles"):
        stretch(band, 50, 10)


def test_composite_picks_bands_in_order():
    img = np.stack([np.full((4, 4), v, float) for v in (1, 2, 3)]) + np.random.default_rng(
        0
    ).random((3, 4, 4))
    rgb = composite(img, (3, 2, 1), low=0, high=100)
    assert rgb.shape == (4, 4, 3)
    np.testing.assert_allclose(rgb[..., 0], stretch(img[2], 0, 100))
    with pytest.raises(ValueError, match="exactly 3 bands"):
        composite(img, (1, 2))


def _cut_in_half(path, out):
    data = path.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


@pytest.fixture
def tiled_tif(tmp_path):
    """A 4-band, 512 x 600 GeoTIFF in 256-pixel blocks."""
    scene = synthetic_scene(512, 600, bands=4, seed=1)
    return scene.to_geotiff(tmp_path / "tiled.tif")


def test_open_raster_opens_a_readable_file(tiled_tif):
    with open_raster(tiled_tif) as src:
        assert (src.count, src.height, src.width) == (4, 512, 600)
    with pytest.raises(RasterError, match="no file at"):
        open_raster(tiled_tif.with_name("missing.tif"))
    with pytest.raises(RasterError, match="is a folder"):
        open_raster(tiled_tif.parent)


def test_truncated_geotiff_is_named_as_damaged_when_opened(tiled_tif, tmp_path):
    # rasterio writes the directory at the end, so a cut file cannot even be opened
    cut = _cut_in_half(tiled_tif, tmp_path / "cut.tif")
    for call in (open_raster, read_raster):
        with pytest.raises(RasterError, match=r"cut\.tif is damaged or truncated") as info:
            call(cut)
        assert "\n" not in str(info.value)


def test_truncated_geotiff_with_its_header_first_fails_before_any_work(tiled_tif, tmp_path):
    import rasterio
    import rasterio.shutil

    # a copy with the directory first (as cloud-optimized GeoTIFFs have): it opens, pixels fail
    header_first = tmp_path / "header_first.tif"
    rasterio.shutil.copy(
        tiled_tif, header_first, driver="GTiff", tiled=True, copy_src_overviews=True
    )
    cut = _cut_in_half(header_first, tmp_path / "cut.tif")
    with rasterio.open(cut) as src:  # GDAL itself opens it: the damage shows only on reading
        assert src.count == 4
    with pytest.raises(RasterError, match=r"cut\.tif is damaged or truncated"):
        open_raster(cut)
    with pytest.raises(RasterError, match=r"cut\.tif is damaged or truncated"):
        read_raster(cut)
    with rasterio.open(cut) as src, pytest.raises(RasterError, match=r"cut\.tif is damaged"):
        read_window(src, [1, 2], (256, 256, 256, 256))


def test_read_window_reads_windows_outside_and_decimated(tiled_tif):
    full = read_raster(tiled_tif)
    with open_raster(tiled_tif) as src:
        array, valid = read_window(src, [2, 1], (10, 20, 30, 40))
        np.testing.assert_array_equal(array, full.array[[1, 0], 10:40, 20:60])
        np.testing.assert_array_equal(valid, full.valid[10:40, 20:60])
        # a boundless window past the last row: the outside is fill_value and invalid
        array, valid = read_window(src, [1], (500, 0, 32, 16), boundless=True, fill_value=7)
        assert array.shape == (1, 32, 16) and np.all(array[0, 12:] == 7)
        assert valid[:12].all() and not valid[12:].any()
        array, valid = read_window(src, [1, 2, 3, 4], out_shape=(64, 75))
        assert array.shape == (4, 64, 75) and valid.shape == (64, 75)
        assert array.dtype == full.array.dtype


def test_value_range_is_the_whole_sources_and_samples_declare_theirs(no_mirrors, cache):
    from mae_nb.data import load_sample, value_range

    img = np.zeros((2, 8, 8), np.float32)
    img[0, 0, 0], img[1, 7, 7] = -3.0, 5.0
    assert value_range(img) == 8.0
    valid = np.ones((8, 8), bool)
    valid[7, 7] = False
    assert value_range(img, valid) == 3.0  # nodata never counts
    assert value_range(np.full((1, 4, 4), 7, np.uint8)) == 255.0  # uint8: the type's range
    assert value_range(np.full((1, 4, 4), 0.3, np.float32)) == 1.0  # already scaled to 0..1
    with pytest.raises(InputError, match="no valid pixel"):
        value_range(img, np.zeros((8, 8), bool))
    # the synthetic scene is reflectance x 10000: its range is declared, not measured
    assert load_sample(None, size=64, quiet=True).data_range == 10000.0
