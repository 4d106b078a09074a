"""Your own data: a path works wherever a registry name does (GeoTIFFs, hyperspectral cubes).

Every file here is written by the test: a 5-band GeoTIFF with nodata, a 1-band one, cubes as
.npy, .mat and GeoTIFF with their label maps, and each bad input the chapters must refuse with
an error that says what was wrong and what was expected.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
from rasterio.transform import from_origin

from mae_nb import data, features
from mae_nb.data import hsi
from mae_nb.errors import InputError, MaeNbError, MissingFileError, RasterError
from tests.helpers import tiny_mae

ROOT = Path(__file__).resolve().parents[1]
FIVE_BANDS = ["blue", "green", "red", "nir", "swir1"]


def write_geotiff(path, bands=5, size=96, nodata_rows=16, names=FIVE_BANDS, seed=0):
    """A uint16 GeoTIFF of ``bands`` x ``size`` x ``size`` px whose top ``nodata_rows`` rows are
    nodata (0); band descriptions ``names`` (None: none)."""
    rng = np.random.default_rng(seed)
    array = rng.integers(100, 4000, (bands, size, size)).astype(np.uint16)
    valid = np.ones((size, size), bool)
    valid[:nodata_rows] = False
    return data.write_raster(
        path,
        array,
        crs="EPSG:32633",
        transform=from_origin(500000, 4000000, 10, 10),
        nodata=0,
        valid=valid,
        band_names=names[:bands] if names else None,
    )


# --------------------------------------------------------------------------- GeoTIFFs


def test_a_five_band_geotiff_with_nodata_loads_by_its_path(tmp_path):
    path = write_geotiff(tmp_path / "my scene.tif")
    sample = data.load_sample(str(path), bands=6, size=352)
    assert sample.source == "real" and sample.path == path and sample.name == "my scene"
    assert sample.raster.count == 5 and sample.raster.shape == (96, 96)
    assert not sample.valid[:16].any() and sample.valid[16:].all()
    assert sample.rgb == [3, 2, 1]  # red, green, blue read from the band descriptions
    assert sample.notice == ""
    values = sample.image[:, sample.valid]  # the file's own range over its valid pixels
    assert sample.data_range == float(values.max()) - float(values.min())
    assert sample.bands_for(3) == [3, 2, 1]
    assert sample.bands_for(5) == [1, 2, 3, 4, 5]


def test_a_path_object_and_a_home_relative_path_work_too(tmp_path, monkeypatch):
    path = write_geotiff(tmp_path / "scene.tif")
    assert data.load_sample(path).path == path
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.load_sample("~/scene.tif").raster.count == 5


def test_rgb_bands_choose_the_true_colour_bands_when_descriptions_do_not(tmp_path, capsys):
    path = write_geotiff(tmp_path / "plain.tif", names=None)
    sample = data.load_sample(path)
    assert sample.rgb == [1, 2, 3] and "RGB_BANDS" in sample.notice
    assert "RGB_BANDS" in capsys.readouterr().out
    chosen = data.load_sample(path, rgb_bands=[3, 2, 1])
    assert chosen.rgb == [3, 2, 1] and chosen.notice == ""
    with pytest.raises(RasterError, match="out of range"):
        data.load_sample(path, rgb_bands=[6, 2, 1])
    with pytest.raises(InputError, match="3 bands"):
        data.load_sample(path, rgb_bands=[3, 2])


def test_sentinel2_band_names_give_the_true_colour_bands(tmp_path):
    path = write_geotiff(tmp_path / "s2.tif", bands=4, names=["B02", "B03", "B04", "B08"])
    assert data.load_sample(path).rgb == [3, 2, 1]


def test_a_one_band_geotiff_loads_as_grey_and_an_rgb_model_refuses_it(tmp_path):
    path = write_geotiff(tmp_path / "dem.tif", bands=1, names=["elevation"])
    sample = data.load_sample(path)
    assert sample.raster.count == 1 and sample.rgb == [1, 1, 1]
    assert data.composite(sample.image, sample.rgb, valid=sample.valid).shape == (96, 96, 3)
    assert sample.bands_for(1) == [1]
    with pytest.raises(InputError, match="takes 3 bands .*has 1 band.*RGB_BANDS"):
        sample.check_fits(32, 3, "the course's RGB MAE")
    with pytest.raises(InputError, match="takes 3 bands"):
        features.model_bands(tiny_mae(in_chans=3), sample)


def test_a_band_count_the_model_cannot_take_is_refused(tmp_path):
    sample = data.load_sample(write_geotiff(tmp_path / "five.tif"))
    with pytest.raises(InputError, match=r"mae_tiny_course_6band takes 6 bands.*has 5 band"):
        sample.check_fits(64, 6, "mae_tiny_course_6band")
    assert features.model_bands(tiny_mae(in_chans=3), sample) == [3, 2, 1]
    with pytest.raises(InputError, match="takes 4 bands"):
        features.model_bands(tiny_mae(in_chans=4), sample)


def test_a_missing_file_says_what_data_takes(tmp_path):
    with pytest.raises(MissingFileError, match="no file at .*nothere.tif.*registry name"):
        data.load_sample(str(tmp_path / "nothere.tif"))


def test_a_mistyped_registry_name_still_suggests_the_close_ones():
    with pytest.raises(MaeNbError, match="landsat7-rgb"):
        data.load_sample("landsat7-rgbb")
    assert not data.is_path("landsat7-rgb") and data.is_path("scene.tif")
    assert data.is_path("folder/scene") and not data.is_path("salinas-a")


def test_a_file_that_is_not_a_raster_is_refused(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("these are my field notes, not an image")
    with pytest.raises(RasterError, match="not a raster"):
        data.load_sample(path)
    with pytest.raises(RasterError, match="folder"):
        data.load_sample(tmp_path)


def test_a_raster_without_valid_pixels_is_refused(tmp_path):
    path = write_geotiff(tmp_path / "empty.tif", nodata_rows=96)
    with pytest.raises(RasterError, match="no valid pixel.*nodata"):
        data.load_sample(path)


def test_too_few_valid_pixels_for_one_crop_are_refused(tmp_path):
    path = write_geotiff(tmp_path / "mostly_nodata.tif", nodata_rows=90)  # 6 x 96 valid px
    sample = data.load_sample(path)
    with pytest.raises(InputError, match="576 valid pixel.*fewer than one 32 x 32"):
        sample.check_fits(32)
    with pytest.raises(InputError, match="valid pixel"):
        data.load_sample(path, min_size=32)


def test_a_scene_smaller_than_one_crop_is_refused(tmp_path):
    path = write_geotiff(tmp_path / "small.tif", size=48, nodata_rows=0)
    sample = data.load_sample(path, min_size=32)
    with pytest.raises(InputError, match="48 x 48 px, smaller than one 64 x 64 px crop"):
        sample.check_fits(64, 3, "the course's RGB MAE")
    with pytest.raises(InputError, match="smaller than one 64 x 64"):
        data.load_sample(path, min_size=64)


# --------------------------------------------------------------------------- cubes


def cube_and_labels(h=20, w=24, b=12, seed=0):
    rng = np.random.default_rng(seed)
    cube = rng.random((h, w, b)).astype(np.float32)
    labels = np.zeros((h, w), np.int64)
    labels[2:10, 2:10], labels[12:18, 4:20] = 3, 7  # class ids 3 and 7, the rest unlabelled
    return cube, labels


def test_a_npy_cube_with_labels_loads_by_its_path(tmp_path):
    cube, labels = cube_and_labels()
    np.save(tmp_path / "cube.npy", cube)
    np.save(tmp_path / "labels.npy", labels)
    scene = hsi.load_hsi(str(tmp_path / "cube.npy"), labels=str(tmp_path / "labels.npy"))
    assert scene.source == "real" and scene.name == "cube" and scene.shape == (20, 24, 12)
    np.testing.assert_array_equal(scene.cube, cube)
    assert scene.class_names == ("class 3", "class 7")  # ids 3, 7 -> 1, 2
    assert scene.class_counts() == {"class 3": 64, "class 7": 96}
    np.save(tmp_path / "bands_first.npy", np.moveaxis(cube, -1, 0))  # (B, H, W) is accepted
    again = hsi.load_hsi(tmp_path / "bands_first.npy", labels=tmp_path / "labels.npy")
    np.testing.assert_array_equal(again.cube, cube)


def test_a_mat_cube_with_keys_loads_by_its_path(tmp_path):
    import scipy.io

    cube, labels = cube_and_labels()
    scipy.io.savemat(tmp_path / "scene.mat", {"radiance": cube, "gt": labels, "extra": cube})
    scipy.io.savemat(tmp_path / "gt.mat", {"gt": labels})
    scene = hsi.load_hsi(tmp_path / "scene.mat", labels=tmp_path / "gt.mat", cube_key="radiance")
    np.testing.assert_array_equal(scene.cube, cube)
    with pytest.raises(InputError, match="several variables.*key"):
        hsi.load_hsi(tmp_path / "scene.mat", labels=tmp_path / "gt.mat")
    with pytest.raises(InputError, match="no variable 'cube'.*keys found"):
        hsi.load_hsi(tmp_path / "scene.mat", labels=tmp_path / "gt.mat", cube_key="cube")
    # one file holding both: the only 2-D array is the label map, named or not
    both = hsi.load_hsi(tmp_path / "scene.mat", labels=tmp_path / "scene.mat", cube_key="extra")
    assert both.class_counts() == scene.class_counts()


def test_a_geotiff_cube_with_geotiff_labels_loads_by_its_path(tmp_path):
    cube, labels = cube_and_labels()
    transform = from_origin(0, 0, 1, 1)
    data.write_raster(tmp_path / "cube.tif", np.moveaxis(cube, -1, 0), transform=transform)
    data.write_raster(tmp_path / "labels.tif", labels.astype(np.uint8), transform=transform)
    scene = hsi.load_hsi(str(tmp_path / "cube.tif"), labels=str(tmp_path / "labels.tif"))
    np.testing.assert_allclose(scene.cube, cube)
    assert scene.n_classes == 2


def test_a_label_map_of_another_spatial_shape_is_refused(tmp_path):
    cube, labels = cube_and_labels()
    np.save(tmp_path / "cube.npy", cube)
    np.save(tmp_path / "labels.npy", labels[:, :20])
    with pytest.raises(InputError, match=r"label map \(20, 20\).*cube \(20, 24\).*spatial shape"):
        hsi.load_hsi(tmp_path / "cube.npy", labels=tmp_path / "labels.npy")


def test_a_cube_without_labels_or_with_missing_files_is_refused(tmp_path):
    cube, labels = cube_and_labels()
    np.save(tmp_path / "cube.npy", cube)
    with pytest.raises(InputError, match="needs its label map.*LABELS"):
        hsi.load_hsi(tmp_path / "cube.npy")
    with pytest.raises(MissingFileError, match="no file at .*labels.npy.*label map"):
        hsi.load_hsi(tmp_path / "cube.npy", labels=tmp_path / "labels.npy")
    with pytest.raises(MissingFileError, match="no file at .*nope.mat.*cube"):
        hsi.load_hsi(tmp_path / "nope.mat", labels=tmp_path / "cube.npy")
    (tmp_path / "labels.npy").write_text("not an array")
    with pytest.raises(InputError, match="not a readable .npy"):
        hsi.load_hsi(tmp_path / "cube.npy", labels=tmp_path / "labels.npy")
    (tmp_path / "bad.mat").write_text("not a mat file")
    with pytest.raises(InputError, match="not a readable .mat"):
        hsi.load_hsi(tmp_path / "bad.mat", labels=tmp_path / "cube.npy")


# --------------------------------------------------------------------------- chapters end to end

#: Chapters that take a GeoTIFF as DATA, run in smoke mode on one the test writes.
OWN_GEOTIFF_CHAPTERS = (
    "00_spatial_data_tour",
    "01_vanilla_autoencoders",
    "02_masked_and_adversarial_autoencoders",
    "03_mae_from_scratch",
    "04_pretrained_mae_spatial_images",
    "05_mae_features",
)


@pytest.fixture(scope="module")
def own_geotiff(tmp_path_factory):
    """A 5-band uint16 GeoTIFF (blue, green, red, NIR, SWIR1) of 256 x 256 px, the synthetic
    scene's pixels in another layout, with a nodata collar on its top and left."""
    scene = data.synthetic_scene(256, 256, bands=5, seed=7)
    valid = np.ones((256, 256), bool)
    valid[:12], valid[:, :8] = False, False
    path = tmp_path_factory.mktemp("own") / "own_scene_5band.tif"
    data.write_raster(
        path,
        np.clip(scene.image * 10000, 1, 10000).astype(np.uint16),
        crs=scene.crs,
        transform=scene.transform,
        nodata=0,
        valid=valid,
        band_names=FIVE_BANDS,
    )
    return path, float(valid.mean())


