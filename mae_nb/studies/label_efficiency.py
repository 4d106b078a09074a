"""Chapter 08's study: does masked pretraining help when labels are few?

Every model is fine-tuned at every label fraction for every seed
(:func:`run_label_efficiency`, on :mod:`mae_nb.finetune`), and the paper's claims are checked
against those runs with :mod:`mae_nb.stats`::

    run_label_efficiency(models, scene, split, fractions, seeds, classical=("SVM", "RF"), ...)
        -> rows                                            # one per run, deep and classical
    run_classical(scene, split, fractions, seeds, names=("SVM", "RF")) -> rows
    summarize_runs(rows) / label_efficiency_table(rows)   # mean ± std per model and fraction
    paired_gain(rows, a, b, fractions=None) -> dict        # a - b in points, paired runs
    check_paper_claims(rows, pretrained=..., random_init=..., ...) -> claims
    format_claims(claims, scale) -> str                    # the verdict in sentences

A *row* is a plain dict ``{"model", "fraction", "seed", "n_labels", "oa", "aa", "kappa",
"seconds"}``, the same for the networks (fine-tuned on patches) and for the classical
baselines every hyperspectral paper reports (an RBF SVM and a random forest on single-pixel
spectra, scikit-learn), which are fit on exactly the labelled pixels a fraction and seed give
and scored on the same test pixels.

Two models are compared on *pairs* of runs with the same fraction and seed (so the same
labels); runs with the same seed share their split of labels and their random
initialization, so the standard error is clustered by seed (:func:`mae_nb.stats.mean_se`),
and with a single seed the spread is unknown and every claim is inconclusive
(:func:`mae_nb.stats.judge`).
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mae_nb import stats
from mae_nb.data.hsi import LABEL_FRACTIONS, subsample_labels
from mae_nb.errors import InputError, InputTypeError
from mae_nb.finetune import evaluate, finetune, scene_standardizer
from mae_nb.metrics import classification_report
from mae_nb.train import release_memory

__all__ = [
    "ACCURACIES",
    "CLASSICAL",
    "DEFAULT_FRACTIONS",
    "DEFAULT_SEEDS",
    "check_paper_claims",
    "classical_model",
    "format_claims",
    "label_efficiency_table",
    "majority_rate",
    "paired_gain",
    "run_classical",
    "run_label_efficiency",
    "summarize_runs",
]

#: Label fractions of chapter 08's default study (share of each class's training labels; at
#: least one labelled pixel per class, so 0.1 % keeps one or a few per class).
DEFAULT_FRACTIONS = LABEL_FRACTIONS

#: Seeds of the default study: each one another draw of the labels and another initialization.
DEFAULT_SEEDS = (0, 1, 2, 3, 4)

#: The classical baselines on single-pixel spectra, by the names the rows give them:
#: ``"SVM"``, an RBF support vector machine (C = 100, gamma "scale": 1 / bands for
#: standardized spectra), and ``"RF"``, a random forest (200 trees, seeded).
CLASSICAL = ("SVM", "RF")

#: The accuracies every row holds (OA, AA, Cohen's kappa).
ACCURACIES = ("oa", "aa", "kappa")


def _check_grid(fractions: Sequence[float], seeds: Sequence[int]) -> list[float]:
    fractions = [float(f) for f in fractions]
    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise InputError(f"fractions must be in (0, 1] (0.01 = 1 % of the labels), got {f}")
    if not len(seeds):
        raise InputError("seeds is empty; give at least one seed")
    return fractions


def run_label_efficiency(
    models: Mapping[str, Callable[[], nn.Module]],
    scene,
    split,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    classical: Sequence[str] = (),
    classical_kwargs: Mapping[str, Mapping] | None = None,
    progress: bool = True,
    keep_maps: bool = False,
    keep_models: bool = False,
    **finetune_kwargs,
) -> list[dict]:
    """Fine-tune and test every model at every label fraction for every seed.

    ``models``: ``{name: factory}``, where ``factory()`` builds a fresh model (called after
    ``torch.manual_seed(seed)``, so random initializations and heads differ between seeds).
    ``finetune_kwargs`` go to :func:`mae_nb.finetune.finetune` (``steps``, ``lr``,
    ``batch_size``, ...). ``classical``: names of :data:`CLASSICAL` baselines to run on the
    same grid (:func:`run_classical`, with ``classical_kwargs[name]`` for their settings);
    their rows follow the networks'.
    Returns one row per run: ``{"model", "fraction", "seed", "n_labels", "oa", "aa", "kappa",
    "seconds"}``; with ``keep_maps`` also ``"map"`` (H, W) (the test pixels' predictions, 0
    elsewhere) and ``"confusion"`` (K, K); with ``keep_models`` also ``"result"``, the
    :class:`~mae_nb.finetune.FinetuneResult` (trained model, History, labels used), to look
    at a run closely without training it again.
    """
    from tqdm.auto import tqdm

    if not models and not classical:
        raise InputError("models is empty; pass {name: factory} of the models to compare")
    fractions = _check_grid(fractions, seeds)
    for name in classical:
        classical_model(name, 0)  # an unknown name fails before any training
    for name, factory in models.items():
        if isinstance(factory, nn.Module) or not callable(factory):
            raise InputTypeError(
                f"models[{name!r}] must be a function that builds a model, "
                f"got {type(factory).__name__}"
            )
    std = scene_standardizer(scene, split)
    runs = [(s, f, name) for s in seeds for f in fractions for name in models]
    rows: list[dict] = []
    bar = tqdm(runs, desc="label efficiency", unit="run", disable=not progress)
    for seed, fraction, name in bar:
        bar.set_postfix_str(f"{name}, {fraction:.1%}, seed {seed}")
        torch.manual_seed(seed)
        model = models[name]()
        result = finetune(
            model,
            scene,
            split,
            fraction,
            seed=seed,
            standardizer=std,
            progress=False,
            **finetune_kwargs,
        )
        ev = evaluate(model, scene, split, full_map=False, standardizer=std)
        row = {
            "model": name,
            "fraction": fraction,
            "seed": int(seed),
            "n_labels": result.n_labels,
            "oa": ev["oa"],
            "aa": ev["aa"],
            "kappa": ev["kappa"],
            "seconds": round(result.seconds, 2),
        }
        if keep_maps:
            row.update(map=ev["map"], confusion=ev["confusion"])
        if keep_models:
            row["result"] = result
        rows.append(row)
        del model, result, ev
        release_memory()  # without it the kernel's memory grows run after run (heap fragmentation)
    if classical:
        rows += run_classical(
            scene,
            split,
            fractions,
            seeds,
            names=classical,
            model_kwargs=classical_kwargs,
            standardizer=std,
            keep_maps=keep_maps,
        )
    return rows


def classical_model(name: str, seed: int = 0, **kwargs):
    """A fresh scikit-learn classifier of :data:`CLASSICAL` for single-pixel spectra.

    ``"SVM"``: ``SVC(kernel="rbf", C=100, gamma="scale")`` (the inputs are standardized per
    band, so gamma is 1 / bands; C = 100 is the usual choice for hyperspectral pixels, fixed:
    with one labelled pixel per class there is nothing to cross-validate on). ``"RF"``:
    ``RandomForestClassifier(n_estimators=200, random_state=seed)`` (one core: the study's
    runs are timed alike). ``kwargs`` override these settings.
    """
    if name == "SVM":
        from sklearn.svm import SVC

        return SVC(**{"kernel": "rbf", "C": 100.0, "gamma": "scale", **kwargs})
    if name == "RF":
        from sklearn.ensemble import RandomForestClassifier

        settings = {"n_estimators": 200, "random_state": int(seed), "n_jobs": 1, **kwargs}
        return RandomForestClassifier(**settings)
    raise InputError(f"unknown classical baseline {name!r}; choose from {CLASSICAL}")


def run_classical(
    scene,
    split,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    names: Sequence[str] = CLASSICAL,
    model_kwargs: Mapping[str, Mapping] | None = None,
    standardizer=None,
    keep_maps: bool = False,
) -> list[dict]:
    """The classical baselines on single-pixel spectra, in the rows of
    :func:`run_label_efficiency`.

    For each seed and fraction, each model of ``names`` (:func:`classical_model`, with
    ``model_kwargs[name]``) is fit on the spectra of exactly the labelled pixels
    :func:`mae_nb.data.hsi.subsample_labels` gives for that fraction and seed (the pixels the
    networks are fine-tuned on), standardized per band with the training region's statistics
    (:func:`mae_nb.finetune.scene_standardizer`, as for the networks), and scored on the test
    pixels of ``split``. The seed also seeds the forest.
    """
    fractions = _check_grid(fractions, seeds)
    model_kwargs = dict(model_kwargs or {})
    for name in names:
        classical_model(name, 0, **model_kwargs.get(name, {}))
    std = scene_standardizer(scene, split) if standardizer is None else standardizer
    cube = std.apply(scene.cube)
    labels = scene.labels
    test = split.test
    if not test.any():
        raise InputError("the test split has no labelled pixel; choose another split")
    x_test, y_test = cube[test], labels[test]
    rows = []
    for seed in seeds:
        for fraction in fractions:
            train = subsample_labels(split.train, labels, fraction, seed=int(seed))
            x, y = cube[train], labels[train]
            for name in names:
                model = classical_model(name, int(seed), **model_kwargs.get(name, {}))
                start = time.perf_counter()
                if len(np.unique(y)) < 2:  # one class only: scikit-learn refuses; predict it
                    pred = np.full(len(y_test), y[0])
                else:
                    pred = model.fit(x, y).predict(x_test)
                seconds = time.perf_counter() - start
                report = classification_report(y_test - 1, pred - 1, n_classes=scene.n_classes)
                row = {
                    "model": name,
                    "fraction": fraction,
                    "seed": int(seed),
                    "n_labels": int(train.sum()),
                    "oa": report["oa"],
                    "aa": report["aa"],
                    "kappa": report["kappa"],
                    "seconds": round(seconds, 2),
                }
                if keep_maps:
                    pred_map = np.zeros(labels.shape, np.int64)
                    pred_map[test] = pred
                    row.update(map=pred_map, confusion=report["confusion"])
                rows.append(row)
    return rows


def majority_rate(scene, split) -> float:
    """The share of the test pixels in their most frequent class: the overall accuracy of
    always answering that class, the floor every model must clear by a margin."""
    counts = np.bincount(scene.labels[split.test], minlength=scene.n_classes + 1)[1:]
    if counts.sum() == 0:
        raise InputError("the test split has no labelled pixel")
    return float(counts.max() / counts.sum())


def _check_rows(rows: Sequence[Mapping], metric: str) -> list[Mapping]:
    rows = list(rows)
    if not rows:
        raise InputError("no rows: run run_label_efficiency first")
    if metric not in rows[0]:
        raise InputError(f"metric {metric!r} is not in the rows; they have {sorted(rows[0])}")
    return rows


def summarize_runs(rows: Sequence[Mapping], metrics: Sequence[str] = ACCURACIES) -> list[dict]:
    """Mean and standard deviation over seeds: one dict per (model, fraction), in the rows'
    order (:func:`mae_nb.stats.summarize`).

    Keys: ``model``, ``fraction``, ``n`` (seeds), ``n_labels`` (mean), and ``<metric>`` /
    ``<metric>_std`` (ddof=1; 0 for one seed) for each metric.
    """
    rows = _check_rows(rows, metrics[0])
    extra = ("n_labels",) if "n_labels" in rows[0] else ()
    return stats.summarize(rows, ("model", "fraction"), (*metrics, *extra))


def label_efficiency_table(rows: Sequence[Mapping], metrics: Sequence[str] = ACCURACIES) -> str:
    """A markdown table: one line per model and fraction, ``mean ± std`` over seeds (in %,
    kappa x 100), by fraction, models in the rows' order."""
    summary = summarize_runs(rows, metrics)
    order = list(dict.fromkeys(r["model"] for r in rows))
    lines = []
    for s in sorted(summary, key=lambda e: (e["fraction"], order.index(e["model"]))):
        line = {
            "model": s["model"],
            "labels": f"{s['fraction']:.1%}",
            "pixels": f"{s.get('n_labels', float('nan')):.0f}",
        }
        for m in metrics:
            mean, std = 100 * s[m], 100 * s[f"{m}_std"]
            line[m.upper()] = f"{mean:.1f} ± {std:.1f}" if s["n"] > 1 else f"{mean:.1f}"
        lines.append(line)
    return stats.markdown_table(lines)


