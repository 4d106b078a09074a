"""Tests of ``mae-nb mae``: pretrain -> model file -> evaluate, exact resume, every bad input
refused before the first step, and a data-parallel run of two CPU processes (torchrun, gloo).

Tiny runs: an MAE of the tiny preset's family with one block a side, 32 px crops, batches of 4,
a few steps, on synthetic scenes and small GeoTIFFs written here.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from mae_nb import pretraining
from mae_nb.cli import main
from mae_nb.data import synthetic_scene, write_raster
from mae_nb.errors import CheckpointError
from mae_nb.pretrained import load_mae
from mae_nb.train import is_safetensors

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_MODEL = {
    "embed_dim": 32,
    "depth": 1,
    "num_heads": 2,
    "decoder_embed_dim": 32,
    "decoder_depth": 1,
    "decoder_num_heads": 2,
}
OUTPUTS = [
    "config.json",
    "model.safetensors",
    "state.safetensors",
    "train_log.csv",
    "train_log.json",
]


def _geotiff(path, array, valid=None, nodata=None):
    from rasterio import Affine

    transform = Affine(30, 0, 500000, 0, -30, 4000000)
    return write_raster(
        path, array, valid=valid, nodata=nodata, crs="EPSG:32633", transform=transform
    )


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """GeoTIFFs: 3 bands (64 x 128: a 32 px held-out strip), 4 bands, a 48 px one, an all-nodata
    one."""
    d = tmp_path_factory.mktemp("scenes")
    synthetic_scene(64, 128, 3, seed=5).to_geotiff(d / "three.tif")
    synthetic_scene(64, 128, 4, seed=6).to_geotiff(d / "four.tif")
    synthetic_scene(48, 48, 3, seed=7).to_geotiff(d / "small.tif")
    empty = np.zeros((3, 64, 128), np.uint16)
    _geotiff(d / "empty.tif", empty, valid=np.zeros((64, 128), bool), nodata=0)
    return d


def _config(tmp_path, scenes, output="out", **sections) -> dict:
    config = {
        "output": str(tmp_path / output),
        "device": "cpu",
        "seed": 0,
        "model": {"arch": "mae_vit_tiny_patch8", "options": dict(SMALL_MODEL)},
        "data": {
            "inputs": [
                str(scenes / "three.tif"),
                {"synthetic": {"seeds": [1, 2], "sizes": [64], "bands": 3}},
            ],
            "crop_size": 32,
            "normalization": "scene",
        },
        "train": {
            "steps": 8,
            "batch_size": 4,
            "warmup_steps": 2,
            "log_every": 2,
            "checkpoint_every": 3,
            "threads": 1,
        },
        "evaluate": {"ratios": [0.25, 0.5], "crops": 2, "synthetic_seeds": [1000]},
    }
    config["evaluate"]["synthetic_size"] = 64
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config


def write_config(tmp_path, scenes, name="run.yaml", **sections):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(_config(tmp_path, scenes, **sections)))
    return path


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def run(tmp_path_factory, scenes):
    """One finished tiny run: its config file and output folder."""
    d = tmp_path_factory.mktemp("run")
    config = write_config(d, scenes)
    assert main(["mae", "pretrain", "--config", str(config)]) == 0
    return config, d / "out"


@pytest.fixture
def no_training(monkeypatch):
    """Any training step fails the test: bad inputs must be refused before the first one."""

    def refuse(*a, **k):
        raise AssertionError("a training step ran")

    monkeypatch.setattr(pretraining, "masked_pixel_loss", refuse)


# --------------------------------------------------------------------------- the happy path


def test_pretrain_writes_a_model_the_course_loads(run, scenes):
    from mae_nb.reconstruct import reconstruct

    config, out = run
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    assert is_safetensors(out / "model.safetensors") and is_safetensors(out / "state.safetensors")
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert all(np.isfinite(float(r["loss"])) and float(r["lr"]) > 0 for r in rows)
    log = json.loads((out / "train_log.json").read_text())
    assert log["world_size"] == 1 and log["resumed_from_step"] == 0
    assert log["sources"] == ["three.tif", "synthetic seed 1 (64 px)", "synthetic seed 2 (64 px)"]
    assert [r["loss"] for r in log["log"]] == pytest.approx([float(r["loss"]) for r in rows])
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["train"]["steps"] == 8 and saved["model"]["steps"] == 8

    model = load_mae(out / "model.safetensors")
    cfg = model.pretrained_cfg
    assert not model.training and model.in_chans == 3 and model.patch_size == 8
    assert cfg["normalize"] == "per-band" and cfg["mean"] is None  # each image by its own stats
    assert cfg["normalization"]["mode"] == "scene" and cfg["tile"] == 32
    assert cfg["trained_on"][0] == {"name": "three.tif", "bands": [1, 2, 3],
                                    "train_window": [0, 0, 64, 96]}  # fmt: skip
    state = pretraining.load_training_state(out / "state.safetensors")
    assert state["step"] == 8 and [r["step"] for r in state["config"]["log"]] == [2, 4, 6, 8]
    for k, v in _weights(out / "model.safetensors").items():
        assert torch.equal(state["model"][k], v), k

    image = synthetic_scene(64, 64, 3, seed=9).image * 10000
    rec = reconstruct(model, image, 0.5, seed=1, data_range=10000.0)
    assert rec.pasted.shape == (3, 64, 64) and np.isfinite(rec.psnr_masked)


def test_evaluate_scores_every_scene_and_ratio(run, tmp_path, capsys):
    config, out = run
    capsys.readouterr()
    assert main(["mae", "evaluate", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "mask ratio 25%: model - blur" in text and "wrote" in text
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["checkpoint"] == str(out / "model.safetensors")
    rows = ev["rows"]
    pairs = {(r["scene"], r["ratio"]) for r in rows}
    scenes_scored = ["three.tif", "synthetic seed 1000 (64 px)"]  # held out: a region, a seed
    assert pairs == {(s, r) for s in scenes_scored for r in (0.25, 0.5)}
    # two disjoint 32 px crops per scene: the 64 x 32 px held-out strip holds exactly two
    assert len(rows) == 2 * 2 * 2 and {r["crop"] for r in rows} == {0, 1}
    assert all(np.isfinite([r["psnr"], r["blur"], r["mean_fill"]]).all() for r in rows)
    assert set(ev["gains"]) == {"0.25", "0.5"} and set(ev["gains"]["0.5"]) == {"blur", "mean_fill"}
    assert len(ev["table"]) == 4
    # another checkpoint; evaluation.json is replaced (it is a report, not a run)
    other = tmp_path / "copy.safetensors"
    shutil.copy(out / "model.safetensors", other)
    assert main(["mae", "evaluate", "--config", str(config), "--checkpoint", str(other)]) == 0
    assert json.loads((out / "evaluation.json").read_text())["checkpoint"] == str(other)


def test_evaluate_needs_something_held_out(run, tmp_path, scenes, capsys):
    _, out = run
    model = ["--checkpoint", str(out / "model.safetensors")]
    only_files = write_config(tmp_path, scenes, data={"inputs": [str(scenes / "three.tif")],
                                                      "holdout": 0.0})  # fmt: skip
    assert main(["mae", "evaluate", "--config", str(only_files), *model]) == 2
    err = capsys.readouterr().err
    assert "nothing held out to evaluate on: data.holdout (0% of the columns) leaves no " in err
    assert "strip of data.crop_size (32 px) in three.tif" in err
    # a strip narrower than a crop: that scene is said to be left out, the others are scored
    narrow = write_config(tmp_path, scenes, data={"holdout": 0.1})
    assert main(["mae", "evaluate", "--config", str(narrow), *model]) == 0
    assert "not scored (held-out strip narrower than 32 px): three.tif" in capsys.readouterr().out
    rows = json.loads((tmp_path / "out" / "evaluation.json").read_text())["rows"]
    assert {r["scene"] for r in rows} == {"synthetic seed 1000 (64 px)"}


def test_a_dataset_normalized_model_is_evaluated_with_its_stored_statistics(tmp_path, scenes):
    """normalization: dataset stores one mean/std in the model; evaluate feeds the model with
    them, not with statistics pooled over the evaluation's (other) scenes."""
    from mae_nb.studies.heldout import score_heldout

    config = write_config(tmp_path, scenes, data={"normalization": "dataset"}, train={"steps": 2})
    assert main(["mae", "pretrain", "--config", str(config)]) == 0
    assert main(["mae", "evaluate", "--config", str(config)]) == 0
    model = load_mae(tmp_path / "out" / "model.safetensors")
    cfg = model.pretrained_cfg
    assert cfg["normalize"] == "given" and len(cfg["mean"]) == 3
    rows = json.loads((tmp_path / "out" / "evaluation.json").read_text())["rows"]
    inputs = [str(scenes / "three.tif"), {"synthetic": {"seeds": [1000], "sizes": [64]}}]
    sources = pretraining.open_sources(inputs, crop_size=32, quiet=True)
    pooled = pretraining.band_statistics(sources, "dataset")
    assert not np.allclose(pooled["mean"], cfg["mean"])  # the evaluation's scenes differ
    kw = dict(ratios=[0.25, 0.5], crop_size=32, crops=2, seed=0)
    stored = score_heldout(
        {"model": model}, sources, normalization=lambda n, s: (cfg["mean"], cfg["std"]), **kw
    )
    assert [r["psnr"] for r in rows] == pytest.approx([r["psnr"] for r in stored.rows], abs=1e-9)
    other = score_heldout({"model": model}, sources, **kw)  # the evaluation scenes' statistics
    assert [r["psnr"] for r in rows] != pytest.approx([r["psnr"] for r in other.rows], abs=1e-3)