@pytest.mark.notebook
@pytest.mark.parametrize("stem", OWN_GEOTIFF_CHAPTERS)
def test_chapter_runs_on_your_own_five_band_geotiff(stem, own_geotiff, tmp_path, monkeypatch):
    from mae_nb.runner import run_notebook

    path, valid_share = own_geotiff
    monkeypatch.setenv("MAE_NB_CACHE", str(tmp_path / "cache"))  # chapter 03 saves its model here
    notebook = ROOT / "notebooks" / f"{stem}.ipynb"
    result = run_notebook(notebook, tmp_path / "run", {"DATA": str(path)}, smoke=True, timeout=600)
    print(f"{stem} on {path.name}: {result.status} in {result.seconds:.1f} s")
    assert result.status == "ok", result.error
    assert result.data == "real"
    executed = nbformat.read(result.output, 4)
    printed = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert path.name in printed, f"{stem} never printed the file it was given"
    if stem.startswith("00"):
        assert result.metrics["valid_fraction"] == pytest.approx(valid_share)


@pytest.mark.parametrize(
    "stem, names",
    [
        *((stem, ("DATA", "RGB_BANDS")) for stem in OWN_GEOTIFF_CHAPTERS),
        ("07_hyperspectral_masked_pretraining", ("DATA", "LABELS", "CUBE_KEY", "LABELS_KEY")),
        ("08_hyperspectral_label_efficiency", ("DATA", "LABELS", "CUBE_KEY", "LABELS_KEY")),
    ],
)
def test_chapters_take_your_own_data_as_parameters(stem, names):
    """papermill (and ``mae-nb run -p``) must see each own-data parameter: a line it cannot parse
    (two ``=`` on it, e.g. in the comment) would silently drop the name."""
    from mae_nb.runner import notebook_parameters

    parameters = notebook_parameters(ROOT / "notebooks" / f"{stem}.ipynb")
    assert set(names) <= set(parameters), sorted(set(names) - set(parameters))
    assert all(str(parameters[n]) == "None" for n in names if n != "DATA")  # off by default
