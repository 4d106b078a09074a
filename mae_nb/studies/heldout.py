"""How well an MAE reconstructs crops it never trained on, against the blur and the mean fill.

The quality check of a pretrained MAE (``mae-nb mae evaluate``, chapter 03's "what scale
buys", ``benchmarks/course_model_quality.py``): disjoint crops of every real scene's held-out
region (:attr:`mae_nb.pretraining.Source.heldout_window`) and of synthetic scenes with seeds the
training never used, masked at each ratio with one mask per crop; on the masked pixels, in the
source's units with its data range (:mod:`mae_nb.metrics`), the model's PSNR next to two
baselines without a model: the blur (:func:`~mae_nb.studies.scenarios.interpolate_masked`,
Gaussian of half a patch) and the mean fill (each band's mean over the crop's visible pixels).
Differences are paired per crop and summarized with :mod:`mae_nb.stats` (crops are the
independent units).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from mae_nb import metrics, stats
from mae_nb.pretraining import Source
from mae_nb.reconstruct import reconstruct
from mae_nb.studies.scenarios import interpolate_masked

__all__ = [
    "CropFills",
    "HeldoutScores",
    "crop_fills",
    "heldout_crops",
    "mean_fill",
    "score_heldout",
]


def heldout_crops(source: Source, size: int, count: int, min_valid: float = 1.0) -> list:
    """Up to ``count`` disjoint ``size`` px windows (row, col, size, size) of ``source``'s
    held-out region (the whole scene for a synthetic source) with at least ``min_valid`` valid
    pixels, spread evenly over the candidates."""
    window = source.heldout_window if source.kind == "file" else (0, 0, source.height, source.width)
    if window is None:
        return []
    r0, c0, h, w = window
    a, v = source.read(window)
    candidates = [
        (r0 + i, c0 + j, size, size)
        for i in range(0, h - size + 1, size)
        for j in range(0, w - size + 1, size)
        if v[i : i + size, j : j + size].mean() >= min_valid
    ]
    if len(candidates) <= count:
        return candidates
    picks = np.linspace(0, len(candidates) - 1, count).round().astype(int)
    return [candidates[k] for k in picks]


def mean_fill(original: np.ndarray, pixel_mask: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Masked pixels filled with each band's mean over the visible valid pixels."""
    seen = valid & ~pixel_mask
    means = np.nanmean(original[:, seen], axis=1) if seen.any() else np.zeros(len(original))
    return np.where(pixel_mask[None], means[:, None, None], original).astype(np.float32)


@dataclass
class HeldoutScores:
    """Per (model, scene, ratio, crop) masked PSNR rows, with the baselines'."""

    rows: list[dict] = field(default_factory=list)

    def table(self) -> list[dict]:
        """Mean masked PSNR per model, scene and ratio, and the two baselines."""
        return stats.summarize(
            self.rows, ["model", "scene", "ratio"], ["psnr", "blur", "mean_fill"]
        )

    def gain(self, model: str, over: str, ratio: float, scene: str | None = None) -> stats.Estimate:
        """``model``'s masked PSNR minus ``over``'s (``"blur"``, ``"mean_fill"`` or another
        model's name) at ``ratio``, paired per crop; all scenes, or ``scene``."""
        mine = [
            r for r in self.rows
            if r["model"] == model and r["ratio"] == ratio and scene in (None, r["scene"])
        ]  # fmt: skip
        if over in ("blur", "mean_fill"):
            other = [r[over] for r in mine]
        else:
            theirs = {
                (r["scene"], r["crop"]): r["psnr"]
                for r in self.rows
                if r["model"] == over and r["ratio"] == ratio
            }
            other = [theirs.get((r["scene"], r["crop"]), np.nan) for r in mine]
        return stats.paired_difference(
            [r["psnr"] for r in mine], other, [(r["scene"], r["crop"]) for r in mine]
        )

    def markdown(self) -> str:
        return stats.markdown_table(self.table(), ".2f")


@dataclass
class CropFills:
    """One crop, one mask, every way of filling it: ``original`` (C, H, W), ``pixel_mask`` and
    ``valid`` (H, W), ``fills`` (name -> (C, H, W) with the masked pixels filled: each model's
    pasted output, ``"blur"``, ``"mean fill"``) and ``psnr`` (name -> masked-patch PSNR)."""

    original: np.ndarray
    pixel_mask: np.ndarray
    valid: np.ndarray
    fills: dict[str, np.ndarray]
    psnr: dict[str, float]


def crop_fills(
    models: Mapping[str, object],
    source: Source,
    window: tuple[int, int, int, int],
    ratio: float,
    seed: int = 0,
    normalization: Callable[[str, Source], tuple] | None = None,
) -> CropFills:
    """Mask ``window`` of ``source`` once (``ratio``, ``seed``) and fill it with each of
    ``models``, the blur and the mean fill, scored on the masked valid pixels in the source's
    units with its data range. ``normalization``: as for :func:`score_heldout`."""
    image, valid = source.read(window)
    fills, psnr, rec = {}, {}, None
    for name, model in models.items():
        mean, std = (
            normalization(name, source) if normalization is not None else (source.mean, source.std)
        )
        rec = reconstruct(
            model, image, ratio, seed=seed, valid=valid, mean=mean, std=std,
            normalize="per-band" if mean is not None else "auto",  # None: the model's own
            data_range=source.data_range,
        )  # fmt: skip
        fills[name], psnr[name] = rec.pasted, float(rec.psnr_masked)
    o, pm, ok = rec.original, rec.pixel_mask, rec.valid
    fills["blur"] = interpolate_masked(o, pm, ok, rec.patch_size / 2)
    fills["mean fill"] = mean_fill(o, pm, ok)
    for name in ("blur", "mean fill"):
        psnr[name] = metrics.psnr(fills[name], o, source.data_range, valid=pm & ok)
    return CropFills(o, pm, ok, fills, psnr)


def score_heldout(
    models: Mapping[str, object],
    sources: Sequence[Source],
    *,
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    crop_size: int = 64,
    crops: int = 8,
    seed: int = 0,
    normalization: Callable[[str, Source], tuple] | None = None,
) -> HeldoutScores:
    """Masked PSNR of each of ``models`` (name -> MAE) on held-out crops of ``sources``.

    Every model sees the same crops and masks (:func:`crop_fills`). ``normalization(model_name,
    source)`` gives the ``(mean, std)`` to feed a model with (default: the source's own
    statistics, :func:`mae_nb.pretraining.band_statistics`; None for the model's own).
    """
    out = HeldoutScores()
    for source in sources:
        for k, window in enumerate(heldout_crops(source, crop_size, crops)):
            for ratio in ratios:
                mask_seed = seed * 1_000_003 + k * 101 + int(ratio * 100)
                one = crop_fills(models, source, window, ratio, mask_seed, normalization)
                base = {"blur": one.psnr["blur"], "mean_fill": one.psnr["mean fill"]}
                for name in models:
                    out.rows.append(
                        {
                            "model": name,
                            "scene": source.name,
                            "ratio": float(ratio),
                            "crop": k,
                            "psnr": one.psnr[name],
                            **base,
                        }
                    )
    return out
