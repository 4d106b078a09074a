"""mae_nb.scene: preparing an image, tiles and their seeds, windowed reads, accumulators, strips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_nb.data import Raster, read_raster, synthetic_scene
from mae_nb.errors import InputError, OutputExistsError
from mae_nb.scene import (
    ArrayTiles,
    BlendAccumulator,
    CellAccumulator,
    RasterTiles,
    StripWriter,
    TileGrid,
    blend_weights,
    check_outputs,
    check_seed,
    inference,
    model_device,
    prepare_image,
    tile_batches,
    tile_generator,
    to_dtype,
)


def tiny_mae():
    from mae_nb.models.mae import create_mae

    torch.manual_seed(0)
    return create_mae(
        "mae_vit_tiny_patch8", img_size=32, embed_dim=32, depth=1, num_heads=2,
        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
    ).eval()  # fmt: skip


# --------------------------------------------------------------------------- the image


def test_prepare_image_crops_to_whole_patches_and_keeps_the_dtype():
    image = np.arange(3 * 37 * 35, dtype=np.uint16).reshape(3, 37, 35)
    scene = prepare_image(image, 3, 8)
    assert scene.array.shape == (3, 32, 32) and scene.array.dtype == np.float32
    assert scene.dtype == np.uint16 and scene.shape == (37, 35) and scene.crop == (5, 3)
    np.testing.assert_array_equal(scene.array, image[:, :32, :32])
    assert scene.valid.all() and scene.transform is None


def test_prepare_image_takes_tensors_batches_of_one_and_single_bands():
    t = torch.rand(1, 3, 16, 16)
    np.testing.assert_array_equal(prepare_image(t, 3).array, t[0].numpy())
    assert prepare_image(np.zeros((16, 24)), 1).array.shape == (1, 16, 24)
    with pytest.raises(InputError, match=r"expected one image of shape \(C, H, W\)"):
        prepare_image(np.zeros((2, 3, 16, 16)))


def test_prepare_image_unwraps_a_raster_with_its_mask_and_georeferencing():
    scene = synthetic_scene(40, 48, 6, seed=0)
    valid = np.ones((40, 48), bool)
    valid[:5] = False
    raster = Raster(array=scene.image, valid=valid, crs=scene.crs, transform=scene.transform)
    out = prepare_image(raster, 3, 8, bands=[3, 2, 1])
    np.testing.assert_array_equal(out.array, scene.image[[2, 1, 0]])
    assert out.transform == scene.transform and out.crs == scene.crs
    np.testing.assert_array_equal(out.valid, valid)
    # a mask given by the caller replaces the raster's
    assert prepare_image(raster, 6, bands=None, valid=np.ones((40, 48), bool)).valid.all()


def test_prepare_image_marks_non_finite_pixels_invalid():
    image = np.ones((2, 8, 8), np.float32)
    image[1, 3, 4] = np.nan
    valid = np.ones((8, 8), bool)
    valid[0, 0] = False
    out = prepare_image(image, valid=valid)
    assert not out.valid[3, 4] and not out.valid[0, 0] and out.valid.sum() == 62


def test_prepare_image_bad_inputs():
    with pytest.raises(InputError, match=r"6 band\(s\) but the model expects in_chans=3; pick"):
        prepare_image(np.zeros((6, 16, 16)), 3)
    with pytest.raises(InputError, match="band index 7 is out of range"):
        prepare_image(np.zeros((6, 16, 16)), 3, bands=[7, 2, 1])
    with pytest.raises(InputError, match=r"the image is 5 x 40 pixels, smaller than one 8 x 8"):
        prepare_image(np.zeros((3, 5, 40)), 3, 8)
    with pytest.raises(InputError, match="patch_size must be a whole number >= 1"):
        prepare_image(np.zeros((3, 5, 40)), 3, 0)
    with pytest.raises(InputError, match=r"valid must have the image's shape \(16, 16\)"):
        prepare_image(np.zeros((3, 16, 16)), 3, valid=np.ones((8, 8), bool))


def test_a_channels_last_array_is_named_with_its_transpose():
    hwc = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(InputError) as info:
        prepare_image(hwc, 3, 8)
    message = str(info.value)
    assert "(32, 32, 3)" in message and "channels-last" in message
    assert "image.transpose(2, 0, 1)" in message and "32 band(s)" not in message
    assert prepare_image(hwc.transpose(2, 0, 1), 3, 8).array.shape == (3, 32, 32)


def test_every_entry_point_names_a_channels_last_array():
    from mae_nb import features
    from mae_nb.reconstruct import reconstruct

    model = tiny_mae()
    hwc = synthetic_scene(32, 32, 3, seed=0).image.transpose(1, 2, 0)
    for call in (
        lambda: reconstruct(model, hwc, 0.5),
        lambda: features.scene_embeddings(model, hwc),
        lambda: features.error_map(model, hwc),
        lambda: features.embed_image(model, hwc),
    ):
        with pytest.raises(ValueError, match=r"looks channels-last .* image\.transpose\(2, 0, 1\)"):
            call()


# --------------------------------------------------------------------------- the model


def test_inference_restores_the_mode_and_gives_the_device():
    model = torch.nn.Linear(2, 2).train()
    with inference(model) as device:
        assert not model.training and device == torch.device("cpu")
        assert torch.is_inference_mode_enabled()
    assert model.training
    with pytest.raises(RuntimeError), inference(model):
        raise RuntimeError("boom")
    assert model.training
    assert model_device(torch.nn.Identity()) == torch.device("cpu")


# --------------------------------------------------------------------------- tiles


def test_seeds_must_be_whole_numbers():
    from mae_nb import features
    from mae_nb.reconstruct import reconstruct

    assert check_seed(np.int64(3)) == 3 and check_seed(2.0) == 2 and check_seed("7") == 7
    for bad in ("abc", 1.5, None, True):
        with pytest.raises(InputError, match=f"seed must be a whole number, got {bad!r}"):
            check_seed(bad)
    model = tiny_mae()
    image = synthetic_scene(32, 32, 3, seed=0).image
    with pytest.raises(InputError, match="seed must be a whole number, got 'abc'"):
        reconstruct(model, image, 0.5, seed="abc")
    with pytest.raises(InputError, match="seed must be a whole number"):
        features.scene_embeddings(model, image, scenario="25%", seed="x")


def test_tile_generator_depends_on_seed_and_index_only():
    draw = lambda s, i: torch.rand(4, generator=tile_generator(s, i))  # noqa: E731
    torch.testing.assert_close(draw(1, 5), draw(1, 5))
    assert not torch.equal(draw(1, 5), draw(1, 6)) and not torch.equal(draw(1, 5), draw(2, 5))


def test_tile_grid_covers_the_scene_with_the_last_tiles_flush():
    grid = TileGrid(80, 100, 32, 28)
    assert list(grid.row_starts) == [0, 28, 48] and list(grid.col_starts) == [0, 28, 56, 68]
    assert grid.shape == (3, 4) and len(grid) == 12
    strips = grid.strips()
    assert [t for t, _, _ in strips[1]] == [4, 5, 6, 7] and strips[2][3] == (11, 48, 68)
    small = TileGrid(20, 26, 32, 28)  # smaller than a tile: one tile reaching past it
    assert small.shape == (1, 1) and list(small.row_starts) == [0]


def test_array_tiles_pad_outside_the_image_as_invalid():
    image = np.arange(2 * 20 * 26, dtype=np.float32).reshape(2, 20, 26)
    tiles = ArrayTiles(image, np.ones((20, 26), bool))
    pixels, ok = tiles.read(0, 0, 32)
    assert pixels.shape == (2, 32, 32) and ok.shape == (32, 32)
    np.testing.assert_array_equal(pixels[:, :20, :26], image)
    assert ok[:20, :26].all() and not ok[20:].any() and not ok[:, 26:].any()


@pytest.fixture
def scene_tif(tmp_path):
    path = tmp_path / "scene.tif"
    synthetic_scene(70, 50, 3, seed=0, collar=True).to_geotiff(path)  # uint16, nodata 0
    return path


def test_raster_tiles_read_windows_like_read_raster(scene_tif):
    whole = read_raster(scene_tif)
    with RasterTiles(scene_tif, bands=[3, 1], window=(10, 5, 40, 30)) as scene:
        assert (scene.count, scene.height, scene.width) == (2, 40, 30)
        assert scene.dtype == "uint16" and scene.nodata == 0 and scene.crs == whole.crs
        part = read_raster(scene_tif, bands=[3, 1], window=(10, 5, 40, 30))
        assert scene.transform == part.transform
        pixels, ok = scene.read(8, 4, 16)
        np.testing.assert_array_equal(pixels, part.array[:, 8:24, 4:20])
        np.testing.assert_array_equal(ok, part.valid[8:24, 4:20])
        pixels, ok = scene.read(32, 20, 16)  # reaches past the window (not the file): invalid
        assert not ok[8:].any() and not ok[:, 10:].any()
        np.testing.assert_array_equal(ok[:8, :10], part.valid[32:, 20:])
        rows = scene.read_rows(3, 5, slice(2, 12))
        np.testing.assert_array_equal(rows, part.array[:, 3:8, 2:12])
        overview = scene.overview(max_side=35)  # the whole file, decimated by 2
        assert overview.array.shape == (2, 35, 25) and overview.dtype == np.uint16
    with RasterTiles(scene_tif) as scene:
        pixels, ok = scene.read(60, 40, 16)  # reaches past the file: boundless, nodata filled
        assert pixels.shape == (3, 16, 16) and not ok[10:].any() and not ok[:, 10:].any()


def test_raster_tiles_refuse_bad_bands_windows_and_files(scene_tif, tmp_path):
    from mae_nb.errors import RasterError

    with pytest.raises(RasterError, match="band index 4 is out of range"):
        RasterTiles(scene_tif, bands=[4]).__enter__()
    with pytest.raises(RasterError, match="outside"):
        RasterTiles(scene_tif, window=(60, 0, 20, 10)).__enter__()
    with pytest.raises(RasterError, match="no file at"):
        RasterTiles(tmp_path / "missing.tif").__enter__()


def test_tile_batches_by_strip_skip_empty_and_final_rows():
    image = np.ones((1, 40, 40), np.float32)
    valid = np.ones((40, 40), bool)
    valid[:, 24:] = False  # the right column of tiles is empty
    grid = TileGrid(40, 40, 16, 12)  # starts 0, 12, 24
    batches = list(tile_batches(ArrayTiles(image, valid), grid, 2))
    assert [b.tiles for b in batches] == [2, 1] * 3  # never across a row of tiles
    assert [len(b) for b in batches] == [2, 0] * 3 and sum(b.tiles for b in batches) == 9
    assert [b.final_rows for b in batches] == [0, 12, 12, 24, 24, 40]
    assert list(batches[2].index) == [3, 4] and list(batches[2].rows) == [12, 12]
    assert batches[2].pixels.shape == (2, 1, 16, 16) and batches[1].pixels.shape == (0, 1, 16, 16)
    flat = list(tile_batches(ArrayTiles(image, valid), grid, 4, by_strip=False, skip_empty=False))
    assert [len(b) for b in flat] == [4, 4, 1] and [b.final_rows for b in flat] == [12, 24, 40]
    with pytest.raises(InputError, match="batch_size must be at least 1"):
        tile_batches(ArrayTiles(image, valid), grid, 0)  # at the call, before any read


# --------------------------------------------------------------------------- accumulators


def test_blend_weights():
    w = blend_weights(32, 8)
    assert w.shape == (32, 32) and w.max() == 1 and w.min() > 0
    assert w[16, 16] == 1 and w[0, 16] < w[4, 16] < w[8, 16]


def test_blend_accumulator_gives_every_row_once_in_order_with_a_buffer_one_tile_tall():
    h, w, size, overlap = 70, 45, 16, 4
    grid = TileGrid(h, w, size, size - overlap)
    image = np.random.default_rng(0).random((2, h, w)).astype(np.float32)
    valid = np.ones((h, w), bool)
    valid[30:33, 10:20] = False
    blend = BlendAccumulator(2, h, w, size, overlap)
    assert blend.sums.shape == (2, size, w)  # independent of the scene's height
    out = np.full((2, h, w), np.nan, np.float32)
    covered = np.zeros((h, w), bool)
    next_row = 0
    for batch in tile_batches(ArrayTiles(image, valid), grid, 3, skip_empty=False):
        blend.add(batch.rows, batch.cols, batch.pixels, batch.valid)
        for top, cols, values, ok in blend.pop(batch.final_rows, step=20):
            assert top == next_row or cols.start > 0
            n = values.shape[1]
            out[:, top : top + n, cols], covered[top : top + n, cols] = values, ok
        next_row = batch.final_rows
    assert next_row == h
    np.testing.assert_array_equal(covered, valid)
    np.testing.assert_allclose(out[:, valid], image[:, valid], rtol=1e-6)  # tiles agree: same


def test_cell_accumulator_averages_with_weights():
    cells = CellAccumulator((2, 3))
    cells.add(0, 0, np.ones((2, 2, 1)))
    cells.add(0, 1, 3 * np.ones((2, 2, 1)), weight=np.array([[1, 0], [1, 1]], bool))
    mean = cells.mean()[..., 0]
    np.testing.assert_array_equal(mean, [[1, 2, 0], [1, 2, 3]])
    np.testing.assert_array_equal(cells.count, [[1, 2, 0], [1, 2, 1]])


# --------------------------------------------------------------------------- writing


def test_to_dtype_keeps_nodata_for_nodata_only():
    a = np.array([[[0.2, 7.6, -3.0, 300.0]]], np.float32)
    valid = np.array([[True, True, False, True]])
    np.testing.assert_array_equal(to_dtype(a, "uint8", 0, valid), [[[1, 8, 0, 255]]])
    f = to_dtype(a, "float32", None, valid)
    assert np.isnan(f[0, 0, 2]) and f[0, 0, 1] == np.float32(7.6)


def test_check_outputs(tmp_path):
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    src.write_bytes(b"x")
    out.write_bytes(b"y")
    with pytest.raises(InputError, match="is the input file"):
        check_outputs(src, [src], overwrite=True)
    with pytest.raises(OutputExistsError, match="already exists; pass overwrite=True"):
        check_outputs(src, [out], overwrite=False)
    with pytest.raises(InputError, match="its own path"):
        check_outputs(src, [tmp_path / "a.tif", tmp_path / "a.tif"], overwrite=False)
    check_outputs(src, [out, tmp_path / "new.tif"], overwrite=True)


def test_strip_writer_writes_in_strips_and_renames_only_when_complete(scene_tif, tmp_path):
    source = read_raster(scene_tif)
    with RasterTiles(scene_tif) as scene:
        with scene.writer(tmp_path / "copy.tif") as out:
            for top in range(0, scene.height, 9):
                out.write(scene.read_rows(top, min(9, scene.height - top), slice(0, 50)))
                assert not (tmp_path / "copy.tif").exists()
        copy = read_raster(tmp_path / "copy.tif")
        np.testing.assert_array_equal(copy.array, source.array)
        assert copy.crs == source.crs and copy.transform == source.transform
        assert copy.nodata == 0 and copy.band_names == source.band_names
        with pytest.raises(RuntimeError), scene.writer(tmp_path / "broken.tif") as out:
            out.write(scene.read_rows(0, 9, slice(0, 50)))
            raise RuntimeError("stopped half way")
    assert not (tmp_path / "broken.tif").exists() and not list(tmp_path.glob(".*partial"))
    assert isinstance(out, StripWriter)
