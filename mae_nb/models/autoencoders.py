"""Autoencoders for image tiles: MLP, convolutional, masked (denoising) and adversarial.

Chapters 01 and 02 build on this module. It reads top to bottom as the chapters do:

1. **Tiles for training** (:func:`tile_split`): cut an image (C, H, W) into tiles, hold out a
   spatially disjoint strip for testing, scale each band to [0, 1] with percentiles of the
   training pixels. Nodata pixels become NaN and stay NaN.
2. **Nodata** (:func:`fill_nodata`, :func:`reconstruction_loss`): a network never sees a NaN
   (it gets 0 there) and the loss leaves those pixels out, so nodata never reaches the weights.
3. **Models**: :class:`MLPAutoencoder` (a tile as one long vector), :class:`ConvAutoencoder`
   (convolutions, any tile size divisible by its downsampling), :class:`DenoisingAutoencoder`
   (hide random patches of the input, reconstruct; loss on the hidden patches or on all pixels),
   :class:`AdversarialAutoencoder` (Makhzani et al., 2015: a discriminator on the latent code pushes
   it towards a prior, :class:`GaussianPrior` or :class:`GaussianMixturePrior`) with its
   alternating :func:`adversarial_train_step` for :func:`mae_nb.train.fit`.
4. **Using a trained model**: :func:`reconstruct`, :func:`masked_reconstruction`,
   :func:`encode_tiles`, :func:`evaluate_reconstruction` (PSNR/SSIM over valid pixels),
   :func:`tile_mean_baseline` (the score to beat), :func:`latent_projection`.

Tiles are float tensors ``imgs: (N, C, H, W)`` with values in about [0, 1] and NaN at nodata.
Every model checks its input first, so a wrong band count or tile size is a sentence, not a
traceback from inside torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mae_nb.data.tiling import Tiles, tile
from mae_nb.errors import InputError, InputTypeError, MaeNbError
from mae_nb.masking import block_mask, check_mask_ratio, patch_mask_to_pixels

__all__ = [
    "AAEOptimizers",
    "AdversarialAutoencoder",
    "BandScaler",
    "ConvAutoencoder",
    "DenoisingAutoencoder",
    "GaussianMixturePrior",
    "GaussianPrior",
    "MLPAutoencoder",
    "MaskedReconstruction",
    "TileAutoencoder",
    "TileSplit",
    "adversarial_train_step",
    "autoencoder_loss",
    "build_autoencoder",
    "compare_models",
    "encode_tiles",
    "evaluate_reconstruction",
    "fill_nodata",
    "hidden_psnr_curves",
    "hide_patches",
    "latent_knn_accuracy",
    "latent_projection",
    "markdown_table",
    "masked_reconstruction",
    "prior_distance",
    "reconstruct",
    "reconstruction_loss",
    "score_reconstructions",
    "tile_mean_baseline",
    "tile_split",
    "visible_mean_fill",
]


# --------------------------------------------------------------------------- tiles for training


@dataclass
class BandScaler:
    """Per-band linear scaling to [0, 1]: ``(x - low) / (high - low)``, clipped.

    ``low``, ``high``: (C,) percentiles of the training pixels. NaN (nodata) stays NaN.
    """

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> "BandScaler":
        """Percentiles per band of ``image`` (C, H, W) over its finite pixels."""
        a = np.asarray(image, dtype=np.float64)
        low, high = [], []
        for b, band in enumerate(a):
            values = band[np.isfinite(band)]
            if values.size == 0:
                raise InputError(
                    f"band {b + 1} has no valid pixel to scale: every pixel is nodata or NaN"
                )
            lo, hi = np.percentile(values, percentiles)
            low.append(lo)
            high.append(hi if hi > lo else lo + 1.0)
        return cls(np.asarray(low), np.asarray(high))

    def transform(self, array: np.ndarray) -> np.ndarray:
        """``array`` (..., C, H, W) scaled to float32 in [0, 1]."""
        a = np.asarray(array, dtype=np.float64)
        shape = (-1, 1, 1)
        out = (a - self.low.reshape(shape)) / (self.high - self.low).reshape(shape)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def inverse(self, array: np.ndarray) -> np.ndarray:
        """Back from [0, 1] to the image's units (float64)."""
        shape = (-1, 1, 1)
        return np.asarray(array, np.float64) * (self.high - self.low).reshape(
            shape
        ) + self.low.reshape(shape)


