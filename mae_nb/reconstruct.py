"""Reconstructing images with a masked autoencoder: one crop, many passes, or a whole scene.

:func:`reconstruct` is the one call the chapters use. It hides a share of an image's patches,
lets the model predict them, and returns everything Meta's demo shows (original, masked input,
prediction, prediction pasted into the visible patches) plus the masks, a per-patch error and
PSNR/SSIM on the masked patches and on the whole crop.

**Iterations.** ``iterations`` is the number of passes through the model. Two modes say what a
pass sees:

- ``mode="chained"`` (the study's "three iterations of 25 %"): pass 1 masks a random
  ``mask_ratio`` of the patches of the image and pastes the prediction into them; pass ``k``
  masks a *fresh* random ``mask_ratio`` of the patches of pass ``k - 1``'s pasted output (the
  masks are independent, so a patch may be masked twice or never) and pastes again. Each pass
  changes only the patches it masked. After ``K`` passes a patch was replaced with probability
  ``1 - (1 - mask_ratio) ** K`` (58 % for 3 x 25 %).
- ``mode="covering"``: the patches are shuffled once and cut into disjoint groups of the size one
  pass masks; pass ``k`` masks group ``k`` of the *original* image. After all groups
  (``ceil(L / masked_per_pass)``, which is ``ceil(1 / mask_ratio)`` up to rounding) every patch
  has been predicted exactly once, from the true pixels around it: a complete prediction of
  the image. ``iterations=None`` means all groups; fewer passes are allowed, more are an error.

**Units and normalization.** Images are ``(C, H, W)`` arrays in their own units (uint8 digital
numbers, reflectance, ...); every output is float32 in the same units. The model sees
``(image - mean) / std`` per band, with ``mean`` and ``std`` in the image's units. By default
(``normalize="auto"``) a 3-band image gets ImageNet's statistics, as Meta's RGB models were
trained (uint8 is read as ``value / 255``, an image within [0, 1] as is, anything else is mapped
to [0, 1] by its 1st and 99th percentiles over all bands); other band counts get their own
per-band mean and standard deviation.

**Scores.** PSNR and SSIM follow the course's convention (:mod:`mae_nb.metrics`): the data range
is the data source's, in its units. A ``Sample`` brings its own (``Sample.data_range``); for an
array, :func:`normalization` takes :func:`mae_nb.data.value_range` of the array it is given
(uint8: 255, floats within 0..1: 1.0, else max - min), which is the source's range only when the
array is the whole source: **a crop must be scored with** ``data_range=sample.data_range``.
Masked-patch scores (``psnr_masked``, ``ssim_masked``) average over the valid pixels of the
masked patches, with the SSIM map computed on the whole pasted and original images
(:func:`masked_scores`).

**Size.** Images must be at least one patch tall and wide. An image that is not a multiple of
the patch size is *cropped* at the bottom and right to the largest multiple (never padded:
padding would hand the model invented pixels); ``Reconstruction.crop`` says how much was kept.
A model with a fixed input size (Meta's 224 x 224) needs exactly that size after cropping; for
anything larger use :func:`reconstruct_scene`.

**Nodata.** Pixels that are NaN or not ``valid`` are given the band mean before the model sees
them, are NaN in every output array, and are left out of every metric.

**Normalized-pixel targets.** A model trained with ``norm_pix_loss`` (Meta's ``*_full.pth``
checkpoints, ``train_course_mae(..., norm_pix_loss=True)``) predicts each patch standardized by
that patch's own mean and variance, not pixels. Every path here (:func:`reconstruct`,
:func:`reconstruct_scene`, the scenarios' embeddings) un-normalizes such a prediction before it
is pasted, by default with statistics estimated from the *visible* neighbouring patches
(:func:`unnormalize_patches`, ``how="neighbours"``): the masked patch's own statistics
(``"own"``) would use the answer. ``norm_pix="none"`` shows the raw normalized values.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mae_nb import metrics
from mae_nb.data.geotiff import value_range
from mae_nb.errors import InputError, InputTypeError
from mae_nb.masking import check_mask_ratio
from mae_nb.models.mae import IMAGENET_MEAN, IMAGENET_STD
from mae_nb.precision import check_precision, choose, running
from mae_nb.scene import (
    BlendAccumulator,
    RasterTiles,
    TileGrid,
    check_outputs,
    check_seed,
    inference,
    prepare_image,
    tile_batches,
    tile_generator,
    to_dtype,
)

MODES = ("chained", "covering")

#: How a normalized-pixel prediction is brought back to pixels (:func:`unnormalize_patches`).
NORM_PIX_DISPLAYS = ("neighbours", "own", "none")


# --------------------------------------------------------------------------- normalized pixels


def norm_pix_display(model: torch.nn.Module, how: str | None = None) -> str:
    """The un-normalization to apply to ``model``'s predictions: ``how``, checked against the model.

    ``how=None``: ``"neighbours"`` (the honest estimate, :func:`unnormalize_patches`) for a model
    trained with ``norm_pix_loss``, ``"none"`` for a model that predicts pixels. Asking for
    ``"neighbours"`` or ``"own"`` on a model trained without ``norm_pix_loss`` is an
    :class:`~mae_nb.errors.InputError`: its predictions are pixels already.
    """
    trained_normalized = bool(getattr(model, "norm_pix_loss", False))
    if how is None:
        return "neighbours" if trained_normalized else "none"
    if how not in NORM_PIX_DISPLAYS:
        raise InputError(
            f"norm_pix must be one of {', '.join(map(repr, NORM_PIX_DISPLAYS))} or None, "
            f"got {how!r}"
        )
    if how != "none" and not trained_normalized:
        raise InputError(
            f"norm_pix={how!r} un-normalizes per-patch normalized predictions, but this model was "
            "trained without norm_pix_loss: it predicts pixels, there is nothing to un-normalize. "
            "Use norm_pix=None (or 'none') for this model"
        )
    return how


def _patch_stats(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch mean and (unbiased) variance over all pixels and bands, as Meta's forward_loss."""
    return patches.mean(dim=-1), patches.var(dim=-1)


