"""mae_nb.models.autoencoders: shapes, nodata handling, masking, AAE step, inference, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_nb import metrics
from mae_nb.data.tiling import BandScaler, SourceUnits
from mae_nb.models import autoencoders as ae
from mae_nb.train import fit, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def tiles(n=4, c=6, size=16, seed=0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def small_conv(c=6) -> ae.ConvAutoencoder:
    return ae.ConvAutoencoder(c, latent_channels=4, widths=(8, 16))


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("c, size", [(1, 8), (3, 16), (6, 32), (12, 16)])
def test_conv_autoencoder_any_band_count_and_size(c, size):
    model = ae.ConvAutoencoder(c, latent_channels=5, widths=(8, 16)).eval()
    x = tiles(2, c, size)
    z = model.encode(x)
    assert z.shape == (2, 5, size // 4, size // 4)
    assert model(x).shape == x.shape
    assert model.latent_size(size) == 5 * (size // 4) ** 2


def test_conv_autoencoder_non_square_tiles():
    model = small_conv(4).eval()
    x = torch.rand(2, 4, 16, 24)
    assert model(x).shape == (2, 4, 16, 24)


def test_mlp_autoencoder_shapes():
    model = ae.MLPAutoencoder(6, 16, latent_dim=10, hidden=(32,)).eval()
    x = tiles(3, 6, 16)
    assert model.encode(x).shape == (3, 10)
    assert model(x).shape == x.shape
    assert model.latent_size() == 10


def test_adversarial_autoencoder_shapes_and_samples():
    model = ae.AdversarialAutoencoder(3, 16, latent_dim=4, widths=(8, 16), prior="mixture").eval()
    x = tiles(5, 3, 16)
    z = model.encode(x)
    assert z.shape == (5, 4)
    assert model.discriminator(z).shape == (5, 1)
    assert model(x).shape == x.shape
    assert model.sample(7, torch.Generator().manual_seed(0)).shape == (7, 3, 16, 16)


# --------------------------------------------------------------------------- bad inputs


def test_tile_size_not_divisible_by_downsampling():
    model = ae.ConvAutoencoder(6, widths=(8, 16, 32))  # downsampling 8
    with pytest.raises(
        ValueError,
        match=r"tile size 30 x 30 px is not divisible by the network's downsampling factor 8",
    ):
        model(tiles(2, 6, 30))
    with pytest.raises(
        ValueError, match="img_size=20 is not divisible by the network's downsampling factor 8"
    ):
        ae.AdversarialAutoencoder(6, 20, widths=(8, 16, 32))


def test_band_count_differs_from_trained_model():
    model = small_conv(6)
    with pytest.raises(ValueError, match=r"built for 6 band\(s\) \(in_chans=6\), got tiles with 3"):
        model(tiles(2, 3, 16))
    mlp = ae.MLPAutoencoder(6, 16, latent_dim=4, hidden=(8,))
    with pytest.raises(ValueError, match="built for 6 band"):
        ae.reconstruct_tiles(mlp, tiles(2, 4, 16))
    with pytest.raises(
        ValueError, match=r"built for 16 x 16 px tiles \(img_size=16\), got 32 x 32"
    ):
        mlp(tiles(2, 6, 32))


def test_wrong_rank_and_dtype():
    model = small_conv(6)
    with pytest.raises(ValueError, match=r"got one tile \(6, 16, 16\); use imgs\[None\]"):
        model(tiles(1, 6, 16)[0])
    with pytest.raises(TypeError, match="expected float tiles"):
        model(torch.zeros(1, 6, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="torch tensor"):
        model(np.zeros((1, 6, 16, 16), np.float32))


@pytest.mark.parametrize("ratio", [1.0, 1.2, -0.1, float("nan")])
def test_mask_ratio_outside_0_1(ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        ae.hide_patches(tiles(), ratio, 4)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        ae.DenoisingAutoencoder(small_conv(), mask_ratio=ratio)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        ae.masked_reconstruction(small_conv(), tiles(), ratio, units=None)


def test_mask_options_checked():
    with pytest.raises(ValueError, match="loss_on must be 'masked' or 'all'"):
        ae.DenoisingAutoencoder(small_conv(), loss_on="hidden")
    with pytest.raises(ValueError, match="needs a mask_ratio above 0"):
        ae.DenoisingAutoencoder(small_conv(), mask_ratio=0.0)
    with pytest.raises(ValueError, match="not divisible by patch_size=5"):
        ae.hide_patches(tiles(), 0.5, 5)


def test_unknown_prior_and_kind():
    with pytest.raises(ValueError, match="prior must be 'gaussian' or 'mixture'"):
        ae.AdversarialAutoencoder(3, 16, widths=(8,), prior="laplace")
    with pytest.raises(ValueError, match="unknown autoencoder kind 'vae'"):
        ae.build_autoencoder({"kind": "vae"})


def test_aae_step_needs_its_optimizers():
    model = ae.AdversarialAutoencoder(3, 16, latent_dim=2, widths=(8,))
    with pytest.raises(TypeError, match=r"optimizer=model.optimizers\(\)"):
        ae.adversarial_train_step(model, tiles(4, 3, 16), torch.optim.Adam(model.parameters()))


# --------------------------------------------------------------------------- nodata


def test_fill_nodata_and_loss_ignore_nan_pixels():
    target = tiles(2, 3, 8)
    target[0, 1, 2, 3] = float("nan")  # one band NaN: the whole pixel is invalid
    filled, valid = ae.fill_nodata(target)
    assert torch.isfinite(filled).all()
    assert not valid[0, 2, 3] and valid.sum() == 2 * 64 - 1
    pred = target.nan_to_num(0.5).clone().requires_grad_(True)
    pred.data[0, :, 2, 3] = 100.0  # a wild prediction at the invalid pixel does not count
    loss = ae.reconstruction_loss(pred, target)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-12)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and float(pred.grad.abs().sum()) == 0.0


def test_loss_with_no_valid_pixel_is_zero_not_nan():
    target = torch.full((1, 2, 4, 4), float("nan"))
    pred = torch.zeros(1, 2, 4, 4, requires_grad=True)
    loss = ae.reconstruction_loss(pred, target)
    loss.backward()
    assert float(loss) == 0.0 and torch.isfinite(pred.grad).all()


def test_loss_equals_mse_over_valid_pixels():
    pred, target = tiles(2, 3, 8, seed=1), tiles(2, 3, 8, seed=2)
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[:, :4] = True
    expected = ((pred - target) ** 2)[:, :, :4].mean()
    assert float(ae.reconstruction_loss(pred, target, mask)) == pytest.approx(
        float(expected), rel=1e-6
    )


def test_training_on_tiles_with_nan_keeps_weights_finite():
    data = tiles(16, 3, 16)
    data[::2, :, :4, :4] = float("nan")
    model = ae.ConvAutoencoder(3, latent_channels=2, widths=(8, 16))
    history = fit(
        model, data, ae.autoencoder_loss, epochs=2, batch_size=8, progress=False, device="cpu"
    )
    assert all(np.isfinite(history.train["loss"]))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    out = ae.reconstruct_tiles(model, data)
    assert torch.isfinite(out).all()


# --------------------------------------------------------------------------- masking


def test_hide_patches_hides_exact_share_in_patches():
    x = tiles(3, 2, 16)
    hidden, pm = ae.hide_patches(x, 0.75, 4, generator=torch.Generator().manual_seed(0), fill=-1.0)
    assert pm.shape == (3, 16, 16) and pm.dtype == torch.bool
    assert (pm.float().mean(dim=(1, 2)) == 0.75).all()
    blocks = pm.reshape(3, 4, 4, 4, 4).float()
    assert (blocks.amin(dim=(2, 4)) == blocks.amax(dim=(2, 4))).all()  # whole 4 x 4 patches
    assert (hidden[pm[:, None].expand_as(x)] == -1).all()
    assert torch.equal(hidden[~pm[:, None].expand_as(x)], x[~pm[:, None].expand_as(x)])
    again, pm2 = ae.hide_patches(x, 0.75, 4, generator=torch.Generator().manual_seed(0), fill=-1.0)
    assert torch.equal(pm, pm2)


def test_denoising_loss_on_hidden_or_all():
    torch.manual_seed(0)
    x = tiles(4, 3, 16)
    base = small_conv(3).eval()
    masked = ae.DenoisingAutoencoder(base, patch_size=4, mask_ratio=0.5, loss_on="masked")
    out = masked.loss(x)
    assert float(out["loss"]) == pytest.approx(float(out["loss_hidden"]))
    every = ae.DenoisingAutoencoder(base, patch_size=4, mask_ratio=0.5, loss_on="all")
    out = every.loss(x)
    # half the pixels hidden: the mean over all pixels is the mean of the two halves
    assert float(out["loss"]) == pytest.approx(
        (float(out["loss_hidden"]) + float(out["loss_visible"])) / 2, rel=1e-5
    )


def test_masked_reconstruction_result():
    x = tiles(2, 3, 16)
    model = small_conv(3)
    units = SourceUnits(BandScaler(np.array([100.0, 200, 50]), np.array([300.0, 900, 90])), 1000)
    res = ae.masked_reconstruction(model, x, 0.5, patch_size=4, seed=1, units=units)
    assert res.reconstruction.shape == x.shape and res.pixel_mask.float().mean() == 0.5
    assert torch.isnan(res.hidden[res.pixel_mask[:, None].expand_as(x)]).all()
    assert np.isfinite(res.psnr_hidden) and np.isfinite(res.psnr_visible)
    none = ae.masked_reconstruction(model, x, 0.0, units=units)
    assert np.isnan(none.psnr_hidden)
    unscored = ae.masked_reconstruction(model, x, 0.5, patch_size=4, seed=1, units=None)
    assert np.isnan(unscored.psnr_hidden) and torch.equal(
        unscored.reconstruction, res.reconstruction
    )
    # PSNR over valid pixels in the source's units (prediction clipped to the scaled [0, 1]
    # first) with the source's range: what mae_nb.metrics gives
    x[0, :, :4, :4] = float("nan")
    res = ae.masked_reconstruction(model, x, 0.5, patch_size=4, seed=1, units=units)
    pred, target = units(res.reconstruction), units(x)
    for score, where in ((res.psnr_hidden, res.pixel_mask), (res.psnr_visible, ~res.pixel_mask)):
        assert score == pytest.approx(metrics.psnr(pred, target, 1000, valid=where), abs=1e-6)
    same = ae.masked_reconstruction(model, x, 0.5, patch_size=4, seed=1, units=units)
    assert torch.equal(same.pixel_mask, res.pixel_mask)


# ------------------------------------------------------------------ AAE, checkpoints, inference


def test_adversarial_step_updates_every_part():
    torch.manual_seed(0)
    model = ae.AdversarialAutoencoder(3, 16, latent_dim=2, widths=(8,), disc_hidden=(16,))
    opts = model.optimizers(lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logs = ae.adversarial_train_step(model, (tiles(8, 3, 16),), opts)
    assert set(logs) == {"loss", "disc_loss", "gen_loss", "disc_acc"}
    assert all(np.isfinite(v) for v in logs.values()) and 0 <= logs["disc_acc"] <= 1
    changed = {
        k.split(".")[0]
        for k, v in model.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, before[k])
    }
    assert changed == {"encoder", "decoder", "discriminator"}


def test_priors_sample_what_they_say():
    g = torch.Generator().manual_seed(0)
    z = ae.GaussianPrior(3, std=2.0).sample(20000, g)
    assert z.shape == (20000, 3) and z.std(dim=0).sub(2).abs().max() < 0.05
    mix = ae.GaussianMixturePrior(4, n_components=6, radius=3.0, std=0.1)
    z = mix.sample(6000, g)
    r = z[:, :2].norm(dim=1)
    assert (r - 3).abs().mean() < 0.15 and z[:, 2:].abs().mean() < 0.15
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        ae.GaussianMixturePrior(1)


def test_checkpoint_round_trip_rebuilds_every_kind(tmp_path):
    models = [
        ae.MLPAutoencoder(3, 8, latent_dim=4, hidden=(16,)),
        small_conv(3),
        ae.DenoisingAutoencoder(small_conv(3), patch_size=4, mask_ratio=0.6, loss_on="all"),
        ae.AdversarialAutoencoder(
            3, 8, latent_dim=3, widths=(8,), prior="mixture", disc_hidden=(8,)
        ),
    ]
    x = tiles(2, 3, 8)
    for i, model in enumerate(models):
        model.eval()
        path = save_checkpoint(tmp_path / f"m{i}.pth", model, config=model.config)
        payload = load_checkpoint(path)
        again = ae.build_autoencoder(payload["config"])
        again.load_state_dict(payload["model"])
        assert torch.equal(ae.reconstruct_tiles(again, x), ae.reconstruct_tiles(model, x))
    assert again.prior.config == models[-1].prior.config


def test_encode_tiles_flattens():
    model = small_conv(3)
    assert ae.encode_tiles(model, tiles(5, 3, 16)).shape == (5, 4 * 4 * 4)
    den = ae.DenoisingAutoencoder(model)
    assert ae.encode_tiles(den, tiles(5, 3, 16)).shape == (5, 64)


# --------------------------------------------------------------------------- the slider


def test_mask_ratio_explorer_runs_the_same_call_as_a_cell():
    from mae_nb.widgets import mask_ratio_explorer

    x = tiles(3, 3, 16)
    model = ae.DenoisingAutoencoder(small_conv(3), patch_size=4, mask_ratio=0.5)
    units = SourceUnits(BandScaler(np.zeros(1), np.ones(1)), 1.0)
    box = mask_ratio_explorer(model, x, rgb=(1, 2, 3), mask_ratio=0.25, n=3, units=units)
    assert box.controls["mask_ratio"].continuous_update is False
    box.controls["mask_ratio"].value = 0.75  # moving the slider reruns inference
    direct = ae.masked_reconstruction(model, x, 0.75, None, 0, units=units)
    assert box.result.mask_ratio == 0.75 and torch.equal(box.result.pixel_mask, direct.pixel_mask)
    assert box.result.psnr_hidden == pytest.approx(direct.psnr_hidden)
    assert "PSNR hidden pixels" in box.controls["score"].value
