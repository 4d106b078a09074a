"""mae_nb.studies.features: chapter 05's scenario study, its table and its answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_nb.data import synthetic_scene
from mae_nb.features import pixel_features, scene_embeddings
from mae_nb.models.mae import MaskedAutoencoderViT
from mae_nb.studies.features import (
    answer_feature_sources,
    answer_feature_study,
    compare_feature_scenarios,
    compare_feature_sources,
    feature_study_table,
)


def small_mae() -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return MaskedAutoencoderViT(
        img_size=32,
        patch_size=8,
        in_chans=3,
        embed_dim=32,
        depth=2,
        num_heads=2,
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=2,
    ).eval()


def fake_rows(blocks=3, seeds=1, gain_50=0.1):
    """Made-up study rows: 50 % better than 25 % by ``gain_50``, 3 x 25 % the same as 25 %."""
    return [
        dict(kind="embedding", scenario=s, seed=k, fold=f, macro_f1=v + 0.001 * f + 0.0001 * k)
        for s, v in (("25%", 0.5), ("50%", 0.5 + gain_50), ("3x25%", 0.5))
        for f in range(1, blocks + 1)
        for k in range(seeds)
    ]


def test_compare_feature_scenarios_rows_and_table():
    scene = synthetic_scene(64, 128, 3, seed=2)
    rows = compare_feature_scenarios(
        small_mae(),
        scene.image,
        scene.labels,
        scenarios=("25%", "50%"),
        seeds=(0,),
        min_per_class=2,
        progress=False,
    )
    # 2 x 4 tiles of 32 px: 8 blocks, each scored by a probe trained on the 7 others
    assert len(rows) == 4 * 8 and {r["kind"] for r in rows} == {"embedding", "error"}
    assert {r["fold"] for r in rows} == set(range(1, 9))
    scored = [r for r in rows if r["n_test"] > 0]
    assert all(
        0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 and -1 <= r["ari"] <= 1
        for r in scored
    )
    table = feature_study_table(rows)
    head = "| kind | scenario | blocks | seeds | accuracy | macro_f1 | ari |"
    assert table.splitlines()[0] == head
    assert len(table.splitlines()) == 2 + 4 and "| 8 | 1 |" in table
    halves = compare_feature_scenarios(
        small_mae(),
        scene.image,
        scene.labels,
        scenarios=("25%",),
        kinds=("embedding",),
        seeds=(0,),
        split_scheme="halves",
        min_per_class=2,
        progress=False,
    )
    assert len(halves) == 1 and halves[0]["fold"] == 1


def test_unknown_kinds_and_scenarios_are_refused():
    scene = synthetic_scene(32, 32, 3, seed=2)
    with pytest.raises(ValueError, match="kinds must be 'embedding' and/or 'error'"):
        compare_feature_scenarios(small_mae(), scene.image, scene.labels, kinds=("pixels",))
    with pytest.raises(ValueError, match="unknown scenario '40%'"):
        compare_feature_scenarios(small_mae(), scene.image, scene.labels, scenarios=("40%",))
    with pytest.raises(ValueError, match="split_scheme must be one of 'folds'"):
        compare_feature_scenarios(
            small_mae(), scene.image, scene.labels, seeds=(0,), split_scheme="random",
            progress=False,
        )  # fmt: skip


def test_the_table_summarizes_over_blocks_with_clustered_errors():
    table = feature_study_table(fake_rows(), metrics=("macro_f1",))
    assert "| embedding | 50% | 3 | 1 | 0.602 ± 0.001 |" in table
    # seeds on the same block are not independent: one block, however many seeds, has no spread
    assert "± nan" in feature_study_table(fake_rows(blocks=1, seeds=4), metrics=("macro_f1",))


def test_the_answer_is_computed_from_the_rows():
    answer = answer_feature_study(fake_rows())
    verdicts = {r["scenario"]: r["verdict"] for r in answer["table"]}
    assert verdicts == {"50%": "supported", "3x25%": "inconclusive"}
    gain = next(r for r in answer["table"] if r["scenario"] == "50%")
    assert gain["mean_difference"] == pytest.approx(0.1) and gain["n"] == 3
    assert gain["blocks"] == 3 and gain["seeds"] == 1
    assert "embeddings after 50% vs after 25%: macro_f1 +0.100" in answer["text"]
    assert "over 3 block(s) x 1 seed(s) (clustered by block)" in answer["text"]
    assert "SUPPORTED (better)" in answer["text"]
    assert answer["plain"].startswith("Partly: better for embeddings after 50%")
    worse = answer_feature_study(fake_rows(gain_50=-0.1))
    assert {r["scenario"]: r["verdict"] for r in worse["table"]}["50%"] == "contradicted"
    assert worse["plain"].startswith("No:") and "worse: embeddings after 50%" in worse["plain"]


def test_the_margin_keeps_a_clear_but_tiny_difference_inconclusive():
    rows = fake_rows(gain_50=0.01)  # ten standard errors, but below the 0.02 margin
    assert answer_feature_study(rows)["table"][0]["verdict"] == "inconclusive"
    assert answer_feature_study(rows, margin=0.0)["table"][0]["verdict"] == "supported"


def test_a_single_block_is_inconclusive_however_many_seeds():
    for seeds in (1, 5):
        single = answer_feature_study(fake_rows(blocks=1, seeds=seeds))
        assert {r["verdict"] for r in single["table"]} == {"inconclusive"}
        assert all(np.isnan(r["standard_error"]) for r in single["table"])
        assert single["plain"].startswith("Not answerable from one block")
        assert "spread unknown" in single["text"]


def test_seeds_within_a_block_do_not_shrink_the_error():
    # block-level differences vary; five seeds that barely differ within each block must not
    # turn three blocks into fifteen independent samples
    rows = [
        dict(kind="embedding", scenario=s, seed=k, fold=f, macro_f1=v)
        for f, d in ((1, 0.0), (2, 0.06), (3, 0.12))
        for k in range(5)
        for s, v in (("25%", 0.5), ("50%", 0.5 + d + 0.0001 * k))
    ]
    gain = answer_feature_study(rows)["table"][0]
    assert gain["blocks"] == 3 and gain["seeds"] == 5 and gain["n"] == 15
    naive = np.std([0.0, 0.06, 0.12] * 5, ddof=1) / np.sqrt(15)
    assert gain["standard_error"] > 1.5 * naive
    assert gain["verdict"] == "inconclusive"  # +0.06 against 2 x 0.035


def test_feature_sources_against_raw_pixels_block_by_block():
    scene = synthetic_scene(64, 128, 3, seed=2)
    model = small_mae()
    sources = {
        "mae": scene_embeddings(model, scene.image),
        "raw pixels": pixel_features(scene.image, model.patch_size, tile_size=32),
    }
    rows = compare_feature_sources(sources, scene.labels, min_per_class=2)
    assert len(rows) == 2 * 8 and {r["source"] for r in rows} == {"mae", "raw pixels"}
    answer = answer_feature_sources(rows)
    (res,) = answer["table"]
    assert res["source"] == "mae" and res["reference"] == "raw pixels" and res["blocks"] >= 2
    by = {s: np.nanmean([r["macro_f1"] for r in rows if r["source"] == s]) for s in sources}
    assert res["mean_difference"] == pytest.approx(by["mae"] - by["raw pixels"])
    assert answer["text"].startswith("mae vs raw pixels: macro_f1 ")
    assert "| source | blocks | seeds |" in feature_study_table(rows, by=("source",))
