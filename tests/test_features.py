"""MAE features: embeddings with positions, error maps, PCA/k-means/probe, anomalies, GeoTIFF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rasterio.transform import Affine, rowcol

from mae_nb import features as F
from mae_nb.data import read_raster, synthetic_scene
from mae_nb.models.mae import MaskedAutoencoderViT
from mae_nb.reconstruct import reconstruct

TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5300000.0)


def small_mae(in_chans: int = 3, seed: int = 0, depth: int = 2) -> MaskedAutoencoderViT:
    torch.manual_seed(seed)
    return MaskedAutoencoderViT(
        img_size=32,
        patch_size=8,
        in_chans=in_chans,
        embed_dim=32,
        depth=depth,
        num_heads=2,
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=2,
    ).eval()


def raster(array, transform=TRANSFORM):
    from mae_nb.data import Raster

    return Raster(
        array=array, valid=np.ones(array.shape[1:], bool), crs="EPSG:32618", transform=transform
    )


def rng_image(c=3, h=80, w=100, seed=0):
    return np.random.default_rng(seed).random((c, h, w)).astype(np.float32)


# ---------------------------------------------------------------- the encoder


def test_forward_features_equal_forward_encoder_without_masking():
    model = small_mae()
    x = torch.randn(2, 3, 32, 32)
    ours = model.forward_features(x)
    with torch.no_grad():
        ref, mask, _ = model.forward_encoder(x, 0.0, noise=torch.arange(16.0).expand(2, 16))
    assert ours.shape == (2, 17, 32)
    assert mask.sum() == 0
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_intermediate_block_and_bad_block():
    model = small_mae()
    x = torch.randn(1, 3, 32, 32)
    first, last = model.forward_features(x, 0), model.forward_features(x, -1)
    assert first.shape == last.shape and not torch.allclose(first, last)
    torch.testing.assert_close(last, model.forward_features(x, 1))
    with pytest.raises(ValueError, match=r"block must be an encoder block index in \[-2, 1\]"):
        model.forward_features(x, 2)


# ---------------------------------------------------------------- shapes and positions


def test_scene_embeddings_shapes_for_each_pool():
    model = small_mae()
    scene = raster(
        rng_image(h=80, w=100)
    )  # cropped to 80 x 96: 10 x 12 patches; tiles at 0/32/48 and 0/32/64
    emb = F.scene_embeddings(model, scene)
    assert emb.shape == (10, 12) and emb.dim == 32 and emb.cell_size == 8
    assert emb.valid.all() and np.isfinite(emb.values).all()
    assert list(emb.rows) == list(range(0, 80, 8)) and list(emb.cols) == list(range(0, 96, 8))
    assert emb.scene_shape == (80, 100)
    assert emb.flat().shape == (120, 32)
    for pool in ("cls", "mean"):
        t = F.scene_embeddings(model, scene, pool=pool)
        assert t.shape == (3, 3) and t.cell_size == 32
        assert list(t.rows) == [0, 32, 48] and list(t.cols) == [0, 32, 64]


def test_scene_patches_equal_the_embeddings_of_their_own_tile():
    model = small_mae()
    img = rng_image(h=32, w=64)
    emb = F.scene_embeddings(model, img)
    # the scene is normalized as a whole; give embed_image the same normalized pixels
    from mae_nb.reconstruct import normalization

    x = normalization(img, "per-band").apply(img)
    left = F.embed_image(model, x[:, :, :32], normalize="per-band")
    # per-band normalization of an already standardized crop is near the identity, not exact:
    # compare tokens directly
    with torch.no_grad():
        tokens = model.forward_features(torch.from_numpy(x[None, :, :, 32:]))[0, 1:]
    tokens = tokens.reshape(4, 4, 32).numpy()
    np.testing.assert_allclose(emb.values[:, 4:], tokens, atol=1e-5)
    assert left.shape == (4, 4, 32)
    assert F.embed_image(model, img[:, :, :32], pool="cls").shape == (32,)
    with pytest.raises(ValueError, match="one crop of the model's size"):
        F.embed_image(model, img)


def test_positions_map_to_the_right_pixels():
    img = np.zeros((3, 64, 96), np.float32)
    img[:, 40:48, 72:80] = 5.0  # a bright patch at rows 40-47, cols 72-79
    emb = F.pixel_features(raster(img), 8)
    x, y = emb.xy
    i, j = np.unravel_index(np.nanmean(emb.values, axis=-1).argmax(), emb.shape)
    assert (i, j) == (5, 9)
    r, c = rowcol(TRANSFORM, x[i, j], y[i, j])
    assert 40 <= r < 48 and 72 <= c < 80
    # every cell's centre lies in its own cell
    assert x[0, 0] == pytest.approx(500000 + 4 * 10) and y[0, 0] == pytest.approx(5300000 - 4 * 10)
    assert x[2, 3] == pytest.approx(500000 + (24 + 4) * 10) and y[2, 3] == pytest.approx(
        5300000 - (16 + 4) * 10
    )
    model = small_mae()
    e2 = F.scene_embeddings(model, raster(img))
    np.testing.assert_allclose(e2.xy[0], x)
    np.testing.assert_allclose(e2.xy[1], y)


def test_nodata_cells_are_not_valid():
    scene = raster(rng_image(h=64, w=64))
    scene.valid[:, :20] = False
    emb = F.scene_embeddings(small_mae(), scene)
    assert not emb.valid[:, :2].any() and emb.valid[:, 3:].all()
    assert np.isnan(emb.values[:, 0]).all()


# ---------------------------------------------------------------- error maps


def test_covering_error_map_matches_reconstruct():
    model = small_mae(in_chans=4)
    img = rng_image(c=4, h=32, w=32, seed=3)
    seed = 7
    err = F.error_map(model, img, 0.25, mode="covering", seed=seed)
    tile_seed = int(np.random.SeedSequence([seed, 0]).generate_state(1)[0])
    rec = reconstruct(model, img, 0.25, mode="covering", seed=tile_seed, normalize="per-band")
    assert rec.mask.all() and err.valid.all()
    std = rec.normalization.std
    np.testing.assert_allclose(
        (err.values * std**2).mean(-1), rec.patch_error, rtol=1e-4, atol=1e-7
    )


def test_chained_error_map_covers_more_with_repeats():
    model = small_mae()
    img = rng_image(h=64, w=64)
    one = F.error_map(model, img, 0.25, iterations=3, mode="chained", repeats=1)
    four = F.error_map(model, img, 0.25, iterations=3, mode="chained", repeats=4)
    assert 0.4 < one.valid.mean() < 0.8  # 1 - 0.75 ** 3 = 58 % expected
    assert four.valid.mean() > 0.9
    with pytest.raises(ValueError, match="repeats"):
        F.error_map(model, img, repeats=0)
    with pytest.raises(ValueError, match="mask_ratio must be in"):
        F.error_map(model, img, 1.5)


def test_error_map_finds_a_planted_stripe_with_a_trivial_model():
    model = small_mae()
    with torch.no_grad():  # the decoder predicts 0: every band's mean, everywhere
        model.decoder_pred.weight.zero_()
        model.decoder_pred.bias.zero_()
    scene = synthetic_scene(64, 96, 3, seed=1)
    image, stripe = F.plant_stripe(scene.image, start=41, width=3)
    assert stripe.sum() == 3 * 64 and (image[:, stripe] > scene.image.max()).all()
    err = F.error_map(model, image, 0.5, mode="covering")
    truth = F.patch_fraction(stripe, err.rows, err.cols, err.cell_size) > 0
    det = F.detect_top_k(err.values.mean(-1), truth)
    assert det.k == det.n_true == 8
    assert det.precision >= 0.9 and det.recall >= 0.9


def test_plant_cloud_brightens_a_blob():
    img = rng_image(h=64, w=64)
    out, mask = F.plant_cloud(img, (32, 20), 10)
    assert mask[32, 20] and not mask[0, 63]
    assert out[:, mask].mean() > img[:, mask].mean() + 0.3
    np.testing.assert_allclose(out[:, 0, 63], img[:, 0, 63], atol=1e-6)


def test_detect_top_k_scores_with_sklearn():
    scores = np.arange(16, dtype=float).reshape(4, 4)
    truth = np.zeros((4, 4), bool)
    truth[3, 2:] = True
    truth[0, 0] = True
    det = F.detect_top_k(scores, truth)  # flags 15, 14, 13
    assert (
        det.k == 3 and det.precision == pytest.approx(2 / 3) and det.recall == pytest.approx(2 / 3)
    )
    assert F.detect_top_k(scores, truth, k=2).precision == 1.0
    with pytest.raises(ValueError, match="same shape"):
        F.detect_top_k(scores, truth[:2])


# ---------------------------------------------------------------- looking and probing


def test_pca_map_shape_and_range():
    emb = F.scene_embeddings(small_mae(), rng_image(h=64, w=64))
    pm = F.pca_map(emb, 4)
    assert pm.components.shape == (8, 8, 4) and pm.rgb.shape == (8, 8, 3)
    assert pm.rgb.min() >= 0 and pm.rgb.max() <= 1
    assert (np.diff(pm.explained) <= 1e-6).all()
    with pytest.raises(ValueError, match="n_components"):
        F.pca_map(emb, 100)


def toy_embeddings(
    labels_grid: np.ndarray, dim: int = 6, noise: float = 0.3, seed: int = 0
) -> F.Embeddings:
    gh, gw = labels_grid.shape
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(labels_grid.max() + 1, dim)) * 3
    values = (centres[labels_grid] + noise * rng.normal(size=(gh, gw, dim))).astype(np.float32)
    return F.Embeddings(
        values,
        np.arange(gh) * 8,
        np.arange(gw) * 8,
        8,
        np.ones((gh, gw), bool),
        (gh * 8, gw * 8),
        16,
        np.arange(0, gh * 8, 16),
        np.arange(0, gw * 8, 16),
    )


def test_probe_and_clusters_on_a_separable_problem():
    grid = np.tile(
        np.repeat([1, 2, 3], 4)[:, None], (1, 16)
    )  # horizontal bands: each class on both halves
    emb = toy_embeddings(grid)
    split = F.embedding_split(emb)
    res = F.linear_probe(emb, grid, split)
    assert res.accuracy > 0.95 and res.macro_f1 > 0.95
    assert res.classes == [1, 2, 3] and res.n_train == res.n_test == 96
    assert F.adjusted_rand(F.kmeans_map(emb, 3), grid) > 0.95
    # a random grid of labels is not separable: the probe is near chance
    noise = F.linear_probe(
        toy_embeddings(np.random.default_rng(1).integers(1, 4, grid.shape)), grid, split
    )
    assert noise.accuracy < 0.6


def test_patch_labels_majority_and_shape_check():
    labels = np.zeros((16, 24), np.uint8)
    labels[:, :8] = 2
    labels[:8, 8:16] = 3
    labels[8:, 8:12] = 4  # half of the patch: majority exactly 0.5
    labels[:8, 16:18] = 5  # a sliver: 25 % of the patch
    emb = toy_embeddings(np.ones((2, 3), int))
    grid = F.patch_labels(labels, emb)
    assert grid.tolist() == [[2, 3, 0], [2, 4, 0]]
    with pytest.raises(
        ValueError, match=r"labels map has shape \(10, 24\) but the scene is 16 x 24 px"
    ):
        F.patch_labels(labels[:10], emb)


def test_embedding_splits_are_disjoint():
    model = small_mae()
    emb = F.scene_embeddings(model, rng_image(h=64, w=160))  # tiles at cols 0, 32, ..., 128
    for scheme in ("halves", "blocks"):
        split = F.embedding_split(emb, scheme, block=1)
        assert not (split.train & split.test).any()
        assert split.overlap_pixels == 0 and split.train.any() and split.test.any()
    halves = F.embedding_split(emb, "halves", test_fraction=0.4)
    assert halves.boundary == 96  # the tile boundary nearest 0.6 * 160
    cols = np.broadcast_to(emb.cols, emb.shape)
    assert cols[halves.train].max() + 8 <= 96 <= cols[halves.test].min()
    # a grid of overlapping tiles (the last tile is flush): a test tile sharing pixels with a train
    # tile is dropped
    tiles = F.scene_embeddings(model, rng_image(h=64, w=80), pool="mean")  # tile cols 0, 32, 48
    split = F.embedding_split(tiles, "halves", test_fraction=0.6)
    assert split.boundary == 32 and split.overlap_pixels == 0
    assert split.test[:, 2].all()
    split = F.embedding_split(tiles, "blocks", block=1)
    assert split.overlap_pixels == 0
    np.testing.assert_array_equal(
        split.test[:, 2], split.test[:, 1]
    )  # the flush tile goes with the tile it overlaps


def test_spatial_folds_leave_out_whole_tile_blocks():
    model = small_mae()
    emb = F.scene_embeddings(model, rng_image(h=64, w=160))  # 2 x 5 tiles of 32 px
    folds = F.spatial_folds(emb)
    assert len(folds) == 10 and folds[0].scheme.startswith("fold 1 of 10")
    tested = np.zeros(emb.shape, int)
    for f in folds:
        assert not (f.train & f.test).any() and f.overlap_pixels == 0
        assert (f.train | f.test).sum() == emb.valid.sum()  # nothing lost on a tile-aligned grid
        rows, cols = np.nonzero(f.test)
        # one block = one encoder tile: 4 x 4 patches that no other tile contributed to
        assert len(rows) == 16 and len({emb.rows[r] // 32 for r in rows}) == 1
        assert len({emb.cols[c] // 32 for c in cols}) == 1
        tested += f.test
    assert (tested == 1).all()  # every cell is tested exactly once
    assert len(F.spatial_folds(emb, block=2)) == 3  # blocks of 2 x 2 tiles: cols 0-63, 64-127, 128-
    with pytest.raises(ValueError, match="single block of 2 x 2 tiles"):
        F.spatial_folds(F.scene_embeddings(model, rng_image(h=64, w=64)), block=2)
    with pytest.raises(ValueError, match="block must be a positive whole number"):
        F.spatial_folds(emb, block=0)


def test_spatial_folds_keep_a_flush_tile_with_the_tile_it_overlaps():
    tiles = F.scene_embeddings(small_mae(), rng_image(h=64, w=80), pool="mean")  # cols 0, 32, 48
    folds = F.spatial_folds(tiles)
    assert len(folds) == 4 and all(f.overlap_pixels == 0 for f in folds)
    for f in folds:
        np.testing.assert_array_equal(f.test[:, 2], f.test[:, 1])


def test_score_folds_scores_each_block_with_a_probe_that_never_saw_it():
    scene = synthetic_scene(64, 128, 3, seed=2)
    emb = F.scene_embeddings(small_mae(), scene.image)
    rows = F.score_folds(emb, scene.labels, min_per_class=2)
    assert [r["fold"] for r in rows] == list(range(1, 9))
    assert set(rows[0]) == {"fold", "accuracy", "macro_f1", "ari", "n_test"}
    scored = [r for r in rows if r["n_test"] > 0]
    assert scored and all(0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 for r in scored)
    assert sum(r["n_test"] for r in scored) <= emb.valid.sum()
    # a block whose labelled cells are all of classes the probe never trained on is NaN, not 0
    assert all(np.isnan(r["macro_f1"]) for r in rows if r["n_test"] == 0)


def test_untrained_copy_keeps_the_architecture_and_input_convention():
    model = small_mae(seed=3)
    model.pretrained_cfg["mean"] = [1.0, 2.0, 3.0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a, b = F.untrained_copy(model, seed=0), F.untrained_copy(model, seed=0)
    assert a.pretrained_cfg["mean"] == [1.0, 2.0, 3.0] and not a.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in before)  # seeded
    w = "blocks.0.attn.qkv.weight"
    assert not torch.equal(a.state_dict()[w], before[w])
    assert not torch.equal(F.untrained_copy(model, seed=1).state_dict()[w], a.state_dict()[w])
    with pytest.raises(ValueError, match="has no initialize_weights"):
        F.untrained_copy(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------- GeoTIFF


def test_write_embeddings_round_trip(tmp_path):
    emb = F.scene_embeddings(small_mae(), raster(rng_image(h=64, w=96)))
    path = F.write_embeddings(tmp_path / "emb.tif", emb, n_components=None)
    back = read_raster(path)
    assert back.array.shape == (32, 8, 12)
    assert back.crs.to_string() == "EPSG:32618"
    assert back.transform == Affine(80.0, 0.0, 500000.0, 0.0, -80.0, 5300000.0)
    np.testing.assert_allclose(back.array, np.moveaxis(emb.values, -1, 0))
    assert back.band_names[0] == "dim 0"
    # the grid's pixel (i, j) is where the cell's centre lies
    x, y = emb.xy
    assert rowcol(back.transform, x[3, 5], y[3, 5]) == (3, 5)
    pcs = F.write_embeddings(tmp_path / "pca.tif", emb, n_components=3)
    back = read_raster(pcs)
    assert back.array.shape == (3, 8, 12) and back.band_names == ["PC1", "PC2", "PC3"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        F.write_embeddings(pcs, emb, 3)
    F.write_embeddings(pcs, emb, 2, overwrite=True)
    assert read_raster(pcs).count == 2


def test_tile_grid_with_a_flush_tile_cannot_be_written(tmp_path):
    tiles = F.scene_embeddings(small_mae(), raster(rng_image(h=64, w=80)), pool="cls")
    with pytest.raises(ValueError, match="not evenly spaced"):
        F.write_embeddings(tmp_path / "t.tif", tiles, None)


# ---------------------------------------------------------------- bad inputs


def test_scene_smaller_than_one_tile():
    with pytest.raises(
        ValueError,
        match=r"the scene \(24 x 100 px\) is smaller than one tile of the model \(32 x 32 px\)",
    ):
        F.scene_embeddings(small_mae(), rng_image(h=24, w=100))
    with pytest.raises(ValueError, match="smaller than one tile"):
        F.error_map(small_mae(), rng_image(h=24, w=100))


def test_wrong_band_count_and_unknown_options():
    model = small_mae()
    with pytest.raises(ValueError, match=r"has 6 band\(s\) but the model expects in_chans=3"):
        F.scene_embeddings(model, rng_image(c=6, h=32, w=32))
    assert F.scene_embeddings(model, rng_image(c=6, h=32, w=32), bands=[3, 2, 1]).dim == 32
    with pytest.raises(ValueError, match="unknown scenario '40%'"):
        F.scene_embeddings(model, rng_image(h=32, w=32), scenario="40%")
    with pytest.raises(ValueError, match="pool must be one of"):
        F.scene_embeddings(model, rng_image(h=32, w=32), pool="max")
    with pytest.raises(ValueError, match=r"block must be an encoder block index in \[-2, 1\]"):
        F.scene_embeddings(model, rng_image(h=32, w=32), block=2)


def test_labels_of_another_shape_than_the_grid():
    emb = toy_embeddings(np.ones((4, 4), int))
    split = F.embedding_split(emb)
    with pytest.raises(
        ValueError, match=r"label grid has shape \(4, 3\) but the embeddings are a \(4, 4\) grid"
    ):
        F.linear_probe(emb, np.ones((4, 3), int), split)
    with pytest.raises(ValueError, match="differ in shape"):
        F.adjusted_rand(np.zeros((4, 4), int), np.ones((3, 4), int))


def test_too_few_samples_per_class_for_the_probe():
    grid = np.ones((8, 16), int)
    grid[:6] = 2
    grid[0, 0] = 3  # one training cell of class 3
    emb = toy_embeddings(grid)
    split = F.embedding_split(emb)
    with pytest.raises(
        ValueError, match=r"too few training cells for the probe \(class 3: 1;.*rare='drop'"
    ):
        F.linear_probe(emb, grid, split)
    res = F.linear_probe(emb, grid, split, rare="drop")
    assert res.dropped == {3: 1} and res.classes == [1, 2]
    with pytest.raises(ValueError, match="at least 2 classes"):
        F.linear_probe(emb, np.where(grid == 3, 1, 1), split)


# ---------------------------------------------------------------- the plots and the slider on these


def test_feature_plots_and_the_pca_slider():
    from matplotlib.figure import Figure

    from mae_nb import viz, widgets

    model = small_mae()
    scene = synthetic_scene(64, 128, 3, seed=2)
    emb = F.scene_embeddings(model, scene.image)
    score = F.score_features(emb, scene.labels, min_per_class=2)
    rgb = np.moveaxis(scene.image, 0, -1)
    figs = [
        viz.plot_pca_map(F.pca_map(emb).rgb, rgb, cell_size=8, explained=[0.5, 0.2, 0.1]),
        viz.plot_segmentation(
            score.labels,
            score.clusters,
            rgb,
            cell_size=8,
            class_names=scene.class_names,
            ari=score.ari,
        ),
        viz.plot_probe(
            score.labels, score.probe.prediction, score.split.train, score.split.test, cell_size=8
        ),
        viz.plot_feature_study([dict(kind="embedding", scenario="25%", seed=0, macro_f1=0.4)]),
        viz.plot_anomaly(
            rgb,
            np.ones(emb.shape),
            np.zeros(emb.shape, bool),
            np.zeros(emb.shape, bool),
            cell_size=8,
        ),
        widgets.pca_view(model, scene.image, block=0, scenario="25%"),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    box = widgets.pca_explorer(model, scene.image)
    assert box.controls["block"].max == 1 and not box.controls["block"].continuous_update
    assert (
        not box.controls["scenario"].continuous_update
        and box.controls["scenario"].options[0] == "none"
    )