def unnormalize_patches(
    pred: torch.Tensor,
    image: torch.Tensor,
    mask: torch.Tensor,
    how: str = "neighbours",
    *,
    patch_size: int,
    radius: int = 1,
    eps: float = 1.0e-6,
) -> torch.Tensor:
    """Per-patch normalized predictions back to image units: ``pred * sqrt(var + eps) + mean``.

    pred: (N, L, p*p*C), a ``norm_pix_loss`` model's decoder output; image: (N, C, H, W), the
    model's input (its units are the output's); mask: (N, L), 1 = masked. ``how`` says where
    each patch's mean and variance (over its pixels and bands, as the loss computed them) come
    from:

    - ``"neighbours"`` (honest): a visible patch's own; a masked patch's from the visible
      patches within ``radius`` patches of it (the mean of their means and of their variances);
      where none is visible that close, from all visible patches of the image.
    - ``"own"`` (an oracle): every patch's own, masked ones included. This uses the answer: the
      hidden patch's mean and contrast are read from the pixels the model was to predict.
    - ``"none"``: ``pred`` unchanged (normalized values shown as if they were the image's).
    """
    if how not in NORM_PIX_DISPLAYS:
        raise InputError(
            f"how must be one of {', '.join(map(repr, NORM_PIX_DISPLAYS))}, got {how!r}"
        )
    if image.ndim != 4 or pred.ndim != 3:
        raise InputError(
            f"pred must be (N, L, p*p*C) and image (N, C, H, W), got {tuple(pred.shape)} and "
            f"{tuple(image.shape)}"
        )
    n, c, h, w = image.shape
    p = int(patch_size)
    gh, gw = h // p, w // p
    if h % p or w % p or pred.shape != (n, gh * gw, p * p * c) or mask.shape != (n, gh * gw):
        raise InputError(
            f"for images {tuple(image.shape)} and patch_size {p}, pred must be "
            f"{(n, gh * gw, p * p * c)} and mask {(n, gh * gw)}; got {tuple(pred.shape)} and "
            f"{tuple(mask.shape)}"
        )
    if isinstance(radius, bool) or int(radius) != radius or radius < 1:
        raise InputError(f"radius must be a whole number of patches >= 1, got {radius!r}")
    if how == "none":
        return pred
    x = image.float().reshape(n, c, gh, p, gw, p)
    patches = torch.einsum("nchpwq->nhwpqc", x).reshape(n, gh * gw, p * p * c)
    mean, var = _patch_stats(patches)
    if how == "neighbours":
        vis = 1.0 - mask.float()
        if bool((vis.sum(dim=1) == 0).any()):
            raise InputError("every patch is masked: no visible patch to estimate statistics from")
        k = 2 * int(radius) + 1
        ones = torch.ones(1, 1, k, k, dtype=mean.dtype, device=mean.device)

        def box(t):
            return torch.nn.functional.conv2d(
                t.reshape(n, 1, gh, gw), ones, padding=int(radius)
            ).reshape(n, gh * gw)

        count = box(vis)
        near_mean = box(mean * vis) / count.clamp(min=1)
        near_var = box(var * vis) / count.clamp(min=1)
        all_vis = vis.sum(dim=1, keepdim=True)
        far_mean = ((mean * vis).sum(dim=1, keepdim=True) / all_vis).expand_as(mean)
        far_var = ((var * vis).sum(dim=1, keepdim=True) / all_vis).expand_as(var)
        est_mean = torch.where(count > 0, near_mean, far_mean)
        est_var = torch.where(count > 0, near_var, far_var)
        hidden = mask > 0
        mean = torch.where(hidden, est_mean, mean)
        var = torch.where(hidden, est_var, var)
    return pred * (var[..., None] + eps) ** 0.5 + mean[..., None]


# --------------------------------------------------------------------------- normalization


