"""mae_nb.studies.autoencoders: baselines, scores, tables, verdicts and latent measures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_nb import stats
from mae_nb.data.tiling import BandScaler, SourceUnits
from mae_nb.models import autoencoders as ae
from mae_nb.studies import autoencoders as study
from mae_nb.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")

#: scaled tiles are the source's units here (a scaler from [0, 1] to [0, 1]), data range 1
U = SourceUnits(BandScaler(np.zeros(1), np.ones(1)), 1.0)


def tiles(n=4, c=6, size=16, seed=0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def small_conv(c=6) -> ae.ConvAutoencoder:
    return ae.ConvAutoencoder(c, latent_channels=4, widths=(8, 16))


# ------------------------------------------------------------------- baselines, scores, tables


def test_conv_autoencoder_learns_and_beats_tile_mean():
    # smooth tiles with structure inside each tile: the tile mean cannot describe them
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(32, 3, 1, 1, generator=g), torch.rand(32, 3, 1, 1, generator=g)
    data = (0.5 + 0.4 * torch.sin(3 * (a * yy + b * xx))).float()
    torch.manual_seed(0)
    model = ae.ConvAutoencoder(3, latent_channels=4, widths=(16,))
    history = fit(
        model,
        data,
        ae.autoencoder_loss,
        epochs=40,
        lr=3e-3,
        batch_size=8,
        progress=False,
        device="cpu",
    )
    assert history.train["loss"][-1] < history.train["loss"][0] / 10
    ours = study.evaluate_reconstruction(ae.reconstruct_tiles(model, data), data, units=U)
    mean = study.evaluate_reconstruction(study.tile_mean_baseline(data), data, units=U)
    assert ours["psnr"] > mean["psnr"] + 3, (ours, mean)


def test_tile_mean_baseline_uses_valid_pixels():
    x = torch.ones(1, 2, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    x[0, 1, 1, 1] = 5.0
    base = study.tile_mean_baseline(x)
    assert torch.allclose(base[0, 0], torch.ones(4, 4))
    assert base[0, 1, 0, 0] == pytest.approx((14 + 5) / 15)  # pixel (0, 0) is invalid in every band


def test_evaluate_reconstruction_perfect_and_masked():
    x = tiles(2, 3, 16)
    perfect = study.evaluate_reconstruction(x, x, units=U)
    assert perfect["mse"] == 0 and perfect["ssim"] == pytest.approx(1.0)
    y = x.clone()
    y[:, :, :8] = 0  # wrong only in the top half
    pm = torch.zeros(2, 16, 16, dtype=torch.bool)
    pm[:, 8:] = True
    assert study.evaluate_reconstruction(y, x, pm, units=U)["mse"] == 0


def test_adversarial_training_moves_codes_towards_prior():
    g = torch.Generator().manual_seed(1)
    data = 0.5 + 0.3 * torch.rand(128, 2, 1, 1, generator=g) * torch.ones(128, 2, 8, 8)
    distance = {}
    for adversarial in (
        True,
        False,
    ):  # the same network and steps, with and without the discriminator
        torch.manual_seed(0)
        model = ae.AdversarialAutoencoder(
            2, 8, latent_dim=2, widths=(8,), prior="gaussian", disc_hidden=(32, 32)
        )
        how = (
            dict(
                train_step=ae.adversarial_train_step,
                optimizer=model.optimizers(lr=1e-3, adversarial_lr=1e-3),
            )
            if adversarial
            else dict(loss_fn=ae.autoencoder_loss)
        )
        fit(model, data, epochs=40, batch_size=32, progress=False, device="cpu", **how)
        distance[adversarial] = study.prior_distance(ae.encode_tiles(model, data), model.prior)
    assert distance[True] < 0.75 * distance[False], distance


def test_latent_projection_and_knn():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    z = rng.normal(size=(100, 6)) + 4 * y[:, None]
    p = study.latent_projection(z)
    assert p.shape == (100, 2)
    assert abs(np.corrcoef(p[:, 0], y)[0, 1]) > 0.9
    assert study.latent_knn_accuracy(z[::2], y[::2], z[1::2], y[1::2]) == 1.0
    with pytest.raises(ValueError, match="at least 2 codes"):
        study.latent_projection(z[:1])


def test_visible_mean_baseline_and_hidden_curves():
    x = tiles(3, 2, 16)
    model = small_conv(2)
    res = ae.masked_reconstruction(model, x, 0.5, patch_size=4, seed=0, units=U)
    fill = study.visible_mean_baseline(res)
    visible = ~res.pixel_mask[1]
    assert torch.allclose(fill[1, :, 0, 0], torch.stack([band[visible].mean() for band in x[1]]))
    curves = study.hidden_psnr_curves({"a": model}, x, [0.25, 0.5], patch_size=4, seed=0, units=U)
    assert set(curves) == {"a", "visible-mean fill"} and len(curves["a"]) == 2
    assert curves["a"][1] == pytest.approx(res.psnr_hidden)


def test_compare_autoencoders_rows():
    x = tiles(3, 2, 16)
    rows = study.compare_autoencoders(
        {"conv": small_conv(2)}, x, mask_ratio=0.5, patch_size=4, units=U
    )
    assert [r["model"] for r in rows] == ["tile mean", "conv"]
    assert rows[0]["numbers per tile"] == 2 and rows[1]["numbers per tile"] == 4 * 4 * 4
    assert set(rows[1]) == {
        "model",
        "numbers per tile",
        "PSNR (dB)",
        "SSIM",
        "PSNR hidden @ 50% (dB)",
    }
    assert rows[0]["PSNR (dB)"] == pytest.approx(
        study.evaluate_reconstruction(study.tile_mean_baseline(x), x, units=U)["psnr"]
    )
    table = stats.markdown_table(rows)
    assert (
        table.splitlines()[0].startswith("| model | numbers per tile |")
        and len(table.splitlines()) == 4
    )


def test_score_reconstructions_perfect_row():
    x = tiles(2, 2, 16)
    rows = study.score_reconstructions(
        x, {"copy": x, "zeros": torch.zeros_like(x)}, {"copy": 1}, units=U
    )
    assert (
        rows[0]["MSE"] == 0
        and rows[0]["numbers per tile"] == 1
        and rows[1]["numbers per tile"] == ""
    )
    assert rows[1]["PSNR (dB)"] < rows[0]["PSNR (dB)"]


def test_prior_distance_is_small_for_samples_of_the_prior():
    mix = ae.GaussianMixturePrior(4, n_components=6, radius=3.0, std=0.1)
    z = mix.sample(6000, torch.Generator().manual_seed(0))
    assert study.prior_distance(z.numpy(), mix) < 0.05
    assert study.prior_distance(z.numpy() + 1.0, mix) > 0.9
    with pytest.raises(ValueError, match=r"codes of shape \(N, 4\)"):
        study.prior_distance(z.numpy()[:, :3], mix)


# --------------------------------------------------------------------------- verdicts


def test_group_psnr_pools_the_pixels_of_each_group():
    x = tiles(4, 2, 8) / 2
    y = x.clone()
    y[1] += 0.1  # tile 1 off by 0.1 everywhere (and still in [0, 1]): 20 dB
    y[2:] += 0.05
    x[3] = float("nan")  # tile 3 has no pixel to score
    per_tile = study.group_psnr(y, x, units=U)
    assert per_tile[1] == pytest.approx(20.0, abs=1e-3) and np.isnan(per_tile[3])
    assert per_tile[0] > 100  # a perfect tile: as high as metrics.psnr goes
    # groups pool their tiles' pixels, as evaluate_reconstruction pools all tiles
    pooled = study.group_psnr(
        y, x, groups=[7, 7, 3, 3], units=U
    )  # sorted keys: group 3, then group 7
    assert pooled[1] == pytest.approx(
        study.evaluate_reconstruction(y[:2], x[:2], ssim=False, units=U)["psnr"]
    )
    assert pooled[0] == pytest.approx(per_tile[2])  # tile 3 has no valid pixel to add
    hidden = torch.zeros(4, 8, 8, dtype=torch.bool)
    hidden[1, :4] = True
    assert np.isnan(study.group_psnr(y, x, pixel_mask=hidden, units=U)[0])
    with pytest.raises(ValueError, match="one key per tile"):
        study.group_psnr(y, x, groups=[0, 1], units=U)


def test_psnr_difference_is_paired_over_groups():
    x = tiles(8, 2, 8) / 2 + 0.25  # in [0.25, 0.75]: offsets below 0.25 are not clipped
    offset = torch.linspace(0.01, 0.02, 8)[:, None, None, None]  # a different error per tile
    better, worse = x + offset, x + 10 * offset  # 10 times the error: 20 dB worse on every tile
    gain = study.psnr_difference(x, better, worse, units=U)
    assert gain.mean == pytest.approx(20.0, abs=1e-3) and gain.n == 8
    assert stats.judge(gain) == "supported"
    assert "SUPPORTED" in study.psnr_verdict("better beats worse", gain)
    assert stats.judge(study.psnr_difference(x, worse, better, units=U)) == "contradicted"
    blocks = study.psnr_difference(x, better, worse, groups=[0, 0, 1, 1, 2, 2, 3, 3], units=U)
    assert blocks.n == 4 and blocks.mean == pytest.approx(20.0, abs=1e-3)
    # all eight tiles in one block: one independent sample, so no verdict
    one_block = study.psnr_difference(x, better, worse, groups=[0] * 8, units=U)
    assert one_block.n == 1 and stats.judge(one_block) == "inconclusive"
    assert "INCONCLUSIVE" in study.psnr_verdict("better beats worse", one_block)


def test_hidden_psnr_difference_scores_the_same_hidden_pixels():
    x = tiles(4, 2, 16)
    a, b = small_conv(2).eval(), small_conv(2).eval()
    same = study.hidden_psnr_difference(a, a, x, 0.5, patch_size=4, seed=3, units=U)
    assert same.mean == 0 and same.n == 4
    res_a = ae.masked_reconstruction(a, x, 0.5, 4, 3, units=U)
    res_b = ae.masked_reconstruction(b, x, 0.5, 4, 3, units=U)
    groups = [0, 0, 1, 1]
    by_hand = study.group_psnr(res_a.reconstruction, x, groups, res_a.pixel_mask, units=U) - (
        study.group_psnr(res_b.reconstruction, x, groups, res_b.pixel_mask, units=U)
    )
    gain = study.hidden_psnr_difference(a, b, x, 0.5, patch_size=4, seed=3, groups=groups, units=U)
    assert gain.mean == pytest.approx(by_hand.mean()) and gain.n == 2


def test_scores_are_in_the_sources_units_with_its_range():
    """The course's convention: scaled tiles back in the source's units, the source's range
    (255 for uint8), and masked SSIM's map on the whole tiles, averaged on the hidden pixels."""
    from mae_nb import metrics
    from mae_nb.data.tiling import tile_split

    rng = np.random.default_rng(0)
    image = rng.integers(40, 160, (3, 32, 64)).astype(np.uint8)
    split = tile_split(image, size=16, stride=16, val_fraction=0.5)
    units, val = split.units, split.val
    pred = (val + 0.05 * torch.randn(val.shape, generator=torch.Generator().manual_seed(0))).float()
    hidden = torch.zeros(len(val), 16, 16, dtype=torch.bool)
    hidden[:, 4:8, 4:12] = True
    s = study.evaluate_reconstruction(pred, val, hidden, units=units)
    p, t = units(pred), units(val)
    assert units.data_range == 255.0
    assert s["psnr"] == pytest.approx(metrics.psnr(p, t, 255.0, valid=hidden))
    assert s["ssim"] == pytest.approx(metrics.ssim(p, t, 255.0, region=hidden))
    # the same errors in scaled units with range 1 would be another number
    assert abs(s["psnr"] - metrics.psnr(pred.clamp(0, 1), val, 1.0, valid=hidden)) > 1.0
