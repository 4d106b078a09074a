"""Tests of ``mae-nb hsi``: configs, errors, the pretrain -> finetune -> evaluate pipeline, and DDP.

The distributed test launches two CPU processes with torchrun (gloo), as a user would with
``torchrun --nproc_per_node=2 -m mae_nb hsi ...``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml

from mae_nb.cli import main
from mae_nb.cli.hsi_config import DEFAULTS, load_config, validate_config
from mae_nb.errors import ConfigError
from mae_nb.train import is_safetensors, load_checkpoint

TINY = {
    "data": {"name": "synthetic", "synthetic_size": 24, "synthetic_bands": 16, "patch_size": 5},
    "model": {
        "kind": "sst",
        "options": {"embed_dim": 16, "depth": 1, "num_heads": 2, "band_block_size": 8},
    },
    "pretrain": {"epochs": 1, "batch_size": 64, "decoder_dim": 16},
    "finetune": {"steps": 6, "batch_size": 32, "fraction": 0.5},
    "evaluate": {"batch_size": 512},
}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_config(tmp_path, name="run.yaml", **changes):
    config = {**TINY, "output": str(tmp_path / "out"), **changes}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_config_command_writes_the_defaults(tmp_path, capsys):
    out = tmp_path / "defaults.yaml"
    assert main(["hsi", "config", str(out)]) == 0
    assert load_config(out) == DEFAULTS
    assert main(["hsi", "config", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 3}, "unknown config key 'epochs'; known keys: output, device, data"),
        (
            {"finetune": {"fractoin": 0.1}},
            "unknown config key 'finetune.fractoin'; known keys in finetune: init, fraction",
        ),
        (
            {"model": {"kind": "sst", "options": {"embed": 8}}},
            "unknown config key 'model.options.embed' for model.kind 'sst'",
        ),
        ({"model": {"kind": "resnet"}}, "model.kind 'resnet' is unknown; choose one of sst"),
        (
            {"finetune": {"steps": "many"}},
            "config key 'finetune.steps' must be a number, got 'many'",
        ),
        ({"finetune": {"steps": 2.5}}, "config key 'finetune.steps' must be a whole number"),
        ({"data": {"fallback": "yes"}}, "config key 'data.fallback' must be true or false"),
        ({"device": "tpu"}, "device must be auto, cpu or cuda"),
    ],
)
def test_bad_configs_fail_early_with_a_message(tmp_path, capsys, changes, message):
    path = write_config(tmp_path, **changes)
    assert main(["hsi", "finetune", "--config", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"finetune": {"fraction": 0}}, "config key 'finetune.fraction' must be in (0, 1]"),
        ({"finetune": {"fraction": 1.5}}, "config key 'finetune.fraction' must be in (0, 1]"),
        ({"finetune": {"steps": 0}}, "'finetune.steps' must be a whole number of at least 1"),
        ({"finetune": {"lr": -0.1}}, "config key 'finetune.lr' must be a number above 0"),
        ({"finetune": {"init": "nowhere.pt"}}, "finetune.init: no checkpoint at nowhere.pt"),
        ({"evaluate": {"subset": "holdout"}}, "'evaluate.subset' must be one of train, val, test"),
        ({"evaluate": {"batch_size": None}}, "'evaluate.batch_size' must be a whole number"),
        ({"pretrain": {"mask_ratio": 1.0}}, "config key 'pretrain.mask_ratio' must be in (0, 1)"),
        ({"pretrain": {"max_pixels": -5}}, "'pretrain.max_pixels' must be a whole number"),
        ({"data": {**TINY["data"], "patch_size": 4}}, "'data.patch_size' must be odd"),
        ({"data": {**TINY["data"], "name": "narnia"}}, "'data.name' must be one of salinas-a"),
        (
            {"split": {"fractions": [0.5, 0.5, 0.5]}},
            "'split.fractions' must be [train, val, test] shares",
        ),
        ({"split": {"grid": [1, 1]}}, "'split.grid' must be \"auto\" or [rows, cols]"),
        ({"split": {"grid": "fine"}}, "'split.grid' must be \"auto\" or [rows, cols]"),
        ({"split": {"grid": [4, 4], "block_size": 8}}, "split.grid and split.block_size both"),
        ({"split": {"block_size": 0}}, "'split.block_size' must be a whole number of at least 1"),
        ({"split": {"buffer": -1}}, "'split.buffer' must be a whole number of at least 0"),
        ({"split": {"seed": 1.5}}, "config key 'split.seed' must be a whole number"),
        ({"split": {"require_all_classes": "no"}}, "'split.require_all_classes' must be true"),
        ({"pretrain": {"region": "everything"}}, "'pretrain.region' must be one of train+val, all"),
        (
            {"data": {**TINY["data"], "split_fractions": [0.6, 0.1, 0.3]}},
            "config key 'data.split_fractions' is now 'split.fractions'",
        ),
        (
            {"data": {**TINY["data"], "cube": "cube.mat"}},
            "data.cube and data.labels go together",
        ),
        (
            {"model": {"kind": "sst", "options": {"embed_dim": 18}}},
            "model.options do not make a sst model: embed_dim must be a multiple of 4",
        ),
        (
            {"model": {"kind": "sst", "options": {"depth": "deep"}}},
            "config key 'model.options.depth' must be a number or true/false, got 'deep'",
        ),
    ],
)
def test_the_whole_config_is_checked_before_any_work(tmp_path, capsys, changes, message):
    """A bad value in any section stops every action at once (not after a 4-minute
    pretraining): pretrain with a bad finetune/evaluate value fails in the config check."""
    path = write_config(tmp_path, **changes)
    for action in ("pretrain", "evaluate"):
        assert main(["hsi", action, "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError):
        load_config(path)


def test_output_must_be_a_folder(tmp_path, capsys):
    path = write_config(tmp_path, output=str(tmp_path / "run.yaml"))  # the config file itself
    assert main(["hsi", "pretrain", "--config", str(path)]) == 2
    assert "config key 'output' must be a folder, not a file" in capsys.readouterr().err


def test_validate_config_accepts_the_defaults_and_a_later_pretrain_output(tmp_path):
    config = load_config(None)
    assert config == DEFAULTS
    config["output"] = str(tmp_path / "out")
    # written by pretrain later
    config["finetune"]["init"] = str(tmp_path / "out" / "pretrain.safetensors")
    assert validate_config(config) is config


def test_missing_files_are_named(tmp_path, capsys):
    assert main(["hsi", "pretrain", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no config file at" in capsys.readouterr().err
    path = write_config(
        tmp_path,
        data={
            **TINY["data"],
            "cube": str(tmp_path / "cube.mat"),
            "labels": str(tmp_path / "gt.mat"),
        },
    )
    assert main(["hsi", "pretrain", "--config", str(path)]) == 2
    assert f"data.cube: no file at {tmp_path / 'cube.mat'}" in capsys.readouterr().err
    path = write_config(tmp_path)
    assert main(["hsi", "finetune", "--config", str(path)]) == 2
    assert "no pretrained checkpoint at" in capsys.readouterr().err
    assert main(["hsi", "evaluate", "--config", str(path)]) == 2
    assert "no fine-tuned model at" in capsys.readouterr().err


def test_real_scene_missing_is_an_error_unless_fallback(
    tmp_path, capsys, no_mirrors, cache, monkeypatch
):
    import mae_nb.data.registry as registry

    monkeypatch.setattr(
        registry,
        "_download",
        lambda *a, **k: (_ for _ in ()).throw(registry.DataUnavailableError("offline (test)")),
    )
    path = write_config(tmp_path, data={**TINY["data"], "name": "salinas-a"})
    assert main(["hsi", "pretrain", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "salinas-a" in err and "data.fallback: true" in err


def test_pretrain_is_for_the_transformer(tmp_path, capsys):
    path = write_config(tmp_path, model={"kind": "cnn3d", "options": {}})
    assert main(["hsi", "pretrain", "--config", str(path)]) == 2
    assert "masked pretraining is for the spatial-spectral transformer" in capsys.readouterr().err


DDP_SCRIPT = """
import sys
from mae_nb.cli import main
for action in ("pretrain", "finetune"):
    code = main(["hsi", action, "--config", sys.argv[1]])
    if code:
        sys.exit(code)