@dataclass
class Normalization:
    """Per-band affine map to the model's input: ``x = (image - mean) / std``.

    ``mean``, ``std``: (C,) in the image's units. ``data_range``: the data range PSNR and SSIM
    use, in those units (:func:`mae_nb.data.value_range` of the image normalized, see
    :mod:`mae_nb.metrics`). ``kind``: ``"imagenet"``, ``"per-band"`` or ``"given"``.
    """

    mean: np.ndarray
    std: np.ndarray
    data_range: float
    kind: str

    def apply(self, image: np.ndarray) -> np.ndarray:
        """image: (..., C, H, W) -> normalized float32 of the same shape."""
        return ((image - self.mean[:, None, None]) / self.std[:, None, None]).astype(np.float32)

    def invert(self, x: np.ndarray) -> np.ndarray:
        """normalized (..., C, H, W) -> the image's units, float32."""
        return (x * self.std[:, None, None] + self.mean[:, None, None]).astype(np.float32)

    def model_input(self, image: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The model's input: image (..., C, H, W) normalized, 0 where valid (..., H, W) is off."""
        x = np.array(
            image, dtype=np.result_type(image.dtype, self.mean.dtype)
        )  # one copy, in place
        np.nan_to_num(x, copy=False)
        x -= self.mean[:, None, None]
        x /= self.std[:, None, None]
        x[~np.broadcast_to(np.expand_dims(valid, -3), x.shape)] = 0.0
        return x.astype(np.float32, copy=False)


def _unit_range(image: np.ndarray, valid: np.ndarray, dtype) -> tuple[float, float]:
    """The (low, high) values that map to 0 and 1 for an RGB model."""
    if np.dtype(dtype) == np.uint8:
        return 0.0, 255.0
    values = image[:, valid]
    values = values[np.isfinite(values)]
    if values.size and values.min() >= 0 and values.max() <= 1:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    return float(lo), float(max(hi, lo + 1e-6))


def normalization(
    image: np.ndarray,
    kind: str = "auto",
    valid: np.ndarray | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    dtype=None,
) -> Normalization:
    """The normalization of ``image`` (C, H, W): ImageNet for RGB, per-band statistics otherwise.

    ``kind``: ``"auto"`` (ImageNet for 3 bands, else per-band), ``"imagenet"`` or ``"per-band"``.
    ``mean`` and ``std`` (C,), in the image's units, override the computed ones. Statistics use
    ``valid`` finite pixels only. ``dtype``: the image's original dtype (uint8 means 0..255).
    ``data_range`` of the result: :func:`mae_nb.data.value_range` of ``image`` (the course's
    convention when ``image`` is the whole source; callers scoring a crop override it).
    """
    image = np.asarray(image)
    dtype = image.dtype if dtype is None else dtype
    c = image.shape[0]
    valid = np.ones(image.shape[1:], bool) if valid is None else np.asarray(valid, bool)
    valid = valid & np.isfinite(image).all(axis=0)
    if kind not in ("auto", "imagenet", "per-band"):
        raise InputError(f"normalize must be 'auto', 'imagenet' or 'per-band', got {kind!r}")
    if not valid.any():
        raise InputError("the image has no valid pixel (all nodata or NaN); nothing to reconstruct")
    pixels = image[:, valid].astype(np.float64)  # (C, n)
    data_range = value_range(image, valid, dtype)
    if kind == "auto":
        kind = "imagenet" if c == 3 else "per-band"
    if kind == "imagenet":
        if c != 3:
            raise InputError(
                f"ImageNet normalization needs 3 bands (red, green, blue), got {c}; "
                "use normalize='per-band' or pick bands=[r, g, b]"
            )
        lo, hi = _unit_range(image, valid, dtype)
        m = lo + np.asarray(IMAGENET_MEAN) * (hi - lo)
        s = np.asarray(IMAGENET_STD) * (hi - lo)
    else:
        m = pixels.mean(axis=1)
        s = np.maximum(pixels.std(axis=1), 1e-6 * max(data_range, 1e-12))
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise InputError("give both mean and std (one value per band), or neither")
        m = np.asarray(mean, np.float64).reshape(-1)
        s = np.asarray(std, np.float64).reshape(-1)
        if m.size != c or s.size != c:
            raise InputError(
                f"mean and std need one value per band ({c}), got {m.size} and {s.size}"
            )
        if (s <= 0).any():
            raise InputError(f"std must be positive, got {s.tolist()}")
        kind = "given"
    return Normalization(m.astype(np.float32), s.astype(np.float32), float(data_range), kind)


# --------------------------------------------------------------------------- the model's geometry


@dataclass(frozen=True)
class ModelGeometry:
    """What reconstruct needs to know about an MAE: patch size, band count, input size."""

    patch_size: int
    in_chans: int
    img_size: tuple[int, int] | None  # None: the model takes any multiple of patch_size
    built_size: tuple[int, int] | None = None  # the size the model was built (and trained) for

    def tile_size(self, size: int | None = None) -> int:
        """The side of the square tiles to cut a scene into: ``size``, else the model's input
        size (224 if unknown); checked against a fixed input size and the patch size."""
        size = int(size or (self.built_size[0] if self.built_size else 224))
        if self.img_size is not None and (size, size) != self.img_size:
            raise InputError(
                f"tile_size must be the model's input size {self.img_size}, got {size}"
            )
        if size % self.patch_size:
            raise InputError(
                f"tile_size {size} is not a multiple of the patch size {self.patch_size}"
            )
        return size


def model_geometry(model: torch.nn.Module) -> ModelGeometry:
    """Patch size, ``in_chans`` and fixed input size (if any) of an MAE with timm's PatchEmbed."""
    pe = getattr(model, "patch_embed", None)
    if pe is None or not hasattr(model, "forward_encoder") or not hasattr(model, "forward_decoder"):
        raise InputTypeError(
            f"expected a masked autoencoder with patch_embed, forward_encoder and forward_decoder "
            f"(mae_nb.models.mae.MaskedAutoencoderViT), got {type(model).__name__}"
        )
    p = pe.patch_size
    p = int(p[0] if isinstance(p, (tuple, list)) else p)
    in_chans = int(getattr(model, "in_chans", None) or pe.proj.in_channels)
    size = getattr(pe, "img_size", None)
    if size is not None:
        size = (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size),) * 2
    # timm's PatchEmbed with strict_img_size=False (mae_nb's MAE) takes any multiple of a patch
    dynamic = not getattr(pe, "strict_img_size", True) or getattr(pe, "dynamic_img_size", False)
    return ModelGeometry(p, in_chans, None if dynamic else size, size)


