"""Fine-tuning an MAE encoder (chapter 06): the classifier, layer-wise decay, the one loop,
tiles, scores, the classification map and the study."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_nb import finetune as ft
from mae_nb.data.hsi import spatial_split
from mae_nb.data.labels import LabelMap, tile_regions, write_class_map
from mae_nb.errors import InputError, InputTypeError
from mae_nb.metrics import multilabel_report
from mae_nb.models.classifier import MAEClassifier, layer_id
from mae_nb.models.mae import create_mae
from mae_nb.studies import finetuning as sf

pytestmark = pytest.mark.usefixtures("one_thread")

T, P = 16, 4  # tile and patch size of the toy encoder


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return create_mae(
        "mae_vit_tiny_patch8",
        img_size=T,
        patch_size=P,
        embed_dim=32,
        depth=3,
        num_heads=2,
        decoder_embed_dim=16,
        decoder_depth=1,
        decoder_num_heads=2,
    )


def toy_scene(h=64, w=96, seed=0):
    """Three classes in vertical stripes that the first band tells apart (plus noise)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.int64)
    for c, c0 in enumerate(range(0, w, 8)):
        labels[:, c0 : c0 + 8] = c % 3 + 1
    x = rng.normal(0, 0.3, (3, h, w)).astype(np.float32)
    x[0] += labels - 2.0
    return x, labels


def test_layer_ids_follow_the_mae_paper():
    assert layer_id("cls_token", 12) == 0
    assert layer_id("pos_embed", 12) == 0
    assert layer_id("patch_embed.proj.weight", 12) == 0
    assert layer_id("blocks.0.attn.qkv.weight", 12) == 1
    assert layer_id("blocks.11.mlp.fc2.bias", 12) == 12
    assert layer_id("norm.weight", 12) == 13
    assert layer_id("head.weight", 12) == 13


def test_layer_decay_groups_scale_each_layers_learning_rate(encoder):
    model = ft.mae_classifier(encoder, 3)
    groups = ft.layer_decay_groups(model, lr=1.0, layer_decay=0.5, weight_decay=0.1)
    lr_of = {name: g["lr"] for g in groups for name in g["names"]}
    wd_of = {name: g["weight_decay"] for g in groups for name in g["names"]}
    depth = 3
    assert lr_of["patch_embed.proj.weight"] == pytest.approx(0.5 ** (depth + 1))
    assert lr_of["cls_token"] == pytest.approx(0.5 ** (depth + 1))
    for i in range(depth):
        assert lr_of[f"blocks.{i}.attn.qkv.weight"] == pytest.approx(0.5 ** (depth - i))
    assert lr_of["norm.weight"] == lr_of["head.weight"] == pytest.approx(1.0)
    # no weight decay on biases, norms and tokens, the configured one on matrices
    assert wd_of["head.bias"] == wd_of["blocks.0.norm1.weight"] == wd_of["cls_token"] == 0.0
    assert wd_of["head.weight"] == wd_of["blocks.1.mlp.fc1.weight"] == 0.1
    assert "pos_embed" not in lr_of  # fixed sin-cos positions never train
    # every trainable parameter in exactly one group
    n = sum(len(g["params"]) for g in groups)
    assert n == sum(1 for p in model.parameters() if p.requires_grad)
    # the optimizer applies them: AdamW keeps each group's lr
    opt = torch.optim.AdamW(groups)
    assert sorted({g["lr"] for g in opt.param_groups}) == sorted({g["lr"] for g in groups})


def test_layer_decay_groups_skip_frozen_parameters_and_check_the_decay(encoder):
    probe = ft.mae_classifier(encoder, 3, mode="probe")
    names = [n for g in ft.layer_decay_groups(probe, 1e-3) for n in g["names"]]
    assert sorted(names) == ["head.bias", "head.weight"]
    with pytest.raises(InputError, match="layer_decay"):
        ft.layer_decay_groups(probe, 1e-3, layer_decay=1.5)


def test_modes_choose_what_trains(encoder):
    trainable = {}
    for mode, last in (("probe", 1), ("partial", 2), ("full", 1), ("scratch", 1)):
        m = ft.mae_classifier(encoder, 3, mode=mode, last_blocks=last)
        trainable[mode] = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable["probe"] == {"head.weight", "head.bias"}
    assert {n.split(".")[1] for n in trainable["partial"] if n.startswith("blocks.")} == {"1", "2"}
    assert (
        "norm.weight" in trainable["partial"]
        and "patch_embed.proj.weight" not in (trainable["partial"])
    )
    assert trainable["full"] == trainable["scratch"]
    assert "pos_embed" not in trainable["full"] and "patch_embed.proj.weight" in trainable["full"]
    with pytest.raises(InputError, match="last_blocks"):
        ft.mae_classifier(encoder, 3, mode="partial", last_blocks=4)
    with pytest.raises(InputError, match="mode"):
        ft.mae_classifier(encoder, 3, mode="lora")