def paired_gain(
    rows: Sequence[Mapping],
    a: str,
    b: str,
    *,
    fractions: Sequence[float] | None = None,
    metric: str = "oa",
) -> dict:
    """Gain of model ``a`` over model ``b`` in ``metric`` points (x 100), over paired runs.

    A pair is the two runs at the same (fraction, seed); only the given ``fractions`` (all
    by default) count. Returns ``{"estimate"`` (a :class:`mae_nb.stats.Estimate` of the mean
    difference, standard error clustered by seed), ``"gain"`` and ``"se"`` (its mean and
    standard error), ``"n"`` (pairs), ``"seeds"`` (independent clusters), ``"per_fraction"``
    ``{fraction: mean gain}``, ``"fractions"``}.
    """
    rows = _check_rows(rows, metric)
    names = {r["model"] for r in rows}
    for name in (a, b):
        if name not in names:
            raise InputError(f"model {name!r} is not in the rows; they have {sorted(names)}")
    wanted = None if fractions is None else {float(f) for f in fractions}
    va = {(r["fraction"], r["seed"]): r[metric] for r in rows if r["model"] == a}
    vb = {(r["fraction"], r["seed"]): r[metric] for r in rows if r["model"] == b}
    keys = sorted(k for k in va if k in vb and (wanted is None or k[0] in wanted))
    if not keys:
        raise InputError(
            f"no (fraction, seed) run of both {a!r} and {b!r}"
            + ("" if wanted is None else f" at fractions {sorted(wanted)}")
        )
    points_a = [100 * va[k] for k in keys]
    points_b = [100 * vb[k] for k in keys]
    estimate = stats.paired_difference(points_a, points_b, clusters=[k[1] for k in keys])
    per_fraction: dict[float, list[float]] = {}
    for k, x, y in zip(keys, points_a, points_b):
        per_fraction.setdefault(k[0], []).append(x - y)
    return {
        "estimate": estimate,
        "gain": estimate.mean,
        "se": estimate.se,
        "n": estimate.n,
        "seeds": estimate.clusters,
        "per_fraction": {f: float(np.mean(v)) for f, v in per_fraction.items()},
        "fractions": sorted(per_fraction),
    }