def model_normalization(model, normalize: str = "auto", mean=None, std=None):
    """The ``(normalize, mean, std)`` to use for ``model``: the caller's, else what the model says.

    A model loaded by :mod:`mae_nb.models.mae` carries ``pretrained_cfg["mean"/"std"]``:
    ImageNet's for Meta's RGB checkpoints (then ``"imagenet"``, which scales the image to [0, 1]
    first), or the per-band statistics chapter 03 trained with, in the image's units (then used as
    given). A model whose ``pretrained_cfg["normalize"]`` is ``"per-band"`` without ``mean``/``std``
    (``mae-nb mae pretrain`` with per-scene statistics, the course models) standardizes each image
    by its own per-band statistics.
    """
    if mean is not None or std is not None or normalize != "auto":
        return normalize, mean, std
    cfg = getattr(model, "pretrained_cfg", None) or {}
    m, s = cfg.get("mean"), cfg.get("std")
    if m is None or s is None:
        # a model pretrained with per-scene statistics (the course models): the image's own
        return (
            cfg.get("normalize", normalize) if cfg.get("normalize") == "per-band" else normalize,
            None,
            None,
        )
    if len(m) == 3 and np.allclose(m, IMAGENET_MEAN) and np.allclose(s, IMAGENET_STD):
        return "imagenet", None, None
    return normalize, m, s


def check_model_bands(model, count: int, bands: Sequence[int] | None = None, what="the image"):
    """Raise a clear error when a model that names its bands cannot take those chosen.

    ``count``: the image's band count; ``bands``: the 1-based bands chosen (None: all). A model
    that names its bands (``pretrained_cfg["band_names"]``, e.g. Prithvi's six HLS bands) gets
    an error naming them, in order, and how to choose them with ``--bands``; for other models
    :func:`~mae_nb.scene.prepare_image` reports a band count that does not fit.
    """
    chosen = count if bands is None else len(bands)
    in_chans = int(model_geometry(model).in_chans)
    if chosen == in_chans:
        return
    names = (getattr(model, "pretrained_cfg", None) or {}).get("band_names")
    if not names:
        return  # prepare_image's error (in_chans, how to pick bands) says it for other models
    took = f"{what} has {count} bands" + (f" and {chosen} were chosen" if bands else "")
    expected = f"{in_chans} bands, in this order: {', '.join(names)}"
    how = (
        f"choose them with --bands ({in_chans} 1-based band indices in that order, e.g. "
        "--bands 1 2 3 4 5 7 for a Landsat 7 ETM+ file, 2 3 4 5 6 7 for Landsat 8/9, or the "
        "indices of B02 B03 B04 B8A B11 B12 in a Sentinel-2 stack)"
    )
    raise InputError(f"the model takes {expected}; {took}: {how}")


# --------------------------------------------------------------------------- passes


def check_passes(
    mask_ratio: float, iterations: int | None, mode: str, precision: str, num_patches: int
) -> tuple[float, int, int]:
    """Check the passes' settings for an image of ``num_patches`` patches, before any work.

    Returns ``(mask_ratio, iterations, masked per pass)``; ``iterations=None`` becomes 1 for
    chained passes and every group for covering ones.
    """
    if mode not in MODES:
        raise InputError(f"mode must be 'chained' or 'covering', got {mode!r}")
    check_precision(precision)
    ratio = check_mask_ratio(mask_ratio, num_patches)
    if ratio == 0:
        if mode == "covering":
            raise InputError(
                "covering mode needs mask_ratio > 0 (with 0 no patch is ever predicted)"
            )
    masked = num_patches - int(num_patches * (1 - ratio))
    groups = math.ceil(num_patches / masked) if masked else 1
    if iterations is None:
        iterations = groups if mode == "covering" else 1
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        raise InputError(f"iterations must be a whole number >= 1, got {iterations}")
    iterations = int(iterations)
    if mode == "covering" and iterations > groups:
        raise InputError(
            f"covering mode with mask_ratio={mask_ratio} covers all {num_patches} patches in "
            f"{groups} passes; iterations must be at most {groups}, got {iterations} "
            "(use mode='chained' for more passes)"
        )
    return ratio, iterations, masked


def pass_noise(
    mode: str, num_patches: int, mask_ratio: float, iterations: int, generator: torch.Generator
) -> tuple[torch.Tensor, list[float]]:
    """The mask noise of each pass, (K, L), and the mask_ratio to hand the model in each pass.

    The model keeps the ``int(L * (1 - ratio))`` patches with the smallest noise. Chained
    passes draw fresh uniform noise. Covering passes give the group to mask noise in [1, 2) and
    the rest noise in [0, 1), with a ratio chosen so that exactly the group is masked.
    """
    length = num_patches
    if mode == "chained":
        return torch.rand(iterations, length, generator=generator), [mask_ratio] * iterations
    masked = length - int(length * (1 - mask_ratio))
    perm = torch.randperm(length, generator=generator)
    groups = perm.split(masked)[:iterations]
    noise = torch.rand(iterations, length, generator=generator)
    ratios = []
    for k, g in enumerate(groups):
        noise[k, g] += 1.0
        ratios.append((len(g) - 0.5) / length)  # int(L * (1 - r)) = L - len(g) exactly
    return noise, ratios