def test_classifier_copies_the_encoder_and_scratch_does_not(encoder):
    full = ft.mae_classifier(encoder, 3, mode="full")
    scratch = ft.mae_classifier(encoder, 3, mode="scratch", seed=1)
    w = encoder.blocks[0].attn.qkv.weight
    assert torch.equal(full.blocks[0].attn.qkv.weight, w)
    assert full.blocks[0].attn.qkv.weight.data_ptr() != w.data_ptr()
    assert not torch.allclose(scratch.blocks[0].attn.qkv.weight, w)
    assert torch.equal(scratch.pos_embed, encoder.pos_embed)  # fixed positions are kept
    # with nothing masked the classifier's tokens are the encoder's features
    x = torch.randn(2, 3, T, T)
    with torch.no_grad():
        assert torch.allclose(full.forward_features(x), encoder.forward_features(x), atol=1e-5)
        assert full(x).shape == (2, 3, T // P, T // P)
        assert full(torch.randn(1, 3, 2 * T, T)).shape == (1, 3, 2 * T // P, T // P)
        image = ft.mae_classifier(encoder, 5, task="image")
        assert image(x).shape == (2, 5)
    with pytest.raises(InputTypeError):
        MAEClassifier(torch.nn.Linear(2, 2), 3)


def test_scene_tiles_majority_labels_in_tile_regions_order():
    x, labels = toy_scene(48, 64)
    labels[:4, :4] = 0  # an unlabelled patch
    labels[4:8, 0:2] = 2  # a patch half class 2, half class 1
    valid = np.ones(labels.shape, bool)
    valid[8, 8] = False  # one nodata pixel: its patch gets no label
    tiles = ft.scene_tiles(x, labels, T, P, valid=valid)
    assert len(tiles) == (48 // T) * (64 // T) and tiles.labels.shape == (12, 4, 4)
    assert tiles.labels[0, 0, 0] == 0
    assert tiles.labels[0, 1, 0] in (1, 2)  # a tie at 50 %: still a majority >= min_fraction
    assert tiles.labels[0, 2, 2] == 0
    k = 5  # tile (1, 1) of a 3 x 4 grid
    assert (tiles.rows[k], tiles.cols[k]) == (T, T)
    np.testing.assert_array_equal(tiles.images[k], x[:, T : 2 * T, T : 2 * T])
    np.testing.assert_array_equal(tiles.labels[k], labels[T : 2 * T : P, T : 2 * T : P])
    split = spatial_split(labels, 1, fractions=(0.5, 0.0, 0.5), block_size=2 * T, seed=0)
    assert tile_regions(split, T).ravel().shape == (len(tiles),)
    with pytest.raises(InputError, match="same scene"):
        ft.scene_tiles(x, labels[:-1], T, P)
    with pytest.raises(InputError, match="multiple"):
        ft.scene_tiles(x, labels, 10, P)


@pytest.fixture(scope="module")
def toy():
    x, labels = toy_scene()
    tiles = ft.scene_tiles(x, labels, T, P)
    train = tiles.cols < 48  # left half trains, right half tests: no shared pixel
    return x, labels, tiles, train, ~train


def test_fine_tuning_learns_land_cover_and_beats_the_majority_baseline(encoder, toy):
    _, _, tiles, train, test = toy
    model = ft.mae_classifier(encoder, tiles.n_classes, mode="full", seed=0)
    before = ft.evaluate_tiles(model, tiles, test)["oa"]
    result = ft.finetune_mae(model, tiles, train, steps=40, lr=3e-3, progress=False)
    after = ft.evaluate_tiles(model, tiles, test)
    assert result.steps == 40 and result.history.train["loss"][-1] < result.history.train["loss"][0]
    assert after["oa"] > max(before, sf.majority_baseline(tiles, test)) + 0.2
    assert after["macro_f1"] > 0.8
    # only patches of training tiles were used
    assert not result.train_mask[test].any() and result.n_labels == tiles.counts(train).sum()


def test_probe_leaves_the_encoder_untouched(encoder, toy):
    _, _, tiles, train, _ = toy
    model = ft.mae_classifier(encoder, tiles.n_classes, mode="probe")
    block = model.blocks[0].attn.qkv.weight.detach().clone()
    head = model.head.weight.detach().clone()
    ft.finetune_mae(model, tiles, train, steps=5, lr=1e-2, layer_decay=None, progress=False)
    assert torch.equal(model.blocks[0].attn.qkv.weight, block)
    assert not torch.equal(model.head.weight, head)
    assert torch.equal(encoder.head.weight if hasattr(encoder, "head") else block, block)


def test_label_fractions_are_nested_and_keep_every_class(encoder, toy):
    _, _, tiles, train, _ = toy
    used = {}
    for f in (0.05, 0.5):
        m = ft.mae_classifier(encoder, tiles.n_classes, mode="probe")
        used[f] = ft.finetune_mae(m, tiles, train, f, steps=1, progress=False).train_mask
    assert used[0.05].sum() < used[0.5].sum() and not (used[0.05] & ~used[0.5]).any()
    kept = np.bincount(tiles.labels[used[0.05]], minlength=4)[1:]
    assert (kept >= 1).all()


def test_bad_inputs_are_refused(encoder, toy):
    x, labels, tiles, train, test = toy
    with pytest.raises(InputError, match="output classes"):
        ft.finetune_mae(ft.mae_classifier(encoder, 5), tiles, train, steps=1, progress=False)
    two_bands = ft.scene_tiles(x[:2], labels, T, P)
    with pytest.raises(InputError, match="takes 3 bands, the tiles have 2"):
        ft.evaluate_tiles(ft.mae_classifier(encoder, 3), two_bands, test)
    with pytest.raises(InputError, match="patch"):
        ft.finetune_mae(
            ft.mae_classifier(encoder, 3), ft.scene_tiles(x, labels, T, 8), train, progress=False
        )
    only_12 = np.where(labels == 3, 0, labels)
    only_12[:, 48:] = labels[:, 48:]  # class 3 exists, but only in the test half
    t3 = ft.scene_tiles(x, only_12, T, P, n_classes=3)
    with pytest.raises(InputError, match="no training pixel"):
        ft.finetune_mae(ft.mae_classifier(encoder, 3), t3, train, steps=1, progress=False)
    with pytest.raises(InputError, match="no training tile"):
        ft.finetune_mae(ft.mae_classifier(encoder, 3), tiles, np.zeros(len(tiles), bool))
    with pytest.raises(InputError, match="steps or epochs"):
        ft.finetune_mae(ft.mae_classifier(encoder, 3), tiles, train, steps=2, epochs=2)


def test_classification_map_is_georeferenced_like_the_scene(encoder, toy, tmp_path):
    from rasterio.transform import from_origin

    from mae_nb.data import read_raster
    from mae_nb.data.geotiff import Raster

    x, labels, tiles, train, _ = toy
    model = ft.mae_classifier(encoder, 3, mode="full")
    ft.finetune_mae(model, tiles, train, steps=30, lr=3e-3, progress=False)
    valid = np.ones(labels.shape, bool)
    valid[59, 89] = False
    cmap = ft.classification_map(model, x[:, :60, :90], valid=valid[:60, :90])
    assert (
        cmap.shape == (60, 90)
        and cmap[59, 89] == 0
        and (cmap[valid[:60, :90]] > 0).all()
        and set(np.unique(cmap)) <= {0, 1, 2, 3}
    )
    # every pixel of a patch has the patch's class, as predict_tiles gives it
    grid = ft.predict_tiles(model, x[None, :, :T, :T])[0]
    np.testing.assert_array_equal(cmap[:T:P, :T:P], grid)
    assert (cmap[:T, :T] == np.kron(grid, np.ones((P, P), int))).all()
    bigger = ft.classification_map(model, x[:, :60, :90], tile_size=2 * T)  # other tiles
    assert bigger.shape == (60, 90) and (bigger > 0).all()
    with pytest.raises(InputError, match="multiple of the patch size"):
        ft.classification_map(model, x, tile_size=T + 1)
    transform = from_origin(500000, 4000000, 10, 10)
    like = Raster(x[:, :60, :90], valid[:60, :90], "EPSG:32633", transform)
    lm = LabelMap(labels[:60, :90], [10, 20, 30], ["a", "b", "c"], like.crs, transform)
    path = write_class_map(tmp_path / "map.tif", cmap, lm, like)
    back = read_raster(path)
    assert back.transform == transform and back.crs.to_epsg() == 32633
    assert set(np.unique(back.array[0][back.valid])) <= {10, 20, 30}
    assert (back.array[0] == np.array([0, 10, 20, 30])[cmap]).all()


def test_multilabel_report_by_hand():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.4, 0.8], [0.6, 0.3], [0.1, 0.1]])
    r = multilabel_report(y, s)
    # label 0: positives 0.9 and 0.6 ranked first -> AP 1; label 1: 0.8 (pos), 0.3 (pos),
    # 0.2 (neg) -> AP 1
    assert r["map"] == pytest.approx(1.0)
    # threshold 0.5: predictions [1,0], [0,1], [1,0], [0,0]; F1 per sample 1, 1, 2/3, 0 (empty)
    assert r["sample_f1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)
    s2 = s.copy()
    s2[1, 1] = 0.05  # a positive below a negative for label 1: AP (1 + 0 ...) < 1
    assert multilabel_report(y, s2)["map"] < 1.0
    with pytest.raises(InputError):
        multilabel_report(y, s[:, :1])


def test_multilabel_fine_tuning_and_leave_one_out(encoder):
    rng = np.random.default_rng(0)
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 1], [1, 0]])
    images = rng.normal(0, 0.3, (6, 3, T, T)).astype(np.float32)
    images[:, 0] += y[:, 0, None, None] * 2.0  # label 0 lives in band 1, label 1 in band 2
    images[:, 1] += y[:, 1, None, None] * 2.0
    data = ft.image_set(images, y, ["a", "b"])
    model = ft.mae_classifier(encoder, 2, task="image")
    ft.finetune_mae(model, data, np.ones(6, bool), steps=30, lr=3e-3, progress=False)
    probs = ft.predict_tiles(model, data)
    assert probs.shape == (6, 2) and ((probs > 0.5) == y).mean() > 0.8
    rows = sf.run_multilabel_loo(encoder, data, ("probe", "full"), (0,), steps=10, progress=False)
    assert [r["mode"] for r in rows] == ["probe", "full"]
    assert all(0 <= r["map"] <= 1 and 0 <= r["sample_f1"] <= 1 for r in rows)
    with pytest.raises(InputError, match="0 or 1"):
        ft.image_set(images, y * 2, ["a", "b"])


