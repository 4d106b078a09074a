"""Tests of mae_nb.studies.label_efficiency: the grid of runs, its summary, table and verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mae_nb import finetune as ft
from mae_nb import stats
from mae_nb.data.hsi import spatial_split, synthetic_hsi
from mae_nb.models.baselines import build_classifier
from mae_nb.studies import label_efficiency as le

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scene():
    return synthetic_hsi(size=32, bands=16, seed=0)


@pytest.fixture(scope="module")
def split(scene):
    return spatial_split(scene.labels, 5, seed=0)


def tiny(kind, scene):
    kw = {"embed_dim": 16, "depth": 1, "num_heads": 2} if kind != "cnn3d" else {"n_planes": 4}
    return build_classifier(kind, scene.n_bands, scene.n_classes, 5, **kw)


def test_run_label_efficiency_runs_the_grid(scene, split):
    models = {"ViT": lambda: tiny("vit", scene), "3D-CNN": lambda: tiny("cnn3d", scene)}
    rows = le.run_label_efficiency(
        models,
        scene,
        split,
        fractions=(0.05, 1.0),
        seeds=(0,),
        steps=3,
        progress=False,
        keep_maps=True,
        keep_models=True,
    )
    assert [(r["model"], r["fraction"]) for r in rows] == [
        ("ViT", 0.05),
        ("3D-CNN", 0.05),
        ("ViT", 1.0),
        ("3D-CNN", 1.0),
    ]
    for r in rows:
        assert {"model", "fraction", "seed", "n_labels", "oa", "aa", "kappa", "seconds"} <= set(r)
        assert 0 <= r["oa"] <= 1 and -1 <= r["kappa"] <= 1
    assert rows[0]["n_labels"] < rows[2]["n_labels"] == split.train.sum()
    # kept runs can be looked at again: the same numbers from the kept model
    kept = rows[1]["result"]
    assert isinstance(kept, ft.FinetuneResult) and kept.n_labels == rows[1]["n_labels"]
    again = ft.evaluate(kept.model, scene, split, full_map=False)
    assert again["oa"] == rows[1]["oa"]
    np.testing.assert_array_equal(again["map"], rows[1]["map"])
    np.testing.assert_array_equal(again["confusion"], rows[1]["confusion"])
    with pytest.raises(ValueError, match="models is empty"):
        le.run_label_efficiency({}, scene, split)
    with pytest.raises(ValueError, match=r"fractions must be in \(0, 1\]"):
        le.run_label_efficiency(models, scene, split, fractions=(2.0,))
    with pytest.raises(TypeError, match="must be a function that builds a model"):
        le.run_label_efficiency({"x": tiny("vit", scene)}, scene, split)


def test_classical_baselines_use_the_same_labels_and_test_pixels(scene, split):
    rows = le.run_label_efficiency(
        {"ViT": lambda: tiny("vit", scene)},
        scene,
        split,
        fractions=(0.001, 1.0),
        seeds=(0, 1),
        steps=2,
        progress=False,
        classical=le.CLASSICAL,
        classical_kwargs={"RF": {"n_estimators": 20}},
        keep_maps=True,
    )
    # the networks' runs first, then the classical ones, seed by seed, fraction by fraction
    assert [r["model"] for r in rows[:4]] == ["ViT"] * 4
    assert [(r["model"], r["fraction"], r["seed"]) for r in rows[-2:]] == [
        ("SVM", 1.0, 1),
        ("RF", 1.0, 1),
    ]
    by = {(r["model"], r["fraction"], r["seed"]): r for r in rows}
    assert {m for m, _, _ in by} == {"ViT", "SVM", "RF"} and len(rows) == 3 * 2 * 2
    for (model, f, seed), r in by.items():
        # exactly the labelled pixels the networks get at that fraction and seed
        assert r["n_labels"] == by[("ViT", f, seed)]["n_labels"]
        assert set(r) >= {"oa", "aa", "kappa", "seconds", "map", "confusion"}
        assert r["confusion"].sum() == split.test.sum()
        assert not r["map"][~split.test].any()
    # 0.1 % keeps at least one pixel per class
    assert by[("SVM", 0.001, 0)]["n_labels"] == scene.n_classes
    # all the labels: both beat the majority class by far on this easy scene
    floor = le.majority_rate(scene, split)
    assert by[("SVM", 1.0, 0)]["oa"] > floor + 0.2 and by[("RF", 1.0, 0)]["oa"] > floor + 0.2
    # the forest's seed follows the study's seed; the SVM is deterministic given its labels
    rf = {"RF": {"n_estimators": 20}}
    alone = le.run_classical(scene, split, (1.0,), (0, 1), names=("RF",), model_kwargs=rf)
    assert [r["oa"] for r in alone] == [by[("RF", 1.0, 0)]["oa"], by[("RF", 1.0, 1)]["oa"]]
    with pytest.raises(ValueError, match="unknown classical baseline 'knn'"):
        le.run_classical(scene, split, names=("knn",))
    with pytest.raises(ValueError, match="unknown classical baseline"):
        le.run_label_efficiency({}, scene, split, classical=("knn",))


def test_majority_rate(scene, split):
    counts = np.bincount(scene.labels[split.test])[1:]
    assert le.majority_rate(scene, split) == pytest.approx(counts.max() / counts.sum())


def fake_rows():
    """Pretrained beats random by 10 points at low fractions (+-1), ViT trails by 0.5 +- 3."""
    rows = []
    for seed, jitter in zip(range(3), (-1.0, 0.0, 1.0)):
        for f in (0.01, 0.1, 1.0):
            base = 0.6 + 0.3 * (f == 1.0)
            rows += [
                {
                    "model": "pre",
                    "fraction": f,
                    "seed": seed,
                    "oa": base + (0.10 + jitter / 100) * (f <= 0.1),
                    "aa": base,
                    "kappa": base,
                    "n_labels": 10,
                },
                {
                    "model": "rand",
                    "fraction": f,
                    "seed": seed,
                    "oa": base,
                    "aa": base,
                    "kappa": base,
                    "n_labels": 10,
                },
                {
                    "model": "vit",
                    "fraction": f,
                    "seed": seed,
                    "oa": base - 0.005 + 0.03 * jitter,
                    "aa": base,
                    "kappa": base,
                    "n_labels": 10,
                },
                {
                    "model": "cnn",
                    "fraction": f,
                    "seed": seed,
                    "oa": base + 0.2,
                    "aa": base,
                    "kappa": base,
                    "n_labels": 10,
                },
            ]
    return rows


def test_paired_gain_summary_and_table():
    rows = fake_rows()
    c = le.paired_gain(rows, "pre", "rand", fractions=(0.01, 0.1))
    assert c["gain"] == pytest.approx(10.0) and c["n"] == 6 and c["seeds"] == 3
    # pairs with the same seed share labels and initialization: clustered by seed
    expected = stats.mean_se([9, 9, 10, 10, 11, 11], clusters=[0, 0, 1, 1, 2, 2])
    assert c["se"] == pytest.approx(expected.se)
    assert c["se"] > np.std([9, 9, 10, 10, 11, 11], ddof=1) / np.sqrt(6)  # wider than unclustered
    assert c["per_fraction"] == pytest.approx({0.01: 10.0, 0.1: 10.0})
    assert le.paired_gain(rows, "pre", "rand")["n"] == 9
    with pytest.raises(ValueError, match="model 'nope' is not in the rows"):
        le.paired_gain(rows, "pre", "nope")
    with pytest.raises(ValueError, match="no \\(fraction, seed\\) run of both"):
        le.paired_gain(rows, "pre", "rand", fractions=(0.5,))
    s = {(e["model"], e["fraction"]): e for e in le.summarize_runs(rows)}
    assert s[("pre", 0.01)]["oa"] == pytest.approx(0.7) and s[("pre", 0.01)]["n"] == 3
    assert s[("pre", 0.01)]["oa_std"] == pytest.approx(np.std([0.69, 0.7, 0.71], ddof=1))
    assert s[("pre", 0.01)]["n_labels"] == 10
    table = le.label_efficiency_table(rows)
    assert table.splitlines()[0] == "| model | labels | pixels | OA | AA | KAPPA |"
    assert "| pre | 1.0% | 10 | 70.0 ± 1.0 |" in table
    one_seed = le.label_efficiency_table([r for r in rows if r["seed"] == 0])
    assert "| pre | 1.0% | 10 | 69.0 |" in one_seed
    with pytest.raises(ValueError, match="no rows"):
        le.summarize_runs([])


def test_verdict_is_computed_from_the_numbers():
    claims = {
        c["claim"]: c
        for c in le.check_paper_claims(
            fake_rows(),
            pretrained="pre",
            random_init="rand",
            vit="vit",
            cnn="cnn",
            ablations={"blockwise embedding": "vit"},
        )
    }
    pre = claims["masked pretraining helps with few labels"]
    assert pre["status"] == "supported" and pre["reaches_paper"] and pre["fractions"] == [0.01, 0.1]
    assert (
        claims["pretrained transformer beats the 3D-CNN with few labels"]["status"]
        == "contradicted"
    )
    vit = claims["spatial-spectral transformer beats a standard ViT"]
    assert vit["status"] == "inconclusive" and not vit["reaches_paper"]
    assert claims["blockwise embedding helps (ablation)"]["status"] == "inconclusive"
    text = le.format_claims(list(claims.values()), "tiny")
    assert (
        "masked pretraining helps with few labels: SUPPORTED and at least as large as the paper's"
        in text
    )
    assert "pre vs rand: +10.0 ± 1.2 points over 6 paired runs, 3 seeds" in text
    assert "CONTRADICTED" in text and text.startswith("Verdict at the scale run here (tiny):")
    assert le.format_claims([]) == "No claim could be tested with these runs."


def test_verdicts_say_where_the_gain_holds_fraction_by_fraction():
    rows = fake_rows()
    # the pretraining gain vanishes at 1 % (the pretrained model equals random init there)
    for r in rows:
        if r["model"] == "pre" and r["fraction"] == 0.01:
            r["oa"] = 0.6 + 0.002 * (r["seed"] - 1)
    # classical baselines: the SVM is better than the forest, both below the pretrained model
    for r in [r for r in rows if r["model"] == "rand"]:
        rows.append({**r, "model": "SVM", "oa": r["oa"] - 0.01 + 0.001 * r["seed"]})
        rows.append({**r, "model": "RF", "oa": r["oa"] - 0.05})
    claims = {
        c["claim"]: c
        for c in le.check_paper_claims(
            rows, pretrained="pre", random_init="rand", classical=le.CLASSICAL
        )
    }
    pre = claims["masked pretraining helps with few labels"]
    assert pre["by_fraction"][0.1]["status"] == "supported"
    assert pre["by_fraction"][0.01]["status"] == "inconclusive"
    assert pre["by_fraction"][0.01]["estimate"].clusters == 3  # one pair per seed
    best = claims["pretrained transformer beats the best classical baseline (SVM) with few labels"]
    assert best["b"] == "SVM" and best["fractions"] == [0.01, 0.1]
    assert best["by_fraction"][0.1]["status"] == "supported" and not best["reaches_paper"]
    text = le.format_claims(list(claims.values()))
    assert "By fraction, the gain holds at 10.0%; not at 1.0% (inconclusive)." in text
    assert "pre vs SVM" in text and "not in the paper" in text
    # no classical rows: no such claim
    plain = le.check_paper_claims(
        fake_rows(), pretrained="pre", random_init="rand", classical=le.CLASSICAL
    )
    assert not any("classical" in c["claim"] for c in plain)


def test_a_single_seed_is_inconclusive_however_large_the_gain():
    rows = [r for r in fake_rows() if r["seed"] == 0]
    claims = le.check_paper_claims(rows, pretrained="pre", random_init="rand", cnn="cnn")
    assert [c["status"] for c in claims] == ["inconclusive", "inconclusive"]
    assert claims[0]["gain"] == pytest.approx(9.0) and claims[0]["seeds"] == 1
    assert math.isnan(claims[0]["se"])
    text = le.format_claims(claims)
    assert "INCONCLUSIVE" in text and "spread unknown" in text and "1 seed " in text


def test_plots_of_the_study(scene):
    from matplotlib.figure import Figure

    import mae_nb.viz as viz

    rows = fake_rows()
    fig = viz.plot_label_efficiency(rows)
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and len(ax.get_lines()) == 4 and ax.get_xscale() == "log"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [70, 70, 90])
    with pytest.raises(ValueError, match="metric 'f1' is not in the rows"):
        viz.plot_label_efficiency(rows, metric="f1")
    fig = viz.plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"])
    assert fig.axes[0].images[0].get_array()[0, 0] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="square"):
        viz.plot_confusion(np.ones((2, 3)))
    test = np.zeros_like(scene.labels, bool)
    test[:10] = True
    fig = viz.plot_classification_maps(
        scene.labels, {"ViT": scene.labels}, scene.class_names, test_mask=test
    )
    assert "test OA 100.0%" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="has shape"):
        viz.plot_classification_maps(scene.labels, np.zeros((3, 3)))
