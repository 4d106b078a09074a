"""Tests of mae_nb.models.mae: equivalence with Hugging Face's ViTMAE, shapes, masks, errors.

Loading checkpoints is tested in tests/test_pretrained.py."""

from __future__ import annotations

import pytest
import torch

from mae_nb.models import mae as M
from mae_nb.models.mae import MaskedAutoencoderViT

SMALL = dict(
    img_size=32,
    patch_size=8,
    in_chans=3,
    embed_dim=64,
    depth=2,
    num_heads=4,
    decoder_embed_dim=32,
    decoder_depth=2,
    decoder_num_heads=4,
    mlp_ratio=4.0,
)


def small_model(seed: int = 0, **kw) -> MaskedAutoencoderViT:
    """A small MAE whose LayerNorms and biases are random too (so no weight is trivially 0 or 1)."""
    torch.manual_seed(seed)
    model = MaskedAutoencoderViT(**{**SMALL, **kw})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and (
                name.endswith("bias")
                or ".norm" in name
                or name.startswith(("norm", "decoder_norm"))
            ):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


# --------------------------------------------------------------------------- Hugging Face reference


def _hf_block(sd: dict, src: str, dst: str, out: dict) -> None:
    q, k, v = sd[f"{src}.attn.qkv.weight"].chunk(3, dim=0)
    qb, kb, vb = sd[f"{src}.attn.qkv.bias"].chunk(3, dim=0)
    out.update(
        {
            f"{dst}.attention.q_proj.weight": q,
            f"{dst}.attention.k_proj.weight": k,
            f"{dst}.attention.v_proj.weight": v,
            f"{dst}.attention.q_proj.bias": qb,
            f"{dst}.attention.k_proj.bias": kb,
            f"{dst}.attention.v_proj.bias": vb,
        }
    )
    for a, b in (
        ("attn.proj", "attention.o_proj"),
        ("norm1", "layernorm_before"),
        ("norm2", "layernorm_after"),
        ("mlp.fc1", "mlp.fc1"),
        ("mlp.fc2", "mlp.fc2"),
    ):
        for t in ("weight", "bias"):
            out[f"{dst}.{b}.{t}"] = sd[f"{src}.{a}.{t}"]


def to_hf_state_dict(model: MaskedAutoencoderViT) -> dict:
    """Our (Meta's) names -> transformers' ViTMAEForPreTraining names (transformers 5.x layout)."""
    sd = model.state_dict()
    out = {
        "vit.embeddings.cls_token": sd["cls_token"],
        "vit.embeddings.position_embeddings": sd["pos_embed"],
        "vit.embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "vit.embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        "vit.layernorm.weight": sd["norm.weight"],
        "vit.layernorm.bias": sd["norm.bias"],
        "decoder.mask_token": sd["mask_token"],
        "decoder.decoder_pos_embed": sd["decoder_pos_embed"],
    }
    for name in ("decoder_embed", "decoder_norm", "decoder_pred"):
        for t in ("weight", "bias"):
            out[f"decoder.{name}.{t}"] = sd[f"{name}.{t}"]
    for i in range(len(model.blocks)):
        _hf_block(sd, f"blocks.{i}", f"vit.layers.{i}", out)
    for i in range(len(model.decoder_blocks)):
        _hf_block(sd, f"decoder_blocks.{i}", f"decoder.decoder_layers.{i}", out)
    return out


