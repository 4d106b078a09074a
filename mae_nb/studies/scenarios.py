"""Chapter 04's study: 25 %, 50 % and 3 x 25 % masking compared over crops and seeds.

A study applied Meta's MAE to a satellite image at 25 % masking, 50 % masking and three chained
passes of 25 %, and claimed that (1) at 25 % the reconstruction follows the image's spatial
structure, (2) 50 % gives more detail and clarity than 25 % and (3) three passes of 25 % improve
on one. :func:`compare_masking_scenarios` runs every scenario of :data:`STUDY_SCENARIOS` on every
crop and seed with :func:`mae_nb.reconstruct.reconstruct` and scores it: PSNR/SSIM on the masked
patches and on the whole crop, the :func:`detail_ratio`, and a baseline without a model
(:func:`interpolate_masked`, blurring the visible pixels into the holes, with the same masks).

:class:`ScenarioComparison` holds those scores and judges the claims with :mod:`mae_nb.stats`:
differences are paired (same crop, same seed), their standard error is clustered by crop (the
seeds of one crop are not independent samples of the image), and a difference is clear when it
exceeds two standard errors. With a single crop the spread is unknown and every claim is
inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from mae_nb import metrics, stats
from mae_nb.data.tiling import tile
from mae_nb.errors import InputError
from mae_nb.reconstruct import (
    Reconstruction,
    model_geometry,
    model_normalization,
    normalization,
    reconstruct,
)
from mae_nb.scene import prepare_image

__all__ = [
    "STUDY_SCENARIOS",
    "ScenarioComparison",
    "baseline_passes",
    "compare_masking_scenarios",
    "detail_ratio",
    "interpolate_masked",
    "pick_crops",
]

#: The study's scenarios (name -> mask_ratio, iterations, mode) and the covering mode.
STUDY_SCENARIOS = {
    "25%": (0.25, 1, "chained"),
    "50%": (0.50, 1, "chained"),
    "3x25%": (0.25, 3, "chained"),
    "covering 25%": (0.25, None, "covering"),
}


# --------------------------------------------------------------------------- the measures


def interpolate_masked(
    original: np.ndarray, pixel_mask: np.ndarray, valid: np.ndarray, sigma: float
) -> np.ndarray:
    """A baseline without a model: fill masked pixels by blurring the visible ones into them.

    Normalized convolution: ``blur(image * visible) / blur(visible)`` with a Gaussian of
    ``sigma`` pixels, per band. original: (C, H, W); pixel_mask, valid: (H, W); returns
    (C, H, W) with the visible pixels unchanged.
    """
    from scipy.ndimage import gaussian_filter

    seen = (valid & ~pixel_mask).astype(np.float64)
    img = np.nan_to_num(original.astype(np.float64))
    out = original.astype(np.float32).copy()
    den = gaussian_filter(seen, sigma, mode="nearest")
    for b in range(original.shape[0]):
        num = gaussian_filter(img[b] * seen, sigma, mode="nearest")
        fill = num / np.maximum(den, 1e-12)
        out[b] = np.where(pixel_mask & valid, fill, out[b])
    return out


def baseline_passes(rec: Reconstruction, sigma: float) -> np.ndarray:
    """:func:`interpolate_masked` run with the same masks and passes as ``rec``.

    Chained: each pass fills from the previous pass's output; covering: from the original.
    Returns (C, H, W).
    """
    p = rec.patch_size
    current = rec.original.copy()
    for k in range(rec.pass_masks.shape[0]):
        pix = np.kron(rec.pass_masks[k], np.ones((p, p), bool)).astype(bool)
        source = current if rec.mode == "chained" else rec.original
        current = np.where(pix[None], interpolate_masked(source, pix, rec.valid, sigma), current)
    return current


def detail_ratio(pasted: np.ndarray, original: np.ndarray, region: np.ndarray) -> float:
    """How much fine detail the reconstruction has where it was predicted.

    Mean gradient magnitude of ``pasted`` (C, H, W) over ``region`` (H, W) divided by the
    ``original``'s (1 = as detailed, < 1 = blurrier); NaN for an empty region.
    """

    def grad(a):
        a = np.nan_to_num(a.astype(np.float64))
        gy, gx = np.gradient(a, axis=(1, 2))
        return np.sqrt(gx**2 + gy**2).mean(axis=0)

    if not region.any():
        return float("nan")
    return float(grad(pasted)[region].mean() / max(grad(original)[region].mean(), 1e-12))


def pick_crops(
    image: np.ndarray, size: int, n: int, valid: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """``n`` top-left corners of ``size`` x ``size`` crops without nodata, spread over the image.

    image: (C, H, W). Crops come from a grid with half-tile stride (all of them fully valid),
    evenly spaced through it, so the choice is deterministic. Fewer are returned if fewer exist.
    """
    tiles = tile(
        np.zeros((1,) + image.shape[1:], np.uint8),
        size,
        max(1, size // 2),
        valid=valid,
        min_valid=1.0,
    )
    if len(tiles) == 0:
        raise InputError(
            f"no {size} x {size} crop without nodata fits in this "
            f"{image.shape[1]} x {image.shape[2]} image"
        )
    pick = np.unique(np.linspace(0, len(tiles) - 1, min(n, len(tiles))).round().astype(int))
    return [(int(tiles.rows[i]), int(tiles.cols[i])) for i in pick]


# --------------------------------------------------------------------------- the comparison

#: What each row of a :class:`ScenarioComparison` scores, as the table heads them.
_HEADS = {
    "masked_share": "patches replaced",
    "psnr_masked": "PSNR masked (dB)",
    "ssim_masked": "SSIM masked",
    "psnr": "PSNR crop (dB)",
    "ssim": "SSIM crop",
    "detail": "detail",
    "baseline_psnr_masked": "blur baseline PSNR masked (dB)",
}


@dataclass
class ScenarioComparison:
    """Scores of each scenario on each crop and seed (``rows``), summarized and judged.

    Each row: scenario, crop, seed, psnr_masked, ssim_masked, psnr, ssim, masked_share, detail
    (see :func:`detail_ratio`), baseline_psnr_masked (:func:`interpolate_masked` on the same
    masked pixels). ``scenarios``: name -> (mask_ratio, iterations, mode). ``model``: what made
    the predictions (the verdict names it).
    """

    rows: list[dict]
    scenarios: dict
    model: str = "the model"

    METRICS = (
        "psnr_masked",
        "ssim_masked",
        "psnr",
        "ssim",
        "detail",
        "baseline_psnr_masked",
        "masked_share",
    )

    def _rows(self, scenario: str) -> list[dict]:
        return sorted(
            (r for r in self.rows if r["scenario"] == scenario),
            key=lambda r: (r["crop"], r["seed"]),
        )

    def values(self, scenario: str, metric: str) -> np.ndarray:
        """One value per (crop, seed), ordered by crop then seed, so scenarios can be paired.

        ``metric="detail_gap"`` is ``|log2(detail)|``: how far the detail level is from the
        original's.
        """
        rows = self._rows(scenario)
        if metric == "detail_gap":
            return np.abs(np.log2(np.array([r["detail"] for r in rows], dtype=np.float64)))
        return np.array([r[metric] for r in rows], dtype=np.float64)

    def crops(self, scenario: str) -> np.ndarray:
        """The crop of each value of :meth:`values` (the clusters of the standard errors)."""
        return np.array([r["crop"] for r in self._rows(scenario)])

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """scenario -> metric -> (mean, standard deviation) over crops and seeds
        (:func:`mae_nb.stats.summarize`)."""
        groups = stats.summarize(self.rows, ("scenario",), self.METRICS)
        by_name = {g["scenario"]: g for g in groups}
        return {
            s: {m: (by_name[s][m], by_name[s][f"{m}_std"]) for m in self.METRICS}
            for s in self.scenarios
            if s in by_name
        }

    def table(self) -> str:
        """A Markdown table of means ± standard deviations per scenario, and how many runs."""
        rows = []
        for s, summary in self.summary().items():
            row = {"scenario": s}
            for k, head in _HEADS.items():
                m, sd = summary[k]
                fmt = ".2f" if "psnr" in k else ".3f"
                row[head] = f"{m:.0%}" if k == "masked_share" else f"{m:{fmt}} ± {sd:{fmt}}"
            rows.append(row)
        n = len(self.values(next(iter(self.scenarios)), "psnr"))
        return (
            stats.markdown_table(rows)
            + f"\n\n{n} runs per scenario (crops x seeds); mean ± standard deviation."
        )

    def paired(self, a: str, b: str, metric: str) -> stats.Estimate:
        """``metric(a) - metric(b)`` over the same crops and seeds, clustered by crop."""
        keys = [[(r["crop"], r["seed"]) for r in self._rows(s)] for s in (a, b)]
        if keys[0] != keys[1]:
            raise InputError(f"scenarios {a!r} and {b!r} were not run on the same crops and seeds")
        return stats.paired_difference(
            self.values(a, metric), self.values(b, metric), clusters=self.crops(a)
        )

    def gain_over_baseline(self, scenario: str) -> stats.Estimate:
        """Masked-patch PSNR of ``scenario`` minus the blur baseline's, clustered by crop."""
        return stats.paired_difference(
            self.values(scenario, "psnr_masked"),
            self.values(scenario, "baseline_psnr_masked"),
            clusters=self.crops(scenario),
        )

    def _compare(self, a, b, metric, unit, fmt) -> tuple[int, str]:
        """(+1 / -1 / 0 by :func:`mae_nb.stats.direction`, a phrase quoting the difference)."""
        est = self.paired(a, b, metric)
        if not np.isfinite(est.mean):
            return 0, f"{metric} not measurable"
        sign = stats.direction(est)
        word = {1: " (higher)", -1: " (lower)", 0: " (no clear difference)"}[sign]
        text = f"{metric.replace('_', ' ')} {a} − {b} = {est.describe(unit, fmt)}"
        return sign, text + (word if est.known else "")

    def verdict(self) -> list[str]:
        """Plain sentences on the study's claims, decided from the numbers.

        Paired differences over the same crops and seeds, clustered by crop; "clear" is more than
        two standard errors (:func:`mae_nb.stats.judge`); a single crop gives no verdict.
        """
        out = []
        have = set(self.scenarios)
        if "25%" in have:
            gain = self.gain_over_baseline("25%")
            word = stats.judge(gain)
            why = {
                "supported": " (the model adds structure a blur cannot).",
                "contradicted": " (a blur of the neighbours does better).",
                "inconclusive": " (no better than a blur of the neighbours)."
                if gain.known
                else "; one crop gives no verdict.",
            }[word]
            out.append(
                "Claim 1, at 25 % the reconstruction follows the image's spatial structure: "
                f"{stats.VERDICTS[word]} for {self.model}. On the masked patches it scores "
                f"{gain.describe(' dB')} PSNR against blurring the visible pixels into the holes"
                + why
            )
        if {"25%", "50%"} <= have:
            s_det, t_det = self._compare("50%", "25%", "detail_gap", "", ".3f")
            s_ssim, t_ssim = self._compare("50%", "25%", "ssim_masked", "", ".3f")
            s_psnr, t_psnr = self._compare("50%", "25%", "psnr_masked", " dB", ".2f")
            word = _claim(
                supported=s_det < 0 and s_ssim >= 0,
                contradicted=s_det > 0 or (s_ssim < 0 and s_psnr < 0),
            )
            d25 = float(np.nanmean(self.values("25%", "detail")))
            d50 = float(np.nanmean(self.values("50%", "detail")))
            out.append(
                f"Claim 2, 50 % gives more detail and clarity than 25 %: {stats.VERDICTS[word]}. "
                f"Detail level (gradient ratio, 1 = the original's) {d50:.2f} at 50 % vs "
                f"{d25:.2f} at 25 %; {t_det} (lower = closer to the original's detail); "
                f"{t_ssim}; {t_psnr}."
            )
        if {"25%", "3x25%"} <= have:
            s_psnr, t_psnr = self._compare("3x25%", "25%", "psnr_masked", " dB", ".2f")
            s_ssim, t_ssim = self._compare("3x25%", "25%", "ssim_masked", "", ".3f")
            _, t_crop = self._compare("3x25%", "25%", "psnr", " dB", ".2f")
            word = _claim(
                supported=s_psnr > 0 and s_ssim >= 0, contradicted=s_psnr < 0 or s_ssim < 0
            )
            share = float(np.nanmean(self.values("3x25%", "masked_share")))
            out.append(
                "Claim 3, three chained passes of 25 % improve on one pass: "
                f"{stats.VERDICTS[word]}. {t_psnr}; {t_ssim} on the patches each run replaced "
                f"(3 x 25 % replaces {share:.0%} of the patches, 25 % replaces 25 %); over the "
                f"whole crop {t_crop}."
            )
        if "covering 25%" in have:
            m = float(np.nanmean(self.values("covering 25%", "psnr_masked")))
            b = float(np.nanmean(self.values("covering 25%", "baseline_psnr_masked")))
            out.append(
                "Reference, covering mode (every patch predicted once from true neighbours): "
                f"PSNR {m:.2f} dB vs {b:.2f} dB for the blur baseline on the same patches."
            )
        return out


