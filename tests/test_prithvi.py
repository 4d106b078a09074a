"""NASA/IBM's Prithvi as the course's MAE: files in its published layout, their mapping to one
time step, the registry entries, ``mae-nb reconstruct --bands``, and chapter 04's several-model
comparison (random-weight models of the right shapes: the real weights cannot be had here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_mae
from prithvi_files import prithvi_state_dict, sincos_3d, write_prithvi

from mae_nb.data import registry, synthetic_scene
from mae_nb.errors import CheckpointError, InputError, MaeNbError
from mae_nb.models.prithvi import (
    PRITHVI_BANDS,
    PRITHVI_CONFIGS,
    PrithviMAE,
    from_published,
    get_3d_sincos_pos_embed,
    published_shapes,
)
from mae_nb.pretrained import load_mae
from mae_nb.reconstruct import check_model_bands, reconstruct
from mae_nb.studies.scenarios import compare_masking_scenarios, compare_models, pick_crops


@pytest.fixture(scope="module")
def pfile(tmp_path_factory):
    """A random-weight Prithvi-EO file (prefixed keys, 3 time steps, 32 px, patch 8)."""
    return write_prithvi(tmp_path_factory.mktemp("prithvi") / "Prithvi_tiny.pt", frames=3)


def test_the_3d_table_is_prithvis_formula():
    for dim, grid in ((64, (3, 4, 4)), (32, (1, 5, 3)), (1024, (4, 14, 14))):
        ours = get_3d_sincos_pos_embed(dim, grid, cls_token=True).numpy()
        np.testing.assert_allclose(ours, sincos_3d(dim, grid), atol=1e-5)
    with pytest.raises(InputError, match="multiple of 16"):
        get_3d_sincos_pos_embed(40, (1, 2, 2))


def test_a_published_file_loads_at_one_time_step(pfile):
    sd = torch.load(pfile, weights_only=True)
    model = load_mae(pfile)
    assert isinstance(model, PrithviMAE) and not model.training
    cfg = model.pretrained_cfg
    assert cfg["num_frames"] == 3 and cfg["band_names"] == list(PRITHVI_BANDS)
    assert cfg["pos_embed"] == "3d-sincos" and cfg["source"] == str(pfile)
    # the Conv3d patch embedding on one time step is the model's Conv2d one
    x = torch.randn(2, 6, 32, 32)
    w, b = sd["encoder.patch_embed.proj.weight"], sd["encoder.patch_embed.proj.bias"]
    ref = F.conv3d(x[:, :, None], w, b, stride=(1, 8, 8)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(model.patch_embed(x), ref, atol=1e-5, rtol=1e-5)
    # the position tables are the first time step of the stored ones (tokens in t, h, w order)
    torch.testing.assert_close(model.pos_embed, sd["encoder.pos_embed"][:, : 1 + 16])
    torch.testing.assert_close(model.decoder_pos_embed, sd["decoder.decoder_pos_embed"][:, :17])
    # every other tensor is the file's, under the course's (Meta's) names
    torch.testing.assert_close(
        model.blocks[1].attn.qkv.weight, sd["encoder.blocks.1.attn.qkv.weight"]
    )
    torch.testing.assert_close(model.decoder_pred.weight, sd["decoder.decoder_pred.weight"])
    torch.testing.assert_close(model.mask_token, sd["decoder.mask_token"])


def test_other_image_sizes_get_prithvis_table_for_their_grid(pfile):
    model = load_mae(pfile)
    pos = model.position_embeddings((3, 5))
    np.testing.assert_allclose(pos[0].numpy(), sincos_3d(64, (1, 3, 5)), atol=1e-5)
    loss, pred, mask = model(torch.randn(1, 6, 24, 40), 0.5)
    assert pred.shape == (1, 15, 8 * 8 * 6) and int(mask.sum()) == 15 - int(15 * 0.5)


def test_the_first_releases_names_load_to_the_same_model(tmp_path, pfile):
    legacy = write_prithvi(tmp_path / "Prithvi_100M_like.pt", frames=3, prefixed=False)
    a, b = load_mae(pfile), load_mae(legacy)
    x, noise = torch.randn(1, 6, 32, 32), torch.rand(1, 16)
    torch.testing.assert_close(a(x, 0.25, noise)[1], b(x, 0.25, noise)[1])


def test_published_shapes_match_the_hand_written_layout():
    sd = prithvi_state_dict(frames=4, dim=64, ddim=32, depth=2, ddepth=1, img=32, patch=8)
    sizes = dict(
        img_size=32, patch_size=8, in_chans=6, embed_dim=64, depth=2, num_heads=1,
        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=1, num_frames=4,
    )  # fmt: skip
    assert published_shapes(sizes) == {k: tuple(v.shape) for k, v in sd.items()}
    # the published ViT-L: 294 encoder and 104 decoder tensors, a (1024, 6, 1, 16, 16) Conv3d
    big = published_shapes(PRITHVI_CONFIGS["prithvi_eo_v2_300m"])
    assert sum(k.startswith("encoder.") for k in big) == 294
    assert sum(k.startswith("decoder.") for k in big) == 104
    assert big["encoder.patch_embed.proj.weight"] == (1024, 6, 1, 16, 16)
    assert big["encoder.pos_embed"] == (1, 1 + 4 * 196, 1024)
    assert big["decoder.decoder_pred.weight"] == (16 * 16 * 6, 512)


def test_a_wrong_file_gets_a_report_of_what_does_not_fit(tmp_path):
    sd = prithvi_state_dict(frames=3)
    del sd["encoder.blocks.1.mlp.fc2.bias"]
    sd["encoder.head.weight"] = torch.zeros(10, 64)
    sd["encoder.blocks.0.attn.qkv.weight"] = torch.zeros(10, 64)
    torch.save(sd, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError) as info:
        load_mae(tmp_path / "wrong.pt")
    text = str(info.value)
    assert isinstance(info.value, MaeNbError) and "not a Prithvi MAE checkpoint" in text
    assert "missing: encoder.blocks.1.mlp.fc2.bias" in text
    assert "not in Prithvi's layout: encoder.head.weight" in text
    assert "encoder.blocks.0.attn.qkv.weight (10, 64) in the file, (192, 64) expected" in text


def test_encoder_only_and_multi_step_tubelets_are_refused():
    enc = {k: v for k, v in prithvi_state_dict().items() if k.startswith("encoder.")}
    with pytest.raises(CheckpointError, match="no decoder"):
        from_published(enc)
    with pytest.raises(CheckpointError, match="tubelet"):
        from_published(prithvi_state_dict(frames=2, tubelet=2))
    bad = prithvi_state_dict()
    bad["encoder.pos_embed"] = torch.randn_like(bad["encoder.pos_embed"])
    with pytest.raises(CheckpointError, match="3-D sin-cos"):
        from_published(bad)


def test_a_course_saved_prithvi_reloads_as_prithvi(tmp_path, pfile):
    from mae_nb.train import save_checkpoint

    model = load_mae(pfile)
    save_checkpoint(tmp_path / "saved.safetensors", model, config=model.pretrained_cfg)
    again = load_mae(tmp_path / "saved.safetensors")
    assert isinstance(again, PrithviMAE)
    x, noise = torch.randn(1, 6, 40, 24), torch.rand(1, 15)
    torch.testing.assert_close(model(x, 0.5, noise)[1], again(x, 0.5, noise)[1])


def test_registry_entries_and_loading_through_a_mirror(tmp_path, monkeypatch, cache):
    for name, repo in (("prithvi_eo_v1_100m", "Prithvi-EO-1.0-100M"),
                       ("prithvi_eo_v2_300m", "Prithvi-EO-2.0-300M")):  # fmt: skip
        d = registry.get(name)
        assert d.kind == "checkpoint" and d.licence.startswith("Apache-2.0")
        assert d.files[0].url.startswith(f"https://huggingface.co/ibm-nasa-geospatial/{repo}/")
        assert d.files[0].url.endswith(".pt") and "arXiv" in d.citation
    mirror = tmp_path / "usb"
    mirror.mkdir()
    write_prithvi(mirror / "Prithvi_EO_V1_100M.pt", frames=3)
    monkeypatch.setenv("MAE_NB_DATA_MIRRORS", str(mirror))
    model = load_mae("prithvi_eo_v1_100m")
    assert isinstance(model, PrithviMAE)
    cfg = model.pretrained_cfg
    assert cfg["mean"] == PRITHVI_CONFIGS["prithvi_eo_v1_100m"]["mean"]
    assert cfg["std"] == PRITHVI_CONFIGS["prithvi_eo_v1_100m"]["std"]


def test_band_check_names_prithvis_bands(pfile):
    model = load_mae(pfile)
    check_model_bands(model, 6)
    check_model_bands(model, 7, [1, 2, 3, 4, 5, 7])
    with pytest.raises(InputError, match="blue, green, red, narrow NIR, SWIR1, SWIR2") as info:
        check_model_bands(model, 4, None, "scene.tif")
    assert "scene.tif has 4 bands" in str(info.value) and "--bands" in str(info.value)
    with pytest.raises(InputError, match="3 were chosen"):
        check_model_bands(model, 6, [3, 2, 1])


def test_cli_reconstruct_with_prithvi_and_bands(tmp_path, pfile, capsys):
    from mae_nb.cli import main
    from mae_nb.data import read_raster

    synthetic_scene(40, 40, 7, seed=0).to_geotiff(tmp_path / "seven.tif")
    out = tmp_path / "rec.tif"
    args = ["reconstruct", str(tmp_path / "seven.tif"), str(out), "--checkpoint", str(pfile)]
    assert main(args + ["--bands", "1", "2", "3", "4", "5", "7", "--precision", "fp32"]) == 0
    assert read_raster(out).array.shape == (6, 40, 40)
    assert main(args + ["--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "7 bands" in err and "blue, green, red, narrow NIR, SWIR1, SWIR2" in err


def test_compare_models_scores_every_model_on_the_same_bands_and_runs(pfile):
    scene = synthetic_scene(64, 64, 6, seed=1)
    prithvi, rgb = load_mae(pfile), tiny_mae(3)
    crops = pick_crops(scene.image, 32, 2, scene.valid)
    kw = dict(seeds=range(2), scenarios={"25%": (0.25, 1, "chained")}, size=32, valid=scene.valid,
              data_range=10000.0, precision="fp32", progress=False)  # fmt: skip
    cmp = compare_models(
        {"rgb": (rgb, [3, 2, 1]), "six": (prithvi, [1, 2, 3, 4, 5, 6])}, scene.image, crops,
        score_bands=[3, 2, 1], band_names=list(PRITHVI_BANDS), trained_on={"rgb": "photos"},
        imagenet=("rgb",), missing={"Meta": "offline"}, **kw,
    )  # fmt: skip
    assert cmp.models() == ["rgb", "six"] and cmp.scored == "red, green, blue"
    # the six-band model's scores are those of its red, green and blue outputs only
    alone = compare_masking_scenarios(prithvi, scene.image, crops, bands=[1, 2, 3, 4, 5, 6],
                                      score=[3, 2, 1], **kw)  # fmt: skip
    every = compare_masking_scenarios(prithvi, scene.image, crops, **kw)
    np.testing.assert_allclose(cmp.comparisons["six"].values("25%", "psnr_masked"),
                               alone.values("25%", "psnr_masked"))  # fmt: skip
    assert not np.allclose(alone.values("25%", "psnr_masked"), every.values("25%", "psnr_masked"))
    rec = reconstruct(prithvi, scene.image[:, :32, :32], 0.25, 1, 0, data_range=10000.0,
                      precision="fp32", valid=scene.valid[:32, :32])  # fmt: skip
    assert rec.pasted.shape[0] == 6
    # tables and verdicts name both models and the pull difference across training data
    table, pulls, verdict = cmp.table(), cmp.pull_table(), cmp.verdict()
    assert "| rgb | photos | 25% |" in table and "| six | ? | 25% |" in table
    assert "red, green, blue" in pulls and len(verdict) == 3
    diff = cmp.pull_difference("rgb", "six")
    expected = cmp.comparisons["rgb"].pull("25%").mean - cmp.comparisons["six"].pull("25%").mean
    assert diff.mean == pytest.approx(expected) and diff.clusters == 2
    assert "pull of rgb minus pull of six" in verdict[2]


def test_compare_models_refuses_unscored_bands_and_standardizes_other_units(pfile, tmp_path):
    scene = synthetic_scene(32, 32, 6, seed=2)
    model = load_mae(pfile)
    model.pretrained_cfg.update(mean=[1.0] * 6, std=[0.01] * 6)  # units far from the scene's
    kw = dict(seeds=[0], scenarios={"25%": (0.25, 1, "chained")}, size=32, progress=False,
              precision="fp32", valid=scene.valid)  # fmt: skip
    with pytest.raises(InputError, match="not among them"):
        compare_models({"m": (model, [1, 2, 3])}, scene.image, [(0, 0)], score_bands=[4], **kw)
    cmp = compare_models({"m": (model, [1, 2, 3, 4, 5, 6])}, scene.image, [(0, 0)],
                         score_bands=[3, 2, 1], quiet=True, **kw)  # fmt: skip
    assert len(cmp.notices) == 1 and "standardized by the image's own statistics" in cmp.notices[0]
    assert "not made" in cmp.verdict()[-1]


@pytest.mark.realdata
def test_bigearthnet_gives_prithvis_six_bands_on_the_10_m_grid():
    from mae_nb.data.bigearthnet import BIGEARTHNET_PRITHVI, load_bigearthnet

    six = load_bigearthnet(BIGEARTHNET_PRITHVI, download=False)
    ten = load_bigearthnet(("B02", "B8A"), download=False)
    assert six.images.shape == (6, 6, 120, 120) and six.bands == BIGEARTHNET_PRITHVI
    # a 20 m pixel covers 2 x 2 pixels of the 10 m grid; the grid is the 10 m bands'
    b8a = six.images[:, 3]
    np.testing.assert_array_equal(b8a[:, ::2, ::2], b8a[:, 1::2, 1::2])
    np.testing.assert_array_equal(ten.images[:, 1], b8a)
    assert six.transforms[0].a == 10.0
    # in reflectance x 10000, the units of Prithvi's normalization constants
    model = PrithviMAE(img_size=32, patch_size=8, in_chans=6, embed_dim=32, depth=1, num_heads=2,
                       decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=1)  # fmt: skip
    cfg = PRITHVI_CONFIGS["prithvi_eo_v2_300m"]
    model.pretrained_cfg.update(mean=cfg["mean"], std=cfg["std"])
    from mae_nb.pretrained import in_training_units

    pixels = six.images.transpose(1, 0, 2, 3).reshape(6, -1)
    assert in_training_units(model, pixels.mean(1), pixels.std(1))


def test_cli_standardizes_a_file_in_other_units_than_prithvis_constants(
    tmp_path, monkeypatch, capsys
):
    from mae_nb.cli import main
    from mae_nb.data.geotiff import write_raster

    mirror = tmp_path / "usb"
    mirror.mkdir()
    write_prithvi(mirror / "Prithvi_EO_V2_300M.pt", frames=4)
    monkeypatch.setenv("MAE_NB_DATA_MIRRORS", str(mirror))
    monkeypatch.setenv("MAE_NB_CACHE", str(tmp_path / "cache"))
    hls = synthetic_scene(40, 40, 6, seed=0)  # reflectance x 10000, as HLS
    hls.to_geotiff(tmp_path / "hls.tif")
    counts = (np.clip(hls.image / 40, 0, 255)).astype(np.uint8)  # 8-bit counts, as Landsat 7's
    write_raster(tmp_path / "counts.tif", counts, crs=hls.crs, transform=hls.transform)
    for name, notice in (("hls.tif", False), ("counts.tif", True)):
        args = ["reconstruct", str(tmp_path / name), str(tmp_path / f"out_{name}")]
        assert main(args + ["--checkpoint", "prithvi_eo_v2_300m", "--precision", "fp32"]) == 0
        out = capsys.readouterr().out
        assert ("standardized by the file's own statistics" in out) == notice, out


def test_features_of_prithvi_are_its_encoder_tokens(pfile):
    from mae_nb.features import embed_image
    from mae_nb.reconstruct import normalization

    model = load_mae(pfile)
    crop = synthetic_scene(32, 32, 6, seed=3).image
    emb = embed_image(model, crop, precision="fp32")
    assert emb.shape == (4, 4, 64)
    x = torch.from_numpy(normalization(crop, "per-band").apply(crop))[None]
    with torch.no_grad():
        tokens = model.forward_features(x)[0, 1:].reshape(4, 4, 64).numpy()
    np.testing.assert_allclose(emb, tokens, atol=1e-4)
