"""Training mask ratio against inference mask ratio: which ratio to train an MAE at, measured.

He et al. train at 75 %; the study this course reproduces applies a model trained at 75 % at 25 %,
50 % and 3 x 25 % at inference. Here the two ratios are separated: tiny MAEs trained with the same
recipe and budget at each training ratio (:func:`train_at_ratios`, :func:`mae_nb.pretrained.
train_course_mae` with only ``mask_ratio`` changed) are each scored at each inference ratio on the
same held-out crops and masks, next to the blur (:func:`mae_nb.studies.heldout.score_heldout`:
masked-patch PSNR in the source's units with its data range), and their encoders' features are
probed for land cover (:func:`mae_nb.studies.features.compare_feature_sources`: a linear probe,
leave-one-block-out). :func:`mask_ratio_study` runs both; :class:`MaskRatioStudy` gives the
3 x 3 grid, the probe accuracies and a verdict per question, by :mod:`mae_nb.stats`' rule:
paired differences (crops, or probe blocks, are the independent samples) and "supported" only
beyond two standard errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from mae_nb import stats
from mae_nb.errors import InputError
from mae_nb.features import scene_embeddings
from mae_nb.masking import check_mask_ratio
from mae_nb.pretrained import TrainedMAE, train_course_mae
from mae_nb.studies.features import compare_feature_sources
from mae_nb.studies.heldout import HeldoutScores, score_heldout

__all__ = [
    "MaskRatioStudy",
    "RATIOS",
    "check_ratios",
    "mask_ratio_study",
    "ratio_name",
    "train_at_ratios",
]

#: The training and inference ratios crossed (the study's 25 % and 50 %, He et al.'s 75 %).
RATIOS = (0.25, 0.5, 0.75)


def check_ratios(ratios: Sequence[float], what: str = "mask ratios") -> tuple[float, ...]:
    """``ratios`` as a tuple of distinct floats in (0, 1), or an :class:`InputError` saying why."""
    try:
        values = [float(r) for r in ratios]
    except (TypeError, ValueError):
        raise InputError(
            f"{what} must be a sequence of numbers in (0, 1), got {ratios!r}"
        ) from None
    if not values:
        raise InputError(f"{what} must hold at least one ratio, got none")
    for r in values:
        check_mask_ratio(r)
        if r == 0:
            raise InputError(f"{what} must be in (0, 1): with 0 no patch is hidden, got {r}")
    if len(set(values)) != len(values):
        raise InputError(f"{what} must be distinct, got {values}")
    return tuple(values)


def ratio_name(ratio: float) -> str:
    """The name a model trained at ``ratio`` gets in the study's rows: ``"trained at 75%"``."""
    return f"trained at {ratio * 100:.0f}%"


def train_at_ratios(
    image: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    ratios: Sequence[float] = RATIOS,
    **recipe,
) -> dict[float, TrainedMAE]:
    """One tiny MAE per training ratio, each with :func:`~mae_nb.pretrained.train_course_mae`
    and the same ``recipe`` (tiles, epochs, seed: the same budget), only ``mask_ratio`` changed."""
    ratios = check_ratios(ratios, "training mask ratios")
    if "mask_ratio" in recipe:
        raise InputError(
            "train_at_ratios sets mask_ratio itself (one model per ratio in `ratios`); "
            "leave it out of the recipe"
        )
    return {r: train_course_mae(image, valid, mask_ratio=r, **recipe) for r in ratios}