def tile_passes(
    model,
    x: torch.Tensor,
    tiles: Sequence[int],
    seed: int,
    mask_ratio: float,
    iterations: int,
    mode: str,
    precision: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The passes of :func:`reconstruct` on a batch of tiles; tile ``i`` is masked by ``(seed, i)``.

    x: (n, C, s, s) normalized; ``tiles``: (n,) the tiles' numbers in their scene (see
    :func:`mae_nb.scene.tile_generator`), so a tile's masks do not depend on its batch.
    ``iterations``: resolved (see :func:`check_passes`). Returns ``pasted`` (n, C, s, s) and
    ``masks`` (K, n, L).
    """
    p = model_geometry(model).patch_size
    length = (x.shape[2] // p) * (x.shape[3] // p)
    noises, ratios = [], None
    for t in tiles:
        noise, ratios = pass_noise(mode, length, mask_ratio, iterations, tile_generator(seed, t))
        noises.append(noise)
    noise = torch.stack(noises, dim=1).to(x.device)  # (K, n, L)
    pasted, _, masks, _ = run_passes(
        model, x, mask_ratio, iterations, mode, noise, ratios, precision
    )
    return pasted, masks


def _takes_grid(fn) -> bool:
    import inspect

    try:
        return "grid_hw" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _run_model(model, x, ratio, noise, norm_pix: str = "none"):
    """One masked pass: x (N, C, H, W) normalized, noise (N, L) -> pred (N, C, H, W), mask (N, L).

    ``norm_pix``: how a normalized-pixel prediction is un-normalized (:func:`unnormalize_patches`).
    """
    p = model_geometry(model).patch_size
    grid = (x.shape[2] // p, x.shape[3] // p)
    dec_kw = {"grid_hw": grid} if _takes_grid(model.forward_decoder) else {}
    unp_kw = {"grid_hw": grid} if _takes_grid(model.unpatchify) else {}
    latent, mask, ids_restore = model.forward_encoder(x, ratio, noise=noise)
    pred = model.forward_decoder(latent, ids_restore, **dec_kw)
    with torch.autocast(device_type=x.device.type, enabled=False):
        if norm_pix != "none":
            pred = unnormalize_patches(pred.float(), x, mask, norm_pix, patch_size=p)
        pred = model.unpatchify(pred.float(), **unp_kw)
    return pred, mask.float()


@torch.inference_mode()
def run_passes(
    model,
    x: torch.Tensor,
    mask_ratio: float,
    iterations: int,
    mode: str,
    noise: torch.Tensor,
    ratios: Sequence[float],
    precision: str = "auto",
    norm_pix: str | None = None,
):
    """Run ``iterations`` masked passes on a batch; the core of :func:`reconstruct`.

    x: (N, C, H, W) normalized. noise: (K, N, L). ``norm_pix``: :func:`norm_pix_display` (by
    default the honest un-normalization for a ``norm_pix_loss`` model, none otherwise). Returns
    ``pasted`` (N, C, H, W) (the image after the last pass), ``prediction`` (N, C, H, W) (the
    model's raw output of the last pass), ``masks`` (K, N, L) (1 = masked in that pass) and
    ``steps`` (K, N, C, H, W) (the pasted image after each pass).
    """
    geom = model_geometry(model)
    p = geom.patch_size
    n, _, h, w = x.shape
    gh, gw = h // p, w // p
    how = norm_pix_display(model, norm_pix)
    # one copy of the model per precision, made once (mae_nb.precision), for all passes
    with running(model, precision) as runner:
        return _passes(runner, x, iterations, mode, noise, ratios, p, n, gh, gw, h, w, how)


def _passes(model, x, iterations, mode, noise, ratios, p, n, gh, gw, h, w, norm_pix="none"):
    original = current = x
    steps, masks = [], []
    prediction = None
    for k in range(iterations):
        source = current if mode == "chained" else original
        pred, mask = _run_model(model, source, ratios[k], noise[k], norm_pix)
        expected = noise[k].argsort(dim=1).argsort(dim=1) >= int(mask.shape[1] * (1 - ratios[k]))
        if not torch.equal(mask.bool(), expected.to(mask.device)):
            raise InputError(
                "the model did not mask the patches its noise chose; reconstruct needs "
                "forward_encoder(imgs, mask_ratio, noise) to keep the lowest-noise patches"
            )
        pix = mask.reshape(n, gh, 1, gw, 1).expand(n, gh, p, gw, p).reshape(n, 1, h, w)
        current = torch.where(pix > 0, pred, current).float()
        steps.append(current)
        masks.append(mask)
        prediction = pred
    return current, prediction, torch.stack(masks), torch.stack(steps)


# --------------------------------------------------------------------------- one image


@dataclass
class Reconstruction:
    """Everything one :func:`reconstruct` call produced. Images are (C, H, W) float32 in the
    input's units with NaN at nodata; masks are True where a patch was masked.

    - ``original``: the input (after band selection and cropping).
    - ``masked``: the original with every patch masked in any pass set to NaN (Meta's "masked").
    - ``prediction``: the model's output for all patches in the last pass (Meta's "reconstruction").
    - ``pasted``: the final image: predictions in the masked patches, the input elsewhere
      (Meta's "reconstruction + visible").
    - ``mask``: (gh, gw) patches masked in at least one pass; ``pass_masks``: (K, gh, gw);
      ``pixel_mask``: (H, W); ``steps``: (K, C, H, W) the pasted image after each pass.
    - ``patch_error``: (gh, gw) mean squared error of ``pasted`` per patch over valid pixels
      (0 where a patch was never masked, NaN where it has no valid pixel).
    - ``psnr_masked``/``ssim_masked``: ``pasted`` vs ``original`` on valid pixels of masked
      patches (NaN if none; SSIM's map computed on the whole images, see :func:`masked_scores`);
      ``psnr``/``ssim``: on all valid pixels of the crop. All with ``data_range``, the source's.
    - ``norm_pix``: how a ``norm_pix_loss`` model's prediction was un-normalized
      (:func:`unnormalize_patches`; ``"none"`` for a model that predicts pixels).
    """

    original: np.ndarray
    masked: np.ndarray
    prediction: np.ndarray
    pasted: np.ndarray
    mask: np.ndarray
    pixel_mask: np.ndarray
    pass_masks: np.ndarray
    steps: np.ndarray
    valid: np.ndarray
    patch_error: np.ndarray
    psnr_masked: float
    ssim_masked: float
    psnr: float
    ssim: float
    mask_ratio: float
    iterations: int
    mode: str
    seed: int
    patch_size: int
    normalization: Normalization
    crop: tuple[int, int] = (0, 0)  # rows, cols cut from the bottom and right
    precision: str = "fp32"
    seconds: float = 0.0
    norm_pix: str = "none"  # how a norm_pix_loss model's prediction was un-normalized

    @property
    def data_range(self) -> float:
        return self.normalization.data_range

    @property
    def masked_share(self) -> float:
        """Share of patches masked in at least one pass."""
        return float(self.mask.mean())

    def scores(self) -> dict[str, float]:
        return {
            "psnr_masked": self.psnr_masked,
            "ssim_masked": self.ssim_masked,
            "psnr": self.psnr,
            "ssim": self.ssim,
            "masked_share": self.masked_share,
        }

    def rgb(
        self, bands: Sequence[int] | None = None, low: float = 1.0, high: float = 99.0
    ) -> dict[str, np.ndarray]:
        """Display images (H, W, 3) in [0, 1] of the four panels, all with the original's stretch.

        ``bands``: 1-based bands for red, green, blue (default 1, 2, 3; a 1-band image is grey).
        Masked patches in ``masked`` are mid-grey; nodata is black.
        """
        c = self.original.shape[0]
        bands = list(bands) if bands is not None else ([1, 2, 3] if c >= 3 else [1, 1, 1])
        idx = [b - 1 for b in bands]
        ref = self.original[idx]
        ok = self.valid & np.isfinite(ref).all(axis=0)
        lo = np.array([np.percentile(b[ok], low) if ok.any() else 0 for b in ref])[:, None, None]
        hi = np.array([np.percentile(b[ok], high) if ok.any() else 1 for b in ref])[:, None, None]
        out = {}
        for name in ("original", "masked", "prediction", "pasted"):
            a = (getattr(self, name)[idx] - lo) / np.maximum(hi - lo, 1e-12)
            a = np.clip(np.moveaxis(a, 0, -1), 0, 1)
            fill = np.where(self.valid & (self.pixel_mask if name == "masked" else False), 0.5, 0.0)
            a = np.where(np.isfinite(a), a, fill[..., None])
            out[name] = a.astype(np.float32)
        return out


def _patch_mse(pasted, original, valid, p):
    c, h, w = original.shape
    gh, gw = h // p, w // p
    sq = np.where(valid[None], (pasted - original) ** 2, 0.0).reshape(c, gh, p, gw, p)
    cnt = valid.reshape(gh, p, gw, p).sum(axis=(1, 3)) * c
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sq.sum(axis=(0, 2, 4)) / cnt).astype(np.float32)


def _array(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().float().cpu().numpy()
    return np.asarray(a)


def masked_scores(
    pasted, original, pixel_mask, data_range: float, valid=None, ssim: bool = True
) -> dict[str, float]:
    """PSNR and SSIM of ``pasted`` against ``original`` on the masked pixels and on all of them.

    The scores of :func:`reconstruct` (and of chapter 03's validation tiles, so one model gets
    one number in both chapters). pasted, original: (C, H, W) or (N, C, H, W) in the source's
    units; ``pixel_mask``: (H, W) or (N, H, W), True where a patch was masked; ``valid``: False
    at nodata (non-finite pixels are nodata too); ``data_range``: the source's
    (:mod:`mae_nb.metrics`). PSNR pools the squared errors of all images. SSIM's map is
    computed on the full images and averaged over the valid masked pixels
    (``metrics.ssim(..., region=pixel_mask)``); NaN when ``ssim=False``, for images under 11 px,
    or where there is no pixel to score. Returns ``psnr_masked``, ``ssim_masked``, ``psnr``,
    ``ssim``.
    """
    o = _array(original)
    finite = np.isfinite(o).all(axis=-3) & np.isfinite(_array(pasted)).all(axis=-3)
    ok = finite if valid is None else finite & (_array(valid) > 0)
    masked = ok & (_array(pixel_mask) > 0)
    can_ssim = ssim and min(o.shape[-2:]) >= 11
    nan = float("nan")
    out = {}
    for name, region in (("_masked", masked), ("", None)):
        scored = ok if region is None else region
        if not scored.any():
            out["psnr" + name], out["ssim" + name] = nan, nan
            continue
        out["psnr" + name] = metrics.psnr(pasted, original, data_range, valid=scored)
        out["ssim" + name] = (
            metrics.ssim(pasted, original, data_range, valid=ok, region=region) if can_ssim else nan
        )
    return out


def reconstruct(
    model: torch.nn.Module,
    image,
    mask_ratio: float = 0.75,
    iterations: int | None = None,
    seed: int = 0,
    mode: str = "chained",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    valid: np.ndarray | None = None,
    *,
    bands: Sequence[int] | None = None,
    normalize: str = "auto",
    precision: str = "auto",
    data_range: float | None = None,
    norm_pix: str | None = None,
) -> Reconstruction:
    """Mask ``mask_ratio`` of ``image``'s patches and let ``model`` predict them, pass by pass.

    image: (C, H, W) array or tensor (or a :class:`~mae_nb.data.Raster`/``Sample``), any dtype.
    ``bands``: 1-based bands to use (``[3, 2, 1]`` for an RGB composite of a Landsat file).
    ``mode``: ``"chained"`` (default; each pass masks a fresh random ``mask_ratio`` of the
    previous pass's pasted output, ``iterations`` defaults to 1) or ``"covering"`` (disjoint
    masks on the original, ``iterations`` defaults to all ``ceil(1 / mask_ratio)`` groups, so
    every patch is predicted exactly once); see the module docstring. ``seed`` fixes the masks.
    ``mean``/``std``: per-band normalization in the image's units (default: ``normalize``).
    ``valid``: (H, W) bool, False at nodata (NaN pixels are nodata too).
    ``precision``: ``"auto"`` (default) runs the fastest precision this machine runs well
    (bf16 with bf16 units or on a GPU, int8 for a large model on a CPU without them, else fp32;
    :mod:`mae_nb.precision`), within 0.1 dB PSNR of ``"fp32"``, which is exact;
    ``Reconstruction.precision`` says which one ran.
    ``data_range``: the data source's range PSNR and SSIM use (:mod:`mae_nb.metrics`); default:
    ``image.data_range`` for a ``Sample``, else :func:`mae_nb.data.value_range` of ``image``,
    which is right only when ``image`` is the whole source: pass ``sample.data_range`` when
    scoring a crop of it.
    ``norm_pix``: for a model trained with ``norm_pix_loss``, how its normalized predictions
    become pixels (:func:`unnormalize_patches`: ``"neighbours"``, the default, ``"own"``, an
    oracle, or ``"none"``); an error for a model that predicts pixels (:func:`norm_pix_display`).
    """
    start = time.perf_counter()
    if data_range is None and hasattr(image, "raster") and hasattr(image, "data_range"):
        data_range = image.data_range  # a Sample: its source's declared range
    geom = model_geometry(model)
    p = geom.patch_size
    scene = prepare_image(image, geom.in_chans, p, bands=bands, valid=valid)
    (h0, w0), (hc, wc) = scene.shape, (scene.height, scene.width)
    if geom.img_size is not None and (hc, wc) != geom.img_size:
        cropped = f" ({hc} x {wc} after cropping to whole patches)" if scene.crop != (0, 0) else ""
        raise InputError(
            f"the model takes {geom.img_size[0]} x {geom.img_size[1]} images; this one is {h0} x "
            f"{w0}{cropped}. Cut a crop of the model's size, or use reconstruct_scene for a large "
            "image"
        )
    length = (hc // p) * (wc // p)
    ratio, iterations, _ = check_passes(mask_ratio, iterations, mode, precision, length)
    norm_pix = norm_pix_display(model, norm_pix)
    precision = choose(precision, model)
    image, valid = scene.array, scene.valid
    normalize, mean, std = model_normalization(model, normalize, mean, std)
    norm = normalization(image, normalize, valid, mean, std, scene.dtype)
    if data_range is not None:
        norm.data_range = metrics.check_data_range(data_range)

    seed = check_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    noise, ratios = pass_noise(mode, length, ratio, iterations, generator)
    with inference(model) as device:
        x = torch.from_numpy(norm.model_input(image, valid))[None].to(device)
        pasted, pred, masks, steps = run_passes(
            model, x, ratio, iterations, mode, noise[:, None].to(device), ratios, precision,
            norm_pix,
        )  # fmt: skip

    gh, gw = hc // p, wc // p
    pass_masks = masks[:, 0].reshape(iterations, gh, gw).bool().cpu().numpy()
    mask = pass_masks.any(axis=0)
    pixel_mask = np.kron(mask, np.ones((p, p), bool)).astype(bool)
    nan = np.float32("nan")

    def out(t):
        a = norm.invert(t.float().cpu().numpy())
        return np.where(valid, a, nan).astype(np.float32)

    original = np.where(valid[None], image, nan).astype(np.float32)
    pasted_np = out(pasted[0])
    masked = np.where(pixel_mask[None], nan, original).astype(np.float32)
    sc = masked_scores(pasted_np, original, pixel_mask, norm.data_range, valid)
    pm, sm, pa, sa = sc["psnr_masked"], sc["ssim_masked"], sc["psnr"], sc["ssim"]
    return Reconstruction(
        original=original, masked=masked, prediction=out(pred[0]), pasted=pasted_np, mask=mask,
        pixel_mask=pixel_mask, pass_masks=pass_masks, steps=out(steps[:, 0]), valid=valid,
        patch_error=_patch_mse(pasted_np, original, valid, p), psnr_masked=pm, ssim_masked=sm,
        psnr=pa, ssim=sa, mask_ratio=ratio, iterations=iterations, mode=mode, seed=seed,
        patch_size=p, normalization=norm, crop=scene.crop, precision=precision,
        seconds=time.perf_counter() - start, norm_pix=norm_pix,
    )  # fmt: skip


# --------------------------------------------------------------------------- whole scenes


@dataclass
class SceneResult:
    """What :func:`reconstruct_scene` wrote and measured.

    ``psnr``: the reconstruction vs the source over all valid pixels, in the source's units
    with ``data_range`` (the source's, :mod:`mae_nb.metrics`); ``tiles``: tiles run through the
    model (``skipped``: tiles with no valid pixel, left as nodata).
    """

    out_path: Path
    error_path: Path
    shape: tuple[int, int]
    bands: list[int]
    tile_size: int
    overlap: int
    tiles: int
    skipped: int
    seconds: float
    psnr: float
    mean_error: float
    normalization: Normalization = field(repr=False)
    data_range: float = float("nan")
    precision: str = "fp32"  # the precision that ran (mae_nb.precision)

    @property
    def tiles_per_second(self) -> float:
        return self.tiles / self.seconds if self.seconds > 0 else float("nan")


class _ScoredRows:
    """Blended rows of :func:`reconstruct_scene` -> the rows to write (the reconstruction in the
    source's dtype, its RMSE over bands), keeping the sums the scene's PSNR and mean error need."""

    def __init__(self, scene: RasterTiles):
        self.scene, self.sq_sum, self.abs_sum, self.count = scene, 0.0, 0.0, 0

    def __call__(self, chunks) -> tuple[np.ndarray, np.ndarray] | None:
        scene, rows = self.scene, None
        for top, cols, rec, ok in chunks:  # column chunks keep the temporaries small
            if rows is None:
                n = rec.shape[1]
                rows = (
                    np.empty((scene.count, n, scene.width), scene.dtype),
                    np.empty((1, n, scene.width), np.float32),
                )
            err = np.sqrt(np.mean((rec - scene.read_rows(top, n, cols)) ** 2, axis=0))
            err = np.where(ok, err, np.nan).astype(np.float32)
            self.sq_sum += float(np.sum(err[ok].astype(np.float64) ** 2) * scene.count)
            self.abs_sum += float(np.sum(err[ok], dtype=np.float64))
            self.count += int(ok.sum())
            rows[0][:, :, cols] = to_dtype(rec, scene.dtype, scene.nodata, ok)
            rows[1][0, :, cols] = err
        return rows

    def psnr(self, data_range: float) -> float:
        mse = self.sq_sum / max(self.count * self.scene.count, 1)
        return 10 * math.log10(data_range**2 / max(mse, 1e-20)) if self.count else float("nan")


def reconstruct_scene(
    model: torch.nn.Module,
    in_path: str | Path,
    out_path: str | Path,
    *,
    mask_ratio: float = 0.25,
    iterations: int | None = None,
    mode: str = "chained",
    seed: int = 0,
    bands: Sequence[int] | None = None,
    overlap: int | None = None,
    batch_size: int = 4,
    normalize: str = "auto",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    precision: str = "auto",
    error_path: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    tile_size: int | None = None,
    window: tuple[int, int, int, int] | None = None,
    data_range: float | None = None,
) -> SceneResult:
    """Reconstruct a GeoTIFF of any size tile by tile; write the reconstruction and an error map.

    The scene is cut into tiles of the model's input size that overlap by ``overlap`` pixels
    (default: an eighth of a tile); each tile is reconstructed as :func:`reconstruct` does
    (``mask_ratio``, ``iterations``, ``mode``; tile ``i`` uses the masks of seed ``(seed, i)``),
    and overlapping tiles are blended with :func:`mae_nb.scene.blend_weights`. Tiles are read
    and results written in windows, one strip of tiles at a time (:mod:`mae_nb.scene`), so
    memory does not grow with the number of rows and grows with the width only by one strip.
    The normalization is computed once for the whole scene (from a decimated read), so tiles
    agree.

    Outputs: ``out_path``, the reconstruction with the source's dtype, CRS, transform and nodata
    (a valid pixel that would round to the nodata value is moved one step off it); and
    ``error_path`` (default ``<out>_error.tif``), float32, the per-pixel root-mean-square error
    over bands in the source's units, NaN at nodata. Existing files are never replaced unless
    ``overwrite=True``. Files are written under a temporary name and renamed when complete.
    ``window``: ``(row_off, col_off, height, width)`` to reconstruct only that part of the scene
    (the outputs then cover the window, with its transform).
    ``data_range``: the source's data range for the PSNR (:mod:`mae_nb.metrics`), e.g. the
    registry's declared one (``mae-nb reconstruct`` passes it for the course's samples); default
    :func:`mae_nb.data.value_range` of the whole raster's bands used (uint8: 255; read from the
    decimated overview, so for a large float raster the extremes of that read).
    """
    if data_range is not None:
        data_range = metrics.check_data_range(data_range)
    geom = model_geometry(model)
    in_path, out_path = Path(in_path), Path(out_path)
    error_path = Path(error_path or out_path.with_name(out_path.stem + "_error.tif"))
    with RasterTiles(in_path, bands, window) as scene:
        if scene.count != geom.in_chans:
            raise InputError(
                f"{in_path.name} gives {scene.count} band(s) ({scene.bands}) but the model "
                f"expects in_chans={geom.in_chans}; choose bands with bands=[...] (--bands)"
            )
        check_outputs(in_path, (out_path, error_path), overwrite)
        seed = check_seed(seed)
        size = geom.tile_size(tile_size)
        overlap = size // 8 if overlap is None else int(overlap)
        blend = BlendAccumulator(scene.count, scene.height, scene.width, size, overlap)
        length = (size // geom.patch_size) ** 2
        ratio, iterations, _ = check_passes(mask_ratio, iterations, mode, precision, length)
        precision = choose(precision, model)
        normalize, mean, std = model_normalization(model, normalize, mean, std)
        whole = scene.overview()  # one normalization for the whole scene, so tiles agree
        norm = normalization(whole.array, normalize, whole.valid, mean, std, whole.dtype)
        if data_range is not None:
            norm.data_range = float(data_range)
        grid = TileGrid(scene.height, scene.width, size, size - overlap)
        desc = f"reconstruct {in_path.name}"
        batches = tile_batches(scene, grid, batch_size, progress=progress, desc=desc)
        scored, n_tiles, start = _ScoredRows(scene), 0, time.perf_counter()
        rmse = dict(count=1, dtype="float32", nodata=float("nan"))
        rmse["descriptions"] = ["reconstruction RMSE over bands"]
        with (
            scene.writer(out_path) as out,
            scene.writer(error_path, **rmse) as err,
            inference(model) as device,
        ):
            for batch in batches:
                if len(batch):
                    x = torch.from_numpy(norm.model_input(batch.pixels, batch.valid)).to(device)
                    y = tile_passes(model, x, batch.index, seed, ratio, iterations, mode, precision)
                    y = norm.invert(y[0].float().cpu().numpy())
                    blend.add(batch.rows, batch.cols, y, batch.valid)
                n_tiles += len(batch)
                rows = scored(blend.pop(batch.final_rows))  # rows no later tile touches
                if rows is not None:
                    out.write(rows[0])
                    err.write(rows[1])
    seconds, psnr = time.perf_counter() - start, scored.psnr(norm.data_range)
    mean_error = scored.abs_sum / max(scored.count, 1)
    return SceneResult(
        out_path, error_path, (scene.height, scene.width), scene.bands, size, overlap, n_tiles,
        len(grid) - n_tiles, seconds, psnr, mean_error, norm, norm.data_range, precision,
    )  # fmt: skip
