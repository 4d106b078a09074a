"""mae_nb.stats: paired differences, clustered standard errors, the single-sample rule, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mae_nb import stats
from mae_nb.errors import InputError


def test_mean_se_without_clusters_is_the_usual_standard_error():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    est = stats.mean_se(x)
    assert est.mean == pytest.approx(3.5)
    assert est.se == pytest.approx(x.std(ddof=1) / math.sqrt(4))
    assert (est.n, est.clusters) == (4, 4)


def test_clustered_standard_error_counts_clusters_not_samples():
    # two crops, each measured 10 times with nearly the same value: 20 samples, 2 independent units
    rng = np.random.default_rng(0)
    x = np.r_[1.0 + 0.01 * rng.standard_normal(10), 3.0 + 0.01 * rng.standard_normal(10)]
    naive = stats.mean_se(x)
    clustered = stats.mean_se(x, clusters=[0] * 10 + [1] * 10)
    assert clustered.clusters == 2 and clustered.n == 20
    # the naive error treats 20 samples as independent and is about sqrt(10) times too small
    assert clustered.se > 2.5 * naive.se
    # with two clusters the estimator equals the standard error of the two cluster means
    means = np.array([x[:10].mean(), x[10:].mean()])
    assert clustered.se == pytest.approx(means.std(ddof=1) / math.sqrt(2), rel=1e-6)


def test_one_cluster_leaves_the_spread_unknown_and_the_verdict_inconclusive():
    est = stats.mean_se([5.0, 5.1, 4.9], clusters=["crop"] * 3)
    assert est.clusters == 1 and not est.known and math.isnan(est.se)
    assert stats.judge(est) == "inconclusive"
    single = stats.mean_se([10.0])
    assert stats.judge(single) == "inconclusive"
    assert "spread unknown" in single.describe(" dB")


def test_judge_uses_two_standard_errors_and_the_margin():
    assert stats.judge(stats.Estimate(1.0, 0.4, 5, 5)) == "supported"
    assert stats.judge(stats.Estimate(1.0, 0.6, 5, 5)) == "inconclusive"
    assert stats.judge(stats.Estimate(-1.0, 0.4, 5, 5)) == "contradicted"
    assert stats.judge(stats.Estimate(0.01, 0.001, 5, 5), margin=0.02) == "inconclusive"
    assert stats.direction(stats.Estimate(-1.0, 0.1, 5, 5)) == -1


def test_paired_difference_drops_non_finite_pairs_and_checks_lengths():
    est = stats.paired_difference([1.0, np.nan, 3.0], [0.0, 1.0, 1.0])
    assert est.n == 2 and est.mean == pytest.approx(1.5)
    with pytest.raises(InputError, match="same length"):
        stats.paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="one key per value"):
        stats.mean_se([1.0, 2.0], clusters=[0])


def test_summarize_and_markdown_table():
    rows = [
        {"model": "a", "seed": 0, "oa": 0.5},
        {"model": "a", "seed": 1, "oa": 0.7},
        {"model": "b", "seed": 0, "oa": 0.9},
    ]
    out = stats.summarize(rows, by=["model"], metrics=["oa"])
    assert out[0] == {
        "model": "a",
        "n": 2,
        "oa": pytest.approx(0.6),
        "oa_std": pytest.approx(0.1414, abs=1e-4),
    }
    assert out[1]["oa_std"] == 0.0
    table = stats.markdown_table(out, floatfmt=".2f", columns=["model", "oa"])
    assert table.splitlines() == ["| model | oa |", "|---|---|", "| a | 0.60 |", "| b | 0.90 |"]
    with pytest.raises(InputError, match="no \\['acc'\\]"):
        stats.summarize(rows, by=["model"], metrics=["acc"])


def test_tuple_cluster_keys_are_one_key_each():
    est = stats.mean_se([1.0, 2.0, 3.0, 5.0], clusters=[(0, 0), (0, 0), (1, 0), (1, 1)])
    assert (est.n, est.clusters) == (4, 3)
