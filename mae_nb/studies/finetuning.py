"""Chapter 06's study: fine-tuning an MAE encoder against a linear probe and training from scratch.

What does fine-tuning buy over a linear probe, and over the same architecture trained from
scratch, as labels get scarce?

Every mode (:data:`mae_nb.finetune.FINETUNE_MODES`: ``probe``, ``partial``, ``full``,
``scratch``) is trained at every label fraction for every seed on the same spatially disjoint
split, through the course's one fine-tuning loop (:func:`mae_nb.finetune.finetune_mae`), and
compared with :mod:`mae_nb.stats`::

    model_input(encoder, image, valid=None) -> (C, H, W) float32   # the encoder's units
    run_finetuning(encoder, tiles, train, test, modes, fractions, seeds) -> rows   # patch task
    run_multilabel_loo(encoder, images, modes, seeds) -> rows      # image task, leave-one-out
    summarize_modes(rows, metrics) -> list[dict]                   # mean and SE over seeds
    finetuning_table(rows, metrics) -> str                         # mean ± SE, Markdown
    compare_modes(rows, a, b, metric) -> dict                      # paired verdict and text
    majority_baseline(tiles, test) -> float                            # the trivial baseline

A patch-task row is ``{"mode", "fraction", "seed", "n_labels", "oa", "macro_f1",
"seconds"}``; a multi-label row ``{"mode", "fraction", "seed", "map", "sample_f1",
"seconds"}`` (scores of the out-of-fold predictions of all images). The seed draws the labels
kept at a fraction, the head and (for ``scratch``) the encoder, so two modes at one (fraction,
seed) form a pair; standard errors are over seeds (:func:`mae_nb.stats.mean_se`), and with one
seed the spread is unknown and every verdict inconclusive.
"""

from __future__ import annotations

import time
from typing import Mapping, Sequence

import numpy as np

from mae_nb import stats
from mae_nb.errors import InputError
from mae_nb.finetune import (
    FINETUNE_MODES,
    TileSet,
    evaluate_tiles,
    finetune_mae,
    mae_classifier,
    predict_tiles,
)
from mae_nb.metrics import multilabel_report
from mae_nb.reconstruct import model_normalization, normalization
from mae_nb.train import release_memory

__all__ = [
    "MODE_SETTINGS",
    "compare_modes",
    "finetuning_table",
    "majority_baseline",
    "model_input",
    "run_finetuning",
    "run_multilabel_loo",
    "summarize_modes",
]

#: Training settings per mode (AdamW): the linear probe trains only a head and takes a larger
#: step with one learning rate; fine-tuning uses the MAE paper's layer-wise decay (0.75); a
#: model from scratch has nothing to preserve, so no decay.
MODE_SETTINGS = {
    "probe": {"lr": 1e-2, "layer_decay": None},
    "partial": {"lr": 2e-3, "layer_decay": 0.75},
    "full": {"lr": 2e-3, "layer_decay": 0.75},
    "scratch": {"lr": 2e-3, "layer_decay": None},
}