def check_paper_claims(
    rows: Sequence[Mapping],
    *,
    pretrained: str,
    random_init: str,
    vit: str | None = None,
    cnn: str | None = None,
    classical: Sequence[str] | None = None,
    ablations: Mapping[str, str] | None = None,
    low_fraction: float = 0.10,
    metric: str = "oa",
) -> list[dict]:
    """The paper's claims checked against ``rows``: one dict per claim that the rows can test.

    Names are the ``model`` values in the rows. ``classical``: the classical baselines'
    names (e.g. :data:`CLASSICAL`); the pretrained model is compared with the best of them
    (highest mean ``metric`` at the low fractions). ``ablations``: ``{what is removed: model
    name}`` (e.g. ``{"blockwise embedding": "SST shared embedding"}``), each compared with
    ``random_init`` (the full model trained the same way). The few-label claims pool the
    fractions up to ``low_fraction``. Each claim: ``{"claim", "paper"`` (the paper's figure,
    text), ``"a"``, ``"b"``, the keys of :func:`paired_gain`, ``"status"``
    (:func:`mae_nb.stats.judge`: ``supported``/``contradicted``/``inconclusive``),
    ``"reaches_paper"`` (bool: gain at least the paper's lower figure), ``"by_fraction"``
    ``{fraction: {"estimate", "status"}}``: the same test at each fraction alone (pairs over
    seeds, one per seed), which says where the gain holds and where it does not}.
    """
    rows = _check_rows(rows, metric)
    low = sorted({r["fraction"] for r in rows if r["fraction"] <= low_fraction})
    names = {r["model"] for r in rows}
    runs_of: dict[str, set] = {}
    for r in rows:
        runs_of.setdefault(r["model"], set()).add(r["fraction"])
    claims = []

    def add(claim, paper, paper_min, a, b, fractions):
        fractions = [f for f in fractions if f in runs_of.get(a, ()) and f in runs_of.get(b, ())]
        if not fractions:  # no paired run: a claim these rows cannot test
            return
        c = paired_gain(rows, a, b, fractions=fractions, metric=metric)
        by_fraction = {}
        for f in c["fractions"]:
            e = paired_gain(rows, a, b, fractions=[f], metric=metric)["estimate"]
            by_fraction[f] = {"estimate": e, "status": stats.judge(e)}
        claims.append(
            {
                "claim": claim,
                "paper": paper,
                "a": a,
                "b": b,
                **c,
                "status": stats.judge(c["estimate"]),
                "reaches_paper": paper_min is not None and c["gain"] >= paper_min,
                "by_fraction": by_fraction,
            }
        )

    few_labels = "+7-8 points with 0.1-10 % of the labels"
    add("masked pretraining helps with few labels", few_labels, 7.0, pretrained, random_init, low)
    if cnn in names:
        claim = "pretrained transformer beats the 3D-CNN with few labels"
        add(claim, few_labels, 7.0, pretrained, cnn, low)
    present = [c for c in (classical or ()) if c in names]
    if present and low:
        summary = {(s["model"], s["fraction"]): s[metric] for s in summarize_runs(rows, [metric])}
        best = max(present, key=lambda m: np.nanmean([summary.get((m, f), np.nan) for f in low]))
        claim = f"pretrained transformer beats the best classical baseline ({best}) with few labels"
        paper = "not in the paper; the reference every hyperspectral study reports"
        add(claim, paper, None, pretrained, best, low)
    if vit in names:
        every = sorted({r["fraction"] for r in rows})
        claim = "spatial-spectral transformer beats a standard ViT"
        add(claim, "+5 (EnMAP) to +15 (Houston2018) points", 5.0, random_init, vit, every)
    for removed, name in (ablations or {}).items():
        if name in names:
            fr = sorted({r["fraction"] for r in rows if r["model"] == name})
            paper = "part of the +5 to +15 points over a ViT"
            add(f"{removed} helps (ablation)", paper, None, random_init, name, fr)
    return claims


