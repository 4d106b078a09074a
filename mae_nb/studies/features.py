"""Chapter 05's study: do features after 50 % or 3 x 25 % masking separate land cover better?

The first study suggested that an MAE's reconstructions "could serve feature engineering for
geospatial data". :func:`compare_feature_scenarios` measures it: for each masking scenario of
:data:`mae_nb.features.SCENARIOS` and each seed it builds two kinds of features of a labelled
scene, the *embeddings* of the scenario's reconstruction
(:func:`mae_nb.features.scene_embeddings`) and its log *error map*
(:func:`mae_nb.features.error_map`, :data:`mae_nb.features.ERROR_SCENARIOS`), and scores each
with :func:`mae_nb.features.score_features` (a linear probe on a spatially disjoint split, k-means
against the labels).

:func:`answer_feature_study` judges the claim "features after X separate land cover better than
after 25 %" with :mod:`mae_nb.stats`: paired differences over seeds (clustered by seed), clear
when the mean difference exceeds both a practical ``margin`` and two standard errors; with a
single seed the spread is unknown and the answer is inconclusive.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from mae_nb import stats
from mae_nb.errors import InputError
from mae_nb.features import (
    ERROR_SCENARIOS,
    SCENARIOS,
    error_map,
    scene_embeddings,
    score_features,
)

__all__ = ["KINDS", "answer_feature_study", "compare_feature_scenarios", "feature_study_table"]

#: The two kinds of features the study compares.
KINDS = ("embedding", "error")


def compare_feature_scenarios(
    model,
    image,
    labels: np.ndarray,
    *,
    scenarios: Sequence[str] = ("none", "25%", "50%", "3x25%"),
    seeds: Sequence[int] = (0, 1, 2),
    kinds: Sequence[str] = KINDS,
    block: int | None = None,
    bands=None,
    n_clusters: int | None = None,
    split_scheme: str = "halves",
    min_per_class: int = 5,
    progress: bool = True,
) -> list[dict]:
    """Probe and cluster the features of each masking scenario over seeds.

    One row per (kind, scenario, seed) with accuracy, macro_f1 (probe on a spatially disjoint
    split) and ari (k-means with as many clusters as classes vs the labels). ``kinds``:
    "embedding" (patch embeddings of the scenario's reconstruction) and "error" (log per-band
    error map of the scenario; not defined for "none"). labels: (H, W) land-cover map of the
    scene.
    """
    from tqdm.auto import tqdm

    for k in kinds:
        if k not in KINDS:
            raise InputError(f"kinds must be 'embedding' and/or 'error', got {k!r}")
    for s in scenarios:
        if s not in SCENARIOS:
            raise InputError(
                f"unknown scenario {s!r}; choose one of {', '.join(map(repr, SCENARIOS))}"
            )
    jobs = [
        (k, s, seed)
        for k in kinds
        for s in scenarios
        for seed in seeds
        if not (k == "error" and s == "none")
    ]
    rows = []
    for kind, scen, seed in tqdm(jobs, disable=not progress, desc="scenarios x seeds"):
        if kind == "embedding":
            emb = scene_embeddings(model, image, block=block, scenario=scen, seed=seed, bands=bands)
        else:
            err = error_map(model, image, seed=seed, bands=bands, **ERROR_SCENARIOS[scen])
            emb = replace(err, values=np.log10(np.maximum(err.values, 1e-8)))
        score = score_features(
            emb,
            labels,
            n_clusters=n_clusters,
            split_scheme=split_scheme,
            min_per_class=min_per_class,
            seed=seed,
        )
        rows.append(dict(kind=kind, scenario=scen, seed=seed, **score.row()))
    return rows


def feature_study_table(
    rows: Sequence[dict], metrics: Sequence[str] = ("accuracy", "macro_f1", "ari")
) -> str:
    """A Markdown table of :func:`compare_feature_scenarios` rows: mean ± standard deviation over
    seeds per (kind, scenario) (:func:`mae_nb.stats.summarize`)."""
    out = []
    for g in stats.summarize(rows, ("kind", "scenario"), metrics):
        row = {"kind": g["kind"], "scenario": g["scenario"], "seeds": g["n"]}
        row.update({m: f"{g[m]:.3f} ± {g[f'{m}_std']:.3f}" for m in metrics})
        out.append(row)
    return stats.markdown_table(out)


_WORDS = {"supported": "better", "contradicted": "worse", "inconclusive": "no clear difference"}


def answer_feature_study(
    rows: list[dict], metric: str = "macro_f1", reference: str = "25%", margin: float = 0.02
) -> dict:
    """The study's question answered from ``rows`` of :func:`compare_feature_scenarios`.

    For each kind and each scenario other than ``reference``: the paired difference in ``metric``
    over seeds (:func:`mae_nb.stats.paired_difference`, clustered by seed) and its verdict on
    "better than ``reference``" (:func:`mae_nb.stats.judge` with ``margin``: "supported" when the
    mean difference exceeds both ``margin`` and two standard errors, "contradicted" when it is
    that far below, else "inconclusive", always so with a single seed).
    Returns {"table": one dict per comparison, "text": one line each, "plain": the answer}.
    """
    results, lines = [], []
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        ref = {r["seed"]: r[metric] for r in mine if r["scenario"] == reference}
        if not ref:
            continue
        for scen in dict.fromkeys(r["scenario"] for r in mine):
            pairs = [
                (r["seed"], r[metric], ref[r["seed"]])
                for r in mine
                if r["scenario"] == scen and r["seed"] in ref
            ]
            if scen == reference or not pairs:
                continue
            seeds, a, b = zip(*pairs)
            est = stats.paired_difference(a, b, clusters=seeds)
            verdict = stats.judge(est, margin)
            results.append(
                dict(
                    kind=kind,
                    scenario=scen,
                    reference=reference,
                    metric=metric,
                    mean_difference=est.mean,
                    standard_error=est.se,
                    n=est.n,
                    verdict=verdict,
                )
            )
            why = f" ({_WORDS[verdict]})" if est.known else ""
            lines.append(
                f"{kind}s after {scen} vs after {reference}: {metric} "
                f"{est.describe(fmt='.3f')} over {est.n} seed(s): {stats.VERDICTS[verdict]}{why}"
            )
    return {"table": results, "text": "\n".join(lines), "plain": _plain(results, metric, reference)}


def _plain(results: list[dict], metric: str, reference: str) -> str:
    """The answer to the chapter's question (50 % and 3 x 25 % vs ``reference``) in one sentence."""
    question = [r for r in results if r["scenario"] in ("50%", "3x25%")]
    better = [
        f"{r['kind']}s after {r['scenario']}" for r in question if r["verdict"] == "supported"
    ]
    worse = [
        f"{r['kind']}s after {r['scenario']}" for r in question if r["verdict"] == "contradicted"
    ]
    if not question:
        return "The rows hold neither 50% nor 3x25% scenarios: nothing to answer."
    if all(not np.isfinite(r["standard_error"]) for r in question):
        return (
            "Not answerable from one seed: the spread between seeds is unknown. "
            "Run with two or more seeds."
        )
    if len(better) == len(question):
        return (
            f"Yes: {', '.join(better)} separate land cover better than after {reference} "
            f"({metric})."
        )
    if better:
        return (
            f"Partly: better for {', '.join(better)}; "
            + (f"worse for {', '.join(worse)}; " if worse else "")
            + f"no clear difference elsewhere ({metric}, vs {reference})."
        )
    return (
        "No: neither 50% masking nor 3x25% iterations gave features that separate land cover "
        f"better than {reference} ({metric}"
        + (f"; worse: {', '.join(worse)}" if worse else "")
        + ")."
    )
