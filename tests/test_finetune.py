"""Tests of mae_nb.finetune: fine-tuning, evaluation, the label-efficiency grid and its verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mae_nb import finetune as ft
from mae_nb.data.hsi import (
    HyperspectralScene,
    Standardizer,
    spatial_split,
    subsample_labels,
    synthetic_hsi,
)
from mae_nb.models.baselines import build_classifier


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train faster on one thread, above all on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scene():
    return synthetic_hsi(size=32, bands=16, seed=0)


@pytest.fixture(scope="module")
def split(scene):
    return spatial_split(scene.labels, 5, seed=0)


def tiny(kind, scene, **kw):
    kw = (
        {"embed_dim": 16, "depth": 1, "num_heads": 2, **kw}
        if kind != "cnn3d"
        else {"n_planes": 4, **kw}
    )
    if kind.startswith("sst"):
        kw.setdefault("band_block_size", 8)
    return build_classifier(kind, scene.n_bands, scene.n_classes, 5, **kw)


class MapModel(nn.Module):
    """An 'oracle' that reads its centre pixel's (row, col) from bands 0-1 and answers a fixed map."""

    def __init__(self, answer: np.ndarray, n_classes: int, image_size: int = 3):
        super().__init__()
        self.answer = torch.as_tensor(answer)
        self.num_classes, self.image_size = n_classes, image_size
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, imgs):
        c = self.image_size // 2
        r, q = imgs[:, 0, c, c].round().long(), imgs[:, 1, c, c].round().long()
        return (
            nn.functional.one_hot(self.answer[r, q] - 1, self.num_classes).float() + 0 * self.dummy
        )


def position_scene(labels: np.ndarray, n_classes: int) -> HyperspectralScene:
    h, w = labels.shape
    rr, cc = np.mgrid[0:h, 0:w]
    cube = np.stack([rr, cc, np.zeros_like(rr)], axis=-1).astype(np.float32)
    return HyperspectralScene(
        cube, labels, tuple(f"c{i}" for i in range(1, n_classes + 1)), None, "pos", "synthetic"
    )


class FixedSplit:
    """A split whose test region is given (only what evaluate needs)."""

    def __init__(self, test: np.ndarray):
        self.test = test
        self.regions = np.where(test, 2, 0)

    def mask(self, name):
        if name != "test":
            raise ValueError(name)
        return self.test


IDENTITY = Standardizer(np.zeros(3, np.float32), np.ones(3, np.float32))


def test_evaluate_gives_the_metrics_of_a_known_confusion():
    labels = np.array([[1, 1, 1, 1], [1, 2, 2, 2], [2, 2, 3, 3], [0, 0, 0, 0]])
    answer = np.array([[1, 1, 1, 2], [2, 2, 2, 2], [2, 1, 3, 2], [3, 3, 3, 3]])
    scene = position_scene(labels, 3)
    test = labels > 0
    ev = ft.evaluate(MapModel(answer, 3), scene, FixedSplit(test), standardizer=IDENTITY)
    # true 1: 5 px, 3 right, 2 -> class 2; true 2: 5 px, 4 right, 1 -> class 1; true 3: 2 px, 1 right, 1 -> 2
    expected = np.array([[3, 2, 0], [1, 4, 0], [0, 1, 1]])
    np.testing.assert_array_equal(ev["confusion"], expected)
    assert ev["oa"] == pytest.approx(8 / 12)
    assert ev["aa"] == pytest.approx((3 / 5 + 4 / 5 + 1 / 2) / 3)
    po, pe = 8 / 12, (5 * 4 + 5 * 7 + 2 * 1) / 144
    assert ev["kappa"] == pytest.approx((po - pe) / (1 - pe))
    np.testing.assert_array_equal(ev["map"], answer)  # full map: every pixel, unlabelled ones too
    assert ev["n_pixels"] == 12 and ev["missing_classes"] == []


def test_evaluate_warns_about_a_class_absent_from_the_test_split():
    labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0]])
    scene = position_scene(labels, 3)
    test = (labels == 1) | (labels == 2)
    with pytest.warns(UserWarning, match=r"classes 3 \(c3\) have no pixel in the test split"):
        ev = ft.evaluate(
            MapModel(labels.clip(1), 3),
            scene,
            FixedSplit(test),
            standardizer=IDENTITY,
            full_map=False,
        )
    assert ev["missing_classes"] == [3]
    assert ev["aa"] == 1.0 and math.isnan(ev["per_class"][2])
    assert (ev["map"][~test] == 0).all() and (ev["map"][test] == labels[test]).all()


def test_finetune_reduces_the_loss_and_beats_chance(scene, split):
    torch.manual_seed(0)
    model = tiny("vit", scene)
    result = ft.finetune(model, scene, split, 1.0, steps=20, batch_size=64, lr=3e-3, progress=False)
    loss = result.history.train["loss"]
    assert loss[-1] < 0.6 * loss[0]
    ev = ft.evaluate(model, scene, split, full_map=False, standardizer=result.standardizer)
    assert ev["oa"] > 2.0 / scene.n_classes, ev["oa"]


