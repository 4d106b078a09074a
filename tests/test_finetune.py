"""Tests of mae_nb.finetune: masked pretraining, the course checkpoint, fine-tuning, evaluation."""

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

pytestmark = pytest.mark.usefixtures("one_thread")


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
    """An 'oracle' that reads its centre pixel's (row, col) from bands 0-1 and answers a map."""

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
    # true 1: 5 px, 3 right, 2 -> class 2; true 2: 5 px, 4 right, 1 -> class 1;
    # true 3: 2 px, 1 right, 1 -> 2
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


# ---------------------------------------------------------------------- pretraining, checkpoints


TINY_SST = dict(band_block_size=8, embed_dim=16, depth=1, num_heads=2, decoder_dim=8)


@pytest.fixture(scope="module")
def salinas_shaped():
    """A scene of Salinas-A's shape (83 x 86 px) and its default spatial split for 5 px
    patches, as chapters 07-08 cut it."""
    scene = synthetic_hsi(size=83, width=86, bands=16, seed=0)
    return scene, spatial_split(scene.labels, 5, seed=0)


def _windows_touching(centres: np.ndarray, target: np.ndarray, p: int) -> int:
    """Brute force: how many pixels of ``target`` lie in a p x p window around a centre."""
    r = p // 2
    hit = np.zeros_like(target)
    for i, j in np.argwhere(centres):
        hit[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1] = True
    return int((hit & target).sum())


@pytest.mark.parametrize("p", [None, 3, 7])
def test_pretraining_region_sees_no_test_pixel(salinas_shaped, p):
    scene, split = salinas_shaped
    region = ft.pretraining_region(split, p)
    size = split.patch_size if p is None else p
    test_region = split.regions == 2
    assert region.shape == scene.labels.shape and region.dtype == bool
    assert np.isin(split.regions[region], [0, 1]).all()  # train and val blocks only
    assert _windows_touching(region, test_region, size) == 0  # no window reads a test pixel
    assert ft.seen_test_pixels(split, region, size) == 0
    # it is the largest such region: every train/val pixel left out has a test pixel in reach
    left_out = np.isin(split.regions, [0, 1]) & ~region
    for i, j in np.argwhere(left_out)[::7]:
        one = np.zeros_like(region)
        one[i, j] = True
        assert _windows_touching(one, test_region, size) > 0
    # the transductive pretraining reads the whole test region
    assert ft.seen_test_pixels(split, np.ones_like(region), size) == int(test_region.sum()) > 0
    with pytest.raises(ValueError, match="odd positive integer"):
        ft.pretraining_region(split, 4)


def test_pretraining_patches_standardize_their_region(salinas_shaped):
    scene, split = salinas_shaped
    data, std = ft.pretraining_patches(scene, 5)
    assert len(data) == scene.cube.shape[0] * scene.cube.shape[1]
    np.testing.assert_allclose(std.mean, scene.cube.reshape(-1, scene.n_bands).mean(0), rtol=1e-4)
    region = ft.pretraining_region(split)
    inside, std_in = ft.pretraining_patches(scene, 5, region=region)
    assert len(inside) == region.sum() and region[inside.coords[:, 0], inside.coords[:, 1]].all()
    np.testing.assert_allclose(std_in.mean, scene.cube[region].mean(0), rtol=1e-4)
    few, _ = ft.pretraining_patches(scene, 5, max_pixels=50, seed=1, region=region)
    again, _ = ft.pretraining_patches(scene, 5, max_pixels=50, seed=1, region=region)
    assert len(few) == 50 and (few.coords == again.coords).all()
    assert region[few.coords[:, 0], few.coords[:, 1]].all()
    with pytest.raises(ValueError, match="has no pixel"):
        ft.pretraining_patches(scene, 5, region=np.zeros_like(region))
    with pytest.raises(ValueError, match="does not match the scene"):
        ft.pretraining_patches(scene, 5, region=region[1:])


def test_pretrain_on_a_split_records_it_and_the_checkpoint_keeps_it(cache, salinas_shaped):
    scene, split = salinas_shaped
    result = ft.pretrain_on_scene(
        scene,
        split=split,
        image_size=5,
        epochs=1,
        batch_size=32,
        max_pixels=64,
        model_kwargs=TINY_SST,
        progress=False,
        device="cpu",
    )
    region = ft.pretraining_region(split, 5)
    config = result.config
    assert config["test_pixels_seen"] == 0 and config["pixels"] == 64
    assert config["region_pixels"] == int(region.sum()) < scene.labels.size
    record = config["split"]
    assert record == ft.split_record(split)
    assert record["patch_size"] == 5 and record["seed"] == 0 and record["buffer"] == split.buffer
    assert record["regions_sha256"] == ft.regions_sha256(split) and len(record["grid"]) == 2
    assert int(np.prod(record["grid"])) == int(split.blocks.max()) + 1
    np.testing.assert_allclose(result.standardizer.mean, scene.cube[region].mean(0), rtol=1e-4)
    other = spatial_split(scene.labels, 5, seed=1)
    assert ft.regions_sha256(other) != record["regions_sha256"]
    # the checkpoint round trip keeps the split record
    path = ft.save_sst(None, result)
    _, saved = ft.load_sst(path, with_config=True)
    assert saved["split"] == record and saved["test_pixels_seen"] == 0
    with pytest.raises(ValueError, match="does not belong to the scene"):
        ft.pretrain_on_scene(synthetic_hsi(20, 16, seed=0), split=split, epochs=1)


def test_pretrain_save_and_load(cache):
    scene = synthetic_hsi(20, 24, seed=0)
    with pytest.warns(UserWarning, match="transductive"):
        result = ft.pretrain_on_scene(
            scene,
            image_size=5,
            epochs=1,
            batch_size=32,
            max_pixels=64,
            model_kwargs=TINY_SST,
            progress=False,
            device="cpu",
        )
    assert result.config["pixels"] == 64 and result.config["model"]["in_chans"] == 24
    assert result.config["split"] is None and result.config["test_pixels_seen"] is None
    assert len(result.history.train["loss"]) == 1
    assert ft.course_sst_path() == cache / "checkpoints" / "sst_pretrained_ch07.safetensors"
    path = ft.save_sst(None, result)
    assert path == ft.course_sst_path()
    with pytest.raises(FileExistsError):
        ft.save_sst(None, result)
    model, config = ft.load_sst(with_config=True)
    assert config["scene"] == "synthetic" and "standardizer" in config
    x = torch.randn(2, 24, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.forward_features(x), result.model.cpu().forward_features(x))
    tuned = ft.load_sst(path, num_classes=5)
    assert tuned(x).shape == (2, 5)


def test_load_sst_says_what_is_wrong(tmp_path):
    from mae_nb.errors import CheckpointError, MissingFileError
    from mae_nb.train import save_checkpoint

    with pytest.raises(MissingFileError, match="run notebook 07"):
        ft.load_sst(tmp_path / "nothing.pth")
    path = save_checkpoint(tmp_path / "other.pth", nn.Linear(2, 2), config={"scene": "x"})
    with pytest.raises(CheckpointError, match="has no config\\['model'\\]"):
        ft.load_sst(path)
    from mae_nb.models.spectral import SpectralTransformer

    small = SpectralTransformer(16, image_size=5, band_block_size=8, embed_dim=16, depth=1)
    bigger = {**small.config, "depth": 2}
    path = save_checkpoint(tmp_path / "mismatch.pth", small, config={"model": bigger})
    with pytest.raises(CheckpointError, match="the weights do not fit its model config"):
        ft.load_sst(path)
