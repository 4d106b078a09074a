"""Chapter 04's study: 25 %, 50 % and 3 x 25 % masking compared over crops and seeds.

A study applied Meta's MAE to a satellite image at 25 % masking, 50 % masking and three chained
passes of 25 %, and claimed that (1) at 25 % the result follows the spatial distribution of the
training data, (2) 50 % gives more detail and clarity than 25 % and (3) three passes of 25 %
improve on one. :func:`compare_masking_scenarios` runs every scenario of :data:`STUDY_SCENARIOS`
on every crop and seed with :func:`mae_nb.reconstruct.reconstruct` and scores it: PSNR/SSIM on the
masked patches and on the whole crop, the :func:`detail_ratio`, the claim-1 pull towards the
training statistics (:func:`training_pull_terms`), and a baseline without a model
(:func:`interpolate_masked`, blurring the visible pixels into the holes, with the same masks).

**Independent samples.** :func:`pick_crops` returns crops that do not overlap (fewer, with a
notice, when the scene cannot hold the number asked), and every (crop, seed) run draws its own
masks (:func:`mask_seed`), so no two runs share a mask by construction.

**Claim 1, one reading.** In the model's normalized input units its training data has, per band,
mean 0 and standard deviation 1 (ImageNet's normalization for Meta's model, the per-band statistics
of its training scene for chapter 03's). For the masked pixels of a run, ``s`` is the vector of
per-band means and standard deviations, ``t = (0, ..., 0, 1, ..., 1)`` the training statistics. The
*pull* is the projection of the prediction's move on the way to the training statistics:
``(s_pred - s_true) . (t - s_true) / |t - s_true|^2``: 0 = the prediction has the true patches'
statistics (it follows the image), 1 = it has the training data's. Pooled over runs it is a ratio
of sums (:meth:`ScenarioComparison.pull`). The blur baseline's pull on the same pixels says how
much of it averaging alone explains.

:class:`ScenarioComparison` holds those scores and judges the claims with :mod:`mae_nb.stats`:
differences are paired (same crop, same seed), their standard error is clustered by crop (the
seeds of one crop are not independent samples of the image), and a difference is clear when it
exceeds two standard errors. With a single crop the spread is unknown and every claim is
inconclusive. Every verdict sentence says how many crops and seeds it rests on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from mae_nb import metrics, stats
from mae_nb.errors import InputError
from mae_nb.precision import choose
from mae_nb.reconstruct import (
    Normalization,
    Reconstruction,
    masked_scores,
    model_geometry,
    model_normalization,
    normalization,
    reconstruct,
)
from mae_nb.scene import prepare_image

__all__ = [
    "STUDY_SCENARIOS",
    "ModelComparison",
    "ScenarioComparison",
    "baseline_passes",
    "compare_masking_scenarios",
    "compare_models",
    "detail_ratio",
    "interpolate_masked",
    "mask_seed",
    "pick_crops",
    "training_pull",
    "training_pull_terms",
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


def training_pull_terms(
    prediction: np.ndarray, truth: np.ndarray, region: np.ndarray, normalization
) -> tuple[float, float]:
    """The two sums behind claim 1's pull of one run: ``(numerator, denominator)``.

    prediction, truth: (C, H, W) in the image's units; region: (H, W) the pixels scored (valid
    and masked); ``normalization``: the model's (:class:`mae_nb.reconstruct.Normalization`), so
    the statistics are in the model's input units, where its training data has per-band mean 0
    and standard deviation 1. With ``s`` the per-band means and standard deviations over
    ``region`` and ``t`` the training statistics, the numerator is
    ``(s_pred - s_true) . (t - s_true)`` and the denominator ``|t - s_true|^2``; their ratio is
    :func:`training_pull`. NaN for an empty region.
    """
    if not region.any():
        return float("nan"), float("nan")

    def moments(a):
        z = normalization.apply(np.asarray(a, np.float64))[:, region].astype(np.float64)
        return np.concatenate([z.mean(axis=1), z.std(axis=1)])

    true, pred = moments(truth), moments(prediction)
    c = truth.shape[0]
    towards = np.concatenate([np.zeros(c), np.ones(c)]) - true
    return float((pred - true) @ towards), float(towards @ towards)


def training_pull(
    prediction: np.ndarray, truth: np.ndarray, region: np.ndarray, normalization
) -> float:
    """Claim 1's pull of one image: 0 = the prediction over ``region`` has the true pixels'
    per-band mean and standard deviation, 1 = the training data's (see the module text and
    :func:`training_pull_terms`)."""
    num, den = training_pull_terms(prediction, truth, region, normalization)
    return num / den if den > 0 else float("nan")


def mask_seed(seed: int, crop: int) -> int:
    """The mask seed of run ``(seed, crop)``: every crop draws its own masks for each seed."""
    return int(np.random.SeedSequence([int(seed), int(crop)]).generate_state(1)[0])


def pick_crops(
    image: np.ndarray,
    size: int,
    n: int,
    valid: np.ndarray | None = None,
    *,
    min_valid: float = 1.0,
    quiet: bool = False,
) -> list[tuple[int, int]]:
    """Top-left corners of ``n`` disjoint ``size`` x ``size`` crops without nodata, spread out.

    image: (C, H, W). The crops do not overlap, so each is an independent sample of the scene.
    ``min_valid``: the share of a crop's pixels that must hold data (default 1: none may be
    nodata; a scene with scattered nodata pixels holds more crops at 0.99, and nodata pixels are
    left out of every score). The crops that qualify are packed greedily (:func:`_pack`), and
    ``n`` of the packed crops are taken evenly through reading order, so the choice is
    deterministic and spread over the image. When fewer than ``n`` fit, all that fit are
    returned and a notice (printed unless ``quiet``, and warned) says how many fit and how many
    were asked.
    """
    size, n = int(size), int(n)
    if size < 1 or n < 1:
        raise InputError(f"size and n must be at least 1, got size={size}, n={n}")
    if not 0 < min_valid <= 1:
        raise InputError(f"min_valid must be in (0, 1], got {min_valid}")
    h, w = image.shape[-2:]
    ok = np.ones((h, w), bool) if valid is None else np.asarray(valid, bool).copy()
    if np.issubdtype(np.asarray(image).dtype, np.floating):
        ok &= np.isfinite(image).all(axis=0)
    packed = _pack(ok, size, min_valid)
    what = "without nodata" if min_valid == 1 else f"at least {min_valid:.0%} valid"
    if not packed:
        raise InputError(f"no {size} x {size} crop {what} fits in this {h} x {w} image")
    if len(packed) < n:
        notice = (
            f"NOTICE: only {len(packed)} disjoint {size} x {size} crop(s) {what} fit in "
            f"this {h} x {w} image; {n} were asked. Using {len(packed)}: the comparison rests "
            f"on {len(packed)} independent crop(s)."
        )
        if not quiet:
            print(notice)
        warnings.warn(notice, stacklevel=2)
        return packed
    pick = np.linspace(0, len(packed) - 1, n).round().astype(int)
    return [packed[i] for i in pick]


def _box_sums(a: np.ndarray, size: int) -> np.ndarray:
    """Sums of ``a`` (H, W) over every ``size`` x ``size`` window, by top-left corner."""
    c = np.pad(a.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]


def _pack(ok: np.ndarray, size: int, min_valid: float = 1.0) -> list[tuple[int, int]]:
    """As many disjoint ``size`` x ``size`` windows with at least ``min_valid`` of their pixels
    ``ok`` as a greedy packing finds, in reading order.

    Candidate corners lie on a grid of ``size // 8`` pixels (plus the last row and column). Two
    greedy orders are tried, and the one that packs more windows is kept: reading order, and
    fewest-overlaps-first (the candidates that overlap the fewest others, at the corners and
    edges of the valid area, are taken first; a rotated scene holds more crops that way). A
    candidate is taken when it overlaps none taken before.
    """
    h, w = ok.shape
    if h < size or w < size:
        return []
    allowed = int(np.floor((1.0 - min_valid) * size * size + 1e-9))
    fits = _box_sums(~ok, size) <= allowed  # (h - size + 1, w - size + 1)
    step = max(1, size // 8)
    rows = sorted(set(range(0, h - size + 1, step)) | {h - size})
    cols = sorted(set(range(0, w - size + 1, step)) | {w - size})
    grid = fits[np.ix_(rows, cols)]
    cand = np.argwhere(grid)
    if not len(cand):
        return []
    r_arr, c_arr = np.array(rows), np.array(cols)
    degree = np.array(
        [grid[np.ix_(np.abs(r_arr - rows[i]) < size, np.abs(c_arr - cols[j]) < size)].sum()
         for i, j in cand]
    )  # fmt: skip
    best: list[tuple[int, int]] = []
    for order in (np.arange(len(cand)), np.lexsort((cand[:, 1], cand[:, 0], degree))):
        taken = np.zeros((h, w), bool)
        packed = []
        for k in order:
            r, c = rows[cand[k, 0]], cols[cand[k, 1]]
            if not taken[r : r + size, c : c + size].any():
                taken[r : r + size, c : c + size] = True
                packed.append((r, c))
        if len(packed) > len(best):
            best = packed
    return sorted(best)


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

#: Claim 1 is contradicted when the model's pull beyond the blur's is clearly below this: its
#: predictions move less than a tenth of the way to the training statistics beyond averaging.
PULL_MARGIN = 0.1


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _ratio(num: np.ndarray, den: np.ndarray, clusters: np.ndarray) -> stats.Estimate:
    """``sum(num) / sum(den)`` over the finite pairs, with a clustered standard error.

    The ratio's standard error is the delta method's: the cluster-robust standard error
    (:func:`mae_nb.stats.mean_se`) of ``(num - R den) / mean(den)``.
    """
    ok = np.isfinite(num) & np.isfinite(den)
    num, den, clusters = num[ok], den[ok], clusters[ok]
    if num.size == 0 or den.sum() <= 0:
        return stats.Estimate(float("nan"), float("nan"), int(num.size), 0)
    r = float(num.sum() / den.sum())
    spread = stats.mean_se((num - r * den) / den.mean(), clusters)
    return stats.Estimate(r, spread.se, spread.n, spread.clusters)


@dataclass
class ScenarioComparison:
    """Scores of each scenario on each crop and seed (``rows``), summarized and judged.

    Each row: scenario, crop, seed, mask_seed, psnr_masked, ssim_masked, psnr, ssim,
    masked_share, detail (see :func:`detail_ratio`), baseline_psnr_masked
    (:func:`interpolate_masked` on the same masked pixels), and claim 1's pull terms
    (:func:`training_pull_terms`): pull_num (the model), blur_pull_num (the blur), pull_den (the
    same for both). ``scenarios``: name -> (mask_ratio, iterations, mode). ``model``: what made
    the predictions (the verdict names it); ``precision``: the precision it ran in
    (:mod:`mae_nb.precision`).
    """

    rows: list[dict]
    scenarios: dict
    model: str = "the model"
    precision: str = "fp32"

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
        return np.array([r.get(metric, np.nan) for r in rows], dtype=np.float64)

    def crops(self, scenario: str) -> np.ndarray:
        """The crop of each value of :meth:`values` (the clusters of the standard errors)."""
        return np.array([r["crop"] for r in self._rows(scenario)])

    def design(self) -> tuple[int, int]:
        """(number of crops, number of seeds) the comparison ran on."""
        return (
            len({r["crop"] for r in self.rows}),
            len({r["seed"] for r in self.rows}),
        )

    def runs(self) -> str:
        """The design in words: ``"5 crops x 5 seeds"``."""
        crops, seeds = self.design()
        return f"{_plural(crops, 'crop')} x {_plural(seeds, 'seed')}"

    def basis(self) -> str:
        """What every verdict rests on: ``"5 crops x 5 seeds; standard errors clustered by
        crop"``."""
        return f"{self.runs()}; standard errors clustered by crop"

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
            + f"\n\n{n} runs per scenario ({self.runs()}, each run with its own masks); "
            "mean ± standard deviation."
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

    def pull(self, scenario: str, of: str = "model") -> stats.Estimate:
        """Claim 1's pull towards the training statistics of ``of`` (``"model"`` or ``"blur"``)
        in ``scenario``, pooled over runs (a ratio of sums, see :func:`training_pull_terms`),
        with its standard error clustered by crop."""
        if of not in ("model", "blur"):
            raise InputError(f"of must be 'model' or 'blur', got {of!r}")
        num = self.values(scenario, "pull_num" if of == "model" else "blur_pull_num")
        return _ratio(num, self.values(scenario, "pull_den"), self.crops(scenario))

    def pull_over_blur(self, scenario: str) -> stats.Estimate:
        """The model's pull minus the blur's on the same pixels (same denominators: a paired
        difference), clustered by crop."""
        num = self.values(scenario, "pull_num") - self.values(scenario, "blur_pull_num")
        return _ratio(num, self.values(scenario, "pull_den"), self.crops(scenario))

    def pull_table(self) -> str:
        """A Markdown table of claim 1's pull per scenario (model, blur, model minus blur), each
        ± two clustered standard errors."""
        rows = [
            {
                "scenario": s,
                "pull of the model": self.pull(s).describe("", ".3f"),
                "pull of the blur": self.pull(s, "blur").describe("", ".3f"),
                "model − blur": self.pull_over_blur(s).describe("", ".3f"),
            }
            for s in self.scenarios
            if self._rows(s)
        ]
        return (
            stats.markdown_table(rows)
            + "\n\nPull of the masked patches' per-band mean and standard deviation towards the "
            "training data's (0 = the true patches', 1 = the training data's); ± two standard "
            f"errors ({self.basis()})."
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

    def claim1(self, scenario: str = "25%") -> str:
        """The key in :data:`mae_nb.stats.VERDICTS` of claim 1 as stated, from the pulls.

        Supported: the model's pull is clearly above 0 and clearly above the blur's.
        Contradicted: its pull beyond the blur's is clearly below :data:`PULL_MARGIN`.
        """
        pull, extra = self.pull(scenario), self.pull_over_blur(scenario)
        if stats.judge(extra) == "supported" and stats.judge(pull) == "supported":
            return "supported"
        if extra.known and extra.mean + 2 * extra.se < PULL_MARGIN:
            return "contradicted"
        return "inconclusive"

    def verdict(self) -> list[str]:
        """Plain sentences on the study's claims, decided from the numbers.

        Paired differences over the same crops and seeds, clustered by crop; "clear" is more than
        two standard errors (:func:`mae_nb.stats.judge`); a single crop gives no verdict. Each
        sentence ends with the crops and seeds it rests on.
        """
        out = []
        have = set(self.scenarios)
        basis = f" ({self.basis()})."
        if "25%" in have:
            word = self.claim1("25%")
            pull, blur, extra = (
                self.pull("25%"),
                self.pull("25%", "blur"),
                self.pull_over_blur("25%"),
            )
            why = {
                "supported": "the predictions move towards the training statistics more than "
                "averaging explains",
                "contradicted": f"less than {PULL_MARGIN} beyond what averaging gives: the "
                "predictions keep the image's statistics",
                "inconclusive": "neither clearly towards the training statistics nor clearly not"
                if extra.known
                else "one crop gives no verdict",
            }[word]
            out.append(
                "Claim 1 (as stated), at 25 % the result follows the spatial distribution of the "
                f"training data: {stats.VERDICTS[word]} for {self.model}. Pull of the masked "
                "patches' per-band mean and standard deviation towards the training data's "
                f"(0 = the image's, 1 = the training data's): {pull.describe('', '.3f')}; a blur "
                f"of the visible pixels on the same patches: {blur.describe('', '.3f')}; the "
                f"model beyond the blur: {extra.describe('', '.3f')} ({why})" + basis
            )
            gain = self.gain_over_baseline("25%")
            word = stats.judge(gain)
            why = {
                "supported": "the model adds structure a blur cannot",
                "contradicted": "a blur of the neighbours does better",
                "inconclusive": "no better than a blur of the neighbours"
                if gain.known
                else "one crop gives no verdict",
            }[word]
            out.append(
                "Check: beats a blur of the visible pixels, at 25 %: "
                f"{stats.VERDICTS[word]} for {self.model}. On the masked patches it scores "
                f"{gain.describe(' dB')} PSNR against blurring the visible pixels into the holes "
                f"({why})" + basis
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
                f"{t_ssim}; {t_psnr}" + basis
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
                f"whole crop {t_crop}" + basis
            )
        if "covering 25%" in have:
            m = float(np.nanmean(self.values("covering 25%", "psnr_masked")))
            b = float(np.nanmean(self.values("covering 25%", "baseline_psnr_masked")))
            out.append(
                "Reference, covering mode (every patch predicted once from true neighbours): "
                f"PSNR {m:.2f} dB vs {b:.2f} dB for the blur baseline on the same patches" + basis
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
    data_range: float | None = None,
    precision: str = "auto",
    model_name: str = "the model",
    progress: bool = True,
    score: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ScenarioComparison:
    """Run every scenario on every crop and seed and score it (the study's measured comparison).

    image: (C, H, W) (or a Raster/Sample); ``crops``: top-left corners (see :func:`pick_crops`)
    of ``size`` x ``size`` crops (default: the model's input size). ``scenarios``: name ->
    (mask_ratio, iterations, mode), default :data:`STUDY_SCENARIOS`. Run ``(crop, seed)`` masks
    with :func:`mask_seed`, so every crop draws its own masks (the scenarios of one run share
    them, which pairs them). ``data_range``: the span every PSNR/SSIM uses, the data source's
    (a notebook passes ``sample.data_range``); default: :func:`mae_nb.data.value_range` of the
    whole image given, never of a crop. The normalization is computed once from the whole image,
    so every crop is seen the same way (``mean``/``std``, in the image's units, replace the
    model's own, e.g. to standardize an image in other units by its own statistics).
    ``score``: 1-based positions among the model's input bands to score (default all), so a
    six-band model is scored on the same true-colour bands as an RGB one
    (:func:`compare_models`); PSNR, SSIM, detail and the pull use only those bands.
    """
    from tqdm.auto import tqdm

    scenarios = dict(STUDY_SCENARIOS if scenarios is None else scenarios)
    geom = model_geometry(model)
    scene = prepare_image(image, geom.in_chans, bands=bands, valid=valid)
    image, valid = scene.array, scene.valid
    if data_range is not None:
        data_range = metrics.check_data_range(data_range)
    size = int(size or (geom.built_size[0] if geom.built_size else 224))
    kind, mean, std = model_normalization(model, mean=mean, std=std)
    norm = normalization(image, kind, valid, mean, std, scene.dtype)
    idx = list(range(geom.in_chans)) if score is None else [int(b) - 1 for b in score]
    if not idx or min(idx) < 0 or max(idx) >= geom.in_chans:
        raise InputError(
            f"score must list 1-based positions among the model's {geom.in_chans} input bands, "
            f"got {list(score or [])}"
        )
    scored = Normalization(norm.mean[idx], norm.std[idx], norm.data_range, norm.kind)
    if data_range is None:  # the whole image's value_range, never a crop's
        data_range = norm.data_range
    precision = choose(precision, model)
    rows = []
    jobs = [(ci, r0, c0, seed) for ci, (r0, c0) in enumerate(crops) for seed in seeds]
    for ci, r0, c0, seed in tqdm(jobs, desc="scenarios", disable=not progress):
        crop = image[:, r0 : r0 + size, c0 : c0 + size]
        ok = valid[r0 : r0 + size, c0 : c0 + size]
        if crop.shape[1:] != (size, size):
            raise InputError(
                f"crop at ({r0}, {c0}) does not fit a {size} x {size} window in the image"
            )
        run_seed = mask_seed(seed, ci)
        for name, (ratio, its, mode) in scenarios.items():
            r = reconstruct(
                model,
                crop,
                ratio,
                its,
                run_seed,
                mode,
                norm.mean,
                norm.std,
                ok,
                precision=precision,
                data_range=data_range,
            )
            region = r.pixel_mask & r.valid
            base = baseline_passes(r, sigma=geom.patch_size / 2)[idx]
            pasted, original = r.pasted[idx], r.original[idx]
            sc = (
                r.scores()
                if score is None
                else masked_scores(pasted, original, r.pixel_mask, data_range, r.valid)
            )
            pull_num, pull_den = training_pull_terms(pasted, original, region, scored)
            blur_num, _ = training_pull_terms(base, original, region, scored)
            rows.append(
                dict(
                    scenario=name,
                    crop=ci,
                    seed=int(seed),
                    mask_seed=run_seed,
                    masked_share=r.masked_share,
                    psnr_masked=sc["psnr_masked"],
                    ssim_masked=sc["ssim_masked"],
                    psnr=sc["psnr"],
                    ssim=sc["ssim"],
                    detail=detail_ratio(pasted, original, region),
                    baseline_psnr_masked=metrics.psnr(base, original, data_range, valid=region),
                    pull_num=pull_num,
                    blur_pull_num=blur_num,
                    pull_den=pull_den,
                )
            )
    return ScenarioComparison(rows, scenarios, model_name, precision)


# --------------------------------------------------------------------------- several models


@dataclass
class ModelComparison:
    """The study's scenarios run by several models on the same crops, seeds and scored bands.

    ``comparisons``: model name -> its :class:`ScenarioComparison` (same crops, seeds and mask
    seeds; each model's masks lie on its own patch grid, so models with the same patch size got
    the same masks). ``trained_on``: model name -> its training data in words; ``imagenet``: the
    models trained on ImageNet photographs (the rest on satellite scenes). ``missing``: model
    name -> why it could not be run here. ``scored``: the bands every model was scored on.
    ``notices``: how each model was fed (its normalization, its bands).
    """

    comparisons: dict[str, ScenarioComparison]
    trained_on: dict[str, str]
    imagenet: tuple[str, ...] = ()
    missing: dict | None = None
    scored: str = "all bands"
    notices: tuple[str, ...] = ()

    def models(self) -> list[str]:
        """The names of the models that ran, in order."""
        return list(self.comparisons)

    def basis(self) -> str:
        """The crops and seeds every model ran on, and the standard errors' clustering."""
        return next(iter(self.comparisons.values())).basis() if self.comparisons else "no runs"

    def table(self) -> str:
        """Masked-patch PSNR and SSIM of every model and scenario, with the blur on the same
        patches and the model's paired gain over it (± two standard errors, clustered by crop)."""
        rows = []
        for name, comp in self.comparisons.items():
            summary = comp.summary()
            for s in comp.scenarios:
                if s not in summary:
                    continue
                rows.append(
                    {
                        "model": name,
                        "trained on": self.trained_on.get(name, "?"),
                        "scenario": s,
                        "PSNR masked (dB)": f"{summary[s]['psnr_masked'][0]:.2f}",
                        "SSIM masked": f"{summary[s]['ssim_masked'][0]:.3f}",
                        "blur PSNR masked (dB)": f"{summary[s]['baseline_psnr_masked'][0]:.2f}",
                        "gain over blur": comp.gain_over_baseline(s).describe(" dB"),
                    }
                )
        return (
            stats.markdown_table(rows)
            + f"\n\nScored on {self.scored}; means over {self.basis()}; the gain is paired "
            "(same crop, seed and masks) ± two standard errors."
        )

    def pull_difference(self, a: str, b: str, scenario: str = "25%") -> stats.Estimate:
        """Claim 1's pull of model ``a`` minus model ``b`` on the same crops and seeds.

        Each pull is a ratio of sums (:meth:`ScenarioComparison.pull`); the difference's standard
        error is the delta method's, from the per-run linearized terms of both, clustered by crop.
        """
        ca, cb = self.comparisons[a], self.comparisons[b]
        keys = [[(r["crop"], r["seed"]) for r in c._rows(scenario)] for c in (ca, cb)]
        if keys[0] != keys[1] or not keys[0]:
            raise InputError(f"models {a!r} and {b!r} did not run {scenario!r} on the same runs")
        terms = []
        for c in (ca, cb):
            num, den = c.values(scenario, "pull_num"), c.values(scenario, "pull_den")
            r = float(np.nansum(num) / np.nansum(den))
            terms.append((r, (num - r * den) / np.nanmean(den)))
        spread = stats.mean_se(terms[0][1] - terms[1][1], ca.crops(scenario))
        return stats.Estimate(terms[0][0] - terms[1][0], spread.se, spread.n, spread.clusters)

    def pull_table(self, scenario: str = "25%") -> str:
        """Claim 1's reading for each model at ``scenario``: its pull towards its own training
        data's statistics, the blur's on the same pixels, the difference, and the verdict."""
        rows = [
            {
                "model": name,
                "trained on": self.trained_on.get(name, "?"),
                "pull of the model": comp.pull(scenario).describe("", ".3f"),
                "pull of the blur": comp.pull(scenario, "blur").describe("", ".3f"),
                "model − blur": comp.pull_over_blur(scenario).describe("", ".3f"),
                "claim 1": stats.VERDICTS[comp.claim1(scenario)],
            }
            for name, comp in self.comparisons.items()
        ]
        return (
            stats.markdown_table(rows)
            + f"\n\nAt {scenario}: pull of the masked patches' per-band mean and standard "
            "deviation towards each model's training data (0 = the true patches', 1 = the "
            f"training data's), ± two standard errors ({self.basis()}); scored on {self.scored}."
        )

    def verdict(self, scenario: str = "25%") -> list[str]:
        """Whether the reconstruction follows the training data, model by model and across
        training data (ImageNet vs satellite), in sentences decided from the numbers."""
        out = []
        for name, comp in self.comparisons.items():
            word = comp.claim1(scenario)
            out.append(
                f"{name} (trained on {self.trained_on.get(name, '?')}): claim 1 "
                f"{stats.VERDICTS[word]}; pull beyond the blur "
                f"{comp.pull_over_blur(scenario).describe('', '.3f')}."
            )
        photos = [m for m in self.comparisons if m in self.imagenet]
        satellite = [m for m in self.comparisons if m not in self.imagenet]
        for a in photos:
            for b in satellite:
                est = self.pull_difference(a, b, scenario)
                word = stats.judge(est)
                reading = {
                    "supported": "the ImageNet model's predictions move further towards its "
                    "training statistics than the satellite model's: the result follows the "
                    "training data",
                    "contradicted": "the satellite model's predictions move further towards its "
                    "training statistics than the ImageNet model's",
                    "inconclusive": "no clear difference between photographs and satellite "
                    "pretraining",
                }[word]
                out.append(
                    f"Across training data at {scenario}: pull of {a} minus pull of {b} = "
                    f"{est.describe('', '.3f')} ({reading}; {self.basis()})."
                )
        if not photos or not satellite:
            have = "ImageNet" if photos else "satellite"
            lack = "a satellite-pretrained" if photos else "an ImageNet-pretrained"
            out.append(
                f"Across training data: only {have}-pretrained models ran here, so the "
                f"comparison with {lack} model is not made"
                + (f" (missing: {', '.join(self.missing)})." if self.missing else ".")
            )
        return out


def compare_models(
    models: dict,
    image,
    crops: Sequence[tuple[int, int]],
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    scenarios: dict | None = None,
    *,
    score_bands: Sequence[int],
    size: int,
    valid: np.ndarray | None = None,
    data_range: float | None = None,
    band_names: Sequence[str] | None = None,
    trained_on: dict | None = None,
    imagenet: Sequence[str] = (),
    missing: dict | None = None,
    precision: str = "auto",
    progress: bool = True,
    quiet: bool = False,
) -> ModelComparison:
    """:func:`compare_masking_scenarios` for several models on the same crops, seeds and bands.

    ``models``: name -> ``(model, bands)``, ``bands`` the 1-based bands of ``image`` the model
    takes, in its order (``[3, 2, 1]`` for Meta's RGB model on a Landsat file; six bands for
    Prithvi). Every model is scored on ``score_bands`` (1-based bands of ``image``, e.g. the
    true-colour ones; each must be among the model's bands), with the same ``data_range``, crops
    of ``size`` px (a multiple of every model's patch size) and mask seeds. A model whose
    normalization constants are in other units than the image (:func:`in_training_units`, e.g.
    Prithvi's HLS reflectance x 10000 and an 8-bit Landsat file) gets the image standardized by
    its own per-band statistics instead, said in a notice. ``trained_on``, ``imagenet`` and
    ``missing`` (name -> why it did not run) go to the :class:`ModelComparison`.
    """
    from mae_nb.pretrained import in_training_units

    scene = prepare_image(image, bands=None, valid=valid)
    names = (
        list(band_names)
        if band_names
        else [f"band {b}" for b in range(1, scene.array.shape[0] + 1)]
    )
    comparisons, notices = {}, []
    for name, (model, bands) in models.items():
        bands = list(bands)
        missing_score = [b for b in score_bands if b not in bands]
        if missing_score:
            raise InputError(
                f"{name} takes bands {bands} of the image; the scored bands {missing_score} are "
                "not among them"
            )
        mean = std = None
        kind, m, s = model_normalization(model)
        if m is not None:
            own = normalization(scene.array[[b - 1 for b in bands]], "per-band", scene.valid)
            if not in_training_units(model, own.mean, own.std):
                mean, std = own.mean.tolist(), own.std.tolist()
                notices.append(
                    f"{name}: the image is not in the units of its normalization constants "
                    f"(its band means {np.round(m, 1).tolist()}, the image's "
                    f"{np.round(own.mean, 1).tolist()}), so each band is standardized by the "
                    "image's own statistics."
                )
        comparisons[name] = compare_masking_scenarios(
            model, scene.array, crops, seeds, scenarios, size=size, valid=scene.valid,
            bands=bands, data_range=data_range, precision=precision, model_name=name,
            progress=progress, score=[bands.index(b) + 1 for b in score_bands], mean=mean,
            std=std,
        )  # fmt: skip
    for line in notices:
        if not quiet:
            print("NOTICE: " + line)
    scored = ", ".join(names[b - 1] for b in score_bands)
    return ModelComparison(
        comparisons, dict(trained_on or {}), tuple(imagenet), dict(missing or {}), scored,
        tuple(notices),
    )  # fmt: skip
