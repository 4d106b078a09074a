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
            {"data": {**TINY["data"], "split_fractions": [0.5, 0.5, 0.5]}},
            "'data.split_fractions' must be [train, val, test] shares",
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
    config["finetune"]["init"] = str(tmp_path / "out" / "pretrain.pt")  # written by pretrain
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
    # each process saw half of the 24 x 24 patches: ceil(288 / 64) batches per epoch
    assert pre["patches"] == 576 and pre["batches_per_process"] == 5
    # 50 % of the training labels, split over two processes of batch 32; 6 steps -> whole epochs
    assert fin["n_labels"] > 0 and fin["steps_per_process"] >= 6
    assert fin["init"].endswith("pretrain.pt")
    assert proc.stdout.count("wrote ") == 2  # rank 0 alone reports (and writes)
    assert sorted(p.name for p in out.iterdir()) == [
        "finetune.pt",
        "finetune_log.json",
        "pretrain.pt",
        "pretrain_log.json",
    ]
    # fine-tuning started from the pretrained encoder
    a, b = (
        torch.load(out / "pretrain.pt", weights_only=True),
        torch.load(out / "finetune.pt", weights_only=True),
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
    assert "finetune.pt already exists" in capsys.readouterr().err
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