def model_input(encoder, image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``image`` (C, H, W) in ``encoder``'s units: (C, H, W) float32, 0 at nodata.

    The normalization :mod:`mae_nb.reconstruct` uses for this model
    (:func:`~mae_nb.reconstruct.model_normalization`: ImageNet statistics for Meta's RGB
    checkpoints, the image's own per-band statistics for the course models).
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise InputError(f"image must be (C, H, W), got shape {image.shape}")
    valid = np.ones(image.shape[1:], bool) if valid is None else np.asarray(valid, bool)
    kind, mean, std = model_normalization(encoder)
    return normalization(image, kind, valid, mean, std).model_input(image, valid)


def _check_modes(modes: Sequence[str], fractions: Sequence[float], seeds: Sequence[int]):
    bad = [m for m in modes if m not in FINETUNE_MODES]
    if bad or not modes:
        raise InputError(f"modes must be among {FINETUNE_MODES}, got {list(modes)}")
    for f in fractions:
        if not 0.0 < float(f) <= 1.0:
            raise InputError(f"fractions must be in (0, 1] (0.1 = 10 % of the labels), got {f}")
    if not len(seeds):
        raise InputError("seeds is empty; give at least one seed")


def _settings(mode: str, settings: Mapping | None) -> dict:
    return {**MODE_SETTINGS[mode], **((settings or {}).get(mode, {}))}


def run_finetuning(
    encoder,
    tiles: TileSet,
    train,
    test,
    modes: Sequence[str] = FINETUNE_MODES,
    fractions: Sequence[float] = (0.1, 1.0),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    last_blocks: int = 1,
    settings: Mapping[str, Mapping] | None = None,
    progress: bool = True,
    keep_models: bool = False,
    **finetune_kwargs,
) -> list[dict]:
    """Train every mode at every label fraction for every seed on the ``train`` tiles and score
    it on the ``test`` tiles (patch task).

    ``encoder``: the pretrained MAE (copied for every run). ``settings``: per-mode overrides
    of :data:`MODE_SETTINGS` (``{"probe": {"lr": 0.05}}``); ``finetune_kwargs`` go to
    :func:`mae_nb.finetune.finetune_mae` (``steps``, ``batch_size``, ...). Returns one row
    per run (see the module text); with ``keep_models`` also ``"model"``.
    """
    from tqdm.auto import tqdm

    _check_modes(modes, fractions, seeds)
    runs = [(s, float(f), m) for s in seeds for f in fractions for m in modes]
    rows = []
    for seed, fraction, mode in tqdm(runs, desc="fine-tuning study", disable=not progress):
        model = mae_classifier(
            encoder, tiles.n_classes, mode=mode, last_blocks=last_blocks, seed=seed
        )
        result = finetune_mae(
            model,
            tiles,
            train,
            fraction,
            seed=seed,
            progress=False,
            **{**_settings(mode, settings), **finetune_kwargs},
        )
        scores = evaluate_tiles(model, tiles, test)
        row = {
            "mode": mode,
            "fraction": fraction,
            "seed": int(seed),
            "n_labels": result.n_labels,
            "oa": scores["oa"],
            "macro_f1": scores["macro_f1"],
            "seconds": round(result.seconds, 2),
        }
        if keep_models:
            row["model"] = model
        rows.append(row)
        del result
        release_memory()
    return rows


def run_multilabel_loo(
    encoder,
    images: TileSet,
    modes: Sequence[str] = FINETUNE_MODES,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    last_blocks: int = 1,
    settings: Mapping[str, Mapping] | None = None,
    threshold: float = 0.5,
    progress: bool = True,
    **finetune_kwargs,
) -> list[dict]:
    """Leave-one-image-out multi-label classification: for each mode and seed, train on all
    images but one and predict that one, for every image; score the out-of-fold predictions
    of all images together (:func:`mae_nb.metrics.multilabel_report`: mAP, sample-F1).

    For a handful of images (the course's six BigEarthNet patches) this is a demonstration:
    one row per (mode, seed), each from N tiny trainings, with labels that occur in two images
    or more (:meth:`mae_nb.data.bigearthnet.BigEarthNetPatches.targets`).
    """
    from tqdm.auto import tqdm

    _check_modes(modes, (1.0,), seeds)
    if images.task != "image":
        raise InputError("run_multilabel_loo needs images with multi-label targets (image_set)")
    n = len(images)
    if n < 2:
        raise InputError(f"leave-one-out needs at least 2 images, got {n}")
    runs = [(s, m) for s in seeds for m in modes]
    rows = []
    for seed, mode in tqdm(runs, desc="leave-one-out", disable=not progress):
        scores = np.zeros(images.labels.shape, np.float32)
        start = time.perf_counter()
        for i in range(n):
            model = mae_classifier(
                encoder,
                images.n_classes,
                task="image",
                mode=mode,
                last_blocks=last_blocks,
                seed=seed,
            )
            train = np.arange(n) != i
            finetune_mae(
                model,
                images,
                train,
                seed=seed,
                progress=False,
                **{**_settings(mode, settings), **finetune_kwargs},
            )
            scores[i] = predict_tiles(model, images.images[i : i + 1])[0]
            release_memory()
        report = multilabel_report(images.labels, scores, threshold)
        rows.append(
            {
                "mode": mode,
                "fraction": 1.0,
                "seed": int(seed),
                "map": report["map"],
                "sample_f1": report["sample_f1"],
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
    return rows


def majority_baseline(tiles: TileSet, test) -> float:
    """The best overall accuracy any constant answer gets on the labelled patches of the
    ``test`` tiles (the share of their most common class): the score to beat. (It is chosen
    knowing the test labels, so it is a generous baseline.)"""
    test = np.asarray(test, bool)
    counts = tiles.counts(test)
    if counts.sum() == 0:
        raise InputError("the test tiles hold no labelled patch")
    return float(counts.max() / counts.sum())


def _check_rows(rows: Sequence[Mapping], metrics: Sequence[str]) -> list[Mapping]:
    rows = list(rows)
    if not rows:
        raise InputError("no rows: run the study first")
    missing = [m for m in ("mode", "fraction", "seed", *metrics) if m not in rows[0]]
    if missing:
        raise InputError(f"the rows have no {missing}; they have {sorted(rows[0])}")
    return rows


def summarize_modes(
    rows: Sequence[Mapping], metrics: Sequence[str] = ("oa", "macro_f1")
) -> list[dict]:
    """Per (mode, fraction), in the order they first appear: ``mode``, ``fraction``,
    ``seeds`` and, per metric, its mean over seeds and ``<metric>_se`` (standard error,
    :func:`mae_nb.stats.mean_se`; NaN with one seed)."""
    rows = _check_rows(rows, metrics)
    groups: dict[tuple, list[Mapping]] = {}
    for r in rows:
        groups.setdefault((r["mode"], float(r["fraction"])), []).append(r)
    out = []
    for (mode, fraction), group in groups.items():
        entry: dict = {"mode": mode, "fraction": fraction, "seeds": len(group)}
        for m in metrics:
            est = stats.mean_se([g[m] for g in group])
            entry[m], entry[f"{m}_se"] = est.mean, est.se
        out.append(entry)
    return out


def finetuning_table(rows: Sequence[Mapping], metrics: Sequence[str] = ("oa", "macro_f1")) -> str:
    """A Markdown table (:func:`mae_nb.stats.markdown_table`): one line per mode and label
    fraction, each metric as "mean ± SE" over seeds ("± ?" with one seed)."""
    table = []
    for s in summarize_modes(rows, metrics):
        line = {"mode": s["mode"], "labels": f"{s['fraction']:.0%}", "seeds": s["seeds"]}
        for m in metrics:
            se = s[f"{m}_se"]
            line[m] = f"{s[m]:.3f} ± {se:.3f}" if np.isfinite(se) else f"{s[m]:.3f} ± ?"
        table.append(line)
    return stats.markdown_table(table)


def compare_modes(
    rows: Sequence[Mapping], a: str, b: str, metric: str = "macro_f1", margin: float = 0.0
) -> dict:
    """Does mode ``a`` score higher than mode ``b``? Paired by (fraction, seed).

    Per fraction and over all fractions: the mean difference ``a - b`` with its standard
    error clustered by seed (:func:`mae_nb.stats.paired_difference`) and the verdict of
    :func:`mae_nb.stats.judge` (``margin``: the smallest difference that matters). Returns
    ``{"a", "b", "metric", "overall": Estimate, "verdict", "by_fraction": {fraction:
    {"estimate", "verdict"}}, "text"}``.
    """
    rows = _check_rows(rows, (metric,))
    index = {(r["mode"], float(r["fraction"]), r["seed"]): r[metric] for r in rows}
    for mode in (a, b):
        if not any(k[0] == mode for k in index):
            raise InputError(
                f"no rows of mode {mode!r}; the rows have {sorted({k[0] for k in index})}"
            )
    pairs = [
        (f, s, index[(a, f, s)], index[(b, f, s)])
        for (m, f, s) in index
        if m == a and (b, f, s) in index
    ]
    if not pairs:
        raise InputError(f"no (fraction, seed) has both {a!r} and {b!r}")
    overall = stats.paired_difference(
        [p[2] for p in pairs], [p[3] for p in pairs], clusters=[p[1] for p in pairs]
    )
    verdict = stats.judge(overall, margin)
    by_fraction = {}
    for f in sorted({p[0] for p in pairs}):
        sel = [p for p in pairs if p[0] == f]
        est = stats.paired_difference([p[2] for p in sel], [p[3] for p in sel])
        by_fraction[f] = {"estimate": est, "verdict": stats.judge(est, margin)}
    parts = ", ".join(
        f"{f:.0%} of the labels: {v['estimate'].describe()} ({stats.VERDICTS[v['verdict']]})"
        for f, v in by_fraction.items()
    )
    text = (
        f"Claim '{a} scores a higher {metric} than {b}': {stats.VERDICTS[verdict]}. "
        f"Mean difference {overall.describe()} (± two standard errors, clustered by seed, "
        f"over {overall.n} paired runs); by label fraction: {parts}."
    )
    return {
        "a": a,
        "b": b,
        "metric": metric,
        "overall": overall,
        "verdict": verdict,
        "by_fraction": by_fraction,
        "text": text,
    }