def test_study_rows_table_and_verdict(encoder, toy):
    _, _, tiles, train, test = toy
    rows = sf.run_finetuning(
        encoder, tiles, train, test, ("probe", "full"), (0.5, 1.0), (0, 1), steps=5, progress=False
    )
    assert len(rows) == 8 and {r["mode"] for r in rows} == {"probe", "full"}
    table = sf.finetuning_table(rows)
    assert table.count("\n") == 2 + 4 - 1 and "±" in table
    # the verdict is computed from the rows: a made-up clear gain is SUPPORTED, none is not
    fake = [
        {"mode": m, "fraction": f, "seed": s, "macro_f1": 0.5 + (0.2 if m == "a" else 0) + s * 0.01}
        for m in ("a", "b")
        for f in (0.1, 1.0)
        for s in range(3)
    ]
    claim = sf.compare_modes(fake, "a", "b")
    assert claim["verdict"] == "supported" and claim["overall"].mean == pytest.approx(0.2)
    assert "SUPPORTED" in claim["text"]
    assert sf.compare_modes(fake, "b", "a")["verdict"] == "contradicted"
    one_seed = [r for r in fake if r["seed"] == 0]
    assert sf.compare_modes(one_seed, "a", "b")["by_fraction"][0.1]["verdict"] == "inconclusive"
    with pytest.raises(InputError, match="no rows of mode"):
        sf.compare_modes(fake, "a", "c")


def test_a_prithvi_encoder_keeps_its_3d_positions_on_other_grids():
    from mae_nb.models.prithvi import PrithviMAE

    torch.manual_seed(0)
    kw = dict(img_size=16, patch_size=4, in_chans=6, embed_dim=32, depth=2, num_heads=2)
    kw.update(decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    prithvi = PrithviMAE(**kw)
    model = ft.mae_classifier(prithvi, 3)
    x = torch.randn(1, 6, 24, 32)  # another grid than the built one: positions recomputed
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), prithvi.forward_features(x), atol=1e-5)
        plain = create_mae("mae_vit_tiny_patch8", **kw)
        plain.load_state_dict(prithvi.state_dict())  # same weights, 2-D sin-cos positions
        assert not torch.allclose(
            ft.mae_classifier(plain, 3).forward_features(x), model.forward_features(x), atol=1e-3
        )