def hf_model(
    model: MaskedAutoencoderViT, mask_ratio: float, attn_implementation: str | None = "eager"
):
    """transformers' ViTMAEForPreTraining with ``model``'s weights (also used by
    benchmarks/mae_speed.py, with ``attn_implementation=None``: transformers' default attention)."""
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    kw = model.pretrained_cfg["kwargs"]
    config = ViTMAEConfig(
        image_size=kw["img_size"][0],
        patch_size=kw["patch_size"],
        num_channels=kw["in_chans"],
        hidden_size=kw["embed_dim"],
        num_hidden_layers=kw["depth"],
        num_attention_heads=kw["num_heads"],
        intermediate_size=int(kw["embed_dim"] * kw["mlp_ratio"]),
        decoder_hidden_size=kw["decoder_embed_dim"],
        decoder_num_hidden_layers=kw["decoder_depth"],
        decoder_num_attention_heads=kw["decoder_num_heads"],
        decoder_intermediate_size=int(kw["decoder_embed_dim"] * kw["mlp_ratio"]),
        mask_ratio=mask_ratio,
        norm_pix_loss=kw["norm_pix_loss"],
        layer_norm_eps=1e-6,
        qkv_bias=True,
        hidden_act="gelu",
        **({"attn_implementation": attn_implementation} if attn_implementation else {}),
    )
    hf = ViTMAEForPreTraining(config).eval()
    hf.load_state_dict(to_hf_state_dict(model), strict=True)
    return hf


