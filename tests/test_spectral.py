"""mae_nb.models.spectral and mae_nb.models.baselines: shapes, equivalences, masking, losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mae_nb.data import hsi
from mae_nb.models import spectral as S
from mae_nb.models.baselines import CNN3D, MODEL_KINDS, ViTClassifier, build_classifier

TINY = dict(
    in_chans=20,
    image_size=5,
    band_block_size=8,
    embed_dim=16,
    depth=2,
    num_heads=2,
    decoder_dim=8,
    decoder_depth=1,
    decoder_num_heads=2,
)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return S.SpectralTransformer(**TINY, num_classes=3)


def imgs(n=2, b=20, p=5, seed=0):
    return torch.randn(n, b, p, p, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- shapes


def test_shapes(model):
    x = imgs(3)
    # 20 bands in blocks of 8 -> 3 blocks (the last padded with 4 zero bands); 5 x 5 positions
    assert (model.num_groups, model.num_spatial, model.patch_embed.pad_bands) == (3, 25, 4)
    assert model.forward_features(x).shape == (3, 3, 25, 16)
    assert model(x).shape == (3, 3)
    out = model.forward_pretrain(x)
    assert out["pred"].shape == (3, 3, 25, 8) and out["mask"].shape == (3, 75)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert model.patchify(x).shape == (3, 3, 25, 8)


def test_config_rebuilds_the_model(model):
    twin = S.SpectralTransformer(**model.config)
    twin.load_state_dict(model.state_dict())  # strict: same parameters
    torch.testing.assert_close(twin(imgs()), model(imgs()))


def test_bad_inputs_speak_to_the_user(model):
    with pytest.raises(ValueError, match=r"expected patches of shape \(N, 20, 5, 5\)"):
        model(torch.zeros(2, 19, 5, 5))
    with pytest.raises(ValueError, match="odd"):
        S.SpectralTransformer(20, image_size=6)
    with pytest.raises(ValueError, match="larger than the 20 bands"):
        S.SpectralTransformer(20, band_block_size=32)
    with pytest.raises(ValueError, match="multiple of 4"):
        S.SpectralTransformer(20, embed_dim=30, num_heads=3)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\), got 1.2"):
        model.forward_pretrain(imgs(), mask_ratio=1.2)
    with pytest.raises(ValueError, match="no classification head"):
        S.SpectralTransformer(**TINY)(imgs())


# --------------------------------------------------------------------------- blockwise embedding


def test_padding_round_trip_and_valid_values(model):
    x = imgs()
    torch.testing.assert_close(model.unpatchify(model.patchify(x)), x)
    valid = model.token_valid  # (G, P): the last block holds 4 real bands of 8
    assert valid.shape == (3, 8) and valid[:2].all() and valid[2].sum() == 4
    assert (model.patchify(x)[:, 2, :, 4:] == 0).all()  # padded bands are zeros


def test_each_band_block_has_its_own_linear_embedding(model):
    pe = model.patch_embed
    x = imgs()
    tokens = model.patchify(x)  # (N, G, S, P)
    for g in range(3):
        expected = F.layer_norm(
            tokens[:, g] @ pe.weight[g] + pe.bias[g], (16,), pe.norm.weight, pe.norm.bias
        )
        torch.testing.assert_close(pe(x)[:, g], expected)
    # changing the bands of block 1 changes only block 1's tokens
    y = x.clone()
    y[:, 8:16] += 1.0
    diff = (pe(y) - pe(x)).abs().amax(dim=(0, 2, 3))
    assert diff[1] > 0 and diff[0] == 0 and diff[2] == 0


def test_shared_embedding_ablation_uses_one_map():
    m = S.SpectralTransformer(**dict(TINY, band_block_size=10), blockwise_embed=False)
    assert m.patch_embed.weight.shape == (1, 10, 16)
    x = imgs()
    x[:, 10:] = x[:, :10]  # two identical band blocks embed identically
    e = m.patch_embed(x)
    torch.testing.assert_close(e[:, 0], e[:, 1])
    blockwise = S.SpectralTransformer(**dict(TINY, band_block_size=10))
    e = blockwise.patch_embed(x)
    assert not torch.allclose(e[:, 0], e[:, 1])


def test_spatial_patches_larger_than_one_pixel():
    m = S.SpectralTransformer(
        **dict(TINY, image_size=6, spatial_patch_size=2, band_block_size=4, embed_dim=16),
        num_classes=2,
    )
    # image 6 / patch 2 = 3 x 3 grid (odd, centre token), 20 / 4 = 5 blocks, P = 4 * 2 * 2
    assert (m.num_groups, m.num_spatial, m.patch_embed.token_dim) == (5, 9, 16)
    x = imgs(p=6)
    torch.testing.assert_close(m.unpatchify(m.patchify(x)), x)
    assert m(x).shape == (2, 2)


# --------------------------------------------------------------------------- attention


def _reference_attention(attn, x):
    """Attention over the rows of x (L, D), one head at a time, softmax written out."""
    h, hd = attn.num_heads, attn.head_dim
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv[:, : h * hd], qkv[:, h * hd : 2 * h * hd], qkv[:, 2 * h * hd :]
    heads = []
    for i in range(h):
        sl = slice(i * hd, (i + 1) * hd)
        scores = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
        weights = torch.exp(scores - scores.max(1, keepdim=True).values)
        heads.append((weights / weights.sum(1, keepdim=True)) @ v[:, sl])
    return torch.cat(heads, 1) @ attn.proj.weight.T + attn.proj.bias


def test_factorized_attention_equals_a_straightforward_computation():
    torch.manual_seed(1)
    block = S.FactorizedBlock(8, 2, mlp_ratio=2.0, factorized=True)
    x = torch.randn(2, 3, 5, 8)  # (N, G, S, D)
    expected = x.clone()
    n_, g_, s_, _ = x.shape
    # spatial attention: for each sample and spectral index, over the S tokens
    h = block.norm1(x)
    for n in range(n_):
        for g in range(g_):
            expected[n, g] = x[n, g] + _reference_attention(block.attn, h[n, g])
    # spectral attention: for each sample and spatial position, over the G tokens
    after_spatial = expected.clone()
    h = block.norm_spectral(after_spatial)
    for n in range(n_):
        for s in range(s_):
            expected[n, :, s] = after_spatial[n, :, s] + _reference_attention(
                block.attn_spectral, h[n, :, s]
            )
    expected = expected + block.mlp(block.norm2(expected))
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)


def test_joint_attention_ablation_attends_over_all_tokens():
    torch.manual_seed(2)
    block = S.FactorizedBlock(8, 2, factorized=False)
    assert not hasattr(block, "attn_spectral")
    x = torch.randn(2, 3, 4, 8)
    expected = torch.stack(
        [
            x[n].reshape(12, 8) + _reference_attention(block.attn, block.norm1(x[n]).reshape(12, 8))
            for n in range(2)
        ]
    ).reshape(2, 3, 4, 8)
    expected = expected + block.mlp(block.norm2(expected))
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)


def test_factorized_tokens_only_mix_along_rows_and_columns():
    """One spatial + one spectral step: token (g, s) depends on (g', s') only via shared g or s
    in the first step, so a single block already mixes everything; but an attention-only
    spatial step must not mix different spectral indices."""
    torch.manual_seed(3)
    block = S.FactorizedBlock(8, 2)
    x = torch.randn(1, 3, 4, 8)
    y = x.clone()
    y[0, 0, 0] += 1.0  # perturb token (g=0, s=0)
    spatial = lambda t: t + block.attn(block.norm1(t))  # noqa: E731
    d = (spatial(y) - spatial(x)).abs().amax(-1)[0]  # (G, S)
    assert (d[0] > 0).all() and (d[1:] == 0).all()


def test_positional_embeddings_carry_spatial_and_spectral_position():
    pe = S.spectral_spatial_pos_embed(48, 4, (3, 3))
    assert pe.shape == (4, 9, 48)
    spatial_dim = (48 - 48 // 3) // 4 * 4
    # the spatial part is the same for every spectral block, the spectral part for every position
    assert torch.equal(pe[0, :, :spatial_dim], pe[3, :, :spatial_dim])
    assert torch.equal(pe[:, 0, spatial_dim:], pe[:, 8, spatial_dim:])
    assert not torch.equal(pe[0, :, spatial_dim:], pe[1, :, spatial_dim:])
    no_spec = S.spectral_spatial_pos_embed(48, 4, (3, 3), spectral=False)
    assert torch.equal(no_spec[0], no_spec[3])


def _visible_encoder_reference(model, x, mask):
    """The encoder on visible tokens only, written out: every row's visible tokens attend to
    each other, one sample and one row at a time; masked places get the mask token."""
    n_, g_, s_ = x.shape[0], model.num_groups, model.num_spatial
    visible = ~mask.reshape(n_, g_, s_).bool()
    tokens = model.patch_embed(x) + model.pos_embed
    out = model.mask_token.expand(n_, g_, s_, -1).clone()
    for n in range(n_):
        t = {(g, s): tokens[n, g, s] for g in range(g_) for s in range(s_) if visible[n, g, s]}
        for block in model.blocks:
            steps = (
                [(block.norm1, block.attn, 0), (block.norm_spectral, block.attn_spectral, 1)]
                if block.factorized
                else [(block.norm1, block.attn, None)]
            )
            for norm, attn, axis in steps:
                rows: dict = {}
                for key in t:
                    rows.setdefault(None if axis is None else key[axis], []).append(key)
                new = dict(t)
                for keys in rows.values():
                    y = _reference_attention(attn, norm(torch.stack([t[k] for k in keys])))
                    new.update({k: t[k] + yk for k, yk in zip(keys, y)})
                t = new
            t = {k: v + block.mlp(block.norm2(v)) for k, v in t.items()}
        for (g, s), v in t.items():
            out[n, g, s] = model.norm(v)
    return out


@pytest.mark.parametrize("factorized", [True, False])
def test_visible_only_encoder_equals_attention_among_visible_tokens(factorized):
    torch.manual_seed(4)
    model = S.SpectralTransformer(**TINY, factorized_attention=factorized)
    x = imgs(3)
    mask = model.random_mask(3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_visible(x, mask),
            _visible_encoder_reference(model, x, mask),
            rtol=1e-4,
            atol=1e-5,
        )


def test_visible_only_encoder_survives_rows_without_visible_tokens():
    # at 95 % masking most spectral rows (3 tokens) and some spatial ones have no visible token
    torch.manual_seed(5)
    model = S.SpectralTransformer(**TINY)
    x = imgs(4)
    out = model.forward_pretrain(x, mask_ratio=0.95, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    with pytest.raises(
        ValueError, match="leaves no visible patch out of 75"
    ):  # nothing left to encode
        model.forward_pretrain(x, mask_ratio=0.99)
    with pytest.raises(ValueError, match="hides every token"):
        model.forward_pretrain(x, mask=torch.ones(4, 75))
    with pytest.raises(ValueError, match=r"token mask of shape \(4, 75\)"):
        model.forward_pretrain(x, mask=torch.zeros(4, 74))


def test_pretraining_drops_masked_tokens_by_default_and_old_configs_keep_them():
    model = S.SpectralTransformer(**TINY)
    assert model.drop_masked and model.config["drop_masked"]
    x, mask = imgs(), model.random_mask(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        dropped = model.forward_pretrain(x, mask=mask)["pred"]
        torch.testing.assert_close(dropped, model.forward_decoder(model.forward_visible(x, mask)))
    old = S.SpectralTransformer.from_config(
        {k: v for k, v in model.config.items() if k != "drop_masked"}
    )
    assert (
        not old.drop_masked
    )  # checkpoints from before the switch pretrained with mask tokens in the encoder
    old.load_state_dict(model.state_dict())
    with torch.no_grad():
        kept = old.forward_pretrain(x, mask=mask)["pred"]
        torch.testing.assert_close(kept, old.forward_decoder(old.forward_features(x, mask)))
    assert not torch.allclose(kept, dropped)


# --------------------------------------------------------------------------- masking and loss


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.7, 0.9])
def test_masking_ratio(model, ratio):
    mask = model.random_mask(4, ratio, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (4, 75)
    assert (mask.sum(1) == 75 - int(75 * (1 - ratio))).all()  # MAE keeps int(L * (1 - r))
    assert not torch.equal(mask[0], mask[1]) or ratio == 0.0


def test_default_mask_ratio_is_70_percent():
    m = S.SpectralTransformer(**TINY)
    assert m.mask_ratio == 0.7
    out = m.forward_pretrain(imgs(), generator=torch.Generator().manual_seed(0))
    assert out["mask"].sum(1).tolist() == [75 - int(75 * 0.3)] * 2


def test_masked_tokens_are_replaced_by_the_mask_token(model):
    x = imgs()
    mask = model.random_mask(2, 0.5, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    m = mask.reshape(2, 3, 25).bool()
    # change the input values under masked tokens only: the encoder output must not change
    noise = torch.randn_like(model.patchify(x)) * m[..., None]
    y = model.unpatchify(model.patchify(x) + noise)
    torch.testing.assert_close(model.forward_features(x, mask), model.forward_features(y, mask))
    torch.testing.assert_close(model.forward_visible(x, mask), model.forward_visible(y, mask))


def test_loss_counts_masked_tokens_only(model):
    x = imgs()
    mask = model.random_mask(2, 0.6, generator=torch.Generator().manual_seed(0))
    pred = torch.randn(2, 3, 25, 8, requires_grad=True)
    loss = model.forward_loss(x, pred, mask)
    loss.backward()
    m = mask.reshape(2, 3, 25).bool()
    assert (pred.grad[~m] == 0).all()
    assert (pred.grad[m][:, :4] != 0).all()
    # padded band values of the last block never count
    assert (pred.grad[:, 2, :, 4:] == 0).all()
    # the value: MSE over real values of masked tokens
    target = model.patchify(x)
    per_token = ((pred - target) ** 2 * model.token_valid[None, :, None]).sum(
        -1
    ) / model.token_valid.sum(-1)[None, :, None]
    torch.testing.assert_close(loss, per_token[m].mean())


def test_pretrain_loss_and_fit_learn(model):
    from mae_nb.train import fit

    data = hsi.PatchDataset(
        np.random.default_rng(0).standard_normal((8, 8, 20)).astype(np.float32), patch_size=5
    )
    out = S.pretrain_loss(model, next(iter(torch.utils.data.DataLoader(data, batch_size=4))))
    assert set(out) == {"loss"} and out["loss"].requires_grad
    history = fit(
        model, data, S.pretrain_loss, epochs=4, batch_size=64, lr=3e-3, progress=False, device="cpu"
    )
    assert history.train["loss"][-1] < history.train["loss"][0]


def test_classification_loss_ignores_unlabelled(model):
    x = imgs(4)
    targets = torch.tensor([0, 2, -1, 1])
    out = S.classification_loss(model, (x, targets))
    logits = model(x)
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits[[0, 1, 3]], targets[[0, 1, 3]]))
    assert 0.0 <= float(out["acc"]) <= 1.0
    with pytest.raises(ValueError, match="without labelled pixels"):
        S.classification_loss(model, (x, torch.full((4,), -1)))


def test_reconstruct(model):
    x = imgs(2)
    rec = S.reconstruct_spectra(model, x, mask_ratio=0.5, seed=1)
    assert rec.original.shape == rec.predicted.shape == rec.masked.shape == (2, 20, 5, 5)
    # a masked token covers 8 (or, in the padded block, 4) band values of one pixel
    assert abs(rec.masked.mean() - 0.5) < 0.1
    np.testing.assert_array_equal(rec.filled[~rec.masked], rec.original[~rec.masked])
    spectra = rec.centre_spectra(1)
    assert spectra["true"].shape == spectra["predicted"].shape == spectra["masked"].shape == (20,)
    again = S.reconstruct_spectra(model, x, mask_ratio=0.5, seed=1)
    np.testing.assert_array_equal(again.masked, rec.masked)


# --------------------------------------------------------------------------- baselines


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_classifier_kind(kind):
    torch.manual_seed(0)
    kwargs = {} if kind == "cnn3d" else dict(embed_dim=16, depth=1, num_heads=2)
    if kind.startswith("sst"):
        kwargs["band_block_size"] = 8
    m = build_classifier(kind, 20, 4, image_size=7, **kwargs)
    x = imgs(3, 20, 7)
    logits = m(x)
    assert logits.shape == (3, 4)
    S.classification_loss(m, (x, torch.tensor([0, 1, 3])))["loss"].backward()
    if kind == "sst-shared-embed":
        assert m.patch_embed.weight.shape[0] == 1
    if kind == "sst-joint-attention":
        assert not hasattr(m.blocks[0], "attn_spectral")
    with pytest.raises(ValueError, match="expected patches"):
        m(imgs(1, 19, 7))


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown model kind 'resnet'"):
        build_classifier("resnet", 20, 4)


def test_vit_classifier_uses_the_centre_pixel_token():
    torch.manual_seed(0)
    m = ViTClassifier(6, 3, image_size=3, embed_dim=8, depth=1, num_heads=2)
    assert m.pos_embed.shape == (1, 9, 8)
    assert m(torch.randn(2, 6, 3, 3)).shape == (2, 3)


def test_cnn3d_follows_li_et_al():
    m = CNN3D(30, 5, image_size=5, n_planes=16)
    assert m.conv1.kernel_size == (7, 3, 3) and m.conv1.out_channels == 16
    assert m.conv2.kernel_size == (3, 3, 3) and m.conv2.out_channels == 32
    assert m.features == 32 * 26 * 1 * 1
    assert m(torch.randn(2, 30, 5, 5)).shape == (2, 5)
    with pytest.raises(ValueError, match="at least 5 x 5"):
        CNN3D(30, 5, image_size=3)


def test_masked_errors_and_the_neighbour_mean_baseline(model):
    x = imgs(3)
    mask = model.random_mask(3, 0.5, generator=torch.Generator().manual_seed(0))
    fill = S.neighbour_mean_fill(model, x, mask)
    tokens = model.patchify(x)
    vis = mask.reshape(3, 3, 25) == 0
    # each block's fill is the mean of that block's visible tokens in the patch
    torch.testing.assert_close(fill[1, 2, 0], tokens[1, 2][vis[1, 2]].mean(0))
    errs = S.masked_errors(model, x, 0.5, seed=0)
    assert set(errs) == {"model", "visible_mean", "zero"}
    zero = model.forward_loss(
        x,
        torch.zeros_like(tokens),
        model.random_mask(3, 0.5, generator=torch.Generator().manual_seed(0)),
    )
    assert errs["zero"] == pytest.approx(float(zero), rel=1e-5)
