"""Autoencoders for image tiles: MLP, convolutional, masked (denoising) and adversarial.

Chapters 01 and 02 build on this module. It reads top to bottom as the chapters do:

1. **Nodata** (:func:`fill_nodata`, :func:`reconstruction_loss`): a network never sees a NaN
   (it gets 0 there) and the loss leaves those pixels out, so nodata never reaches the weights.
2. **Models**: :class:`MLPAutoencoder` (a tile as one long vector), :class:`ConvAutoencoder`
   (convolutions, any tile size divisible by its downsampling), :class:`DenoisingAutoencoder`
   (hide random patches of the input with :func:`hide_patches`, reconstruct; loss on the
   hidden patches or on all pixels), :class:`AdversarialAutoencoder` (Makhzani et al., 2015: a
   discriminator on the latent code pushes it towards a prior, :class:`GaussianPrior` or
   :class:`GaussianMixturePrior`) with its alternating :func:`adversarial_train_step` for
   :func:`mae_nb.train.fit`; :func:`build_autoencoder` rebuilds any of them from its config.
3. **Using a trained model**: :func:`reconstruct_tiles`, :func:`encode_tiles`,
   :func:`masked_reconstruction`.

Tiles are float tensors ``imgs: (N, C, H, W)`` with values in about [0, 1] and NaN at nodata
(:func:`mae_nb.data.tiling.tile_split` cuts them from an image). Every model checks its input
first, so a wrong band count or tile size is a sentence, not a traceback from inside torch.
Scores, baselines and the chapters' comparison tables are in :mod:`mae_nb.studies.autoencoders`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mae_nb.errors import InputError, InputTypeError, MaeNbError
from mae_nb.masking import block_mask, check_mask_ratio, patch_mask_to_pixels

__all__ = [
    "AAEOptimizers",
    "AdversarialAutoencoder",
    "ConvAutoencoder",
    "DenoisingAutoencoder",
    "GaussianMixturePrior",
    "GaussianPrior",
    "MLPAutoencoder",
    "MaskedReconstruction",
    "TileAutoencoder",
    "adversarial_train_step",
    "autoencoder_loss",
    "build_autoencoder",
    "encode_tiles",
    "fill_nodata",
    "hide_patches",
    "make_prior",
    "masked_reconstruction",
    "reconstruct_tiles",
    "reconstruction_loss",
]


# --------------------------------------------------------------------------- nodata


def fill_nodata(imgs: torch.Tensor, value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``imgs`` (N, C, H, W) with non-finite pixels set to ``value``, and ``valid`` (N, H, W).

    A pixel is valid when every band is finite; an invalid pixel gets ``value`` in all bands.
    """
    valid = torch.isfinite(imgs).all(dim=1)
    filled = torch.where(valid[:, None], imgs, torch.full_like(imgs, value))
    filled = torch.nan_to_num(filled, nan=value, posinf=value, neginf=value)
    return filled, valid


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, pixel_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over the valid pixels of ``target`` (and where ``pixel_mask``, if given).

    pred, target: (N, C, H, W); target may hold NaN (nodata), left out of the mean and of the
    gradient. pixel_mask: (N, H, W) bool, e.g. the hidden patches. No pixel to score gives 0
    (with a gradient), never NaN.
    """
    target, valid = fill_nodata(target)
    if pixel_mask is not None:
        valid = valid & pixel_mask.bool()
    weight = valid[:, None].to(pred.dtype).expand_as(pred)
    return ((pred - target) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)


def _batch_images(batch: Any) -> torch.Tensor:
    """The tiles of a batch: a tensor, or the first tensor of a tuple/list (TensorDataset)."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise InputTypeError(
            f"expected a batch of tiles as a tensor (N, C, H, W), got {type(batch).__name__}"
        )
    return batch


# --------------------------------------------------------------------------- models