def test_resume_gives_the_uninterrupted_run(run, tmp_path, scenes, monkeypatch, capsys):
    """Interrupted after the checkpoint at step 3 (of 8), then resumed: the same weights and
    the same log as the run that went through."""
    _, reference = run
    config = write_config(tmp_path, scenes)
    out = tmp_path / "out"
    calls = {"n": 0}
    loss = pretraining.masked_pixel_loss

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 6:  # step 6 of 8: the checkpoint of step 3 is on disk, not step 6's
            raise KeyboardInterrupt
        return loss(*a, **k)

    monkeypatch.setattr(pretraining, "masked_pixel_loss", interrupted)
    assert main(["mae", "pretrain", "--config", str(config)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert pretraining.load_training_state(out / "state.safetensors")["step"] == 3
    assert not (out / "model.safetensors").exists()
    monkeypatch.setattr(pretraining, "masked_pixel_loss", loss)
    assert main(["mae", "pretrain", "--config", str(config), "--resume"]) == 0
    assert "steps 3..8" in capsys.readouterr().out
    mine, theirs = _weights(out / "model.safetensors"), _weights(reference / "model.safetensors")
    assert mine.keys() == theirs.keys()
    for k in theirs:
        torch.testing.assert_close(mine[k], theirs[k], rtol=1e-5, atol=1e-6)
    log = json.loads((out / "train_log.json").read_text())
    ref = json.loads((reference / "train_log.json").read_text())
    assert log["resumed_from_step"] == 3
    assert [r["step"] for r in log["log"]] == [r["step"] for r in ref["log"]] == [2, 4, 6, 8]
    for a, b in zip(log["log"], ref["log"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["lr"] == b["lr"], a["step"]
    # a finished run is not resumed further without more steps
    assert main(["mae", "pretrain", "--config", str(config), "--resume"]) == 2
    assert "already at step 8 of train.steps=8" in capsys.readouterr().err


def test_an_all_nodata_scene_is_skipped_with_a_count(tmp_path, scenes, capsys):
    inputs = [str(scenes / "empty.tif"), str(scenes / "three.tif")]
    config = write_config(tmp_path, scenes, data={"inputs": inputs}, train={"steps": 2})
    assert main(["mae", "pretrain", "--config", str(config)]) == 0
    assert "skipped 1 source(s) with no valid pixel in the training region: empty.tif" in (
        capsys.readouterr().out
    )
    log = json.loads((tmp_path / "out" / "train_log.json").read_text())
    assert log["sources"] == ["three.tif"]


def test_config_command_writes_the_defaults(tmp_path, capsys):
    from mae_nb.cli import mae_config

    out = tmp_path / "defaults.yaml"
    assert main(["mae", "config", str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == mae_config.MAE_DEFAULTS
    assert "mae-nb mae pretrain|evaluate --config" in out.read_text()
    assert main(["mae", "config", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad inputs


BAD_INPUTS = [
    ({"data": {"inputs": []}}, "data.inputs names no input"),
    (
        {"data": {"inputs": ["three.tif", "four.tif"]}},
        "the inputs have different band counts (three.tif: 3, four.tif: 4)",
    ),
    (
        {"data": {"inputs": ["."]}},
        "the inputs have different band counts (empty.tif: 3, four.tif: 4",
    ),
    (
        {"data": {"inputs": ["four.tif", "three.tif"], "bands": [4, 2, 1]}},
        "band index 4 is out of range for {scenes}/three.tif, which has 3 band(s)",
    ),
    (
        {"data": {"inputs": [{"path": "four.tif", "bands": [3, 2, 9]}]}},
        "band index 9 is out of range for {scenes}/four.tif, which has 4 band(s)",
    ),
    (
        {"data": {"inputs": ["three.tif", "small.tif"], "crop_size": 64}},
        "crops of 64 px do not fit in small.tif (training region 48 x 36 px",
    ),
    ({"data": {"inputs": ["empty.tif"]}}, "every source (1) is nodata in its training region"),
    ({"data": {"inputs": ["nowhere.tif"]}}, "data.inputs[0]: no file or folder at"),
    ({"data": {"inputs": [{"path": "three.tif", "band": [1]}]}}, "unknown key(s) ['band']"),
    (
        {"data": {"inputs": [{"registry": "mae_visualize_vit_base"}]}},
        "'data.inputs[0].registry' must be a single-file GeoTIFF sample",
    ),
    ({"data": {"inputs": [{"registry": "landsat-9"}]}}, "data.inputs[0]: unknown dataset"),
    (
        {"evaluate": {"synthetic_size": 16}},
        "'evaluate.synthetic_size' must be at least data.crop_size (32), got 16",
    ),
    ({"train": {"stepz": 10}}, "unknown config key 'train.stepz'; known keys in train: steps"),
    ({"epochs": 3}, "unknown config key 'epochs'; known keys: output"),
    ({"train": {"mask_ratio": 1.0}}, "config key 'train.mask_ratio' must be in (0, 1)"),
    ({"train": {"mask_ratio": [0.8, 0.2]}}, "config key 'train.mask_ratio' must be in (0, 1)"),
    ({"train": {"mask_ratio": "most"}}, "config key 'train.mask_ratio' must be in (0, 1)"),
    ({"train": {"steps": 0}}, "'train.steps' must be a whole number of at least 1"),
    ({"train": {"precision": "fp16"}}, "'train.precision' must be fp32 or bf16"),
    ({"data": {"crop_size": 36}}, "'data.crop_size' must be a multiple of the patch size 8"),
    ({"data": {"normalization": "global"}}, "'data.normalization' must be dataset or scene"),
    ({"data": {"min_valid": 0}}, "'data.min_valid' must be a share in (0, 1]"),
    (
        {"model": {"arch": "mae_vit_tiny_patch8", "options": {"in_chans": 4}}},
        "model.options.in_chans is set by the data",
    ),
    ({"model": {"arch": "mae_vit_giant", "options": {}}}, "model.arch 'mae_vit_giant' is unknown"),
    (
        {"model": {"arch": "mae_vit_tiny_patch8", "options": {"depht": 2}}},
        "model.options do not make a mae_vit_tiny_patch8 model",
    ),
]


def _anchored(sections, scenes):
    """Input file names relative to the scenes' folder."""
    data = sections.get("data")
    if not data or "inputs" not in data:
        return sections
    inputs = []
    for entry in data["inputs"]:
        if isinstance(entry, str):
            entry = str(scenes / entry)
        elif "path" in entry:
            entry = {**entry, "path": str(scenes / entry["path"])}
        inputs.append(entry)
    return {**sections, "data": {**data, "inputs": inputs}}


@pytest.mark.parametrize("sections, message", BAD_INPUTS)
def test_bad_inputs_are_refused_before_any_step(
    tmp_path, scenes, capsys, no_training, sections, message
):
    config = write_config(tmp_path, scenes, **_anchored(sections, scenes))
    assert main(["mae", "pretrain", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert message.format(scenes=scenes) in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_missing_config_file_is_named(tmp_path, capsys):
    for action in ("pretrain", "evaluate"):
        assert main(["mae", action, "--config", str(tmp_path / "nope.yaml")]) == 2
        err = capsys.readouterr().err
        assert f"no config file at {tmp_path / 'nope.yaml'}" in err
        assert "mae-nb mae config" in err


def test_an_output_folder_holding_another_run(run, tmp_path, scenes, capsys, no_training):
    config, out = run
    before = (out / "model.safetensors").read_bytes()
    assert main(["mae", "pretrain", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors already exists; pass --overwrite" in err
    assert (out / "model.safetensors").read_bytes() == before
    # a folder holding only a log of another run is refused too
    other = write_config(tmp_path, scenes)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "train_log.csv").write_text("step,loss\n")
    assert main(["mae", "pretrain", "--config", str(other)]) == 2
    assert "train_log.csv already exists" in capsys.readouterr().err


def test_overwrite_replaces_a_run(run, tmp_path, scenes):
    _, out = run
    target = tmp_path / "out"
    shutil.copytree(out, target)
    config = write_config(tmp_path, scenes, train={"steps": 2, "log_every": 1})
    assert main(["mae", "pretrain", "--config", str(config), "--overwrite"]) == 0
    log = json.loads((target / "train_log.json").read_text())
    assert [r["step"] for r in log["log"]] == [1, 2]


@pytest.mark.parametrize(
    "sections, said",
    [
        ({"model": {"options": {**SMALL_MODEL, "depth": 2}}}, "'depth': (1, 2)"),
        (
            {"data": {"inputs": [{"synthetic": {"seeds": [1], "sizes": [64], "bands": 4}}]}},
            "'in_chans': (3, 4)",
        ),
        ({"model": {"arch": "mae_vit_tiny_patch16", "options": {}}}, "this config builds mae_vit"),
    ],
)
def test_resume_from_another_preset_or_band_count(
    run, tmp_path, scenes, capsys, no_training, sections, said
):
    _, out = run
    model = sections.get("model")
    if model is not None:
        sections = {**sections, "model": {"arch": "mae_vit_tiny_patch8", **model}}
    config = write_config(tmp_path, scenes, **sections)
    state = out / "state.safetensors"
    assert main(["mae", "pretrain", "--config", str(config), "--resume", str(state)]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume from {state}" in err and said in err, err
    assert "resume with the config that started the run" in err
    # and a state that is not there, or not a state
    assert main(["mae", "pretrain", "--config", str(config), "--resume"]) == 2
    assert "--resume: no training state at" in capsys.readouterr().err
    model_file = out / "model.safetensors"
    assert main(["mae", "pretrain", "--config", str(config), "--resume", str(model_file)]) == 2
    assert "is not a training state written by mae-nb mae pretrain" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_a_model_file_with_missing_or_extra_tensors(run, tmp_path, capsys, change):
    from safetensors import safe_open
    from safetensors.torch import save_file

    config, out = run
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if change == "missing":
        del tensors["decoder_pred.bias"]
        said = "1 weights are missing from the file: decoder_pred.bias"
    else:
        tensors["extra.weight"] = torch.zeros(3)
        said = "1 keys of the file are not in the model: extra.weight"
    bad = tmp_path / f"{change}.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(CheckpointError, match="does not fit mae_vit_tiny_patch8") as caught:
        load_mae(bad)
    assert said in str(caught.value) and str(bad) in str(caught.value)
    assert main(["mae", "evaluate", "--config", str(config), "--checkpoint", str(bad)]) == 2
    assert said in capsys.readouterr().err
    assert main(["mae", "evaluate", "--config", str(config), "--checkpoint", "nope.st"]) == 2
    assert "no model at nope.st" in capsys.readouterr().err


# --------------------------------------------------------------------------- torchrun


def test_torchrun_two_cpu_processes_write_one_model(tmp_path, scenes):
    config = write_config(tmp_path, scenes, train={"steps": 4, "checkpoint_every": 2})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mae_nb",
        "mae",
        "pretrain",
        "--config",
        str(config),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS  # one model, no stray temp file
    log = json.loads((out / "train_log.json").read_text())
    assert log["world_size"] == 2 and log["backend"] == "gloo" and log["device"] == "cpu"
    assert [r["step"] for r in log["log"]] == [2, 4]
    assert proc.stdout.count("final loss") == 1 and proc.stdout.count("MAE pretraining:") == 1
    assert "x 2 process(es) (gloo)" in proc.stdout
    model = load_mae(out / "model.safetensors")
    assert model.in_chans == 3 and model.pretrained_cfg["steps"] == 4
    assert pretraining.load_training_state(out / "state.safetensors")["step"] == 4


# --------------------------------------------------------------------------- the course models


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["mae_tiny_course_rgb", "mae_tiny_course_6band"])
def test_the_shipped_configs_reproduce_the_first_row_of_their_logs(name, tmp_path):
    """The first ``log_every`` steps of the config that trained a course model, run again here,
    log the loss its shipped log starts with (warm-up is longer, so the learning rates match)."""
    from mae_nb.data.registry import PACKAGED_DIR

    config = yaml.safe_load((PACKAGED_DIR / f"{name}.yaml").read_text())
    every = config["train"]["log_every"]
    assert config["train"]["warmup_steps"] > every
    config["train"]["steps"] = every
    config["output"] = str(tmp_path / "out")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["mae", "pretrain", "--config", str(path)]) == 0
    with open(PACKAGED_DIR / f"{name}_log.csv") as f:
        shipped = next(csv.DictReader(f))
    with open(tmp_path / "out" / "train_log.csv") as f:
        (mine,) = list(csv.DictReader(f))
    assert int(mine["step"]) == int(shipped["step"]) == every
    assert float(mine["lr"]) == pytest.approx(float(shipped["lr"]), rel=1e-9)
    assert float(mine["loss"]) == pytest.approx(float(shipped["loss"]), rel=1e-4)
