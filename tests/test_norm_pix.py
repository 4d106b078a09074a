"""Tests of normalized-pixel targets: un-normalizing a ``norm_pix_loss`` model's predictions
(mae_nb.reconstruct.unnormalize_patches, norm_pix_display, reconstruct's ``norm_pix``), training
such a model (train_course_mae), and Meta's ``mae_pretrain_vit_*_full`` registry entries, loaded
from random-weight files written in Meta's format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_mae

from mae_nb.data import registry
from mae_nb.errors import InputError, MaeNbError
from mae_nb.models.mae import create_mae
from mae_nb.pretrained import load_mae, train_course_mae
from mae_nb.reconstruct import norm_pix_display, reconstruct, unnormalize_patches

P = 8


def _image(n=1, c=3, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # patches with different means and contrasts, so the statistics matter
    base = torch.rand(n, c, h, w, generator=g)
    ramp = torch.linspace(0, 4, h)[None, None, :, None]
    return base * (1 + ramp) + 3 * ramp


def _patchify(x, p=P):
    n, c, h, w = x.shape
    t = x.reshape(n, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", t).reshape(n, (h // p) * (w // p), p * p * c)


def _meta_normalize(patches):
    """The target of Meta's forward_loss with norm_pix_loss."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + 1.0e-6) ** 0.5


def test_own_statistics_invert_metas_target_exactly():
    x = _image()
    patches = _patchify(x)
    mask = torch.zeros(1, patches.shape[1])
    mask[0, ::3] = 1
    out = unnormalize_patches(_meta_normalize(patches), x, mask, "own", patch_size=P)
    torch.testing.assert_close(out, patches, rtol=1e-4, atol=1e-4)
    # "none" leaves the normalized prediction as it is
    pred = _meta_normalize(patches)
    assert unnormalize_patches(pred, x, mask, "none", patch_size=P) is pred


def test_neighbours_never_read_the_masked_patch():
    x = _image()
    patches = _patchify(x)
    length = patches.shape[1]
    mask = torch.zeros(1, length)
    mask[0, [5, 6, 10]] = 1  # masked patches inside the 4 x 4 grid
    pred = torch.randn(1, length, patches.shape[2])
    honest = unnormalize_patches(pred, x, mask, "neighbours", patch_size=P)
    oracle = unnormalize_patches(pred, x, mask, "own", patch_size=P)
    # change only the hidden pixels: the honest display does not move, the oracle does
    pix = mask.reshape(1, 4, 1, 4, 1).expand(1, 4, P, 4, P).reshape(1, 1, 32, 32)
    changed = torch.where(pix > 0, x * 5 + 100, x)
    torch.testing.assert_close(
        unnormalize_patches(pred, changed, mask, "neighbours", patch_size=P), honest
    )
    moved = unnormalize_patches(pred, changed, mask, "own", patch_size=P)
    assert (moved[0, 5] - oracle[0, 5]).abs().min() > 10
    # visible patches keep their own statistics in both displays
    vis = mask[0] == 0
    torch.testing.assert_close(honest[0, vis], oracle[0, vis])


def test_neighbour_statistics_are_the_visible_neighbours_means():
    x = _image()
    patches = _patchify(x)
    mean, var = patches.mean(-1), patches.var(-1)
    mask = torch.zeros(1, 16)
    mask[0, 5] = 1  # row 1, col 1 of the 4 x 4 grid: neighbours 0, 1, 2, 4, 6, 8, 9, 10
    pred = torch.zeros(1, 16, patches.shape[2])
    pred[0, 5, 0] = 1.0  # one pixel one (estimated) standard deviation above the mean
    out = unnormalize_patches(pred, x, mask, "neighbours", patch_size=P)
    near = [0, 1, 2, 4, 6, 8, 9, 10]
    m, v = mean[0, near].mean(), var[0, near].mean()
    torch.testing.assert_close(out[0, 5, 1], m)
    torch.testing.assert_close(out[0, 5, 0], m + (v + 1e-6) ** 0.5)
    # no visible patch within the radius: all visible patches of the image instead
    mask = torch.zeros(1, 16)
    mask[0, [0, 1, 2, 4, 5, 6, 8, 9, 10]] = 1
    out = unnormalize_patches(pred, x, mask, "neighbours", patch_size=P)
    seen = mask[0] == 0
    torch.testing.assert_close(out[0, 5, 1], mean[0, seen].mean())


def test_bad_requests_are_clear_errors():
    pixel_model, normalized = tiny_mae(), tiny_mae()
    normalized.norm_pix_loss = True
    assert norm_pix_display(pixel_model) == "none"
    assert norm_pix_display(normalized) == "neighbours"
    assert norm_pix_display(normalized, "own") == "own"
    with pytest.raises(MaeNbError, match="trained without norm_pix_loss.*predicts pixels"):
        norm_pix_display(pixel_model, "neighbours")
    with pytest.raises(InputError, match="norm_pix must be one of"):
        norm_pix_display(normalized, "median")
    x = _image()
    with pytest.raises(InputError, match="every patch is masked"):
        unnormalize_patches(torch.zeros(1, 16, 192), x, torch.ones(1, 16), patch_size=P)
    with pytest.raises(InputError, match="pred must be"):
        unnormalize_patches(torch.zeros(1, 15, 192), x, torch.zeros(1, 16), patch_size=P)
    with pytest.raises(InputError, match="how must be one of"):
        unnormalize_patches(torch.zeros(1, 16, 192), x, torch.zeros(1, 16), "mean", patch_size=P)
    image = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    with pytest.raises(MaeNbError, match="trained without norm_pix_loss"):
        reconstruct(pixel_model, image, 0.5, norm_pix="own")