@dataclass
class MaskRatioStudy:
    """What :func:`mask_ratio_study` measured.

    ``held``: masked-patch PSNR rows, one per (training ratio, scene, test ratio, crop), with the
    blur's and the mean fill's (models named by :func:`ratio_name`); ``probe``: probe rows of
    :func:`~mae_nb.studies.features.compare_feature_sources`, one per (training ratio, block).
    """

    train_ratios: tuple[float, ...]
    test_ratios: tuple[float, ...]
    held: HeldoutScores
    probe: list[dict] = field(default_factory=list)

    def psnr(self, train: float, test: float) -> float:
        """Mean masked-patch PSNR (dB) of the model trained at ``train``, masked at ``test``."""
        vals = [
            r["psnr"]
            for r in self.held.rows
            if r["model"] == ratio_name(train) and r["ratio"] == test
        ]
        return float(np.nanmean(vals)) if vals else float("nan")

    def blur(self, test: float) -> float:
        """Mean masked-patch PSNR (dB) of the blur at ``test`` (the same crops and masks)."""
        vals = [r["blur"] for r in self.held.rows if r["ratio"] == test]
        return float(np.nanmean(vals)) if vals else float("nan")

    def grid(self) -> list[dict]:
        """The 3 x 3 table: one row per training ratio (and one for the blur), one column per
        test ratio, mean masked-patch PSNR in dB."""
        col = [f"masked {q * 100:.0f}%" for q in self.test_ratios]
        rows = [
            {"model": ratio_name(t), **{c: self.psnr(t, q) for c, q in zip(col, self.test_ratios)}}
            for t in self.train_ratios
        ]
        blur = {c: self.blur(q) for c, q in zip(col, self.test_ratios)}
        rows.append({"model": "blur (no model)", **blur})
        return rows

    def accuracy(self, train: float) -> float:
        """Mean linear-probe accuracy over the blocks for the model trained at ``train``."""
        vals = [r["accuracy"] for r in self.probe if r["source"] == ratio_name(train)]
        return float(np.nanmean(vals)) if vals else float("nan")

    def probe_table(self) -> list[dict]:
        """One row per training ratio: land-cover probe accuracy and macro F1 (block means)."""
        return [
            dict(
                model=ratio_name(t),
                accuracy=self.accuracy(t),
                macro_f1=float(
                    np.nanmean([r["macro_f1"] for r in self.probe if r["source"] == ratio_name(t)])
                ),
                blocks=sum(r["source"] == ratio_name(t) for r in self.probe),
            )
            for t in self.train_ratios
        ]

    def _paired(self, values: Callable[[float], dict], best: float) -> dict[float, stats.Estimate]:
        """Paired differences of ``best`` minus each other training ratio, over shared keys."""
        mine = values(best)
        out = {}
        for t in self.train_ratios:
            if t == best:
                continue
            theirs = values(t)
            keys = [k for k in mine if k in theirs]
            out[t] = stats.paired_difference(
                [mine[k] for k in keys], [theirs[k] for k in keys], [k[0] for k in keys]
            )
        return out

    def _best(self, score: Callable[[float], float], values, unit, fmt, margin) -> dict:
        means = {t: score(t) for t in self.train_ratios}
        best = max(means, key=lambda t: -np.inf if np.isnan(means[t]) else means[t])
        gaps = self._paired(values, best)
        verdicts = {t: stats.judge(e, margin) for t, e in gaps.items()}
        overall = (
            "supported"
            if verdicts and all(v == "supported" for v in verdicts.values())
            else "inconclusive"
        )
        text = "; ".join(
            f"over {ratio_name(t)} {e.describe(unit, fmt)} ({stats.VERDICTS[verdicts[t]]})"
            for t, e in gaps.items()
        )
        return dict(
            best=best, means=means, gaps=gaps, verdicts=verdicts, verdict=overall, text=text
        )

    def best_reconstruction(self, margin: float = 0.1) -> dict:
        """The training ratio with the highest masked-patch PSNR averaged over the test ratios,
        and its paired gain over each other training ratio (per crop and test ratio, clustered by
        crop): ``best``, ``means``, ``gaps`` (ratio -> Estimate), ``verdicts``, ``verdict``
        (``"supported"`` when it beats every other by more than two standard errors and
        ``margin`` dB, :func:`mae_nb.stats.judge`), ``text``."""

        def values(t):
            return {
                ((r["scene"], r["crop"]), r["ratio"]): r["psnr"]
                for r in self.held.rows
                if r["model"] == ratio_name(t) and r["ratio"] in self.test_ratios
            }

        def score(t):
            return float(np.nanmean(list(values(t).values())))

        return self._best(score, values, " dB", ".2f", margin)

    def best_features(self, margin: float = 0.02) -> dict:
        """The training ratio whose encoder's features gave the highest land-cover probe accuracy,
        and its paired gain over each other (per block, clustered by block); as
        :meth:`best_reconstruction`, with ``margin`` in accuracy."""

        def values(t):
            return {
                (r["fold"], r["seed"]): r["accuracy"]
                for r in self.probe
                if r["source"] == ratio_name(t)
            }

        return self._best(self.accuracy, values, "", ".3f", margin)

    def verdict(self) -> str:
        """The study's answer in two sentences, computed from the measurements."""
        rec = self.best_reconstruction()
        best_at = {
            q: max(self.train_ratios, key=lambda t: self.psnr(t, q)) for q in self.test_ratios
        }
        where = ", ".join(
            f"at {q * 100:.0f}% the model {ratio_name(t)}" for q, t in best_at.items()
        )
        out = (
            f"Best reconstruction (a clear winner must lead by more than two standard errors and "
            f"0.1 dB): the model {ratio_name(rec['best'])} "
            f"({rec['means'][rec['best']]:.2f} dB averaged over the test ratios; "
            f"{rec['text']}): {stats.VERDICTS[rec['verdict']]} as the best. Per test ratio the "
            f"best is: {where}."
        )
        if self.probe:
            feat = self.best_features()
            out += (
                " Best features (land-cover probe accuracy; a clear winner leads by more than two"
                f" standard errors and 0.02): the model {ratio_name(feat['best'])}"
                f" ({feat['means'][feat['best']]:.3f}; {feat['text']}): "
                f"{stats.VERDICTS[feat['verdict']]} as the best."
            )
        return out


