"""Chapters 01-02's study: autoencoders scored against baselines on held-out tiles, with verdicts.

What the chapters measure, on the models of :mod:`mae_nb.models.autoencoders`:

1. **Baselines** (the scores to beat): :func:`tile_mean_baseline` (each band of a tile replaced by
   its mean, C numbers per tile) and, for tiles with hidden patches, :func:`visible_mean_baseline`
   (each band filled with the mean of the tile's visible pixels).
2. **Scores and tables**: :func:`evaluate_reconstruction` (PSNR, SSIM, MSE over valid pixels),
   :func:`score_reconstructions` and :func:`compare_autoencoders` (rows for
   :func:`mae_nb.stats.markdown_table`), :func:`hidden_psnr_curves` (PSNR on hidden pixels per
   mask ratio).
3. **Verdicts**: :func:`group_psnr`, :func:`psnr_difference` and :func:`hidden_psnr_difference`
   turn "model A reconstructs better than model B" into a paired difference of PSNR over
   spatial blocks of tiles (overlapping tiles are not independent samples, blocks nearly are),
   judged by :func:`mae_nb.stats.judge`; :func:`psnr_verdict` writes the sentence.
4. **The latent space**: :func:`latent_projection` (PCA), :func:`latent_knn_accuracy` (do tiles
   of one land cover get close codes?), :func:`prior_distance` (how far codes are from an
   adversarial autoencoder's prior).

Tiles are tensors ``(N, C, H, W)`` in about [0, 1] with NaN at nodata, as
:func:`mae_nb.data.tiling.tile_split` makes them. **Scores follow the course's convention**
(:mod:`mae_nb.metrics`): every PSNR and SSIM here takes ``units=split.units``
(:class:`mae_nb.data.tiling.SourceUnits`), maps the scaled tiles back to the source's units (a
reconstruction clipped to the scaled [0, 1] first) and uses the source's data range, so a
number here means what it means in every other chapter.
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import numpy as np
import torch

from mae_nb import metrics, stats
from mae_nb.errors import InputError
from mae_nb.models.autoencoders import (
    MaskedReconstruction,
    encode_tiles,
    fill_nodata,
    masked_reconstruction,
    reconstruct_tiles,
)

__all__ = [
    "compare_autoencoders",
    "evaluate_reconstruction",
    "group_psnr",
    "hidden_psnr_curves",
    "hidden_psnr_difference",
    "latent_knn_accuracy",
    "latent_projection",
    "prior_distance",
    "psnr_difference",
    "psnr_verdict",
    "score_reconstructions",
    "tile_mean_baseline",
    "visible_mean_baseline",
]


# --------------------------------------------------------------------------- baselines


def tile_mean_baseline(imgs: torch.Tensor) -> torch.Tensor:
    """Each band of each tile replaced by its mean over the tile's valid pixels (N, C, H, W).

    The reconstruction any autoencoder must beat: it needs C numbers per tile.
    """
    filled, valid = fill_nodata(imgs)
    w = valid[:, None].to(filled.dtype)
    count = w.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (filled * w).sum(dim=(2, 3), keepdim=True) / count
    return mean.expand_as(imgs).clone()


def visible_mean_baseline(result: MaskedReconstruction) -> torch.Tensor:
    """The naive answer to a masked input: each band filled with the mean of its *visible* pixels.

    The fill any masked autoencoder must beat on the hidden pixels. ``result.hidden`` is NaN
    where hidden, so only visible pixels count. Returns (N, C, H, W).
    """
    return tile_mean_baseline(result.hidden)


# --------------------------------------------------------------------------- scores and tables


def evaluate_reconstruction(
    pred: torch.Tensor,
    target: torch.Tensor,
    pixel_mask: torch.Tensor | None = None,
    ssim: bool = True,
    *,
    units,
) -> dict[str, float]:
    """PSNR (dB), SSIM and MSE of ``pred`` against ``target`` (N, C, H, W), scaled tiles.

    Scored in the source's units with the source's data range (``units=split.units``; ``pred``
    is clipped to the scaled [0, 1] first). Only valid pixels count (finite in every band of
    ``target``), and only where ``pixel_mask`` (N, H, W) is True when given (e.g. the hidden
    patches): there SSIM's map is computed on the whole tiles and averaged over the masked
    valid pixels (``metrics.ssim(..., region=pixel_mask)``). MSE is in the source's units too.
    """
    pred, target = units(pred), units(target)
    valid = torch.isfinite(target).all(dim=1)
    region = None if pixel_mask is None else pixel_mask.bool().cpu()
    scored = valid if region is None else valid & region
    out = {
        "psnr": metrics.psnr(pred, target, units.data_range, valid=scored),
        "mse": metrics.mse(pred, target, valid=scored),
    }
    if ssim:
        out["ssim"] = metrics.ssim(pred, target, units.data_range, valid=valid, region=region)
    return out


def score_reconstructions(
    target: torch.Tensor,
    reconstructions: dict,
    code_sizes: dict | None = None,
    pixel_mask: torch.Tensor | None = None,
    *,
    units,
) -> list[dict]:
    """One row per entry of ``reconstructions`` ({name: (N, C, H, W)}): PSNR, SSIM, MSE.

    Each against ``target`` (N, C, H, W). ``code_sizes`` ({name: numbers per tile}) adds a
    column; ``pixel_mask`` (N, H, W) scores only those pixels (e.g. hidden patches). Rows suit
    :func:`mae_nb.stats.markdown_table`. ``units``: see :func:`evaluate_reconstruction`.
    """
    rows = []
    for name, pred in reconstructions.items():
        s = evaluate_reconstruction(pred, target, pixel_mask, units=units)
        row: dict[str, Any] = {"model": name}
        if code_sizes is not None:
            row["numbers per tile"] = code_sizes.get(name, "")
        row.update({"PSNR (dB)": s["psnr"], "SSIM": s["ssim"], "MSE": s["mse"]})
        rows.append(row)
    return rows


def _fill_psnr(result: MaskedReconstruction, imgs: torch.Tensor, units) -> float:
    """PSNR of the visible-mean fill on the hidden pixels of ``result`` (NaN if none is hidden)."""
    if not result.pixel_mask.any():
        return float("nan")
    fill = visible_mean_baseline(result)
    return evaluate_reconstruction(fill, imgs, result.pixel_mask, ssim=False, units=units)["psnr"]


def hidden_psnr_curves(
    models: dict,
    imgs: torch.Tensor,
    ratios: Sequence[float],
    patch_size: int = 4,
    seed: int = 0,
    *,
    units,
) -> dict[str, list[float]]:
    """PSNR on the hidden pixels per mask ratio, per model ({name: model}) and for the fill.

    Every model sees the same hidden patches (same ``seed``); ``"visible-mean fill"`` is
    :func:`visible_mean_baseline` on them. Returns {name: [PSNR per ratio]}.
    """
    if not models:
        raise InputError("hidden_psnr_curves needs at least one model, got none")
    curves: dict[str, list[float]] = {name: [] for name in models}
    curves["visible-mean fill"] = []
    for ratio in ratios:
        for name, model in models.items():
            result = masked_reconstruction(model, imgs, ratio, patch_size, seed, units=units)
            curves[name].append(result.psnr_hidden)
        curves["visible-mean fill"].append(_fill_psnr(result, imgs, units))
    return curves


def compare_autoencoders(
    models: dict,
    imgs: torch.Tensor,
    mask_ratio: float = 0.5,
    patch_size: int = 4,
    seed: int = 0,
    *,
    units,
) -> list[dict]:
    """One row per model ({name: model}) on ``imgs`` (N, C, H, W), after a per-tile-mean row.

    Columns: numbers per tile in the code, PSNR and SSIM of complete tiles, and PSNR on the
    hidden pixels when ``mask_ratio`` of the patches are hidden (the same patches for every
    model; the mean row uses :func:`visible_mean_baseline` there). Rows suit
    :func:`mae_nb.stats.markdown_table`.
    """
    hidden_col = f"PSNR hidden @ {mask_ratio:.0%} (dB)"
    s = evaluate_reconstruction(tile_mean_baseline(imgs), imgs, units=units)
    mean_row = {"model": "tile mean", "numbers per tile": imgs.shape[1]}
    rows: list[dict[str, Any]] = [{**mean_row, "PSNR (dB)": s["psnr"], "SSIM": s["ssim"]}]
    for name, model in models.items():
        s = evaluate_reconstruction(reconstruct_tiles(model, imgs), imgs, units=units)
        result = masked_reconstruction(model, imgs, mask_ratio, patch_size, seed, units=units)
        rows.append(
            {
                "model": name,
                "numbers per tile": encode_tiles(model, imgs[:1]).shape[1],
                "PSNR (dB)": s["psnr"],
                "SSIM": s["ssim"],
                hidden_col: result.psnr_hidden,
            }
        )
    if models:
        rows[0][hidden_col] = _fill_psnr(result, imgs, units)
    return rows


# --------------------------------------------------------------------------- verdicts


def group_psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    groups: Sequence[Hashable] | None = None,
    pixel_mask: torch.Tensor | None = None,
    *,
    units,
) -> np.ndarray:
    """(G,) PSNR in dB of each group of tiles of ``pred`` against ``target`` (N, C, H, W).

    ``groups``: one key per tile (default: each tile its own group); a group's PSNR pools the
    valid pixels of all its tiles (where ``pixel_mask`` (N, H, W), if given), as
    :func:`evaluate_reconstruction` pools all tiles. Groups come in sorted key order; NaN for
    a group with no pixel to score. ``units``: see :func:`evaluate_reconstruction`.
    """
    pred, target = units(pred), units(target)
    valid = torch.isfinite(target).all(dim=1)
    if pixel_mask is not None:
        valid = valid & pixel_mask.bool().cpu()
    keys = np.arange(len(target)) if groups is None else np.asarray(groups)
    if keys.shape != (len(target),):
        raise InputError(f"groups must give one key per tile: {keys.shape} for {len(target)} tiles")
    out = []
    for key in np.unique(keys):
        rows = torch.from_numpy(np.flatnonzero(keys == key))
        v = valid[rows]
        psnr = (
            metrics.psnr(pred[rows], target[rows], units.data_range, valid=v) if v.any() else None
        )
        out.append(np.nan if psnr is None else psnr)
    return np.asarray(out, dtype=np.float64)


def psnr_difference(
    target: torch.Tensor,
    pred_a: torch.Tensor,
    pred_b: torch.Tensor,
    groups: Sequence[Hashable] | None = None,
    pixel_mask: torch.Tensor | None = None,
    *,
    units,
) -> stats.Estimate:
    """Mean over groups of tiles of the PSNR of ``pred_a`` minus that of ``pred_b`` (dB).

    A paired difference (:func:`mae_nb.stats.paired_difference`) of :func:`group_psnr`, each
    group one sample. Overlapping tiles share pixels, so they are not independent samples: pass
    ``groups=split.val_tiles.blocks(2 * size)`` to compare blocks of the held-out strip instead.
    ``pixel_mask`` (N, H, W): score only those pixels.
    """
    a = group_psnr(pred_a, target, groups, pixel_mask, units=units)
    b = group_psnr(pred_b, target, groups, pixel_mask, units=units)
    return stats.paired_difference(a, b)


def hidden_psnr_difference(
    model_a: torch.nn.Module,
    model_b: torch.nn.Module,
    imgs: torch.Tensor,
    mask_ratio: float,
    patch_size: int = 4,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
    *,
    units,
) -> stats.Estimate:
    """:func:`psnr_difference` of two models on the hidden pixels of ``imgs`` (N, C, H, W).

    Both models see the same ``mask_ratio`` of hidden ``patch_size`` patches (same ``seed``);
    only the hidden pixels are scored.
    """
    a = masked_reconstruction(model_a, imgs, mask_ratio, patch_size, seed, units=None)
    b = masked_reconstruction(model_b, imgs, mask_ratio, patch_size, seed, units=None)
    return psnr_difference(
        imgs, a.reconstruction, b.reconstruction, groups, a.pixel_mask, units=units
    )


def psnr_verdict(claim: str, estimate: stats.Estimate, unit: str = "spatial blocks") -> str:
    """``"<claim>: SUPPORTED (+1.23 ± 0.45 dB over 6 spatial blocks)"``.

    The claim is that the difference is above 0, judged by :func:`mae_nb.stats.judge`.
    """
    word = stats.VERDICTS[stats.judge(estimate)]
    return f"{claim}: {word} ({estimate.describe(' dB')} over {estimate.n} {unit})"


# --------------------------------------------------------------------------- the latent space


def latent_projection(z: np.ndarray, n_components: int = 2) -> np.ndarray:
    """(N, n_components) PCA projection of standardized latent codes ``z`` (N, D) (scikit-learn)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) < n_components:
        raise InputError(f"expected at least {n_components} codes of shape (N, D), got {z.shape}")
    pca = PCA(n_components=n_components, random_state=0)
    return pca.fit_transform(StandardScaler().fit_transform(z))


def latent_knn_accuracy(
    z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, k: int = 5
) -> float:
    """Accuracy of a k-nearest-neighbour classifier of tile labels on standardized codes.

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
    """Mean 1-D Wasserstein distance over latent dimensions between codes ``z`` (N, D) and a prior.

    0 means each dimension of the codes is distributed like the prior's (scipy). ``prior``: a
    :class:`mae_nb.models.autoencoders.GaussianPrior` or ``GaussianMixturePrior``.
    """
    from scipy.stats import wasserstein_distance

    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != prior.latent_dim:
        raise InputError(f"expected codes of shape (N, {prior.latent_dim}), got {z.shape}")
    p = prior.sample(n, torch.Generator().manual_seed(seed)).numpy()
    return float(np.mean([wasserstein_distance(z[:, d], p[:, d]) for d in range(z.shape[1])]))