def test_evaluation_map_covers_the_scene(scene, split):
    torch.manual_seed(0)
    model = tiny("cnn3d", scene)
    ev = ft.evaluate(model, scene, split)
    assert ev["map"].shape == scene.labels.shape
    assert ev["map"].min() >= 1 and ev["map"].max() <= scene.n_classes
    assert ev["confusion"].shape == (scene.n_classes, scene.n_classes)
    assert ev["confusion"].sum() == split.test.sum() == ev["n_pixels"]
    val = ft.evaluate(model, scene, split, subset="val", full_map=False)
    assert val["n_pixels"] == split.val.sum() and (val["map"][~split.val] == 0).all()


def test_fractions_are_honoured(scene, split):
    torch.manual_seed(0)
    model = tiny("vit", scene)
    result = ft.finetune(model, scene, split, 0.05, seed=3, steps=2, progress=False)
    expected = subsample_labels(split.train, scene.labels, 0.05, seed=3)
    np.testing.assert_array_equal(result.train_mask, expected)
    assert result.n_labels == expected.sum() and not (result.train_mask & ~split.train).any()
    counts = np.bincount(scene.labels[result.train_mask], minlength=scene.n_classes + 1)[1:]
    train_counts = split.class_counts(scene.labels)["train"]
    np.testing.assert_array_equal(counts, np.maximum(1, np.round(0.05 * train_counts)).astype(int))
    # exactly `steps` optimizer steps whatever the fraction (5 % fits in one batch, 100 % does not)
    assert result.steps == 2 and result.history.epochs == 2
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])) if m.training else None)
    full = ft.finetune(model, scene, split, 1.0, steps=45, batch_size=16, progress=False)
    assert full.steps == 45 and full.history.epochs == 15 and calls == [16] * 45
    calls.clear()
    few = ft.finetune(model, scene, split, 0.01, steps=3, batch_size=16, progress=False)
    assert calls == [few.n_labels] * 3 and few.n_labels < 16


def test_standardizer_uses_only_the_training_region(scene, split):
    std = ft.scene_standardizer(scene, split)
    train_pixels = scene.cube[split.regions == 0]
    np.testing.assert_allclose(std.mean, train_pixels.mean(0), rtol=1e-4)
    assert not np.allclose(std.mean, scene.cube[split.test].mean(0), rtol=1e-3)