@pytest.mark.parametrize(
    "norm_pix_loss, mask_ratio, in_chans", [(False, 0.75, 3), (True, 0.5, 3), (False, 0.6, 5)]
)
def test_matches_huggingface_vitmae(norm_pix_loss, mask_ratio, in_chans):
    model = small_model(norm_pix_loss=norm_pix_loss, in_chans=in_chans)
    hf = hf_model(model, mask_ratio)
    torch.manual_seed(1)
    imgs = torch.randn(3, in_chans, 32, 32)
    noise = torch.rand(3, 16)
    with torch.no_grad():
        loss, pred, mask = model(imgs, mask_ratio=mask_ratio, noise=noise)
        ref = hf(pixel_values=imgs, noise=noise)
        _, _, ids_restore = model.forward_encoder(imgs, mask_ratio, noise)
    assert torch.equal(mask, ref.mask)
    assert torch.equal(ids_restore, ref.ids_restore)
    torch.testing.assert_close(pred, ref.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(loss, ref.loss, atol=1e-4, rtol=0)
    assert pred.abs().mean() > 0.1  # a real comparison, not of zeros


def test_sincos_layout_matches_huggingface_and_meta():
    from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

    for dim, (gh, gw) in ((64, (4, 4)), (32, (3, 5))):
        ref = build_2d_sinusoidal_position_embedding(gh, gw, dim, cls_token=True)
        ref = torch.cat(
            [ref[:, dim // 2 :], ref[:, : dim // 2]], dim=1
        )  # HF's rotation to Meta's layout
        torch.testing.assert_close(
            M.get_2d_sincos_pos_embed(dim, (gh, gw), cls_token=True), ref, atol=1e-6, rtol=0
        )
    # Meta's layout: first half of the channels encodes the column, second half the row
    pe = M.get_2d_sincos_pos_embed(8, (2, 3))
    assert pe.shape == (6, 8)
    assert torch.equal(pe[0, :4], pe[3, :4]) and not torch.equal(
        pe[0, 4:], pe[3, 4:]
    )  # same column, other row
    assert torch.equal(pe[0, 4:], pe[1, 4:]) and not torch.equal(
        pe[0, :4], pe[1, :4]
    )  # same row, other column


# --------------------------------------------------------------------------- the method's pieces


def test_patchify_layout_and_round_trip_non_square():
    model = small_model()
    imgs = torch.randn(2, 3, 24, 40)
    x = model.patchify(imgs)
    assert x.shape == (2, 3 * 5, 8 * 8 * 3)
    # patch (row 1, col 2) is the pixels imgs[:, :, 8:16, 16:24] in (p, q, c) order
    expected = imgs[:, :, 8:16, 16:24].permute(0, 2, 3, 1).reshape(2, -1)
    assert torch.equal(x[:, 1 * 5 + 2], expected)
    assert torch.equal(model.unpatchify(x, (3, 5)), imgs)
    assert torch.equal(
        model.unpatchify(model.patchify(torch.ones(1, 3, 32, 32))), torch.ones(1, 3, 32, 32)
    )
    with pytest.raises(ValueError, match="grid_hw"):
        model.unpatchify(x)  # 15 patches: neither the model's grid nor square


def test_mask_counts_noise_and_generator_reproducible():
    model = small_model()
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    with torch.no_grad():
        l1, p1, m1 = model(imgs, 0.75, noise)
        l2, p2, m2 = model(imgs, 0.75, noise)
        _, _, g1 = model(imgs, 0.75, generator=torch.Generator().manual_seed(3))
        _, _, g2 = model(imgs, 0.75, generator=torch.Generator().manual_seed(3))
    assert torch.equal(m1, m2) and torch.equal(p1, p2) and l1 == l2
    assert torch.equal(g1, g2)
    assert m1.shape == (2, 16) and m1.sum(1).tolist() == [12.0, 12.0]
    # the patches with the smallest noise stay visible
    assert torch.equal(m1[0] == 0, noise[0] <= noise[0].sort().values[3])
    latent, mask, ids_restore = model.forward_encoder(imgs, 0.75, noise)
    assert latent.shape == (2, 1 + 4, 64) and ids_restore.shape == (2, 16)
    assert torch.equal(torch.sort(ids_restore, 1).values, torch.arange(16).expand(2, 16))


def test_forward_features_is_the_unmasked_encoder_in_patch_order():
    model = small_model(depth=3)
    imgs = torch.randn(2, 3, 32, 32)

    def by_hand(last):  # what features.encoder_tokens computed before forward_features existed
        x = model.patch_embed(imgs) + model.pos_embed[:, 1:]
        x = torch.cat([(model.cls_token + model.pos_embed[:, :1]).expand(2, -1, -1), x], 1)
        for blk in model.blocks[: last + 1]:
            x = blk(x)
        return model.norm(x)

    with torch.no_grad():
        tokens = model.forward_features(imgs)
        latent, mask, _ = model.forward_encoder(imgs, 0.0, noise=torch.arange(16.0).expand(2, 16))
        assert tokens.shape == (2, 1 + 16, 64) and mask.sum() == 0
        torch.testing.assert_close(tokens, latent, atol=1e-6, rtol=0)
        for block, last in ((None, 2), (0, 0), (1, 1), (2, 2), (-1, 2), (-3, 0)):
            torch.testing.assert_close(model.forward_features(imgs, block), by_hand(last))
        assert not torch.allclose(by_hand(0), tokens)  # an earlier block gives other tokens
        other = model.forward_features(torch.randn(1, 3, 24, 40))  # another size: recomputed pos
    assert other.shape == (1, 1 + 15, 64)
    for bad in (3, -4, 1.5, True):
        with pytest.raises(ValueError, match=r"block must be an encoder block index in \[-3, 2\]"):
            model.forward_features(imgs, bad)


def test_loss_is_on_masked_patches_only():
    model = small_model()
    imgs = torch.randn(1, 3, 32, 32)
    noise = torch.rand(1, 16)
    with torch.no_grad():
        _, pred, mask = model(imgs, 0.5, noise)
        target = model.patchify(imgs)
        # changing the prediction of a visible patch does not change the loss
        changed = pred.clone()
        changed[mask == 0] += 5.0
        assert torch.isclose(
            model.forward_loss(imgs, changed, mask), model.forward_loss(imgs, pred, mask)
        )
        per_patch = ((pred - target) ** 2).mean(-1)
        assert torch.isclose(model.forward_loss(imgs, pred, mask), per_patch[mask == 1].mean())
        zero_loss, _, zero_mask = model(imgs, 0.0, noise)
    assert zero_mask.sum() == 0 and torch.isfinite(zero_loss)  # mask_ratio 0: mean over all patches


def test_other_image_size_uses_recomputed_sincos_exactly():
    model = small_model()  # built for 32 x 32
    other = MaskedAutoencoderViT(**{**SMALL, "img_size": (24, 40)}).eval()
    sd = {k: v for k, v in model.state_dict().items() if "pos_embed" not in k}
    other.load_state_dict(sd, strict=False)
    imgs = torch.randn(2, 3, 24, 40)
    noise = torch.rand(2, 15)
    with torch.no_grad():
        a = model(imgs, 0.6, noise)
        b = other(imgs, 0.6, noise)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)
    assert a[1].shape == (2, 15, 192)
    assert torch.equal(model.position_embeddings((4, 4)), model.pos_embed)


def test_position_embeddings_are_fixed():
    model = M.create_mae("mae_vit_tiny_patch8")
    assert not model.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
    loss, _, _ = model(torch.randn(2, 3, 64, 64))
    loss.backward()
    assert model.pos_embed.grad is None and model.cls_token.grad is not None


@pytest.mark.parametrize(
    "shape, ratio, message",
    [
        ((1, 4, 32, 32), 0.75, "in_chans=3 bands, the images have 4"),
        ((1, 3, 30, 32), 0.75, "multiples of patch_size=8.*crop to 24 x 32 or pad to 32 x 32"),
        ((1, 3, 4, 4), 0.75, "smaller than one patch"),
        ((3, 32, 32), 0.75, "add a batch dimension"),
        ((1, 3, 32, 32), 1.0, r"mask_ratio must be in \[0, 1\), got 1.0"),
        ((1, 3, 32, 32), -0.1, r"mask_ratio must be in \[0, 1\)"),
        ((1, 3, 32, 32), 0.95, "leaves no visible patch out of 16"),
    ],
)
def test_bad_inputs_raise_clear_errors(shape, ratio, message):
    model = small_model()
    with pytest.raises(ValueError, match=message):
        model(torch.randn(*shape), ratio)


def test_bad_noise_and_integer_images():
    model = small_model()
    with pytest.raises(ValueError, match="noise must have shape"):
        model(torch.randn(2, 3, 32, 32), 0.75, noise=torch.rand(2, 15))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="embed_dim=66 must be divisible by num_heads=4"):
        MaskedAutoencoderViT(**{**SMALL, "embed_dim": 66})


def test_presets_have_metas_shapes():
    with torch.device("meta"):
        base = M.mae_vit_base_patch16_dec512d8b()
        large = M.create_mae("mae_vit_large_patch16")
        huge = M.mae_vit_huge_patch14()
    assert base.pos_embed.shape == (1, 197, 768) and len(base.blocks) == 12
    assert (
        large.pos_embed.shape == (1, 197, 1024)
        and len(large.blocks) == 24
        and large.blocks[0].attn.num_heads == 16
    )
    assert huge.pos_embed.shape == (1, 257, 1280) and len(huge.blocks) == 32
    for m in (base, large, huge):
        assert m.decoder_pos_embed.shape[-1] == 512 and len(m.decoder_blocks) == 8
        assert m.decoder_pred.out_features == m.patch_size**2 * 3
    assert round(sum(p.numel() for p in large.parameters()) / 1e6, 1) == 329.5
    tiny = M.create_mae("mae_vit_tiny_patch8", in_chans=6, img_size=(64, 96))
    assert tiny.grid_size == (8, 12) and tiny.pretrained_cfg["arch"] == "mae_vit_tiny_patch8"
    with pytest.raises(ValueError, match="Did you mean 'mae_vit_base_patch16'"):
        M.create_mae("mae_vit_base_patch61")


def test_state_dict_names_are_metas():
    keys = set(M.create_mae("mae_vit_tiny_patch8").state_dict())
    for k in (
        "patch_embed.proj.weight",
        "cls_token",
        "pos_embed",
        "blocks.3.attn.qkv.weight",
        "blocks.0.norm1.bias",
        "blocks.0.mlp.fc2.weight",
        "norm.weight",
        "decoder_embed.weight",
        "mask_token",
        "decoder_pos_embed",
        "decoder_blocks.1.attn.proj.bias",
        "decoder_norm.bias",
        "decoder_pred.weight",
    ):
        assert k in keys, k
    assert not any("ls1" in k or "q_norm" in k for k in keys)