@dataclass
class TileSplit:
    """Training and held-out tiles from one image, spatially disjoint.

    ``train``, ``val``: (N, C, size, size) float32 tensors in [0, 1], NaN at nodata.
    ``train_tiles``, ``val_tiles``: their positions (:class:`mae_nb.data.Tiles`, in the
    full image's pixel coordinates). ``train_labels``, ``val_labels``: (N,) majority land-cover
    label per tile when a label map was given, else None. Columns ``>= boundary`` are held out.
    """

    train: torch.Tensor
    val: torch.Tensor
    train_tiles: Tiles
    val_tiles: Tiles
    scaler: BandScaler
    boundary: int
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None

    def __repr__(self) -> str:
        n, c, h, w = self.train.shape
        return (
            f"TileSplit(train={n} tiles, held out={len(self.val)} tiles, {c} bands x {h} x {w} px, "
            f"held-out strip: columns >= {self.boundary})"
        )


def _majority_labels(labels: np.ndarray, tiles: Tiles) -> np.ndarray:
    s = tiles.size
    out = np.zeros(len(tiles), dtype=np.int64)
    for i, (r, c) in enumerate(zip(tiles.rows, tiles.cols)):
        counts = np.bincount(labels[r : r + s, c : c + s].ravel().astype(np.int64))
        counts[0] = 0  # 0 = unlabelled
        out[i] = int(counts.argmax())
    return out


def tile_split(
    image: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    size: int = 32,
    stride: int | None = None,
    val_fraction: float = 0.25,
    min_valid: float = 0.9,
    labels: np.ndarray | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> TileSplit:
    """Tiles of ``image`` (C, H, W) for training and a held-out strip for testing.

    The right ``val_fraction`` of the columns is held out: no training tile overlaps it, so
    held-out scores are not flattered by overlapping pixels. Tiles with less than
    ``min_valid`` valid pixels are dropped; the remaining invalid pixels (``valid`` False,
    or non-finite values) become NaN. Bands are scaled to [0, 1] with the ``percentiles``
    of the training region. ``labels`` (H, W) gives each tile its majority label.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise InputError(f"expected an image of shape (C, H, W), got {image.shape}")
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    c, h, w = image.shape
    a = image.astype(np.float32)
    ok = np.isfinite(a).all(axis=0)
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != (h, w):
            raise InputError(f"valid must have shape (H, W) = {(h, w)}, got {valid.shape}")
        ok &= valid
    a[:, ~ok] = np.nan
    boundary = int(round(w * (1 - val_fraction)))
    for name, width in (("training", boundary), ("held-out", w - boundary)):
        if width < size:
            raise InputError(
                f"val_fraction={val_fraction} leaves a {name} strip {width} px wide, narrower than one "
                f"{size} px tile; choose a val_fraction closer to 0.5 or a smaller tile size"
            )
    train_t = tile(a[:, :, :boundary], size, stride, ok[:, :boundary], min_valid)
    val_t = tile(a[:, :, boundary:], size, stride, ok[:, boundary:], min_valid)
    for name, t in (("training", train_t), ("held-out", val_t)):
        if len(t) == 0:
            raise InputError(
                f"no {name} tiles left after dropping tiles with less than {min_valid:.0%} valid pixels "
                f"(image {h} x {w} px, tile {size} px, {ok.mean():.1%} of the pixels valid); lower "
                "min_valid or the tile size, or check the image's nodata"
            )
    val_t = Tiles(val_t.tiles, val_t.rows, val_t.cols + boundary, val_t.valid, size, (h, w))
    train_t = Tiles(train_t.tiles, train_t.rows, train_t.cols, train_t.valid, size, (h, w))
    scaler = BandScaler.fit(a[:, :, :boundary], percentiles)
    lab_train = lab_val = None
    if labels is not None:
        labels = np.asarray(labels)
        lab_train, lab_val = _majority_labels(labels, train_t), _majority_labels(labels, val_t)
    return TileSplit(
        train=torch.from_numpy(scaler.transform(train_t.tiles)),
        val=torch.from_numpy(scaler.transform(val_t.tiles)),
        train_tiles=train_t,
        val_tiles=val_t,
        scaler=scaler,
        boundary=boundary,
        train_labels=lab_train,
        val_labels=lab_val,
    )


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
    """Mean squared error over the valid pixels of ``target`` (and, if given, where ``pixel_mask``).

    pred, target: (N, C, H, W); target may hold NaN (nodata), left out of the mean and of the
    gradient. pixel_mask: (N, H, W) bool, e.g. the hidden patches. No pixel to score gives 0
    (with a gradient), never NaN.
    """
    target, valid = fill_nodata(target)
    if pixel_mask is not None:
        valid = valid & pixel_mask.bool()
    weight = valid[:, None].to(pred.dtype).expand_as(pred)
    count = weight.sum()
    return ((pred - target) ** 2 * weight).sum() / count.clamp_min(1.0)


def _batch_images(batch: Any) -> torch.Tensor:
    """The tiles of a batch: a tensor, or the first tensor of a tuple/list (a TensorDataset batch)."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise InputTypeError(
            f"expected a batch of tiles as a tensor (N, C, H, W), got {type(batch).__name__}"
        )
    return batch