def _claim(supported: bool, contradicted: bool) -> str:
    """A claim's key in :data:`mae_nb.stats.VERDICTS` from the clear differences behind it."""
    return "supported" if supported else "contradicted" if contradicted else "inconclusive"


def compare_masking_scenarios(
    model: torch.nn.Module,
    image,
    crops: Sequence[tuple[int, int]],
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    scenarios: dict | None = None,
    *,
    size: int | None = None,
    valid: np.ndarray | None = None,
    bands: Sequence[int] | None = None,
    precision: str = "fp32",
    model_name: str = "the model",
    progress: bool = True,
) -> ScenarioComparison:
    """Run every scenario on every crop and seed and score it (the study's measured comparison).

    image: (C, H, W) (or a Raster/Sample); ``crops``: top-left corners (see :func:`pick_crops`)
    of ``size`` x ``size`` crops (default: the model's input size). ``scenarios``: name ->
    (mask_ratio, iterations, mode), default :data:`STUDY_SCENARIOS`. The normalization is
    computed once from the whole image, so every crop is seen the same way.
    """
    from tqdm.auto import tqdm

    scenarios = dict(STUDY_SCENARIOS if scenarios is None else scenarios)
    geom = model_geometry(model)
    scene = prepare_image(image, geom.in_chans, bands=bands, valid=valid)
    image, valid = scene.array, scene.valid
    size = int(size or (geom.built_size[0] if geom.built_size else 224))
    kind, mean, std = model_normalization(model)
    norm = normalization(image, kind, valid, mean, std, scene.dtype)
    rows = []
    jobs = [(ci, r0, c0, seed) for ci, (r0, c0) in enumerate(crops) for seed in seeds]
    for ci, r0, c0, seed in tqdm(jobs, desc="scenarios", disable=not progress):
        crop = image[:, r0 : r0 + size, c0 : c0 + size]
        ok = valid[r0 : r0 + size, c0 : c0 + size]
        if crop.shape[1:] != (size, size):
            raise InputError(
                f"crop at ({r0}, {c0}) does not fit a {size} x {size} window in the image"
            )
        for name, (ratio, its, mode) in scenarios.items():
            r = reconstruct(
                model,
                crop,
                ratio,
                its,
                seed,
                mode,
                norm.mean,
                norm.std,
                ok,
                precision=precision,
                data_range=norm.data_range,
            )
            region = r.pixel_mask & r.valid
            base = baseline_passes(r, sigma=geom.patch_size / 2)
            rows.append(
                dict(
                    scenario=name,
                    crop=ci,
                    seed=int(seed),
                    masked_share=r.masked_share,
                    psnr_masked=r.psnr_masked,
                    ssim_masked=r.ssim_masked,
                    psnr=r.psnr,
                    ssim=r.ssim,
                    detail=detail_ratio(r.pasted, r.original, region),
                    baseline_psnr_masked=metrics.psnr(
                        base, r.original, norm.data_range, valid=region
                    ),
                )
            )
    return ScenarioComparison(rows, scenarios, model_name)