def test_reconstruct_un_normalizes_a_norm_pix_model_honestly_by_default():
    model = tiny_mae()
    model.norm_pix_loss = True
    image = np.random.default_rng(1).random((3, 32, 32)).astype(np.float32)
    kw = dict(seed=3, mean=[0.5] * 3, std=[0.25] * 3, precision="fp32")
    honest = reconstruct(model, image, 0.5, **kw)
    assert honest.norm_pix == "neighbours"
    raw = reconstruct(model, image, 0.5, norm_pix="none", **kw)
    oracle = reconstruct(model, image, 0.5, norm_pix="own", **kw)
    assert raw.norm_pix == "none" and oracle.norm_pix == "own"
    assert np.array_equal(honest.pixel_mask, raw.pixel_mask)
    # the un-normalized prediction differs from the raw one, and hidden pixels do not move it
    assert not np.allclose(honest.prediction, raw.prediction)
    hidden = honest.pixel_mask
    changed = np.where(hidden[None], image * 3 + 1, image).astype(np.float32)
    again = reconstruct(model, changed, 0.5, **kw)
    np.testing.assert_allclose(again.pasted[:, hidden], honest.pasted[:, hidden], atol=1e-5)
    moved = reconstruct(model, changed, 0.5, norm_pix="own", **kw)
    assert not np.allclose(moved.pasted[:, hidden], oracle.pasted[:, hidden], atol=1e-3)
    # a pixel model is shown as it predicts
    assert reconstruct(tiny_mae(), image, 0.5, **kw).norm_pix == "none"


def test_train_course_mae_with_norm_pix_loss_trains_normalized_targets():
    rng = np.random.default_rng(0)
    image = (rng.random((3, 64, 96)) * 1000).astype(np.float32)
    kw = dict(tile_size=32, stride=32, epochs=1, batch_size=4, progress=False)
    run = train_course_mae(image, norm_pix_loss=True, **kw)
    assert run.model.norm_pix_loss and run.model.pretrained_cfg["norm_pix"] is True
    assert run.model.pretrained_cfg["kwargs"]["norm_pix_loss"] is True
    plain = train_course_mae(image, **kw)
    assert not plain.model.norm_pix_loss and plain.model.pretrained_cfg["norm_pix"] is False
    # same seed, same tiles: only the targets differ, so the losses differ
    assert run.history.train["loss"][0] != plain.history.train["loss"][0]


FULL = ("mae_pretrain_vit_base_full", "mae_pretrain_vit_large_full", "mae_pretrain_vit_huge_full")


def test_registry_lists_metas_full_pretraining_checkpoints():
    archs = ("mae_vit_base_patch16", "mae_vit_large_patch16", "mae_vit_huge_patch14")
    for name, arch in zip(FULL, archs):
        d = registry.get(name)
        assert d.kind == "checkpoint" and d.meta == {"arch": arch, "norm_pix_loss": True}
        assert d.files[0].url == f"https://dl.fbaipublicfiles.com/mae/pretrain/{name}.pth"
        assert d.licence == registry.get("mae_visualize_vit_base").licence
        assert d.citation == registry.get("mae_visualize_vit_base").citation
        assert "normalized-pixel" in d.description
    assert "norm_pix_loss" not in registry.get("mae_visualize_vit_large").meta


def test_full_checkpoint_from_the_registry_loads_as_norm_pix(tmp_path, monkeypatch, cache):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("MAE_NB_DATA_MIRRORS", str(mirror))
    torch.manual_seed(0)
    weights = create_mae("mae_vit_tiny_patch8").state_dict()
    torch.save({"model": weights}, mirror / "mae_pretrain_vit_base_full.pth")  # Meta's format
    with pytest.warns(UserWarning, match="norm_pix_loss"):
        model = load_mae("mae_pretrain_vit_base_full", arch="mae_vit_tiny_patch8")
    assert model.norm_pix_loss and model.pretrained_cfg["norm_pix"]
    assert model.pretrained_cfg["kwargs"]["norm_pix_loss"]
    assert model.pretrained_cfg["source"] == "mae_pretrain_vit_base_full"
    for name, t in weights.items():
        assert torch.equal(model.state_dict()[name], t)
    image = np.random.default_rng(2).integers(0, 256, (3, 64, 64)).astype(np.uint8)
    rec = reconstruct(model, image, 0.75, seed=0, precision="fp32")
    assert rec.norm_pix == "neighbours"
    raw = reconstruct(model, image, 0.75, seed=0, precision="fp32", norm_pix="none")
    # displayed honestly, the prediction has the image's brightness; raw, it sits near the
    # ImageNet-normalized zero, far from the image's mean in its units
    hidden = rec.pixel_mask
    err_honest = abs(float(np.nanmean(rec.pasted[:, hidden]) - image[:, hidden].mean()))
    err_raw = abs(float(np.nanmean(raw.pasted[:, hidden]) - image[:, hidden].mean()))
    assert err_honest < err_raw
