"""mae_nb.studies.features: chapter 05's scenario study, its table and its answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_nb.data import synthetic_scene
from mae_nb.models.mae import MaskedAutoencoderViT
from mae_nb.studies.features import (
    answer_feature_study,
    compare_feature_scenarios,
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


def fake_rows(seeds=3, gain_50=0.1):
    """Made-up study rows: 50 % better than 25 % by ``gain_50``, 3 x 25 % the same as 25 %."""
    return [
        dict(kind="embedding", scenario=s, seed=k, macro_f1=v + 0.001 * k)
        for s, v in (("25%", 0.5), ("50%", 0.5 + gain_50), ("3x25%", 0.5))
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
    assert len(rows) == 4 and {r["kind"] for r in rows} == {"embedding", "error"}
    assert all(
        0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 and -1 <= r["ari"] <= 1 for r in rows
    )
    table = feature_study_table(rows)
    assert table.splitlines()[0] == "| kind | scenario | seeds | accuracy | macro_f1 | ari |"
    assert len(table.splitlines()) == 2 + 4 and " ± 0.000 |" in table


def test_unknown_kinds_and_scenarios_are_refused():
    scene = synthetic_scene(32, 32, 3, seed=2)
    with pytest.raises(ValueError, match="kinds must be 'embedding' and/or 'error'"):
        compare_feature_scenarios(small_mae(), scene.image, scene.labels, kinds=("pixels",))
    with pytest.raises(ValueError, match="unknown scenario '40%'"):
        compare_feature_scenarios(small_mae(), scene.image, scene.labels, scenarios=("40%",))


def test_the_table_summarizes_over_seeds():
    table = feature_study_table(fake_rows(), metrics=("macro_f1",))
    assert "| embedding | 50% | 3 | 0.601 ± 0.001 |" in table


def test_the_answer_is_computed_from_the_rows():
    answer = answer_feature_study(fake_rows())
    verdicts = {r["scenario"]: r["verdict"] for r in answer["table"]}
    assert verdicts == {"50%": "supported", "3x25%": "inconclusive"}
    gain = next(r for r in answer["table"] if r["scenario"] == "50%")
    assert gain["mean_difference"] == pytest.approx(0.1) and gain["n"] == 3
    assert "embeddings after 50% vs after 25%: macro_f1 +0.100" in answer["text"]
    assert "SUPPORTED (better)" in answer["text"]
    assert answer["plain"].startswith("Partly: better for embeddings after 50%")
    worse = answer_feature_study(fake_rows(gain_50=-0.1))
    assert {r["scenario"]: r["verdict"] for r in worse["table"]}["50%"] == "contradicted"
    assert worse["plain"].startswith("No:") and "worse: embeddings after 50%" in worse["plain"]


def test_the_margin_keeps_a_clear_but_tiny_difference_inconclusive():
    rows = fake_rows(gain_50=0.01)  # ten standard errors, but below the 0.02 margin
    assert answer_feature_study(rows)["table"][0]["verdict"] == "inconclusive"
    assert answer_feature_study(rows, margin=0.0)["table"][0]["verdict"] == "supported"


def test_a_single_seed_is_inconclusive():
    single = answer_feature_study(fake_rows(seeds=1))
    assert {r["verdict"] for r in single["table"]} == {"inconclusive"}
    assert all(np.isnan(r["standard_error"]) for r in single["table"])
    assert single["plain"].startswith("Not answerable from one seed")
    assert "spread unknown" in single["text"]