def test_finetune_errors(scene, split):
    model = build_classifier(
        "vit", scene.n_bands, scene.n_classes + 1, 5, embed_dim=16, depth=1, num_heads=2
    )
    with pytest.raises(ValueError, match=f"has {scene.n_classes + 1} output classes but the scene"):
        ft.finetune(model, scene, split, 0.1, progress=False)
    model = tiny("vit", scene)
    with pytest.raises(ValueError, match="give steps or epochs, not both"):
        ft.finetune(model, scene, split, 0.1, steps=3, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        ft.finetune(model, scene, split, 0.0, progress=False)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        ft.finetune(model, scene, split, 0.1, steps=0, progress=False)
    other = synthetic_hsi(size=24, bands=16, seed=0)
    with pytest.raises(ValueError, match="does not belong to the scene"):
        ft.finetune(tiny("vit", other), other, split, 0.1, progress=False)
    wrong_bands = build_classifier(
        "vit", scene.n_bands + 2, scene.n_classes, 5, embed_dim=16, depth=1, num_heads=2
    )
    with pytest.raises(ValueError, match=f"takes {scene.n_bands + 2} bands"):
        ft.evaluate(wrong_bands, scene, split)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ft.predict(model, scene.cube, batch_size=0)


def test_classifier_from_pretrained_keeps_the_encoder(scene):
    from mae_nb.models.spectral import SpectralTransformer

    torch.manual_seed(0)
    pre = SpectralTransformer(
        scene.n_bands, image_size=5, band_block_size=8, embed_dim=16, depth=1, num_heads=2
    )
    clf = ft.classifier_from_pretrained(pre, scene.n_classes)
    assert clf.num_classes == scene.n_classes and clf.decoder_embed is None
    assert not any(k.startswith("decoder_") for k in clf.state_dict())
    x = torch.randn(3, scene.n_bands, 5, 5)
    pre.eval()
    with torch.no_grad():
        torch.testing.assert_close(clf.forward_features(x), pre.forward_features(x))
    assert clf(x).shape == (3, scene.n_classes)
    with pytest.raises(TypeError, match="expected a SpectralTransformer"):
        ft.classifier_from_pretrained(nn.Linear(2, 2), 3)


def test_label_efficiency_runs_the_grid(scene, split):
    models = {"ViT": lambda: tiny("vit", scene), "3D-CNN": lambda: tiny("cnn3d", scene)}
    rows = ft.label_efficiency(
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
        ft.label_efficiency({}, scene, split)
    with pytest.raises(ValueError, match=r"fractions must be in \(0, 1\]"):
        ft.label_efficiency(models, scene, split, fractions=(2.0,))
    with pytest.raises(TypeError, match="must be a function that builds a model"):
        ft.label_efficiency({"x": tiny("vit", scene)}, scene, split)


def fake_rows():
    """Pretrained beats random by 10 points at low fractions (+-1), ViT trails by 0.5 +- 3 (noise)."""
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


def test_compare_summarize_and_table():
    rows = fake_rows()
    c = ft.compare(rows, "pre", "rand", fractions=(0.01, 0.1))
    assert c["gain"] == pytest.approx(10.0) and c["n"] == 6
    assert c["se"] == pytest.approx(np.std([9, 10, 11, 9, 10, 11], ddof=1) / np.sqrt(6))
    assert c["per_fraction"] == pytest.approx({0.01: 10.0, 0.1: 10.0})
    assert ft.compare(rows, "pre", "rand")["n"] == 9
    with pytest.raises(ValueError, match="model 'nope' is not in the rows"):
        ft.compare(rows, "pre", "nope")
    s = {(e["model"], e["fraction"]): e for e in ft.summarize(rows)}
    assert s[("pre", 0.01)]["oa"] == pytest.approx(0.7) and s[("pre", 0.01)]["n"] == 3
    assert s[("pre", 0.01)]["oa_std"] == pytest.approx(np.std([0.69, 0.7, 0.71]))
    table = ft.format_table(rows)
    assert "| pre | 1.0% | 10 | 70.0 ± 0.8 |" in table


def test_verdict_is_computed_from_the_numbers():
    claims = {
        c["claim"]: c
        for c in ft.verdict(
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
    text = ft.format_verdict(list(claims.values()), "tiny")
    assert (
        "masked pretraining helps with few labels: SUPPORTED and at least as large as the paper's"
        in text
    )
    assert "pre vs rand: +10.0" in text and "CONTRADICTED" in text
    assert ft.format_verdict([]) == "No claim could be tested with these runs."


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


def test_sst_like_builds_the_same_architecture_afresh(scene):
    from mae_nb.models.spectral import SpectralTransformer

    torch.manual_seed(0)
    ref = SpectralTransformer(
        scene.n_bands, image_size=5, band_block_size=8, embed_dim=16, depth=1, num_heads=2
    )
    twin = ft.sst_like(ref, scene.n_classes)
    assert {
        **twin.config,
        "decoder_depth": 1,
        "num_classes": 0,
    } == ref.config and twin.decoder_embed is None
    assert not torch.equal(twin.patch_embed.weight, ref.patch_embed.weight)  # random, not copied
    shared = ft.sst_like(ref, scene.n_classes, blockwise_embed=False)
    assert shared.patch_embed.weight.shape[0] == 1 and ref.patch_embed.weight.shape[0] == 2
    assert not ft.sst_like(ref, 3, factorized_attention=False).blocks[0].factorized
    with pytest.raises(TypeError, match="expected a SpectralTransformer"):
        ft.sst_like(nn.Linear(2, 2), 3)


def test_course_pretrained_uses_chapter_06_or_pretrains_briefly(scene, cache, capsys):
    from mae_nb.models import spectral

    tiny_kw = dict(band_block_size=8, embed_dim=16, depth=1, num_heads=2, decoder_dim=16)
    pre = ft.course_pretrained(scene, epochs=1, max_pixels=64, model_kwargs=tiny_kw, progress=False)
    assert pre.source == "brief pretraining" and "there is no checkpoint at" in pre.notice
    assert "NOTICE: chapter 06's pretrained model is not usable here" in capsys.readouterr().out
    assert pre.model.config["embed_dim"] == 16 and pre.config["pixels"] == 64
    result = spectral.pretrain_on_scene(
        scene, image_size=5, epochs=1, max_pixels=64, model_kwargs=tiny_kw, progress=False
    )
    spectral.save_pretrained(None, result)
    again = ft.course_pretrained(
        scene, epochs=1, max_pixels=64, model_kwargs=tiny_kw, progress=False
    )
    assert again.source == "chapter 06" and again.notice == ""
    for k, v in result.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v)
    other = synthetic_hsi(size=24, bands=12, seed=1)
    elsewhere = ft.course_pretrained(
        other,
        epochs=1,
        max_pixels=32,
        quiet=True,
        progress=False,
        model_kwargs={**tiny_kw, "band_block_size": 4},
    )
    assert (
        elsewhere.source == "brief pretraining"
        and "(synthetic, 16 bands), not on" in elsewhere.notice
    )