# --------------------------------------------------------------------------- models


class TileAutoencoder(nn.Module):
    """What every autoencoder here shares: input checks, ``encode``, ``decode``, ``forward``, ``loss``.

    Subclasses set ``in_chans``, ``downsample`` (tile height and width must be multiples of it),
    ``img_size`` (None = any size) and the modules ``encoder`` and ``decoder``.
    """

    in_chans: int
    downsample: int = 1
    img_size: int | None = None

    def check_input(self, imgs: torch.Tensor) -> torch.Tensor:
        """Raise a clear error unless ``imgs`` is (N, in_chans, H, W) with H, W as the model needs."""
        if not isinstance(imgs, torch.Tensor):
            raise InputTypeError(
                f"expected tiles as a torch tensor (N, C, H, W), got {type(imgs).__name__}"
            )
        if imgs.ndim == 3:
            raise InputError(
                f"expected a batch of tiles (N, C, H, W), got one tile {tuple(imgs.shape)}; use imgs[None]"
            )
        if imgs.ndim != 4:
            raise InputError(f"expected tiles of shape (N, C, H, W), got {tuple(imgs.shape)}")
        _, c, h, w = imgs.shape
        if c != self.in_chans:
            raise InputError(
                f"this {type(self).__name__} was built for {self.in_chans} band(s) (in_chans={self.in_chans}), "
                f"got tiles with {c}; use tiles of the same bands it was trained on, or build a new model "
                f"with in_chans={c}"
            )
        if self.img_size is not None and (h, w) != (self.img_size, self.img_size):
            raise InputError(
                f"this {type(self).__name__} was built for {self.img_size} x {self.img_size} px tiles "
                f"(img_size={self.img_size}), got {h} x {w}; cut tiles of that size or build a new model"
            )
        if h % self.downsample or w % self.downsample:
            raise InputError(
                f"tile size {h} x {w} px is not divisible by the network's downsampling factor "
                f"{self.downsample}; use tiles whose height and width are multiples of {self.downsample} "
                f"(e.g. {_multiples_near(h, self.downsample)})"
            )
        if not imgs.is_floating_point():
            raise InputTypeError(
                f"expected float tiles scaled to about [0, 1], got dtype {imgs.dtype} (see tile_split)"
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
        with torch.no_grad():
            was = self.training
            self.eval()
            p = next(self.parameters())
            z = self.encode(
                torch.zeros(1, self.in_chans, height, width, device=p.device, dtype=p.dtype)
            )
            self.train(was)
        return int(z[0].numel())


def _multiples_near(size: int, factor: int) -> str:
    below, above = (size // factor) * factor, (size // factor + 1) * factor
    return f"{below} or {above}" if below > 0 else str(above)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value}")


class MLPAutoencoder(TileAutoencoder):
    """A tile as one long vector (C*H*W), squeezed through ``hidden`` layers to ``latent_dim`` numbers.

    It ignores that neighbouring pixels are alike: every pixel has its own weights, so it needs
    a fixed ``img_size``. z: (N, latent_dim).
    """

    def __init__(
        self, in_chans: int, img_size: int, latent_dim: int = 64, hidden: Sequence[int] = (512,)
    ):
        super().__init__()
        _check_positive(in_chans=in_chans, img_size=img_size, latent_dim=latent_dim)
        self.in_chans, self.img_size, self.latent_dim, self.hidden = (
            int(in_chans),
            int(img_size),
            int(latent_dim),
            tuple(hidden),
        )
        self.config = {
            "kind": "mlp",
            "in_chans": self.in_chans,
            "img_size": self.img_size,
            "latent_dim": self.latent_dim,
            "hidden": list(self.hidden),
        }
        d = self.in_chans * self.img_size**2
        sizes = [d, *self.hidden, self.latent_dim]
        enc: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:]):
            enc += [nn.Linear(a, b), nn.GELU()]
        self.encoder = nn.Sequential(*enc[:-1])  # no activation on the code
        dec: list[nn.Module] = []
        rev = sizes[::-1]
        for a, b in zip(rev[:-1], rev[1:]):
            dec += [nn.Linear(a, b), nn.GELU()]
        self.decoder = nn.Sequential(
            *dec[:-1], nn.Unflatten(1, (self.in_chans, self.img_size, self.img_size))
        )


