"""mae_nb.reconstruct: iteration semantics, normalization, bad inputs, nodata, whole scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import tiny_mae

from mae_nb import metrics
from mae_nb.models.mae import IMAGENET_MEAN, IMAGENET_STD
from mae_nb.reconstruct import (
    normalization,
    pass_noise,
    reconstruct,
    reconstruct_scene,
)

P = 8  # patch size of the test models


@pytest.fixture(scope="module")
def model():
    return tiny_mae()


@pytest.fixture(scope="module")
def image():
    from mae_nb.data import synthetic_scene

    return (synthetic_scene(32, 32, 3, seed=1).image * 255).astype(np.uint8)  # (3, 32, 32)


def unchanged(a, b, where):
    """a == b (up to float rounding of normalize/denormalize) on pixels ``where``."""
    return np.allclose(a[:, where], b[:, where], atol=1e-3)


# --------------------------------------------------------------------------- outputs


def test_outputs_shapes_and_meta_panels(model, image):
    r = reconstruct(model, image, 0.5, seed=3)
    assert r.original.shape == r.masked.shape == r.prediction.shape == r.pasted.shape == (3, 32, 32)
    assert (
        r.mask.shape == (4, 4)
        and r.pass_masks.shape == (1, 4, 4)
        and r.steps.shape == (1, 3, 32, 32)
    )
    assert r.mask.sum() == 16 - int(16 * 0.5)
    np.testing.assert_array_equal(r.pixel_mask, np.kron(r.mask, np.ones((P, P), bool)))
    assert (
        np.isnan(r.masked[:, r.pixel_mask]).all() and np.isfinite(r.masked[:, ~r.pixel_mask]).all()
    )
    np.testing.assert_allclose(r.original, image.astype(np.float32))
    # reconstruction + visible: prediction in the masked patches, the input elsewhere
    assert unchanged(r.pasted, r.original, ~r.pixel_mask)
    np.testing.assert_allclose(r.pasted[:, r.pixel_mask], r.prediction[:, r.pixel_mask], rtol=1e-6)
    # per-patch error: 0 where never masked, positive where predicted
    assert r.patch_error.shape == (4, 4)
    assert np.allclose(r.patch_error[~r.mask], 0, atol=1e-3) and (r.patch_error[r.mask] > 0).all()
    rgb = r.rgb()
    assert set(rgb) == {"original", "masked", "prediction", "pasted"}
    assert all(a.shape == (32, 32, 3) and a.min() >= 0 and a.max() <= 1 for a in rgb.values())
    assert np.allclose(rgb["masked"][r.pixel_mask], 0.5)


def test_scores_match_metrics_module(model, image):
    r = reconstruct(model, image, 0.5, seed=0)
    region = r.pixel_mask & r.valid
    assert r.data_range == 255.0  # uint8 RGB with ImageNet normalization
    assert r.psnr_masked == pytest.approx(metrics.psnr(r.pasted, r.original, 255.0, valid=region))
    # SSIM's map on the full images (visible pixels are context), averaged on the masked ones
    assert r.ssim_masked == pytest.approx(
        metrics.ssim(r.pasted, r.original, 255.0, valid=r.valid, region=r.pixel_mask)
    )
    assert r.psnr == pytest.approx(metrics.psnr(r.pasted, r.original, 255.0))
    assert r.psnr > r.psnr_masked  # visible patches are exact


def test_data_range_is_the_sources_not_the_crops(model):
    """A float crop is scored with the range it is given (the source's), and a Sample brings its
    own; without either, value_range of the image it was given (not the 1-99 percentile span)."""
    rng = np.random.default_rng(3)
    scene = rng.normal(3000, 800, (3, 32, 32)).astype(np.float32)
    r = reconstruct(model, scene, 0.5, seed=0)
    span = float(scene.max() - scene.min())
    assert r.data_range == pytest.approx(span)
    assert r.psnr_masked == pytest.approx(
        metrics.psnr(r.pasted, r.original, span, valid=r.pixel_mask)
    )
    given = reconstruct(model, scene, 0.5, seed=0, data_range=10000.0)
    assert given.psnr_masked == pytest.approx(r.psnr_masked + 20 * np.log10(10000.0 / span))

    class FakeSample:  # what reconstruct reads of a mae_nb.data.Sample
        def __init__(self, raster, data_range):
            self.raster, self.data_range = raster, data_range

    class FakeRaster:
        def __init__(self, array):
            self.array, self.valid = array, np.ones(array.shape[1:], bool)

    s = reconstruct(model, FakeSample(FakeRaster(scene), 10000.0), 0.5, seed=0)
    assert s.data_range == 10000.0 and s.psnr_masked == pytest.approx(given.psnr_masked)


def test_masked_scores_pool_tiles_and_use_the_full_image_for_ssim():
    from mae_nb.reconstruct import masked_scores

    rng = np.random.default_rng(4)
    original = rng.random((2, 3, 16, 16)) * 100
    pasted = original.copy()
    mask = np.zeros((2, 16, 16), bool)
    mask[:, 4:8, 4:8] = True
    pasted[:, :, 4:8, 4:8] += rng.normal(0, 5, (2, 3, 4, 4))
    s = masked_scores(pasted, original, mask, 100.0)
    assert s["psnr_masked"] == pytest.approx(metrics.psnr(pasted, original, 100.0, valid=mask))
    assert s["ssim_masked"] == pytest.approx(metrics.ssim(pasted, original, 100.0, region=mask))
    assert s["psnr"] == pytest.approx(metrics.psnr(pasted, original, 100.0))
    small = masked_scores(pasted[..., :8, :8], original[..., :8, :8], mask[..., :8, :8], 100.0)
    assert np.isnan(small["ssim_masked"]) and np.isfinite(small["psnr_masked"])


def test_fp32_prediction_is_the_models_forward(model, image):
    """reconstruct adds nothing to the model: same noise -> the model's own prediction."""
    r = reconstruct(model, image, 0.75, seed=5)
    noise, ratios = pass_noise("chained", 16, 0.75, 1, torch.Generator().manual_seed(5))
    x = torch.from_numpy(r.normalization.apply(image.astype(np.float32)))[None]
    with torch.no_grad():
        _, pred, mask = model(x, ratios[0], noise=noise[:1])
    expected = r.normalization.invert(model.unpatchify(pred)[0].numpy())
    np.testing.assert_allclose(r.prediction, expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(r.mask.ravel(), mask[0].numpy() > 0)


# --------------------------------------------------------------------------- iterations


def test_chained_changes_only_masked_patches_each_pass(model, image):
    r = reconstruct(model, image, 0.25, iterations=3, seed=7)
    assert r.iterations == 3 and r.steps.shape[0] == 3
    assert (r.pass_masks.sum(axis=(1, 2)) == 16 - int(16 * 0.75)).all()
    previous = r.original
    for k in range(3):
        pix = np.kron(r.pass_masks[k], np.ones((P, P), bool))
        assert unchanged(r.steps[k], previous, ~pix), (
            f"pass {k + 1} changed a patch it did not mask"
        )
        assert not np.allclose(r.steps[k][:, pix], previous[:, pix]), (
            f"pass {k + 1} predicted nothing"
        )
        previous = r.steps[k]
    np.testing.assert_array_equal(r.mask, r.pass_masks.any(axis=0))
    np.testing.assert_array_equal(r.pasted, r.steps[-1])
    assert not (r.pass_masks[0] == r.pass_masks[1]).all()  # a fresh mask each pass


def test_chained_pass_sees_previous_pasted_output(model, image):
    """Pass 2's prediction is the model's prediction from pass 1's pasted image, not the input."""
    r = reconstruct(model, image, 0.25, iterations=2, seed=11)
    noise, ratios = pass_noise("chained", 16, 0.25, 2, torch.Generator().manual_seed(11))
    x1 = torch.from_numpy(r.normalization.apply(r.steps[0]))[None]
    with torch.no_grad():
        _, pred, _ = model(x1, ratios[1], noise=noise[1:2])
    expected = r.normalization.invert(model.unpatchify(pred)[0].numpy())
    pix = np.kron(r.pass_masks[1], np.ones((P, P), bool))
    np.testing.assert_allclose(r.steps[1][:, pix], expected[:, pix], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("ratio", [0.25, 0.3, 0.5])
def test_covering_predicts_every_patch_exactly_once(model, image, ratio):
    r = reconstruct(model, image, ratio, mode="covering", seed=2)
    per_pass = 16 - int(16 * (1 - ratio))
    assert r.iterations == math.ceil(16 / per_pass)
    np.testing.assert_array_equal(
        r.pass_masks.sum(axis=0), np.ones((4, 4))
    )  # disjoint, all covered
    assert r.mask.all() and r.masked_share == 1.0
    assert r.psnr == pytest.approx(r.psnr_masked)
    # each pass predicts its group from the ORIGINAL image: compare with one model call
    noise, ratios = pass_noise(
        "covering", 16, ratio, r.iterations, torch.Generator().manual_seed(2)
    )
    x = torch.from_numpy(r.normalization.apply(image.astype(np.float32)))[None]
    for k in range(r.iterations):
        with torch.no_grad():
            _, pred, mask = model(x, ratios[k], noise=noise[k : k + 1])
        np.testing.assert_array_equal(mask[0].numpy().reshape(4, 4) > 0, r.pass_masks[k])
        expected = r.normalization.invert(model.unpatchify(pred)[0].numpy())
        pix = np.kron(r.pass_masks[k], np.ones((P, P), bool))
        np.testing.assert_allclose(r.pasted[:, pix], expected[:, pix], rtol=1e-5, atol=1e-3)


def test_covering_fewer_passes_and_too_many(model, image):
    r = reconstruct(model, image, 0.25, iterations=2, mode="covering")
    assert r.pass_masks.sum() == 8 and r.pass_masks.sum(axis=0).max() == 1
    with pytest.raises(ValueError, match="at most 4"):
        reconstruct(model, image, 0.25, iterations=5, mode="covering")
    with pytest.raises(ValueError, match="covering mode needs mask_ratio > 0"):
        reconstruct(model, image, 0.0, mode="covering")


def test_seeds_are_reproducible(model, image):
    a = reconstruct(model, image, 0.5, iterations=2, seed=4)
    b = reconstruct(model, image, 0.5, iterations=2, seed=4)
    c = reconstruct(model, image, 0.5, iterations=2, seed=5)
    np.testing.assert_array_equal(a.pass_masks, b.pass_masks)
    np.testing.assert_array_equal(a.pasted, b.pasted)
    assert a.psnr_masked == b.psnr_masked
    assert not (a.pass_masks == c.pass_masks).all()


def test_mask_ratio_zero_is_identity(model, image):
    r = reconstruct(model, image, 0.0)
    assert not r.mask.any() and math.isnan(r.psnr_masked)
    assert unchanged(r.pasted, r.original, np.ones((32, 32), bool))


# --------------------------------------------------------------------------- precision


def test_bf16_close_to_fp32(model, image):
    a = reconstruct(model, image, 0.5, iterations=3, seed=1)
    b = reconstruct(model, image, 0.5, iterations=3, seed=1, precision="bf16")
    np.testing.assert_array_equal(a.pass_masks, b.pass_masks)
    assert b.pasted.dtype == np.float32 and np.isfinite(b.pasted).all()
    assert abs(a.psnr_masked - b.psnr_masked) < 0.1
    with pytest.raises(ValueError, match="precision must be one of 'auto', 'fp32', 'bf16'"):
        reconstruct(model, image, 0.5, precision="half")


# ------------------------------------------------------------------------- normalization and bands


def test_normalization_imagenet_for_rgb_and_per_band_otherwise():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (3, 16, 16)).astype(np.uint8)
    n = normalization(u8)
    assert n.kind == "imagenet" and n.data_range == 255
    np.testing.assert_allclose(n.mean, 255 * np.array(IMAGENET_MEAN), rtol=1e-6)
    np.testing.assert_allclose(n.std, 255 * np.array(IMAGENET_STD), rtol=1e-6)
    unit = rng.random((3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(normalization(unit).mean, IMAGENET_MEAN, rtol=1e-6)
    six = rng.normal(100, 10, (6, 16, 16)).astype(np.float32)
    n6 = normalization(six)
    assert n6.kind == "per-band"
    np.testing.assert_allclose(n6.mean, six.reshape(6, -1).mean(1), rtol=1e-5)
    x = n6.apply(six)
    np.testing.assert_allclose(x.reshape(6, -1).mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(n6.invert(x), six, rtol=1e-5)
    valid = np.zeros((16, 16), bool)
    valid[:8] = True
    np.testing.assert_allclose(
        normalization(six, valid=valid).mean, six[:, :8].reshape(6, -1).mean(1), rtol=1e-5
    )
    with pytest.raises(ValueError, match="give both mean and std"):
        normalization(six, mean=[0] * 6)
    with pytest.raises(ValueError, match="one value per band"):
        normalization(six, mean=[0] * 3, std=[1] * 3)
    with pytest.raises(ValueError, match="ImageNet normalization needs 3 bands"):
        normalization(six, "imagenet")


def test_model_normalization_from_pretrained_cfg(image):
    m = tiny_mae()
    m.pretrained_cfg.update(mean=[10.0, 20.0, 30.0], std=[2.0, 2.0, 2.0])  # chapter 03 style
    r = reconstruct(m, image, 0.5)
    assert r.normalization.kind == "given"
    np.testing.assert_allclose(r.normalization.mean, [10, 20, 30])
    m.pretrained_cfg.update(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))  # Meta's RGB models
    assert reconstruct(m, image, 0.5).normalization.kind == "imagenet"


def test_band_selection_for_rgb_composites(model):
    from mae_nb.data import synthetic_scene

    six = synthetic_scene(32, 32, 6, seed=0).image
    r = reconstruct(model, six, 0.5, bands=[3, 2, 1])
    np.testing.assert_allclose(r.original, six[[2, 1, 0]])
    with pytest.raises(
        ValueError, match=r"6 band\(s\) but the model expects in_chans=3; pick three with bands"
    ):
        reconstruct(model, six, 0.5)
    with pytest.raises(ValueError, match="band index 7 is out of range"):
        reconstruct(model, six, 0.5, bands=[7, 2, 1])


def test_multispectral_model_uses_per_band_statistics():
    from mae_nb.data import synthetic_scene

    six = synthetic_scene(32, 32, 6, seed=0).image
    r = reconstruct(tiny_mae(in_chans=6), six, 0.5)
    assert r.normalization.kind == "per-band" and r.original.shape == (6, 32, 32)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("ratio", [1.0, 1.2, -0.1, float("nan")])
def test_bad_mask_ratio(model, image, ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        reconstruct(model, image, ratio)


def test_mask_ratio_leaving_no_patch_visible(model, image):
    with pytest.raises(ValueError, match="leaves no visible patch out of 16"):
        reconstruct(model, image, 0.95)


@pytest.mark.parametrize("iterations", [0, -1, 1.5, True])
def test_bad_iterations(model, image, iterations):
    with pytest.raises(ValueError, match="iterations must be a whole number >= 1"):
        reconstruct(model, image, 0.5, iterations=iterations)


def test_bad_mode(model, image):
    with pytest.raises(ValueError, match="mode must be 'chained' or 'covering'"):
        reconstruct(model, image, 0.5, mode="random")


def test_image_smaller_than_a_patch(model):
    with pytest.raises(ValueError, match=r"smaller than one 8 x 8 patch"):
        reconstruct(model, np.zeros((3, 5, 40), np.float32), 0.5)


def test_image_not_a_multiple_of_the_patch_size_is_cropped(model, image):
    big = np.pad(image, ((0, 0), (0, 5), (0, 3)), mode="reflect")  # 37 x 35
    r = reconstruct(model, big, 0.5, seed=1)
    assert r.original.shape == (3, 32, 32) and r.crop == (5, 3)
    np.testing.assert_allclose(r.original, image.astype(np.float32))
    ref = reconstruct(model, image, 0.5, seed=1)
    np.testing.assert_allclose(r.pasted, ref.pasted, atol=1e-3)


def test_non_square_image_of_another_size(model):
    from mae_nb.data import synthetic_scene

    img = synthetic_scene(40, 56, 3, seed=0).image
    r = reconstruct(model, img, 0.5, iterations=2)
    assert r.original.shape == (3, 40, 56) and r.mask.shape == (5, 7)


def test_fixed_size_model_rejects_other_sizes(image):
    class Fixed(torch.nn.Module):  # like timm's strict PatchEmbed
        def __init__(self):
            super().__init__()
            self.inner = tiny_mae()
            self.patch_embed = self.inner.patch_embed
            self.forward_encoder, self.forward_decoder = (
                self.inner.forward_encoder,
                self.inner.forward_decoder,
            )
            self.unpatchify = self.inner.unpatchify

    m = Fixed()
    m.patch_embed.strict_img_size = True
    try:
        with pytest.raises(ValueError, match="the model takes 32 x 32 images; this one is 40 x 40"):
            reconstruct(m, np.zeros((3, 40, 40), np.float32), 0.5)
    finally:
        m.patch_embed.strict_img_size = False


def test_not_a_model(image):
    with pytest.raises(TypeError, match="expected a masked autoencoder"):
        reconstruct(torch.nn.Linear(2, 2), image, 0.5)


# --------------------------------------------------------------------------- nodata


def test_nodata_stays_nodata_and_is_excluded_from_metrics(model, image):
    img = image.astype(np.float32)
    img[:, :4, :] = np.nan  # a NaN stripe
    valid = np.ones((32, 32), bool)
    valid[20:, 28:] = False  # and a nodata corner given as a mask
    r = reconstruct(model, img, 0.5, valid=valid, seed=2)
    bad = ~valid
    bad[:4] = True
    np.testing.assert_array_equal(r.valid, ~bad)
    for name in ("original", "masked", "prediction", "pasted"):
        assert np.isnan(getattr(r, name)[:, bad]).all(), f"{name} is not NaN at nodata"
    assert (
        np.isfinite(r.pasted[:, ~bad]).all() and np.isfinite([r.psnr, r.psnr_masked, r.ssim]).all()
    )
    assert r.psnr == pytest.approx(metrics.psnr(r.pasted, r.original, r.data_range, valid=~bad))
    # nodata does not leak into the model: the same image with other values under the mask
    img2 = img.copy()
    img2[:, bad] = 1e6
    r2 = reconstruct(model, img2, 0.5, valid=valid & np.isfinite(img).all(0), seed=2)
    np.testing.assert_allclose(r2.pasted[:, ~bad], r.pasted[:, ~bad], atol=1e-3)


def test_all_nodata_image(model):
    with pytest.raises(ValueError, match="no valid pixel"):
        reconstruct(model, np.full((3, 32, 32), np.nan, np.float32), 0.5)


def test_valid_mask_of_wrong_shape(model, image):
    with pytest.raises(ValueError, match="valid must have the image's shape"):
        reconstruct(model, image, 0.5, valid=np.ones((8, 8), bool))


# --------------------------------------------------------------------------- whole scenes


@pytest.fixture
def scene_tif(tmp_path):
    from mae_nb.data import synthetic_scene

    path = tmp_path / "scene.tif"
    synthetic_scene(300, 40, 3, seed=0, collar=True).to_geotiff(
        path
    )  # uint16, nodata 0, collar; > 1 block
    return path


def test_scene_outputs_keep_crs_transform_nodata(model, scene_tif, tmp_path):
    from mae_nb.data import read_raster

    out = tmp_path / "out" / "rec.tif"
    res = reconstruct_scene(model, scene_tif, out, mask_ratio=0.5, iterations=2, progress=False)
    src, rec, err = read_raster(scene_tif), read_raster(out), read_raster(res.error_path)
    assert res.error_path == tmp_path / "out" / "rec_error.tif"
    assert rec.array.shape == src.array.shape and rec.array.dtype == src.array.dtype
    assert rec.crs == src.crs == err.crs and rec.transform == src.transform == err.transform
    assert rec.nodata == src.nodata == 0 and np.isnan(err.nodata)
    np.testing.assert_array_equal(rec.valid, src.valid)
    assert not src.valid.all()  # the collar is there ...
    assert np.isnan(err.array[0][~src.valid]).all() and np.isfinite(err.array[0][src.valid]).all()
    assert (rec.array[:, src.valid] != 0).all()  # ... and no valid pixel became nodata
    assert res.tiles > 0 and res.tiles_per_second > 0 and np.isfinite(res.psnr)
    assert (err.array[0][src.valid] > 0).any()


def test_scene_with_nothing_masked_reproduces_the_input(model, scene_tif, tmp_path):
    """Tiling, blending and windowed writes lose nothing: mask_ratio 0 gives the input back."""
    from mae_nb.data import read_raster

    res = reconstruct_scene(
        model,
        scene_tif,
        tmp_path / "same.tif",
        mask_ratio=0.0,
        overlap=12,
        batch_size=3,
        progress=False,
    )
    src, rec = read_raster(scene_tif), read_raster(res.out_path)
    np.testing.assert_array_equal(rec.array, src.array)
    assert np.nanmax(read_raster(res.error_path).array) < 0.02


def test_scene_is_reproducible_and_seeded(model, tmp_path):
    from mae_nb.data import read_raster, synthetic_scene

    scene_tif = tmp_path / "s.tif"
    synthetic_scene(60, 60, 3, seed=0).to_geotiff(scene_tif)

    a = reconstruct_scene(
        model, scene_tif, tmp_path / "a.tif", mask_ratio=0.5, seed=1, progress=False
    )
    b = reconstruct_scene(
        model, scene_tif, tmp_path / "b.tif", mask_ratio=0.5, seed=1, batch_size=1, progress=False
    )
    c = reconstruct_scene(
        model, scene_tif, tmp_path / "c.tif", mask_ratio=0.5, seed=2, progress=False
    )
    ra, rb, rc = (read_raster(r.out_path).array for r in (a, b, c))
    # the batch size does not change the masks (only float rounding in the batched matmuls)
    assert np.abs(ra.astype(int) - rb.astype(int)).max() <= 1
    assert (ra != rc).any()


def test_scene_never_overwrites_unless_asked(model, scene_tif, tmp_path):
    out = tmp_path / "rec.tif"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        reconstruct_scene(model, scene_tif, out, mask_ratio=0.5, progress=False)
    assert out.read_bytes() == b"precious"
    assert not (tmp_path / "rec_error.tif").exists()
    (tmp_path / "rec_error.tif").write_bytes(b"precious too")
    out.unlink()
    with pytest.raises(FileExistsError, match="rec_error.tif already exists"):
        reconstruct_scene(model, scene_tif, out, mask_ratio=0.5, progress=False)
    res = reconstruct_scene(model, scene_tif, out, mask_ratio=0.5, overwrite=True, progress=False)
    assert res.out_path.stat().st_size > 100 and res.error_path.stat().st_size > 100
    with pytest.raises(ValueError, match="is the input file"):
        reconstruct_scene(
            model, scene_tif, scene_tif, mask_ratio=0.5, overwrite=True, progress=False
        )


def test_scene_bands_and_errors(model, tmp_path):
    from mae_nb.data import read_raster, synthetic_scene

    six = tmp_path / "six.tif"
    synthetic_scene(40, 40, 6, seed=0).to_geotiff(six)
    with pytest.raises(ValueError, match=r"gives 6 band\(s\).*in_chans=3"):
        reconstruct_scene(model, six, tmp_path / "x.tif", progress=False)
    res = reconstruct_scene(
        model, six, tmp_path / "rgb.tif", bands=[3, 2, 1], mask_ratio=0.25, progress=False
    )
    assert read_raster(res.out_path).count == 3 and res.bands == [3, 2, 1]
    with pytest.raises(ValueError, match="overlap must be between 0 and half a tile"):
        reconstruct_scene(
            model, six, tmp_path / "y.tif", bands=[3, 2, 1], overlap=20, progress=False
        )
    with pytest.raises(ValueError, match="iterations must be a whole number"):
        reconstruct_scene(
            model, six, tmp_path / "y.tif", bands=[3, 2, 1], iterations=0, progress=False
        )
    not_tif = tmp_path / "notes.tif"
    not_tif.write_text("not a raster")
    from mae_nb.errors import RasterError

    with pytest.raises(RasterError, match="not a raster"):
        reconstruct_scene(model, not_tif, tmp_path / "z.tif", progress=False)
    assert not list(tmp_path.glob(".*partial"))  # no half-written files left behind


def test_scene_smaller_than_a_tile(model, tmp_path):
    from mae_nb.data import read_raster, synthetic_scene

    small = tmp_path / "small.tif"
    synthetic_scene(20, 26, 3, seed=0).to_geotiff(small)
    res = reconstruct_scene(
        model, small, tmp_path / "small_rec.tif", mask_ratio=0.0, progress=False
    )
    np.testing.assert_array_equal(read_raster(res.out_path).array, read_raster(small).array)


# --------------------------------------------------------------------------- plots and sliders


def test_plots_return_figures(model, image):
    from matplotlib.figure import Figure

    from mae_nb import viz

    r = reconstruct(model, image, 0.5, iterations=2)
    fig = viz.plot_reconstruction(r)
    assert (
        isinstance(fig, Figure)
        and len(fig.axes) == 4
        and "masked-patch PSNR" in fig._suptitle.get_text()
    )
    err = np.random.default_rng(0).random((32, 32))
    err[0, 0] = np.nan
    assert isinstance(viz.plot_error_map(r.rgb()["original"], r.rgb()["pasted"], err), Figure)


def test_sliders_run_the_same_functions(model, image):
    widgets = pytest.importorskip("mae_nb.widgets")
    box = widgets.reconstruction_sliders(model, image, mask_ratio=0.5, seed=2)
    c = box.controls
    assert c["mask_ratio"].min == 0.05 and c["mask_ratio"].max == 0.95
    assert c["iterations"].min == 1 and c["iterations"].max == 10
    assert not c["mask_ratio"].continuous_update and not c["iterations"].continuous_update
    assert bytes(c["picture"].value[:3]) == b"\xff\xd8\xff"  # the figure, drawn (JPEG)
    expected = reconstruct(model, image, 0.5, 1, 2)
    assert f"{expected.psnr_masked:.2f} dB" in c["score"].value
    c["iterations"].value = 3  # a change re-runs reconstruct with the new value
    assert f"{reconstruct(model, image, 0.5, 3, 2).psnr_masked:.2f} dB" in c["score"].value
    c["mask_ratio"].value = 0.95  # leaves no patch of 16 visible: reported in words, no traceback
    assert "cannot run" in c["score"].value and "no visible patch" in c["score"].value


def test_scene_window(model, scene_tif, tmp_path):
    from mae_nb.data import read_raster

    res = reconstruct_scene(
        model,
        scene_tif,
        tmp_path / "w.tif",
        mask_ratio=0.0,
        window=(100, 5, 50, 30),
        progress=False,
    )
    part, rec = read_raster(scene_tif, window=(100, 5, 50, 30)), read_raster(res.out_path)
    np.testing.assert_array_equal(rec.array, part.array)
    assert rec.transform == part.transform and rec.shape == (50, 30)
    from mae_nb.errors import RasterError

    with pytest.raises(RasterError, match="outside"):
        reconstruct_scene(
            model, scene_tif, tmp_path / "w2.tif", window=(290, 0, 50, 30), progress=False
        )