class TileAutoencoder(nn.Module):
    """What every autoencoder here shares: input checks, ``encode``, ``decode``, ``forward``, loss.

    Subclasses set ``in_chans``, ``downsample`` (tile height and width must be multiples of it),
    ``img_size`` (None = any size) and the modules ``encoder`` and ``decoder``.
    """

    in_chans: int
    downsample: int = 1
    img_size: int | None = None

    def check_input(self, imgs: torch.Tensor) -> torch.Tensor:
        """Raise a clear error unless ``imgs`` is (N, in_chans, H, W) with H, W the model takes."""
        name = type(self).__name__
        if not isinstance(imgs, torch.Tensor):
            raise InputTypeError(
                f"expected tiles as a torch tensor (N, C, H, W), got {type(imgs).__name__}"
            )
        if imgs.ndim == 3:
            raise InputError(
                f"expected a batch of tiles (N, C, H, W), got one tile {tuple(imgs.shape)}; "
                "use imgs[None]"
            )
        if imgs.ndim != 4:
            raise InputError(f"expected tiles of shape (N, C, H, W), got {tuple(imgs.shape)}")
        _, c, h, w = imgs.shape
        if c != self.in_chans:
            raise InputError(
                f"this {name} was built for {self.in_chans} band(s) (in_chans={self.in_chans}), "
                f"got tiles with {c}; use tiles of the same bands it was trained on, or build a "
                f"new model with in_chans={c}"
            )
        if self.img_size is not None and (h, w) != (self.img_size, self.img_size):
            raise InputError(
                f"this {name} was built for {self.img_size} x {self.img_size} px tiles "
                f"(img_size={self.img_size}), got {h} x {w}; cut tiles of that size or build a "
                "new model"
            )
        if h % self.downsample or w % self.downsample:
            raise InputError(
                f"tile size {h} x {w} px is not divisible by the network's downsampling factor "
                f"{self.downsample}; use tiles whose height and width are multiples of "
                f"{self.downsample} (e.g. {_multiples_near(h, self.downsample)})"
            )
        if not imgs.is_floating_point():
            raise InputTypeError(
                f"expected float tiles scaled to about [0, 1], got dtype {imgs.dtype} "
                "(see mae_nb.data.tiling.tile_split)"
            )
        return imgs

    def encode(self, imgs: torch.Tensor) -> torch.Tensor:
        """Latent code of ``imgs`` (N, C, H, W) in [0, 1].

        The networks work on pixels centred to [-1, 1] (they learn much faster than on [0, 1]);
        nodata pixels are read as 0.5, the centre, so they push the code nowhere.
        """
        x, _ = fill_nodata(self.check_input(imgs), 0.5)
        return self.encoder((x - 0.5) * 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Tiles (N, C, H, W), back in [0, 1] units, from latent codes."""
        return self.decoder(z) * 0.5 + 0.5

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Reconstruction (N, C, H, W) of ``imgs`` (N, C, H, W)."""
        return self.decode(self.encode(imgs))

    def loss(self, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss": MSE over valid pixels}`` for :func:`mae_nb.train.fit`."""
        return {"loss": reconstruction_loss(self(imgs), imgs)}

    def latent_size(self, height: int | None = None, width: int | None = None) -> int:
        """Numbers in the latent code of one tile (the compression the model must achieve)."""
        size = self.img_size or 32
        height, width = height or size, width or height or size
        p = next(self.parameters())
        with torch.no_grad():
            was = self.training
            self.eval()
            x = torch.zeros(1, self.in_chans, height, width, device=p.device, dtype=p.dtype)
            z = self.encode(x)
            self.train(was)
        return int(z[0].numel())


def _multiples_near(size: int, factor: int) -> str:
    below, above = (size // factor) * factor, (size // factor + 1) * factor
    return f"{below} or {above}" if below > 0 else str(above)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value}")


def _mlp(sizes: Sequence[int], act: Callable[[], nn.Module] = nn.GELU) -> list[nn.Module]:
    """Linear layers through ``sizes``, with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), act()]
    return layers[:-1]


class MLPAutoencoder(TileAutoencoder):
    """A tile as one long vector (C*H*W), through ``hidden`` layers down to ``latent_dim`` numbers.

    It ignores that neighbouring pixels are alike: every pixel has its own weights, so it needs
    a fixed ``img_size``. z: (N, latent_dim).
    """

    def __init__(
        self, in_chans: int, img_size: int, latent_dim: int = 64, hidden: Sequence[int] = (512,)
    ):
        super().__init__()
        _check_positive(in_chans=in_chans, img_size=img_size, latent_dim=latent_dim)
        self.in_chans, self.img_size, self.latent_dim = (
            int(in_chans),
            int(img_size),
            int(latent_dim),
        )
        self.hidden = tuple(hidden)
        self.config = dict(
            kind="mlp",
            in_chans=self.in_chans,
            img_size=self.img_size,
            latent_dim=self.latent_dim,
            hidden=list(self.hidden),
        )
        sizes = [self.in_chans * self.img_size**2, *self.hidden, self.latent_dim]
        self.encoder = nn.Sequential(nn.Flatten(), *_mlp(sizes))  # no activation on the code
        tile_shape = (self.in_chans, self.img_size, self.img_size)
        self.decoder = nn.Sequential(*_mlp(sizes[::-1]), nn.Unflatten(1, tile_shape))


def _down(cin: int, cout: int) -> nn.Sequential:
    """Halve the resolution: a strided 4 x 4 convolution, batch norm, GELU."""
    conv = nn.Conv2d(cin, cout, 4, stride=2, padding=1)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.GELU())


def _up(cin: int, cout: int) -> nn.Sequential:
    """Double the resolution: a strided 4 x 4 transposed convolution, batch norm, GELU."""
    conv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.GELU())


def _conv_stacks(in_chans: int, widths: Sequence[int]) -> tuple[nn.Sequential, nn.Sequential]:
    """Encoder trunk (in_chans -> widths[-1] at 1/2**len(widths) resolution) and its mirror.

    One convolution per stage: on a laptop CPU, a shallow network that takes many steps
    learns more in a minute than a deep one that takes few.
    """
    chans, back = [in_chans, *widths], list(widths[::-1])
    down = nn.Sequential(*[_down(a, b) for a, b in zip(chans[:-1], chans[1:])])
    up = [_up(a, b) for a, b in zip(back[:-1], back[1:])]  # built in this order: same init
    last = nn.ConvTranspose2d(widths[0], in_chans, 4, stride=2, padding=1)
    return down, nn.Sequential(*up, last)


class ConvAutoencoder(TileAutoencoder):
    """Convolutions down to a map of ``latent_channels`` at 1/2**len(widths) resolution, and back.

    The same small filters slide over the whole tile, so it works for any tile size divisible
    by ``downsample = 2**len(widths)``. z: (N, latent_channels, H / downsample, W / downsample).
    """

    def __init__(
        self, in_chans: int, latent_channels: int = 8, widths: Sequence[int] = (32, 64, 128)
    ):
        super().__init__()
        _check_positive(in_chans=in_chans, latent_channels=latent_channels)
        if not widths:
            raise InputError("widths must name at least one stage, e.g. (32, 64, 128)")
        self.in_chans, self.latent_channels = int(in_chans), int(latent_channels)
        self.widths = tuple(int(v) for v in widths)
        self.downsample = 2 ** len(self.widths)
        self.config = dict(
            kind="conv",
            in_chans=self.in_chans,
            latent_channels=self.latent_channels,
            widths=list(self.widths),
        )
        down, up = _conv_stacks(self.in_chans, self.widths)
        top = self.widths[-1]
        self.encoder = nn.Sequential(down, nn.Conv2d(top, self.latent_channels, 1))
        self.decoder = nn.Sequential(nn.Conv2d(self.latent_channels, top, 1), nn.GELU(), up)


# --------------------------------------------------------------------------- masking the input


def hide_patches(
    imgs: torch.Tensor,
    mask_ratio: float,
    patch_size: int,
    *,
    generator: torch.Generator | None = None,
    fill: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide a random ``mask_ratio`` share of the ``patch_size`` x ``patch_size`` patches per tile.

    imgs: (N, C, H, W). Returns the tiles with hidden pixels set to ``fill`` (default 0.5,
    mid-grey: 0 once the models centre their input) (N, C, H, W) and
    ``pixel_mask`` (N, H, W) bool, True where hidden. The patches are chosen as in MAE
    (:func:`mae_nb.masking.random_masking`), so exactly ``int(L * mask_ratio)`` of the L
    patches of every tile are hidden.
    """
    if imgs.ndim != 4:
        raise InputError(f"expected tiles of shape (N, C, H, W), got {tuple(imgs.shape)}")
    n, _, h, w = imgs.shape
    _check_positive(patch_size=patch_size)
    if h % patch_size or w % patch_size:
        raise InputError(
            f"tile size {h} x {w} px is not divisible by patch_size={patch_size}; "
            f"choose a patch_size that divides both (e.g. 4 or 8 for 32 px tiles)"
        )
    grid = (h // patch_size, w // patch_size)
    mask_ratio = check_mask_ratio(mask_ratio, grid[0] * grid[1])
    mask = block_mask(n, grid, mask_ratio, generator=generator)
    pixel_mask = patch_mask_to_pixels(mask, grid, patch_size).bool().to(imgs.device)
    hidden = imgs.masked_fill(pixel_mask[:, None], fill)
    return hidden, pixel_mask


class DenoisingAutoencoder(nn.Module):
    """A masked (denoising) autoencoder: hide random patches of the input, rebuild the whole tile.

    Wraps any :class:`TileAutoencoder`. In training each call hides a fresh random
    ``mask_ratio`` share of the ``patch_size`` patches. ``loss_on="masked"`` scores only the
    hidden patches (as MAE does: the network must infer what it cannot see); ``"all"`` scores
    every valid pixel (visible ones are easy, so they dilute the signal).
    """

    def __init__(
        self,
        autoencoder: TileAutoencoder,
        patch_size: int = 4,
        mask_ratio: float = 0.5,
        loss_on: str = "masked",
    ):
        super().__init__()
        if not isinstance(autoencoder, TileAutoencoder):
            raise InputTypeError(
                "autoencoder must be one of this module's autoencoders, got "
                f"{type(autoencoder).__name__}"
            )
        if loss_on not in ("masked", "all"):
            raise InputError(f"loss_on must be 'masked' or 'all', got {loss_on!r}")
        self.mask_ratio = check_mask_ratio(mask_ratio)
        if loss_on == "masked" and self.mask_ratio == 0:
            raise InputError(
                "loss_on='masked' needs a mask_ratio above 0 (nothing would be scored); "
                "use loss_on='all'"
            )
        _check_positive(patch_size=patch_size)
        self.autoencoder, self.patch_size, self.loss_on = autoencoder, int(patch_size), loss_on
        self.in_chans = autoencoder.in_chans
        self.config = dict(
            kind="denoising",
            autoencoder=autoencoder.config,
            patch_size=self.patch_size,
            mask_ratio=self.mask_ratio,
            loss_on=loss_on,
        )

    def forward(
        self,
        imgs: torch.Tensor,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction (N, C, H, W) of partly hidden ``imgs``, and the ``pixel_mask`` used."""
        imgs = self.autoencoder.check_input(imgs)
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        hidden, pixel_mask = hide_patches(imgs, ratio, self.patch_size, generator=generator)
        return self.autoencoder(hidden), pixel_mask

    def loss(self, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss`` (on hidden patches or all pixels, see ``loss_on``), ``loss_hidden``,
        ``loss_visible``."""
        recon, pixel_mask = self(imgs)
        hidden = reconstruction_loss(recon, imgs, pixel_mask)
        visible = reconstruction_loss(recon, imgs, ~pixel_mask)
        total = hidden if self.loss_on == "masked" else reconstruction_loss(recon, imgs)
        return {"loss": total, "loss_hidden": hidden.detach(), "loss_visible": visible.detach()}


# -------------------------------------------------------------------------- adversarial autoencoder


@dataclass
class GaussianPrior:
    """An isotropic Gaussian N(0, std^2 I) in ``latent_dim`` dimensions."""

    latent_dim: int
    std: float = 1.0

    def sample(self, n: int, generator: torch.Generator | None = None, device: Any = None):
        """(n, latent_dim) samples."""
        z = torch.randn(n, self.latent_dim, generator=generator) * self.std
        return z.to(device or "cpu")

    @property
    def config(self) -> dict:
        return {"name": "gaussian", "std": self.std}


@dataclass
class GaussianMixturePrior:
    """A mixture of ``n_components`` Gaussians (std ``std``) with means on a circle of ``radius``.

    The circle lies in the first two latent dimensions (the others are N(0, std^2)), as in
    Makhzani et al.'s 2-D figures, so a plot of dimensions 0 and 1 shows the petals.
    """

    latent_dim: int
    n_components: int = 8
    radius: float = 2.0
    std: float = 0.35

    def __post_init__(self) -> None:
        if self.latent_dim < 2:
            raise InputError(f"a mixture prior needs latent_dim >= 2, got {self.latent_dim}")
        _check_positive(n_components=self.n_components)

    @property
    def means(self) -> torch.Tensor:
        """(n_components, latent_dim) component means."""
        angle = 2 * math.pi * torch.arange(self.n_components) / self.n_components
        means = torch.zeros(self.n_components, self.latent_dim)
        means[:, 0], means[:, 1] = self.radius * torch.cos(angle), self.radius * torch.sin(angle)
        return means

    def sample(self, n: int, generator: torch.Generator | None = None, device: Any = None):
        """(n, latent_dim) samples, components chosen uniformly."""
        k = torch.randint(self.n_components, (n,), generator=generator)
        z = self.means[k] + torch.randn(n, self.latent_dim, generator=generator) * self.std
        return z.to(device or "cpu")

    @property
    def config(self) -> dict:
        return dict(
            name="mixture", n_components=self.n_components, radius=self.radius, std=self.std
        )


def make_prior(prior: str | GaussianPrior | GaussianMixturePrior | dict, latent_dim: int):
    """A prior from a name (``"gaussian"``, ``"mixture"``), a config dict or a prior object."""
    if isinstance(prior, (GaussianPrior, GaussianMixturePrior)):
        if prior.latent_dim != latent_dim:
            raise InputError(f"the prior has latent_dim={prior.latent_dim}, the model {latent_dim}")
        return prior
    kwargs: dict = {}
    if isinstance(prior, dict):
        kwargs = {k: v for k, v in prior.items() if k != "name"}
        prior = prior.get("name", "gaussian")
    if prior == "gaussian":
        return GaussianPrior(latent_dim, **kwargs)
    if prior == "mixture":
        return GaussianMixturePrior(latent_dim, **kwargs)
    raise InputError(f"prior must be 'gaussian' or 'mixture' (or a prior object), got {prior!r}")


@dataclass
class AAEOptimizers:
    """The three optimizers of the alternating AAE step.

    ``ae``: encoder + decoder (reconstruction); ``disc``: the discriminator; ``gen``: the encoder
    as the generator that fools the discriminator.
    """

    ae: torch.optim.Optimizer
    disc: torch.optim.Optimizer
    gen: torch.optim.Optimizer


class AdversarialAutoencoder(TileAutoencoder):
    """Adversarial autoencoder (Makhzani et al., 2015).

    A convolutional encoder maps a tile to a vector z: (N, latent_dim); the decoder maps it
    back. A discriminator (an MLP on z) learns to tell encoder codes from samples of the
    ``prior``; the encoder is also trained to fool it, which pushes the distribution of codes
    towards the prior. Then :meth:`sample` decodes prior samples into new tiles. Train with
    ``fit(model, data, autoencoder_loss, train_step=adversarial_train_step,
    optimizer=model.optimizers())``.
    """

    def __init__(
        self,
        in_chans: int,
        img_size: int,
        latent_dim: int = 8,
        widths: Sequence[int] = (32, 64, 128),
        prior: str | dict | GaussianPrior | GaussianMixturePrior = "gaussian",
        disc_hidden: Sequence[int] = (256, 256),
    ):
        super().__init__()
        _check_positive(in_chans=in_chans, img_size=img_size, latent_dim=latent_dim)
        self.in_chans, self.img_size, self.latent_dim = (
            int(in_chans),
            int(img_size),
            int(latent_dim),
        )
        self.widths = tuple(int(v) for v in widths)
        self.downsample = 2 ** len(self.widths)
        if self.img_size % self.downsample:
            raise InputError(
                f"img_size={img_size} is not divisible by the network's downsampling factor "
                f"{self.downsample}; use a multiple of {self.downsample}"
            )
        self.prior = make_prior(prior, self.latent_dim)
        self.config = dict(
            kind="adversarial",
            in_chans=self.in_chans,
            img_size=self.img_size,
            latent_dim=self.latent_dim,
            widths=list(self.widths),
            prior=self.prior.config,
            disc_hidden=list(disc_hidden),
        )
        g, top = self.img_size // self.downsample, self.widths[-1]
        down, up = _conv_stacks(self.in_chans, self.widths)
        self.encoder = nn.Sequential(down, nn.Flatten(), nn.Linear(top * g * g, self.latent_dim))
        self.decoder = nn.Sequential(
            nn.Linear(self.latent_dim, top * g * g), nn.GELU(), nn.Unflatten(1, (top, g, g)), up
        )
        leaky = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.discriminator = nn.Sequential(*_mlp([self.latent_dim, *disc_hidden, 1], leaky))

    def optimizers(self, lr: float = 1e-3, adversarial_lr: float = 2e-4) -> AAEOptimizers:
        """Adam for reconstruction (``lr``) and the two adversarial phases (``adversarial_lr``)."""
        ae_params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        betas = (0.5, 0.9)
        return AAEOptimizers(
            ae=torch.optim.Adam(ae_params, lr=lr),
            disc=torch.optim.Adam(self.discriminator.parameters(), lr=adversarial_lr, betas=betas),
            gen=torch.optim.Adam(self.encoder.parameters(), lr=adversarial_lr, betas=betas),
        )

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new tiles (n, C, H, W): prior samples through the decoder."""
        was = self.training
        self.eval()
        out = self.decode(self.prior.sample(n, generator, next(self.parameters()).device))
        self.train(was)
        return out


def _finite_or_raise(name: str, value: torch.Tensor) -> None:
    if not torch.isfinite(value):
        raise MaeNbError(
            f"the adversarial autoencoder's {name} is {float(value)} (the weights were not "
            "updated with it); check the tiles for NaN handled outside fill_nodata, or lower "
            "the learning rates"
        )


def _bce(logits: torch.Tensor, label: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


def adversarial_train_step(
    model: AdversarialAutoencoder, batch: Any, optimizer: AAEOptimizers
) -> dict[str, float]:
    """One alternating AAE update on a batch of tiles, for ``fit(..., train_step=...)``.

    1. reconstruction: encoder + decoder minimise the MSE over valid pixels;
    2. regularisation, discriminator: tell prior samples (label 1) from codes (label 0);
    3. regularisation, generator: the encoder changes its codes so the discriminator says 1.

    Returns ``loss`` (reconstruction), ``disc_loss``, ``gen_loss`` and ``disc_acc``.
    """
    if not isinstance(optimizer, AAEOptimizers):
        raise InputTypeError(
            "adversarial_train_step needs the AAE's three optimizers: "
            "fit(model, data, train_step=adversarial_train_step, optimizer=model.optimizers())"
        )
    imgs = model.check_input(_batch_images(batch))
    # 1. reconstruction phase
    rec = reconstruction_loss(model(imgs), imgs)
    _finite_or_raise("reconstruction loss", rec)
    optimizer.ae.zero_grad(set_to_none=True)
    rec.backward()
    optimizer.ae.step()
    # 2. regularisation phase: the discriminator
    z_fake = model.encode(imgs).detach()
    z_real = model.prior.sample(imgs.shape[0], device=imgs.device)
    d_real, d_fake = model.discriminator(z_real), model.discriminator(z_fake)
    disc = _bce(d_real, 1.0) + _bce(d_fake, 0.0)
    _finite_or_raise("discriminator loss", disc)
    optimizer.disc.zero_grad(set_to_none=True)
    disc.backward()
    optimizer.disc.step()
    # 3. regularisation phase: the encoder as generator
    gen = _bce(model.discriminator(model.encode(imgs)), 1.0)
    _finite_or_raise("generator loss", gen)
    optimizer.gen.zero_grad(set_to_none=True)
    gen.backward()
    optimizer.gen.step()
    acc = ((d_real > 0).float().mean() + (d_fake < 0).float().mean()) / 2
    return {
        "loss": float(rec.detach()),
        "disc_loss": float(disc.detach()),
        "gen_loss": float(gen.detach()),
        "disc_acc": float(acc),
    }


# --------------------------------------------------------------------------- training and building


def autoencoder_loss(model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
    """``loss_fn`` for :func:`mae_nb.train.fit`: the model's own ``loss`` on the batch's tiles."""
    return model.loss(_batch_images(batch))


def build_autoencoder(config: dict) -> nn.Module:
    """A fresh model from its ``config`` (``model.config``, as saved in a checkpoint)."""
    cfg = dict(config)
    kind = cfg.pop("kind", None)
    if kind == "denoising":
        return DenoisingAutoencoder(build_autoencoder(cfg.pop("autoencoder")), **cfg)
    kinds = {"mlp": MLPAutoencoder, "conv": ConvAutoencoder, "adversarial": AdversarialAutoencoder}
    if kind not in kinds:
        raise InputError(
            f"unknown autoencoder kind {kind!r}; expected 'mlp', 'conv', 'denoising' or "
            "'adversarial'"
        )
    return kinds[kind](**cfg)


# --------------------------------------------------------------------------- using a trained model


def _base(model: nn.Module) -> TileAutoencoder:
    return model.autoencoder if isinstance(model, DenoisingAutoencoder) else model


@torch.no_grad()
def _in_batches(
    model: nn.Module, imgs: torch.Tensor, batch_size: int, step: Callable
) -> list[torch.Tensor]:
    """``step(net, batch)`` over ``imgs`` in batches on the model's device, in eval mode, to CPU."""
    net = _base(model)
    net.check_input(imgs)
    was, device = net.training, next(net.parameters()).device
    net.eval()
    try:
        starts = range(0, len(imgs), batch_size)
        return [step(net, imgs[i : i + batch_size].to(device)).cpu() for i in starts]
    finally:
        net.train(was)


def reconstruct_tiles(model: nn.Module, imgs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Reconstructions (N, C, H, W) of ``imgs`` (N, C, H, W), on the CPU.

    Runs in eval mode, in batches, on the model's device. A :class:`DenoisingAutoencoder`
    reconstructs the full (unmasked) input here; see :func:`masked_reconstruction` to hide
    patches first.
    """
    out = _in_batches(model, imgs, batch_size, lambda net, x: net(x))
    return torch.cat(out) if out else imgs.new_zeros(imgs.shape)


def encode_tiles(model: nn.Module, imgs: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Latent codes of ``imgs`` (N, C, H, W), flattened to an (N, D) numpy array."""
    codes = _in_batches(model, imgs, batch_size, lambda net, x: net.encode(x).flatten(1))
    return torch.cat(codes).numpy()


@dataclass
class MaskedReconstruction:
    """What a model makes of partly hidden tiles.

    ``imgs``, ``hidden``, ``reconstruction``: (N, C, H, W) (``hidden`` has NaN where hidden,
    for display); ``pixel_mask``: (N, H, W) True where hidden; ``psnr_hidden`` and
    ``psnr_visible``: PSNR in dB under the course's convention (:mod:`mae_nb.metrics`), on the
    hidden and on the visible valid pixels: ``10 log10(R^2 / MSE)`` with both images mapped back
    to the source's units by ``units`` (the split's :class:`~mae_nb.data.tiling.SourceUnits`,
    which clips the reconstruction to the scaled [0, 1] first) and ``R = units.data_range``;
    the PSNR :func:`mae_nb.metrics.psnr` gives. NaN where there is no pixel, or without units.
    """

    imgs: torch.Tensor
    hidden: torch.Tensor
    pixel_mask: torch.Tensor
    reconstruction: torch.Tensor
    mask_ratio: float
    psnr_hidden: float
    psnr_visible: float


def _loss_db(pred: torch.Tensor, target: torch.Tensor, where: torch.Tensor, units) -> float:
    """PSNR of ``pred`` against ``target`` where ``where``, in the source's units (``units``)."""
    if units is None or not (where & torch.isfinite(target).all(dim=1)).any():
        return float("nan")
    mse = float(reconstruction_loss(units(pred), units(target), where))
    return 10 * math.log10(float(units.data_range) ** 2 / max(mse, 1e-20))


def masked_reconstruction(
    model: nn.Module,
    imgs: torch.Tensor,
    mask_ratio: float,
    patch_size: int | None = None,
    seed: int = 0,
    *,
    units,
) -> MaskedReconstruction:
    """Hide ``mask_ratio`` of the patches of ``imgs`` (N, C, H, W), reconstruct, and score it.

    Works for any autoencoder here: a :class:`DenoisingAutoencoder` (its ``patch_size`` by
    default) or a plain one (``patch_size`` 4 by default), to see whether training with
    masks taught it to fill holes. The same ``seed`` hides the same patches. ``units``: how to
    score, ``split.units`` (:class:`mae_nb.data.tiling.SourceUnits`: back to the source's units,
    the source's data range); ``None`` explicitly: no PSNR (NaN).
    """
    net = _base(model)
    net.check_input(imgs)
    if patch_size is None:
        patch_size = model.patch_size if isinstance(model, DenoisingAutoencoder) else 4
    hidden, pixel_mask = hide_patches(
        imgs, mask_ratio, patch_size, generator=torch.Generator().manual_seed(seed)
    )
    recon = reconstruct_tiles(net, hidden)
    display = imgs.masked_fill(pixel_mask[:, None], float("nan"))
    scores = _loss_db(recon, imgs, pixel_mask, units), _loss_db(recon, imgs, ~pixel_mask, units)
    return MaskedReconstruction(imgs, display, pixel_mask, recon, float(mask_ratio), *scores)
