"""Statistics of the course's studies: paired differences, standard errors, verdicts, tables.

Every study in :mod:`mae_nb.studies` judges a claim the same way, here:

1. **Paired differences.** Two conditions (two models, two masking scenarios) are run on the same
   samples (crops, scenes, seeds); the claim is about the mean of ``a - b`` over those samples.
2. **Standard error, clustered.** Samples that share a crop, a scene or a seed are not
   independent. Given ``clusters`` (one key per sample), the standard error is the cluster-robust
   (Liang-Zeger) one: residuals are summed within each cluster, and the number of *clusters*, not
   of samples, sets the degrees of freedom. Without ``clusters`` every sample is its own cluster
   and this is the usual ``std(ddof=1) / sqrt(n)``.
3. **One rule for a single sample.** With fewer than two independent clusters the spread is
   unknown: the standard error is ``nan`` and every verdict on it is ``"inconclusive"``.
4. **Verdict.** ``"supported"`` when the mean difference is above ``2 * se`` (and above an
   optional practical ``margin``), ``"contradicted"`` when it is below ``-2 * se`` (and below
   ``-margin``), else ``"inconclusive"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from mae_nb.errors import InputError

#: The three outcomes of a claim, and how a sentence writes them.
VERDICTS = {
    "supported": "SUPPORTED",
    "contradicted": "CONTRADICTED",
    "inconclusive": "INCONCLUSIVE",
}


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error over ``n`` samples in ``clusters`` independent clusters.

    ``se`` is ``nan`` when fewer than two clusters leave the spread unknown.
    """

    mean: float
    se: float
    n: int
    clusters: int

    @property
    def known(self) -> bool:
        """Whether the standard error could be estimated (two clusters or more)."""
        return math.isfinite(self.se)

    def describe(self, unit: str = "", fmt: str = ".2f") -> str:
        """``"+1.23 ± 0.45 dB"`` (± two standard errors), or ``"+1.23 dB (... spread unknown)"``."""
        if not math.isfinite(self.mean):
            return "not measurable"
        if not self.known:
            return f"{self.mean:+{fmt}}{unit} (one independent sample: spread unknown)"
        return f"{self.mean:+{fmt}} ± {2 * self.se:{fmt}}{unit}"


def mean_se(
    values: Sequence[float] | np.ndarray, clusters: Sequence[Hashable] | None = None
) -> Estimate:
    """Mean of the finite ``values`` and its (cluster-robust) standard error; see the module text.

    ``clusters``: one key per value (a crop index, a scene name, a seed); values with the same key
    are treated as one independent unit.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if clusters is None:
        keys = np.arange(x.size)
    else:  # filled one by one, so a tuple key such as (crop, seed) stays one key
        given = list(clusters)
        keys = np.empty(len(given), dtype=object)
        keys[:] = given
    if keys.size != x.size:
        raise InputError(
            f"clusters must give one key per value: {keys.size} keys for {x.size} values"
        )
    finite = np.isfinite(x)
    x, keys = x[finite], keys[finite]
    if x.size == 0:
        return Estimate(float("nan"), float("nan"), 0, 0)
    mean = float(x.mean())
    groups: dict[Any, float] = {}
    for k, r in zip(keys.tolist(), (x - mean).tolist()):
        groups[k] = groups.get(k, 0.0) + r
    g = len(groups)
    if g < 2:
        return Estimate(mean, float("nan"), int(x.size), g)
    sums = np.fromiter(groups.values(), dtype=np.float64, count=g)
    var = g / (g - 1) * float(np.sum(sums**2)) / x.size**2
    return Estimate(mean, math.sqrt(var), int(x.size), g)


def paired_difference(a, b, clusters: Sequence[Hashable] | None = None) -> Estimate:
    """:func:`mean_se` of ``a - b`` over pairs where both are finite (same order, same samples)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"paired values must have the same length, got {a.size} and {b.size}")
    return mean_se(a - b, clusters)


def judge(estimate: Estimate, margin: float = 0.0) -> str:
    """``"supported"``, ``"contradicted"`` or ``"inconclusive"``; the rule is in the module text."""
    if not (estimate.known and math.isfinite(estimate.mean)):
        return "inconclusive"
    bar = max(2 * estimate.se, margin)
    if estimate.mean > bar:
        return "supported"
    if estimate.mean < -bar:
        return "contradicted"
    return "inconclusive"


def direction(estimate: Estimate, margin: float = 0.0) -> int:
    """+1 (clearly higher), -1 (clearly lower) or 0, by the rule of :func:`judge`."""
    return {"supported": 1, "contradicted": -1, "inconclusive": 0}[judge(estimate, margin)]


def summarize(rows: Sequence[Mapping], by: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """Mean, standard deviation (ddof=1; 0 for one row) and count of ``metrics`` per group.

    One dict per group, in the order groups first appear: the ``by`` keys, ``n``, and for each
    metric ``<metric>`` (mean) and ``<metric>_std``.
    """
    rows = list(rows)
    if not rows:
        raise InputError("no rows to summarize")
    missing = [k for k in (*by, *metrics) if k not in rows[0]]
    if missing:
        raise InputError(f"the rows have no {missing}; they have {sorted(rows[0])}")
    groups: dict[tuple, list[Mapping]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    out = []
    for key, group in groups.items():
        entry: dict[str, Any] = dict(zip(by, key))
        entry["n"] = len(group)
        for m in metrics:
            v = np.array([g[m] for g in group], dtype=np.float64)
            entry[m] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            entry[f"{m}_std"] = float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0
        out.append(entry)
    return out


def markdown_table(
    rows: Sequence[Mapping], floatfmt: str = ".3f", columns: Sequence[str] | None = None
) -> str:
    """A Markdown table of ``rows`` (dicts); floats formatted with ``floatfmt``.

    ``columns``: the keys to show, in order (default: the first row's keys).
    """
    rows = list(rows)
    if not rows:
        return ""
    keys = list(columns) if columns is not None else list(rows[0])

    def cell(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)
