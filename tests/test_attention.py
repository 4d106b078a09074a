"""Attention maps of a ViT-MAE's encoder (mae_nb.models.attention), their plot and their slider."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_mae

from mae_nb.errors import InputError, InputTypeError, MaeNbError
from mae_nb.models.attention import attention_maps
from mae_nb.models.mae import create_mae


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = create_mae(
        "mae_vit_tiny_patch8",
        img_size=32,
        embed_dim=48,
        depth=3,
        num_heads=3,
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=2,
    ).eval()
    with torch.no_grad():  # weights far from the initialization, so attention is not uniform
        for p in m.blocks.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return m


@pytest.fixture
def image():
    return torch.randn(3, 32, 48, generator=torch.Generator().manual_seed(1))  # 4 x 6 patches


def timm_weights(model, image, mask_ratio=0.0, noise=None):
    """Every encoder block's attention weights (heads, T, T) as timm's unfused path computes
    them: fused attention off, the softmax read where timm applies attention dropout."""
    seen = []
    hooks = []
    for blk in model.blocks:
        blk.attn.fused_attn = False
        hooks.append(blk.attn.attn_drop.register_forward_hook(lambda m, a, out: seen.append(out)))
    try:
        if noise is None:
            noise = torch.arange(image.shape[-2] * image.shape[-1] // 64, dtype=torch.float32)[None]
        with torch.no_grad():
            model.forward_encoder(image[None], mask_ratio, noise)
    finally:
        for blk, h in zip(model.blocks, hooks):
            blk.attn.fused_attn = True
            h.remove()
    return [w[0].numpy() for w in seen]


def test_maps_equal_timms_attention_weights_in_every_block(model, image):
    reference = timm_weights(model, image)
    for block, ref in enumerate(reference):
        att = attention_maps(model, image, block)
        assert att.maps.shape == (3, 4, 6) and att.heads == (0, 1, 2) and att.query == "cls"
        np.testing.assert_allclose(att.maps.reshape(3, -1), ref[:, 0, 1:], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(att.to_cls, ref[:, 0, 0], rtol=1e-4, atol=1e-5)
        # a patch query, by index and by (row, col): patch 9 is row 1, column 3; token 1 + 9
        by_index = attention_maps(model, image, block, query=9, heads=[2, 0])
        by_cell = attention_maps(model, image, block, query=(1, 3), heads=[2, 0])
        assert by_index.query == by_cell.query == (1, 3) and by_cell.heads == (2, 0)
        np.testing.assert_array_equal(by_index.maps, by_cell.maps)
        np.testing.assert_allclose(
            by_cell.maps.reshape(2, -1), ref[[2, 0], 10, 1:], rtol=1e-4, atol=1e-5
        )
    assert not np.allclose(reference[-1][0, 0, 1:], reference[-1][0, 0, 1:].mean(), atol=1e-3)


def test_rows_sum_to_one_and_the_weights_reproduce_the_fused_block(model, image):
    block = 1
    att = attention_maps(model, image, block, query=(2, 5))
    np.testing.assert_allclose(att.maps.sum(axis=(1, 2)) + att.to_cls, 1.0, atol=1e-5)
    assert (att.maps >= 0).all()
    # weights @ v, projected, is what the fused attention (scaled_dot_product_attention) returns
    blk = model.blocks[block]
    captured = {}
    hook = blk.register_forward_pre_hook(lambda m, a: captured.setdefault("x", a[0]))
    with torch.no_grad():
        model.forward_features(image[None])
        hook.remove()
        x = blk.norm1(captured["x"])
        fused = blk.attn(x)  # timm's fused path
        heads, dim = blk.attn.num_heads, blk.attn.head_dim
        v = blk.attn.qkv(x).reshape(1, x.shape[1], 3, heads, dim).permute(2, 0, 3, 1, 4)[2]
        q, k = torch.from_numpy(att.q), torch.from_numpy(att.k)
        weights = ((q * att.scale) @ k.transpose(-2, -1)).softmax(-1)  # from the returned q, k
        out = blk.attn.proj((weights[None] @ v).transpose(1, 2).reshape(1, x.shape[1], -1))
    torch.testing.assert_close(out, fused, rtol=1e-4, atol=1e-5)
    row = weights[:, att.query_token].numpy()
    np.testing.assert_allclose(row[:, 1:], att.maps.reshape(3, -1), rtol=1e-4, atol=1e-5)


def test_masked_encoder_only_visible_patches_are_tokens(model, image):
    att = attention_maps(model, image, 2, mask_ratio=0.5, seed=3)
    noise = torch.rand(1, 24, generator=torch.Generator().manual_seed(3))
    ref = timm_weights(model, image, 0.5, noise)[2]
    assert att.mask.sum() == 12 and att.token_patches[0] == -1 and len(att.token_patches) == 13
    np.testing.assert_array_equal(np.isnan(att.maps[0]), att.mask)
    flat = att.maps.reshape(3, -1)
    np.testing.assert_allclose(flat[:, att.token_patches[1:]], ref[:, 0, 1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.nansum(att.maps, axis=(1, 2)) + att.to_cls, 1.0, atol=1e-5)
    visible = int(att.token_patches[4])
    patch = attention_maps(model, image, 2, query=visible, mask_ratio=0.5, seed=3)
    assert patch.query_token == 4
    np.testing.assert_allclose(
        patch.maps.reshape(3, -1)[:, att.token_patches[1:]], ref[:, 4, 1:], rtol=1e-4, atol=1e-5
    )
    hidden = int(np.flatnonzero(att.mask.ravel())[0])
    with pytest.raises(InputError, match="hidden by the mask"):
        attention_maps(model, image, 2, query=hidden, mask_ratio=0.5, seed=3)


def test_meta_checkpoint_loaded_by_load_mae(tmp_path):
    from mae_nb.pretrained import load_mae

    torch.manual_seed(0)
    meta = create_mae("mae_vit_tiny_patch16").eval()  # 224 px, patches of 16, as Meta's
    torch.save({"model": meta.state_dict()}, tmp_path / "meta.pth")
    loaded = load_mae(tmp_path / "meta.pth")
    x = torch.randn(1, 3, 224, 224)
    att = attention_maps(loaded, x, -1, query=(7, 7))
    assert att.maps.shape == (3, 14, 14) and att.block == 3 and att.patch_size == 16
    np.testing.assert_allclose(att.maps, attention_maps(meta, x, 3, query=(7, 7)).maps, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(block=3), InputError, r"block must be in \[0, 2\]"),
        (dict(block=-4), InputError, "the encoder has 3 blocks"),
        (dict(block=1, heads=3), InputError, r"head must be in \[0, 2\].*block 1 has 3 heads"),
        (dict(block=0, heads=[0, -4]), InputError, r"head must be in \[0, 2\]"),
        (dict(block=0, heads=[]), InputError, "at least one head"),
        (dict(block=0, query=24), InputError, r"outside the 4 x 6 patch grid.*\[0, 23\]"),
        (dict(block=0, query=(4, 0)), InputError, r"row must be in \[0, 3\]"),
        (dict(block=0, query=(0, 6)), InputError, r"col in \[0, 5\]"),
        (dict(block=0, query="patch"), InputError, "query must be 'cls'"),
        (dict(block=1.5), InputTypeError, "block must be an integer"),
    ],
)
def test_bad_requests_say_the_valid_range(model, image, kwargs, error, words):
    with pytest.raises(error, match=words):
        attention_maps(model, image, **kwargs)


def test_a_model_that_is_not_a_vit_mae_is_refused(image):
    from mae_nb.models.autoencoders import ConvAutoencoder

    with pytest.raises(MaeNbError, match="need a ViT-MAE.*got ConvAutoencoder"):
        attention_maps(ConvAutoencoder(3), image, 0)
    with pytest.raises(MaeNbError, match="need a ViT-MAE.*got Sequential"):
        attention_maps(torch.nn.Sequential(), image, 0)


def test_plot_draws_one_panel_per_head_over_the_picture(model, image):
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from mae_nb import viz

    picture = np.random.default_rng(0).random((32, 48, 3))
    att = attention_maps(model, image, 0, query=(1, 2))
    fig = viz.plot_attention_maps(att, picture)
    assert isinstance(fig, Figure) and len(fig.axes) == 1 + 3
    assert [ax.get_title() for ax in fig.axes][1].startswith("head 0:")
    assert "patch (row 1, column 2)" in fig.axes[0].get_title()
    marks = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(marks) == 1 and marks[0].get_xy() == (16, 8)  # the query patch, in pixels
    one = viz.plot_attention_maps(attention_maps(model, image, 0, heads=1))  # no picture
    assert len(one.axes) == 1 and not one.axes[0].patches  # class token: nothing to mark
    with pytest.raises(InputError, match="model's input size"):
        viz.plot_attention_maps(att, picture[:16])


def test_the_slider_redraws_what_a_cell_computes(model, image):
    from mae_nb.widgets import attention_explorer

    picture = np.random.default_rng(0).random((32, 48, 3))
    box = attention_explorer(model, image, picture=picture, block=0)
    c = box.controls
    assert (c["block"].max, c["row"].max, c["col"].max) == (2, 3, 5)
    assert list(c["head"].options) == ["all", 0, 1, 2]
    assert not c["block"].continuous_update and not c["row"].continuous_update
    assert bytes(c["picture"].value[:3]) == b"\xff\xd8\xff" and box.result.heads == (0, 1, 2)
    first = bytes(c["picture"].value)
    c["block"].value = 2
    c["head"].value = 1
    c["query"].value = "patch"
    c["row"].value, c["col"].value = 3, 4
    direct = attention_maps(model, image, 2, heads=1, query=(3, 4))
    assert box.result.block == 2 and box.result.heads == (1,) and box.result.query == (3, 4)
    np.testing.assert_array_equal(box.result.maps, direct.maps)
    assert "patch (row 3, column 4)" in c["score"].value and "head 1:" in c["score"].value
    assert bytes(c["picture"].value) != first
    with pytest.raises(InputError, match="block must be in"):
        attention_explorer(model, image, block=5)


def test_tiny_helper_model_works_too():
    model = tiny_mae()
    att = attention_maps(model, np.zeros((3, 32, 32), np.float32), 0)
    assert att.maps.shape == (2, 4, 4)
    np.testing.assert_allclose(att.maps.sum(axis=(1, 2)) + att.to_cls, 1.0, atol=1e-5)


def test_mean_attention_distance_weighs_distances_by_attention(model, image):
    from mae_nb.models.attention import mean_attention_distance

    per_head, uniform = mean_attention_distance(model, image, 1)
    rows, cols = np.mgrid[0:4, 0:6]
    expected, flat = [], []
    for r in range(4):
        for c in range(6):
            att = attention_maps(model, image, 1, query=(r, c))
            share = att.maps / att.maps.sum(axis=(1, 2), keepdims=True)  # without the class token
            d = np.hypot(rows - r, cols - c)
            expected.append((share * d).sum(axis=(1, 2)))
            flat.append(d.mean())
    np.testing.assert_allclose(per_head, np.mean(expected, axis=0), rtol=1e-5)
    assert uniform == pytest.approx(np.mean(flat)) and per_head.shape == (3,)
    with torch.no_grad():  # q = k = 0: every score equal, attention uniform
        model.blocks[1].attn.qkv.weight.zero_()
        model.blocks[1].attn.qkv.bias.zero_()
    np.testing.assert_allclose(mean_attention_distance(model, image, 1)[0], uniform, rtol=1e-5)
    masked, masked_uniform = mean_attention_distance(model, image, 1, mask_ratio=0.5, seed=3)
    assert masked_uniform != pytest.approx(uniform)  # only the visible patches count
    np.testing.assert_allclose(masked, masked_uniform, rtol=1e-5)
    with pytest.raises(InputError, match=r"block must be in \[0, 2\]"):
        mean_attention_distance(model, image, 7)
