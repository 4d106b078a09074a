"""Chapter 05's studies: MAE features against raw pixels, and features after each masking.

Do MAE features beat raw pixels, and do features after 50 % or 3 x 25 % masking separate land
cover better than after 25 %?

The first study suggested that an MAE's reconstructions "could serve feature engineering for
geospatial data". Both questions are measured the same way. Features (MAE embeddings, raw
pixels, the embeddings of a scenario's reconstruction or its log error map) are scored block by
block with :func:`mae_nb.features.score_folds`: the scene is cut into blocks of whole encoder
tiles, and each block is scored by a linear probe trained on the *other* blocks (no test cell
shares a pixel, or an encoder tile, with a training cell) and by one k-means of the scene
restricted to the block. :func:`compare_feature_sources` does it for named feature sets,
:func:`compare_feature_scenarios` for each masking scenario of :data:`mae_nb.features.SCENARIOS`
and each seed.

**Independent samples.** The blocks are the independent samples: seeds only change the mask
draws, so two seeds on the same block are not two independent measurements. The verdicts
(:func:`answer_feature_sources`, :func:`answer_feature_study`) take paired differences over
(block, seed) pairs with standard errors clustered by block (:mod:`mae_nb.stats`), and are clear
only when the mean difference exceeds both a practical ``margin`` and two standard errors. With
a single block (``split_scheme="halves"`` or ``"blocks"``: one split) the spread is unknown and
every verdict is inconclusive.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from mae_nb import stats
from mae_nb.errors import InputError
from mae_nb.features import (
    ERROR_SCENARIOS,
    SCENARIOS,
    Embeddings,
    error_map,
    scene_embeddings,
    score_features,
    score_folds,
)

__all__ = [
    "KINDS",
    "SPLIT_SCHEMES",
    "answer_feature_sources",
    "answer_feature_study",
    "compare_feature_scenarios",
    "compare_feature_sources",
    "feature_study_table",
]

#: The two kinds of features the study compares.
KINDS = ("embedding", "error")

#: How the probe's train/test cells are chosen: leave-one-block-out folds, or one split.
SPLIT_SCHEMES = ("folds", "halves", "blocks")


def _score(emb, labels, split_scheme, fold_block, n_clusters, min_per_class, seed) -> list[dict]:
    """Rows of scores of ``emb``: one per block (``"folds"``) or one for a single split."""
    if split_scheme not in SPLIT_SCHEMES:
        raise InputError(
            f"split_scheme must be one of {', '.join(map(repr, SPLIT_SCHEMES))}, "
            f"got {split_scheme!r}"
        )
    if split_scheme == "folds":
        return score_folds(
            emb, labels, block=fold_block, n_clusters=n_clusters,
            min_per_class=min_per_class, seed=seed,
        )  # fmt: skip
    score = score_features(
        emb, labels, n_clusters=n_clusters, split_scheme=split_scheme,
        min_per_class=min_per_class, seed=seed,
    )  # fmt: skip
    return [dict(fold=1, **score.row(), n_test=score.probe.n_test)]


def compare_feature_sources(
    sources: Mapping[str, Embeddings],
    labels: np.ndarray,
    *,
    split_scheme: str = "folds",
    fold_block: int = 1,
    n_clusters: int | None = None,
    min_per_class: int = 5,
    seed: int = 0,
) -> list[dict]:
    """Probe and cluster each named feature set block by block: one row per (source, block)
    with ``accuracy``, ``macro_f1``, ``ari``, ``n_test`` (see the module text). The feature sets
    must lie on the same cell grid (e.g. :func:`mae_nb.features.pixel_features` with the
    embeddings' tile size) so that block ``k`` is the same cells for every source."""
    rows = []
    for name, emb in sources.items():
        for r in _score(emb, labels, split_scheme, fold_block, n_clusters, min_per_class, seed):
            rows.append(dict(source=name, seed=seed, **r))
    return rows


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
    split_scheme: str = "folds",
    fold_block: int = 1,
    min_per_class: int = 5,
    progress: bool = True,
) -> list[dict]:
    """Probe and cluster the features of each masking scenario over seeds, block by block.

    One row per (kind, scenario, seed, fold) with accuracy, macro_f1 (a probe trained on the
    other blocks of ``fold_block`` x ``fold_block`` encoder tiles), ari (k-means with as many
    clusters as classes, restricted to the block) and n_test; ``split_scheme="halves"`` or
    ``"blocks"`` scores one split instead (one row per seed, ``fold`` 1). ``kinds``:
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
        for r in _score(emb, labels, split_scheme, fold_block, n_clusters, min_per_class, seed):
            rows.append(dict(kind=kind, scenario=scen, seed=seed, **r))
    return rows


def feature_study_table(
    rows: Sequence[dict],
    metrics: Sequence[str] = ("accuracy", "macro_f1", "ari"),
    by: Sequence[str] = ("kind", "scenario"),
) -> str:
    """A Markdown table of study rows (:func:`compare_feature_scenarios`, or
    :func:`compare_feature_sources` with ``by=("source",)``): per group, the mean over blocks and
    seeds ± two standard errors clustered by block (:func:`mae_nb.stats.mean_se`; "nan" with a
    single block), and how many blocks and seeds it rests on."""
    out = []
    for key in dict.fromkeys(tuple(r[k] for k in by) for r in rows):
        mine = [r for r in rows if tuple(r[k] for k in by) == key]
        row = dict(zip(by, key))
        row["blocks"] = len({r.get("fold", 1) for r in mine})
        row["seeds"] = len({r.get("seed", 0) for r in mine})
        for m in metrics:
            est = stats.mean_se([r[m] for r in mine], [r.get("fold", 1) for r in mine])
            row[m] = f"{est.mean:.3f} ± {2 * est.se:.3f}"
        out.append(row)
    return stats.markdown_table(out)


_WORDS = {"supported": "better", "contradicted": "worse", "inconclusive": "no clear difference"}


def _compare(rows: Sequence[dict], group: str, reference, metric: str, margin: float) -> list:
    """Paired differences of each ``group`` value against ``reference`` over (block, seed) pairs,
    clustered by block: [(value, Estimate, verdict, blocks, seeds)]."""
    ref = {(r.get("fold", 1), r["seed"]): r[metric] for r in rows if r[group] == reference}
    out = []
    for value in dict.fromkeys(r[group] for r in rows):
        if value == reference:
            continue
        pairs = [
            ((r.get("fold", 1), r["seed"]), r[metric], ref[(r.get("fold", 1), r["seed"])])
            for r in rows
            if r[group] == value and (r.get("fold", 1), r["seed"]) in ref
        ]
        if not pairs:
            continue
        keys, x, y = zip(*pairs)
        est = stats.paired_difference(x, y, clusters=[k[0] for k in keys])
        seeds = len({k[1] for k in keys})
        out.append((value, est, stats.judge(est, margin), est.clusters, seeds))
    return out


def _line(what: str, metric: str, est, verdict: str, blocks: int, seeds: int) -> str:
    why = f" ({_WORDS[verdict]})" if est.known else ""
    return (
        f"{what}: {metric} {est.describe(fmt='.3f')} over {blocks} block(s) x {seeds} seed(s) "
        f"(clustered by block): {stats.VERDICTS[verdict]}{why}"
    )


def _result(est, verdict, blocks, seeds, **what) -> dict:
    return dict(
        **what,
        mean_difference=est.mean,
        standard_error=est.se,
        n=est.n,
        blocks=blocks,
        seeds=seeds,
        verdict=verdict,
    )


def answer_feature_sources(
    rows: list[dict], metric: str = "macro_f1", reference: str = "raw pixels", margin: float = 0.02
) -> dict:
    """Does each feature source of :func:`compare_feature_sources` beat ``reference``?

    The paired difference in ``metric`` over blocks (and seeds), clustered by block, and its
    verdict (:func:`mae_nb.stats.judge` with ``margin``). Returns {"table": one dict per source,
    "text": one line each}.
    """
    results, lines = [], []
    for source, est, verdict, blocks, seeds in _compare(rows, "source", reference, metric, margin):
        results.append(
            _result(est, verdict, blocks, seeds, source=source, reference=reference, metric=metric)
        )
        lines.append(_line(f"{source} vs {reference}", metric, est, verdict, blocks, seeds))
    return {"table": results, "text": "\n".join(lines)}


def answer_feature_study(
    rows: list[dict], metric: str = "macro_f1", reference: str = "25%", margin: float = 0.02
) -> dict:
    """The study's question answered from ``rows`` of :func:`compare_feature_scenarios`.

    For each kind and each scenario other than ``reference``: the paired difference in ``metric``
    over (block, seed) pairs with its standard error clustered by block
    (:func:`mae_nb.stats.paired_difference`), and its verdict on "better than ``reference``"
    (:func:`mae_nb.stats.judge` with ``margin``: "supported" when the mean difference exceeds
    both ``margin`` and two standard errors, "contradicted" when it is that far below, else
    "inconclusive", always so with a single block).
    Returns {"table": one dict per comparison, "text": one line each, "plain": the answer}.
    """
    results, lines = [], []
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        for scen, est, verdict, blocks, seeds in _compare(
            mine, "scenario", reference, metric, margin
        ):
            results.append(
                _result(
                    est, verdict, blocks, seeds,
                    kind=kind, scenario=scen, reference=reference, metric=metric,
                )  # fmt: skip
            )
            what = f"{kind}s after {scen} vs after {reference}"
            lines.append(_line(what, metric, est, verdict, blocks, seeds))
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
            "Not answerable from one block: the spread between independent samples is unknown. "
            "Score on leave-one-block-out folds (split_scheme='folds') of a scene of several tiles."
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