"""


def test_torchrun_two_cpu_processes_then_evaluate(tmp_path, capsys):
    config = write_config(tmp_path)
    script = tmp_path / "pipeline.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(config),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    pre = json.loads((out / "pretrain_log.json").read_text())
    fin = json.loads((out / "finetune_log.json").read_text())
    assert (
        pre["world_size"] == fin["world_size"] == 2 and pre["backend"] == fin["backend"] == "gloo"
    )
    # each process saw half of the patches of the pretraining region (no test pixel in reach)
    assert pre["test_pixels_seen"] == 0 and pre["patches"] == pre["region_pixels"] < 576
    assert pre["batches_per_process"] == -(-(-(-pre["patches"] // 2)) // 64)
    # 50 % of the training labels, split over two processes of batch 32; 6 steps -> whole epochs
    assert fin["n_labels"] > 0 and fin["steps_per_process"] >= 6
    assert fin["init"].endswith("pretrain.safetensors")
    assert proc.stdout.count("wrote ") == 2  # rank 0 alone reports (and writes)
    assert sorted(p.name for p in out.iterdir()) == [
        "finetune.safetensors",
        "finetune_log.json",
        "pretrain.safetensors",
        "pretrain_log.json",
    ]
    # no pickle in what the command writes: safetensors with its config as JSON metadata
    assert all(is_safetensors(out / f"{a}.safetensors") for a in ("pretrain", "finetune"))
    # fine-tuning started from the pretrained encoder
    a, b = (
        load_checkpoint(out / "pretrain.safetensors"),
        load_checkpoint(out / "finetune.safetensors"),
    )
    assert set(b["model"]) - set(a["model"]) == {"head.weight", "head.bias"}
    torch.testing.assert_close(a["model"]["mask_token"], b["model"]["mask_token"])  # frozen, unused

    capsys.readouterr()
    assert main(["hsi", "evaluate", "--config", str(config)]) == 0
    ev = json.loads((out / "evaluation.json").read_text())
    assert (
        0 <= ev["oa"] <= 1
        and ev["subset"] == "test"
        and ev["model"] == "sst"
        and ev["fraction"] == 0.5
    )
    k = len(ev["per_class"])
    assert (
        np.array(ev["confusion"]).shape == (k, k)
        and np.array(ev["confusion"]).sum() == ev["n_pixels"]
    )
    pred = np.load(out / "classification_map.npy")
    assert pred.shape == (24, 24) and pred.min() >= 1 and pred.max() <= k
    assert "OA " in capsys.readouterr().out
    # outputs are never replaced without --overwrite
    assert main(["hsi", "evaluate", "--config", str(config)]) == 2
    assert "evaluation.json already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["hsi", "finetune", "--config", str(config)]) == 2
    assert "finetune.safetensors already exists" in capsys.readouterr().err
    # a randomly initialized baseline in one process, same config otherwise
    base = write_config(
        tmp_path,
        "vit.yaml",
        model={"kind": "vit", "options": {"embed_dim": 16, "depth": 1, "num_heads": 2}},
        finetune={**TINY["finetune"], "init": "random"},
    )
    assert main(["hsi", "finetune", "--config", str(base), "--overwrite"]) == 0
    assert json.loads((out / "finetune_log.json").read_text())["world_size"] == 1
    assert main(["hsi", "evaluate", "--config", str(base), "--overwrite"]) == 0
    assert json.loads((out / "evaluation.json").read_text())["model"] == "vit"


# ---------------------------------------------------------------------- the split and the leak


def test_pretraining_keeps_clear_of_the_test_region(tmp_path, capsys):
    from mae_nb.data.hsi import synthetic_hsi
    from mae_nb.finetune import pretraining_region, regions_sha256

    path = write_config(tmp_path)
    assert main(["hsi", "pretrain", "--config", str(path)]) == 0
    out = tmp_path / "out"
    log = json.loads((out / "pretrain_log.json").read_text())
    scene = synthetic_hsi(size=24, bands=16, seed=0)
    split = _default_split(scene)
    region = pretraining_region(split, 5)
    assert log["region"] == "train+val" and log["test_pixels_seen"] == 0
    assert log["patches"] == log["region_pixels"] == int(region.sum()) < 24 * 24
    assert log["split"]["regions_sha256"] == regions_sha256(split)
    assert set(log["split"]["missing_classes"]) == {"train", "val", "test"}
    saved = load_checkpoint(out / "pretrain.safetensors")["config"]
    assert saved["test_pixels_seen"] == 0 and saved["split"] == log["split"]
    assert "0 test pixels seen" in capsys.readouterr().out
    # fine-tuning with another split of the same scene refuses this pretraining
    other = write_config(tmp_path, "other.yaml", split={"grid": [3, 3]})
    assert main(["hsi", "finetune", "--config", str(other)]) == 2
    assert "for another split" in capsys.readouterr().err
    # pretrain.region: all is transductive: said at pretraining and at fine-tuning, recorded
    everything = write_config(tmp_path, "all.yaml", pretrain={**TINY["pretrain"], "region": "all"})
    assert main(["hsi", "pretrain", "--config", str(everything), "--overwrite"]) == 0
    assert "transductive" in capsys.readouterr().out
    log = json.loads((out / "pretrain_log.json").read_text())
    assert log["patches"] == 24 * 24 and log["test_pixels_seen"] == int((split.regions == 2).sum())
    assert main(["hsi", "finetune", "--config", str(everything), "--overwrite"]) == 0
    assert "scores of this fine-tuning are transductive" in capsys.readouterr().out
    fin = json.loads((out / "finetune_log.json").read_text())
    assert fin["pretraining_test_pixels_seen"] == log["test_pixels_seen"] > 0


def _default_split(scene):
    from mae_nb.data.hsi import spatial_split

    return spatial_split(scene.labels, 5, seed=0)


def _one_corner_class_scene(tmp_path):
    """A 30 x 30 scene (12 bands) whose class 3 is one 3 x 3 field: no split puts it in both
    train and test."""
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    labels = np.ones((30, 30), np.int64)
    labels[:, 15:] = 2
    labels[2:5, 2:5] = 3
    cube = rng.normal(0, 0.05, (30, 30, 12)) + labels[..., None] * np.linspace(0.1, 0.5, 12)
    savemat(tmp_path / "cube.mat", {"cube": cube.astype(np.float32)})
    savemat(tmp_path / "gt.mat", {"gt": labels})
    return {
        **TINY["data"],
        "name": "synthetic",
        "cube": str(tmp_path / "cube.mat"),
        "labels": str(tmp_path / "gt.mat"),
    }


def test_every_knob_the_split_error_suggests_is_in_the_config(tmp_path, capsys):
    data = _one_corner_class_scene(tmp_path)
    random_init = {**TINY["finetune"], "init": "random"}
    path = write_config(tmp_path, data=data, finetune=random_init)
    assert main(["hsi", "finetune", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no spatial split of this label map" in err and "never reach" in err
    for key in (
        "split.grid",
        "split.block_size",
        "data.patch_size",
        "split.buffer",
        "split.seed",
        "split.require_all_classes: false",
    ):
        assert key in err, key
    # every knob is accepted and reaches the split; then the missing class is reported
    knobs = {"grid": [6, 6], "buffer": 1, "seed": 2, "require_all_classes": False}
    path = write_config(tmp_path, data=data, finetune=random_init, split=knobs)
    with pytest.warns(UserWarning, match="classes missing per split"):
        assert main(["hsi", "finetune", "--config", str(path)]) == 0
        assert main(["hsi", "evaluate", "--config", str(path)]) == 0
    out = tmp_path / "out"
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["split"]["grid"] == [6, 6] and ev["split"]["buffer"] == 1 and ev["split"]["seed"] == 2
    assert ev["split"]["fractions"] == [0.6, 0.1, 0.3]
    lacking = ev["split"]["missing_classes"]
    assert "class 3" in lacking["train"] + lacking["test"]
    assert json.loads((out / "finetune_log.json").read_text())["split"] == ev["split"]
    # block_size in px instead of a grid
    sized = write_config(
        tmp_path, data=data, finetune=random_init, split={**knobs, "grid": "auto", "block_size": 10}
    )
    with pytest.warns(UserWarning, match="classes missing per split"):
        assert main(["hsi", "finetune", "--config", str(sized), "--overwrite"]) == 0
    assert json.loads((out / "finetune_log.json").read_text())["split"]["grid"] == [3, 3]
    huge = write_config(tmp_path, data=data, finetune=random_init, split={"block_size": 100})
    assert main(["hsi", "finetune", "--config", str(huge), "--overwrite"]) == 2
    assert "split.block_size 100 px makes one block" in capsys.readouterr().err



def test_the_hard_synthetic_preset_is_a_config_name(tmp_path):
    from mae_nb.cli.hsi import _scene

    data = {**TINY["data"], "name": "synthetic-hard", "synthetic_size": 32}
    config = validate_config(load_config(write_config(tmp_path, data=data)))
    scene = _scene(config, quiet=True)
    assert scene.source == "synthetic" and scene.n_classes > 8  # the hard preset's close classes
    wrong = write_config(tmp_path, "wrong.yaml", data={**data, "name": "synthetic-harder"})
    with pytest.raises(ConfigError, match="synthetic-hard"):
        validate_config(load_config(wrong))