def _where(by_fraction: Mapping[float, Mapping]) -> str:
    """``"holds at 1.0%, 5.0%; not at 0.1% (inconclusive), 100.0% (contradicted)"``."""
    holds = [f"{f:.1%}" for f, v in by_fraction.items() if v["status"] == "supported"]
    fails = [
        f"{f:.1%} ({v['status']})" for f, v in by_fraction.items() if v["status"] != "supported"
    ]
    parts = []
    if holds:
        parts.append("holds at " + ", ".join(holds))
    if fails:
        parts.append(("not at " if holds else "holds at no fraction: ") + ", ".join(fails))
    return "; ".join(parts)


def format_claims(claims: Sequence[Mapping], scale: str = "") -> str:
    """Plain sentences for :func:`check_paper_claims`'s claims, computed from their numbers:
    the verdict (:data:`mae_nb.stats.VERDICTS`), the gain ± two standard errors, the pairs,
    and fraction by fraction where the gain holds (clearly positive over the seeds) and where
    it does not."""
    if not claims:
        return "No claim could be tested with these runs."
    lines = [f"Verdict at the scale run here{f' ({scale})' if scale else ''}:"]
    for c in claims:
        per = ", ".join(f"{f:.1%}: {g:+.1f}" for f, g in c["per_fraction"].items())
        size = ""
        if c["status"] == "supported" and c["paper"].startswith("+"):
            size = (
                " and at least as large as the paper's"
                if c["reaches_paper"]
                else " but smaller than the paper's"
            )
        runs = f"{c['n']} paired run{'s' * (c['n'] != 1)}"
        seeds = f"{c['seeds']} seed{'s' * (c['seeds'] != 1)}"
        where = ""
        if len(c.get("by_fraction", {})) > 1:
            where = f" By fraction, the gain {_where(c['by_fraction'])}."
        lines.append(
            f"- {c['claim']}: {stats.VERDICTS[c['status']]}{size}. {c['a']} vs {c['b']}: "
            f"{c['estimate'].describe(' points', '.1f')} over {runs}, {seeds} "
            f"({per}); paper: {c['paper']}.{where}"
        )
    return "\n".join(lines)