def _down(cin: int, cout: int) -> nn.Sequential:
    """Halve the resolution: a strided 4 x 4 convolution, batch norm, GELU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), nn.GELU()
    )


def _up(cin: int, cout: int) -> nn.Sequential:
    """Double the resolution: a strided 4 x 4 transposed convolution, batch norm, GELU."""
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), nn.GELU()
    )


def _conv_stacks(in_chans: int, widths: Sequence[int]) -> tuple[nn.Sequential, nn.Sequential]:
    """Encoder trunk (in_chans -> widths[-1] at 1/2**len(widths) resolution) and its mirror decoder.

    One convolution per stage: on a laptop CPU, a shallow network that takes many steps
    learns more in a minute than a deep one that takes few.
    """
    chans = [in_chans, *widths]
    down = nn.Sequential(*[_down(a, b) for a, b in zip(chans[:-1], chans[1:])])
    back = list(widths[::-1])
    up = nn.Sequential(
        *[_up(a, b) for a, b in zip(back[:-1], back[1:])],
        nn.ConvTranspose2d(widths[0], in_chans, 4, stride=2, padding=1),
    )
    return down, up


class ConvAutoencoder(TileAutoencoder):
    """Convolutions down to a small map of ``latent_channels`` at 1/2**len(widths) resolution, and back.

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
        self.in_chans, self.latent_channels, self.widths = (
            int(in_chans),
            int(latent_channels),
            tuple(int(v) for v in widths),
        )
        self.downsample = 2 ** len(self.widths)
        self.config = {
            "kind": "conv",
            "in_chans": self.in_chans,
            "latent_channels": self.latent_channels,
            "widths": list(self.widths),
        }
        down, up = _conv_stacks(self.in_chans, self.widths)
        self.encoder = nn.Sequential(down, nn.Conv2d(self.widths[-1], self.latent_channels, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(self.latent_channels, self.widths[-1], 1), nn.GELU(), up
        )


# --------------------------------------------------------------------------- masking the input


def hide_patches(
    imgs: torch.Tensor,
    mask_ratio: float,
    patch_size: int,
    *,
    generator: torch.Generator | None = None,
    fill: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide a random ``mask_ratio`` share of the ``patch_size`` x ``patch_size`` patches of each tile.

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
    """A masked (denoising) autoencoder: hide random patches of the input, reconstruct the whole tile.

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
                f"autoencoder must be one of this module's autoencoders, got {type(autoencoder).__name__}"
            )
        if loss_on not in ("masked", "all"):
            raise InputError(f"loss_on must be 'masked' or 'all', got {loss_on!r}")
        self.mask_ratio = check_mask_ratio(mask_ratio)
        if loss_on == "masked" and self.mask_ratio == 0:
            raise InputError(
                "loss_on='masked' needs a mask_ratio above 0 (nothing would be scored); use loss_on='all'"
            )
        _check_positive(patch_size=patch_size)
        self.autoencoder, self.patch_size, self.loss_on = autoencoder, int(patch_size), loss_on
        self.in_chans = autoencoder.in_chans
        self.config = {
            "kind": "denoising",
            "autoencoder": autoencoder.config,
            "patch_size": self.patch_size,
            "mask_ratio": self.mask_ratio,
            "loss_on": loss_on,
        }

    def forward(
        self,
        imgs: torch.Tensor,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction (N, C, H, W) from partly hidden ``imgs``, and the ``pixel_mask`` (N, H, W) used."""
        imgs = self.autoencoder.check_input(imgs)
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        hidden, pixel_mask = hide_patches(imgs, ratio, self.patch_size, generator=generator)
        return self.autoencoder(hidden), pixel_mask

    def loss(self, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss`` (on hidden patches or all pixels, see ``loss_on``), plus ``loss_hidden`` and ``loss_visible``."""
        recon, pixel_mask = self(imgs)
        hidden = reconstruction_loss(recon, imgs, pixel_mask)
        visible = reconstruction_loss(recon, imgs, ~pixel_mask)
        total = hidden if self.loss_on == "masked" else reconstruction_loss(recon, imgs)
        return {"loss": total, "loss_hidden": hidden.detach(), "loss_visible": visible.detach()}


# --------------------------------------------------------------------------- adversarial autoencoder


@dataclass
class GaussianPrior:
    """An isotropic Gaussian N(0, std^2 I) in ``latent_dim`` dimensions."""

    latent_dim: int
    std: float = 1.0

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: Any = None
    ) -> torch.Tensor:
        """(n, latent_dim) samples."""
        return (torch.randn(n, self.latent_dim, generator=generator) * self.std).to(device or "cpu")

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

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: Any = None
    ) -> torch.Tensor:
        """(n, latent_dim) samples, components chosen uniformly."""
        k = torch.randint(self.n_components, (n,), generator=generator)
        z = self.means[k] + torch.randn(n, self.latent_dim, generator=generator) * self.std
        return z.to(device or "cpu")

    @property
    def config(self) -> dict:
        return {
            "name": "mixture",
            "n_components": self.n_components,
            "radius": self.radius,
            "std": self.std,
        }


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
    """The three optimizers of the alternating AAE step: ``ae`` (encoder + decoder, reconstruction),
    ``disc`` (discriminator), ``gen`` (encoder as the generator that fools the discriminator)."""

    ae: torch.optim.Optimizer
    disc: torch.optim.Optimizer
    gen: torch.optim.Optimizer


class AdversarialAutoencoder(TileAutoencoder):
    """Adversarial autoencoder (Makhzani et al., 2015).

    A convolutional encoder maps a tile to a vector z: (N, latent_dim); the decoder maps it
    back. A discriminator (an MLP on z) learns to tell encoder codes from samples of the
    ``prior``; the encoder is also trained to fool it, which pushes the distribution of codes
    towards the prior. Then :meth:`sample` decodes prior samples into new tiles. Train with
    ``fit(model, data, autoencoder_loss, train_step=adversarial_train_step, optimizer=model.optimizers())``.
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
                f"img_size={img_size} is not divisible by the network's downsampling factor {self.downsample}; "
                f"use a multiple of {self.downsample}"
            )
        self.prior = make_prior(prior, self.latent_dim)
        self.config = {
            "kind": "adversarial",
            "in_chans": self.in_chans,
            "img_size": self.img_size,
            "latent_dim": self.latent_dim,
            "widths": list(self.widths),
            "prior": self.prior.config,
            "disc_hidden": list(disc_hidden),
        }
        g = self.img_size // self.downsample
        down, up = _conv_stacks(self.in_chans, self.widths)
        flat = self.widths[-1] * g * g
        self.encoder = nn.Sequential(down, nn.Flatten(), nn.Linear(flat, self.latent_dim))
        self.decoder = nn.Sequential(
            nn.Linear(self.latent_dim, flat),
            nn.GELU(),
            nn.Unflatten(1, (self.widths[-1], g, g)),
            up,
        )
        layers: list[nn.Module] = []
        sizes = [self.latent_dim, *disc_hidden]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.discriminator = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

    def optimizers(self, lr: float = 1e-3, adversarial_lr: float = 2e-4) -> AAEOptimizers:
        """Adam for reconstruction (``lr``) and for the two adversarial phases (``adversarial_lr``)."""
        ae_params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        return AAEOptimizers(
            ae=torch.optim.Adam(ae_params, lr=lr),
            disc=torch.optim.Adam(
                self.discriminator.parameters(), lr=adversarial_lr, betas=(0.5, 0.9)
            ),
            gen=torch.optim.Adam(self.encoder.parameters(), lr=adversarial_lr, betas=(0.5, 0.9)),
        )

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new tiles (n, C, H, W): prior samples through the decoder."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        out = self.decode(self.prior.sample(n, generator, device))
        self.train(was)
        return out


def _finite_or_raise(name: str, value: torch.Tensor) -> None:
    if not torch.isfinite(value):
        raise MaeNbError(
            f"the adversarial autoencoder's {name} is {float(value)} (the weights were not updated with it); "
            "check the tiles for NaN handled outside fill_nodata, or lower the learning rates"
        )


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
    n = imgs.shape[0]
    z_fake = model.encode(imgs).detach()
    z_real = model.prior.sample(n, device=imgs.device)
    d_real, d_fake = model.discriminator(z_real), model.discriminator(z_fake)
    disc = F.binary_cross_entropy_with_logits(
        d_real, torch.ones_like(d_real)
    ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    _finite_or_raise("discriminator loss", disc)
    optimizer.disc.zero_grad(set_to_none=True)
    disc.backward()
    optimizer.disc.step()
    # 3. regularisation phase: the encoder as generator
    d_gen = model.discriminator(model.encode(imgs))
    gen = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
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
    if kind == "mlp":
        return MLPAutoencoder(**cfg)
    if kind == "conv":
        return ConvAutoencoder(**cfg)
    if kind == "adversarial":
        return AdversarialAutoencoder(**cfg)
    if kind == "denoising":
        return DenoisingAutoencoder(build_autoencoder(cfg.pop("autoencoder")), **cfg)
    raise InputError(
        f"unknown autoencoder kind {kind!r}; expected 'mlp', 'conv', 'denoising' or 'adversarial'"
    )


# --------------------------------------------------------------------------- using a trained model


def _base(model: nn.Module) -> TileAutoencoder:
    return model.autoencoder if isinstance(model, DenoisingAutoencoder) else model


@torch.no_grad()
def reconstruct(model: nn.Module, imgs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Reconstructions (N, C, H, W) on the CPU, in eval mode, in batches on the model's device.

    A :class:`DenoisingAutoencoder` reconstructs the full (unmasked) input here; see
    :func:`masked_reconstruction` to hide patches first.
    """
    net = _base(model)
    net.check_input(imgs)
    was = net.training
    net.eval()
    device = next(net.parameters()).device
    out = [net(imgs[i : i + batch_size].to(device)).cpu() for i in range(0, len(imgs), batch_size)]
    net.train(was)
    return torch.cat(out) if out else imgs.new_zeros(imgs.shape)


@torch.no_grad()
def encode_tiles(model: nn.Module, imgs: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Latent codes of ``imgs`` (N, C, H, W), flattened to an (N, D) numpy array."""
    net = _base(model)
    net.check_input(imgs)
    was = net.training
    net.eval()
    device = next(net.parameters()).device
    out = [
        net.encode(imgs[i : i + batch_size].to(device)).flatten(1).cpu()
        for i in range(0, len(imgs), batch_size)
    ]
    net.train(was)
    return torch.cat(out).numpy()


def tile_mean_baseline(imgs: torch.Tensor) -> torch.Tensor:
    """Each band of each tile replaced by its mean over the tile's valid pixels (N, C, H, W).

    The reconstruction any autoencoder must beat: it needs C numbers per tile.
    """
    filled, valid = fill_nodata(imgs)
    w = valid[:, None].to(filled.dtype)
    mean = (filled * w).sum(dim=(2, 3), keepdim=True) / w.sum(dim=(2, 3), keepdim=True).clamp_min(
        1.0
    )
    return mean.expand_as(imgs).clone()


def evaluate_reconstruction(
    pred: torch.Tensor,
    target: torch.Tensor,
    pixel_mask: torch.Tensor | None = None,
    ssim: bool = True,
) -> dict[str, float]:
    """PSNR (dB), SSIM and MSE of ``pred`` against ``target`` (N, C, H, W) in [0, 1].

    Only valid pixels count (finite in every band of ``target``), and only where
    ``pixel_mask`` (N, H, W) is True when given (e.g. the hidden patches). ``pred`` is
    clipped to [0, 1], the data range.
    """
    from mae_nb import metrics

    pred = pred.detach().float().cpu().clamp(0, 1)
    target = target.detach().float().cpu()
    valid = torch.isfinite(target).all(dim=1)
    if pixel_mask is not None:
        valid = valid & pixel_mask.bool().cpu()
    out = {
        "psnr": metrics.psnr(pred, target, valid=valid),
        "mse": metrics.mse(pred, target, valid=valid),
    }
    if ssim:
        out["ssim"] = metrics.ssim(pred, target, valid=valid)
    return out


@dataclass
class MaskedReconstruction:
    """What a model makes of partly hidden tiles.

    ``imgs``, ``hidden``, ``reconstruction``: (N, C, H, W) (``hidden`` has NaN where hidden,
    for display); ``pixel_mask``: (N, H, W) True where hidden; ``psnr_hidden`` and
    ``psnr_visible``: dB on the hidden and the visible pixels (NaN when there are none).
    """

    imgs: torch.Tensor
    hidden: torch.Tensor
    pixel_mask: torch.Tensor
    reconstruction: torch.Tensor
    mask_ratio: float
    psnr_hidden: float
    psnr_visible: float


def masked_reconstruction(
    model: nn.Module,
    imgs: torch.Tensor,
    mask_ratio: float,
    patch_size: int | None = None,
    seed: int = 0,
) -> MaskedReconstruction:
    """Hide ``mask_ratio`` of the patches of ``imgs`` (N, C, H, W), reconstruct, and score it.

    Works for any autoencoder here: a :class:`DenoisingAutoencoder` (its ``patch_size`` by
    default) or a plain one (``patch_size`` 4 by default), to see whether training with
    masks taught it to fill holes. The same ``seed`` hides the same patches.
    """
    net = _base(model)
    net.check_input(imgs)
    if patch_size is None:
        patch_size = model.patch_size if isinstance(model, DenoisingAutoencoder) else 4
    hidden, pixel_mask = hide_patches(
        imgs, mask_ratio, patch_size, generator=torch.Generator().manual_seed(seed)
    )
    recon = reconstruct(net, hidden)
    scores = {}
    for name, where in (("hidden", pixel_mask), ("visible", ~pixel_mask)):
        ok = where & torch.isfinite(imgs).all(dim=1)
        scores[name] = (
            evaluate_reconstruction(recon, imgs, where, ssim=False)["psnr"]
            if ok.any()
            else float("nan")
        )
    display = imgs.masked_fill(pixel_mask[:, None], float("nan"))
    return MaskedReconstruction(
        imgs, display, pixel_mask, recon, float(mask_ratio), scores["hidden"], scores["visible"]
    )


def latent_projection(z: np.ndarray, n_components: int = 2) -> np.ndarray:
    """(N, n_components) PCA projection of standardized latent codes ``z`` (N, D) (scikit-learn)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) < n_components:
        raise InputError(f"expected at least {n_components} codes of shape (N, D), got {z.shape}")
    return PCA(n_components=n_components, random_state=0).fit_transform(
        StandardScaler().fit_transform(z)
    )


def latent_knn_accuracy(
    z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, k: int = 5
) -> float:
    """Accuracy of a k-nearest-neighbour classifier of tile labels on standardized latent codes.

    A number for "do tiles of the same land cover land close together in the latent space?"
    (scikit-learn). z_*: (N, D); y_*: (N,).
    """
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(k, len(z_train))))
    clf.fit(np.asarray(z_train), np.asarray(y_train))
    return float((clf.predict(np.asarray(z_test)) == np.asarray(y_test)).mean())


def prior_distance(z: np.ndarray, prior, n: int = 4000, seed: int = 0) -> float:
    """Mean over latent dimensions of the 1-D Wasserstein distance between codes ``z`` (N, D) and the prior.

    0 means each dimension of the codes is distributed like the prior's (scipy).
    """
    from scipy.stats import wasserstein_distance

    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != prior.latent_dim:
        raise InputError(f"expected codes of shape (N, {prior.latent_dim}), got {z.shape}")
    p = prior.sample(n, torch.Generator().manual_seed(seed)).numpy()
    return float(np.mean([wasserstein_distance(z[:, d], p[:, d]) for d in range(z.shape[1])]))


def score_reconstructions(
    target: torch.Tensor,
    reconstructions: dict,
    code_sizes: dict | None = None,
    pixel_mask: torch.Tensor | None = None,
) -> list[dict]:
    """One row per entry of ``reconstructions`` ({name: (N, C, H, W)}): PSNR, SSIM and MSE against ``target``.

    ``code_sizes`` ({name: numbers per tile}) adds a column; ``pixel_mask`` (N, H, W) scores
    only those pixels (e.g. hidden patches). Rows suit :func:`markdown_table`.
    """
    rows = []
    for name, pred in reconstructions.items():
        s = evaluate_reconstruction(pred, target, pixel_mask)
        row: dict[str, Any] = {"model": name}
        if code_sizes is not None:
            row["numbers per tile"] = code_sizes.get(name, "")
        row.update({"PSNR (dB)": s["psnr"], "SSIM": s["ssim"], "MSE": s["mse"]})
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[dict], floatfmt: str = ".3f") -> str:
    """A Markdown table of ``rows`` (dicts with the same keys); floats formatted with ``floatfmt``."""
    if not rows:
        return ""
    keys = list(rows[0])

    def fmt(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def visible_mean_fill(result: MaskedReconstruction) -> torch.Tensor:
    """The naive answer to a masked input: every pixel of a tile gets the mean of its *visible* pixels, per band.

    The fill any masked autoencoder must beat on the hidden pixels. Returns (N, C, H, W).
    """
    return tile_mean_baseline(
        result.hidden
    )  # ``hidden`` is NaN where hidden, so only visible pixels count


def hidden_psnr_curves(
    models: dict, imgs: torch.Tensor, ratios: Sequence[float], patch_size: int = 4, seed: int = 0
) -> dict[str, list[float]]:
    """PSNR on the hidden pixels at each mask ratio, per model ({name: model}) and for the visible-mean fill.

    Every model sees the same hidden patches (same ``seed``). Returns {name: [PSNR per ratio]}.
    """
    curves: dict[str, list[float]] = {name: [] for name in models}
    curves["visible-mean fill"] = []
    for ratio in ratios:
        result = None
        for name, model in models.items():
            result = masked_reconstruction(model, imgs, ratio, patch_size, seed)
            curves[name].append(result.psnr_hidden)
        if result is None:
            result = masked_reconstruction(
                models[next(iter(models))], imgs, ratio, patch_size, seed
            )
        has_hidden = bool(result.pixel_mask.any())
        curves["visible-mean fill"].append(
            evaluate_reconstruction(visible_mean_fill(result), imgs, result.pixel_mask, ssim=False)[
                "psnr"
            ]
            if has_hidden
            else float("nan")
        )
    return curves


def compare_models(
    models: dict, imgs: torch.Tensor, mask_ratio: float = 0.5, patch_size: int = 4, seed: int = 0
) -> list[dict]:
    """One row per model ({name: model}) on ``imgs`` (N, C, H, W), after a per-tile-mean row.

    Columns: numbers per tile in the code, PSNR and SSIM of complete tiles, and PSNR on the hidden
    pixels when ``mask_ratio`` of the patches are hidden (the same patches for every model; the
    mean row uses the visible-mean fill there). Rows suit :func:`markdown_table`.
    """
    hidden_col = f"PSNR hidden @ {mask_ratio:.0%} (dB)"
    rows = []
    first = None
    for name, model in {"tile mean": None, **models}.items():
        if model is None:
            pred, size = tile_mean_baseline(imgs), imgs.shape[1]
        else:
            pred, size = reconstruct(model, imgs), encode_tiles(model, imgs[:1]).shape[1]
        s = evaluate_reconstruction(pred, imgs)
        row: dict[str, Any] = {
            "model": name,
            "numbers per tile": size,
            "PSNR (dB)": s["psnr"],
            "SSIM": s["ssim"],
        }
        if model is not None:
            res = masked_reconstruction(model, imgs, mask_ratio, patch_size, seed)
            first = first or res
            row[hidden_col] = res.psnr_hidden
        rows.append(row)
    if first is not None:
        rows[0][hidden_col] = evaluate_reconstruction(
            visible_mean_fill(first), imgs, first.pixel_mask, ssim=False
        )["psnr"]
    return rows