def mask_ratio_study(
    models: Mapping[float, object],
    sources: Sequence,
    *,
    test_ratios: Sequence[float] = RATIOS,
    crop_size: int = 64,
    crops: int = 8,
    seed: int = 0,
    normalization: Callable | None = None,
    probe_image: np.ndarray | None = None,
    probe_labels: np.ndarray | None = None,
    probe_valid: np.ndarray | None = None,
    fold_block: int = 1,
) -> MaskRatioStudy:
    """Score each model (training ratio -> MAE) at each of ``test_ratios`` and probe its features.

    ``sources``, ``crop_size``, ``crops``, ``seed``, ``normalization``: as for
    :func:`~mae_nb.studies.heldout.score_heldout` (the same crops and masks for every model).
    With ``probe_image`` (C, H, W) and its land-cover ``probe_labels`` (H, W), each model's patch
    embeddings of the image (:func:`~mae_nb.features.scene_embeddings`, each image standardized by
    its own per-band statistics) are probed block by block (blocks of ``fold_block`` tiles).
    """
    train = check_ratios(list(models), "training mask ratios")
    test = check_ratios(test_ratios, "test mask ratios")
    if (probe_image is None) != (probe_labels is None):
        raise InputError("give both probe_image and probe_labels (its land-cover map), or neither")
    named = {ratio_name(t): models[t] for t in train}
    held = score_heldout(
        named, sources, ratios=test, crop_size=crop_size, crops=crops, seed=seed,
        normalization=normalization,
    )  # fmt: skip
    probe = []
    if probe_image is not None:
        embeddings = {
            name: scene_embeddings(m, probe_image, valid=probe_valid, source=name)
            for name, m in named.items()
        }
        probe = compare_feature_sources(
            embeddings, np.asarray(probe_labels), fold_block=fold_block, seed=seed
        )
    return MaskRatioStudy(train, test, held, probe)
