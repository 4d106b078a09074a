"""Tests of ``mae-nb mae finetune``: a GeoTIFF and its label raster -> model, metrics, a map on
the image's grid; every bad input refused before the first step; two CPU processes (torchrun).

Small runs: synthetic scenes written here (128-256 px), the course's RGB MAE (64 px tiles) or a
one-block MAE of any band count saved the way the course saves models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from mae_nb import finetune
from mae_nb.cli import main
from mae_nb.data import synthetic_scene, write_raster
from mae_nb.data.synthetic import CLASS_NAMES

pytestmark = pytest.mark.usefixtures("one_thread")

OUTPUTS = ["classes.tif", "config.json", "metrics.json", "model.safetensors"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """The synthetic scene as 3 bands (256 px) and 4 bands (128 px), with their label rasters,
    and a one-block 4-band MAE file (32 px input, patch 8)."""
    import torch

    from mae_nb.models.mae import create_mae
    from mae_nb.train import save_checkpoint

    d = tmp_path_factory.mktemp("ft")
    synthetic_scene(256, 256, 3, seed=0).to_geotiff(d / "rgb.tif", d / "rgb_labels.tif")
    synthetic_scene(128, 128, 4, seed=1).to_geotiff(d / "four.tif", d / "four_labels.tif")
    torch.manual_seed(0)
    small = dict(embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
                 decoder_num_heads=2)  # fmt: skip
    mae = create_mae("mae_vit_tiny_patch8", img_size=32, in_chans=4, **small)
    save_checkpoint(d / "mae4.safetensors", mae, config=dict(mae.pretrained_cfg))
    return d


def _config(tmp_path, scenes, output="out", **sections) -> dict:
    config = {
        "output": str(tmp_path / output),
        "device": "cpu",
        "seed": 0,
        "data": {
            "image": str(scenes / "rgb.tif"),
            "labels": str(scenes / "rgb_labels.tif"),
            "classes": dict(enumerate(CLASS_NAMES, start=1)),
        },
        "model": {"checkpoint": "mae_tiny_course_rgb", "mode": "full"},
        "split": {"fractions": [0.6, 0.1, 0.3], "block_tiles": 1, "seed": 0},
        "train": {"epochs": 5, "batch_size": 4, "lr": 1.0e-3, "layer_decay": 0.75},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(name, {}).update(values)
        else:
            config[name] = values
    return config


def write_config(tmp_path, scenes, name="ft.yaml", **sections):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(_config(tmp_path, scenes, **sections)))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, scenes):
    """One fine-tuning of the course RGB MAE on the 3-band scene: (config path, output folder)."""
    tmp = tmp_path_factory.mktemp("run")
    config = write_config(tmp, scenes)
    assert main(["mae", "finetune", "--config", str(config)]) == 0
    return config, tmp / "out"


@pytest.fixture
def no_training(monkeypatch):
    """Any training fails the test: bad inputs must be refused before it starts."""

    def refuse(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(finetune, "train_classifier", refuse)


def _refused(config, capsys) -> str:
    assert main(["mae", "finetune", "--config", str(config)]) == 2
    return capsys.readouterr().err


# --------------------------------------------------------------------------- the happy path


def test_finetune_writes_model_metrics_and_a_map_on_the_image_grid(run, scenes):
    from mae_nb.pretrained import load_mae

    _, out = run
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["macro_f1"] <= 1 and 0 <= metrics["oa"] <= 1
    assert metrics["oa"] > metrics["majority_oa"]  # fine-tuning beats the constant answer
    assert metrics["n_patches"] > 0 and metrics["split"]["tiles"]["test"] > 0
    assert metrics["mode"] == "full" and metrics["world_size"] == 1
    cm = np.asarray(metrics["confusion"])
    assert cm.shape == (8, 8) and cm.sum() == metrics["n_patches"]
    assert metrics["oa"] == pytest.approx(np.trace(cm) / cm.sum())
    with rasterio.open(scenes / "rgb.tif") as img, rasterio.open(out / "classes.tif") as m:
        assert m.crs == img.crs and m.transform == img.transform and m.shape == img.shape
        values = m.read(1)
        names = json.loads(m.tags()["classes"])
    assert set(np.unique(values)) <= set(range(0, 9)) and (values > 0).mean() > 0.99
    assert names == {str(k): v for k, v in enumerate(CLASS_NAMES, start=1)}
    with rasterio.open(scenes / "rgb_labels.tif") as lab:
        truth = lab.read(1)
    assert (values == truth).mean() > metrics["majority_oa"]  # the map follows the land cover
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["classifier"]["class_names"] == list(CLASS_NAMES)
    assert saved["config"]["model"]["checkpoint"] == "mae_tiny_course_rgb"
    # the classifier has no decoder: asking it for a reconstruction is refused, saying why
    with pytest.raises(Exception, match="no decoder weights.*fine-tuned classifier"):
        load_mae(out / "model.safetensors")


def test_a_reconstruction_from_the_fine_tuned_encoder_only_file_is_refused(
    run, scenes, tmp_path, capsys
):
    _, out = run
    code = main(
        ["reconstruct", str(scenes / "rgb.tif"), str(tmp_path / "r.tif"), "--checkpoint",
         str(out / "model.safetensors")]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "no decoder weights" in err and "fine-tuned classifier (it has head.weight)" in err
    assert not (tmp_path / "r.tif").exists()


def test_an_output_folder_holding_another_run(run, capsys, no_training):
    config, out = run
    before = (out / "metrics.json").read_bytes()
    err = _refused(config, capsys)
    assert "already exists; pass --overwrite" in err
    assert (out / "metrics.json").read_bytes() == before


def test_any_band_count_probe_with_a_course_format_file(tmp_path, scenes):
    config = write_config(
        tmp_path, scenes,
        data={"image": str(scenes / "four.tif"), "labels": str(scenes / "four_labels.tif"),
              "classes": None, "tile_size": 32, "min_fraction": 0.2},
        model={"checkpoint": str(scenes / "mae4.safetensors"), "mode": "probe"},
        train={"epochs": 2},
    )  # fmt: skip
    assert main(["mae", "finetune", "--config", str(config)]) == 0
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "probe" and 0 <= metrics["oa"] <= 1
    with rasterio.open(scenes / "four.tif") as img, rasterio.open(out / "classes.tif") as m:
        assert m.crs == img.crs and m.transform == img.transform
    assert main(["mae", "finetune", "--config", str(config), "--overwrite"]) == 0


def test_tiles_smaller_than_the_models_input(tmp_path, scenes):
    config = write_config(
        tmp_path, scenes, data={"tile_size": 32}, model={"mode": "probe"}, train={"epochs": 1}
    )
    assert main(["mae", "finetune", "--config", str(config)]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert sum(metrics["split"]["tiles"].values()) == (256 // 32) ** 2
    assert metrics["split"]["block_px"] == 32
    with rasterio.open(tmp_path / "out" / "classes.tif") as m:
        assert (m.read(1) > 0).mean() > 0.99


def test_prithvi_picks_its_six_bands_by_name_and_refuses_them_out_of_order(
    tmp_path, scenes, capsys
):
    """A random-weight file in Prithvi's published layout (32 px, patch 8, six HLS bands)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from prithvi_files import write_prithvi

    pfile = write_prithvi(tmp_path / "Prithvi_tiny.pt", frames=1)
    synthetic_scene(128, 128, 6, seed=1).to_geotiff(tmp_path / "six.tif", tmp_path / "six_l.tif")
    data = {"image": str(tmp_path / "six.tif"), "labels": str(tmp_path / "six_l.tif"),
            "classes": None, "min_fraction": 0.2}  # fmt: skip
    config = write_config(
        tmp_path, scenes, data={**data, "bands": [3, 2, 1, 4, 5, 6]},
        model={"checkpoint": str(pfile), "mode": "partial"}, train={"epochs": 1},
    )  # fmt: skip
    err = _refused(config, capsys)
    assert "takes 6 bands, in this order: blue, green, red, narrow NIR, SWIR1, SWIR2" in err
    assert "bands [3, 2, 1, 4, 5, 6] of six.tif are red, green, blue" in err
    assert "set data.bands: [1, 2, 3, 4, 5, 6]" in err
    config = write_config(
        tmp_path, scenes, data=data, model={"checkpoint": str(pfile), "mode": "partial"},
        train={"epochs": 1},
    )  # fmt: skip
    assert main(["mae", "finetune", "--config", str(config)]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["mode"] == "partial" and 0 <= metrics["macro_f1"] <= 1


def test_the_documented_example_runs_on_the_synthetic_scene(tmp_path, scenes):
    example = Path(__file__).parents[1] / "docs" / "finetune_example.yaml"
    config = yaml.safe_load(example.read_text())
    for name in ("scene.tif", "scene_labels.tif"):  # what `mae-nb data synth` writes
        (tmp_path / name).symlink_to(scenes / name.replace("scene", "rgb"))
    config.update(output=str(tmp_path / "out"), device="cpu")
    config["train"]["epochs"] = 2
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(config))  # relative paths: this folder
    assert main(["mae", "finetune", "--config", str(tmp_path / "ft.yaml")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == OUTPUTS


# --------------------------------------------------------------------------- bad inputs


def test_a_missing_config_file_is_named(tmp_path, capsys):
    err = _refused(tmp_path / "nope.yaml", capsys)
    assert f"no config file at {tmp_path / 'nope.yaml'}" in err
    assert "mae-nb mae config" in err and "--finetune" in err


@pytest.mark.parametrize(
    "sections, said",
    [
        (
            {"train": {"epocs": 3}},
            "unknown config key 'train.epocs'; known keys in train: fraction",
        ),
        ({"model": {"mode": "linear"}}, "'model.mode' must be probe, partial, full, scratch"),
        ({"train": {"fraction": 0}}, "'train.fraction' must be a share in (0, 1]"),
        ({"split": {"fractions": [0.5, 0.5, 0]}}, "'split.fractions' must be [train, val, test]"),
        ({"data": {"labels": "nope.tif"}}, "data.labels: no file at /"),
    ],
)
def test_bad_config_values_are_named(tmp_path, scenes, capsys, no_training, sections, said):
    err = _refused(write_config(tmp_path, scenes, **sections), capsys)
    assert said in err


def test_the_default_finetune_config_is_written_and_loads(tmp_path, capsys):
    from mae_nb.cli.config import read_config
    from mae_nb.cli.finetune_config import FINETUNE_DEFAULTS

    path = tmp_path / "ft.yaml"
    assert main(["mae", "config", str(path), "--finetune"]) == 0
    assert "mae-nb mae finetune --config" in path.read_text()
    assert read_config(path, FINETUNE_DEFAULTS, "mae") == FINETUNE_DEFAULTS


def test_a_label_raster_on_another_grid_is_refused_unless_resampled(
    tmp_path, scenes, capsys, no_training
):
    from rasterio.transform import from_origin

    with rasterio.open(scenes / "rgb_labels.tif") as src:
        lab, crs, t = src.read(1), src.crs, src.transform
    coarse = tmp_path / "coarse.tif"
    write_raster(coarse, lab[::2, ::2], crs=crs, transform=from_origin(t.c, t.f, 2 * t.a, 2 * t.a))
    config = write_config(tmp_path, scenes, data={"labels": str(coarse)})
    err = _refused(config, capsys)
    assert "is on another grid than the image" in err
    assert "transform (pixel 20 x -20" in err and "shape 128 x 128 px (labels) vs 256" in err
    assert "data.resample_labels: true" in err
    # asked for, nearest-neighbour resampling gets through every check to the training
    config = write_config(tmp_path, scenes, data={"labels": str(coarse), "resample_labels": True})
    with pytest.raises(AssertionError, match="training started"):
        main(["mae", "finetune", "--config", str(config)])


def test_label_values_outside_the_class_list(tmp_path, scenes, capsys, no_training):
    config = write_config(
        tmp_path, scenes, data={"classes": {1: "water", 2: "forest", 3: "young crop"}}
    )
    err = _refused(config, capsys)
    assert "holds values outside the class list: 4 (" in err
    assert "expected 0 or nodata (unlabelled) and the classes 1 (water), 2 (forest)" in err


def test_a_class_with_no_training_patch(tmp_path, scenes, capsys, no_training):
    with rasterio.open(scenes / "rgb_labels.tif") as src:
        lab, profile = src.read(1), src.profile
    lab = lab.copy()
    lab[::4, ::4] = 9  # everywhere, but never the majority of an 8 x 8 px patch
    salted = tmp_path / "salted.tif"
    with rasterio.open(salted, "w", **profile) as dst:
        dst.write(lab, 1)
    classes = {**dict(enumerate(CLASS_NAMES, start=1)), 9: "speckle"}
    config = write_config(tmp_path, scenes, data={"labels": str(salted), "classes": classes})
    err = _refused(config, capsys)
    assert "no training patch for class " in err and "9 (speckle, raster value 9)" in err
    assert "at train.fraction 1:" in err and "'speckle': 0" in err
    assert "data.min_fraction" in err


@pytest.mark.parametrize(
    "data, checkpoint, said",
    [
        (  # the right bands in the wrong order
            {"bands": [3, 2, 1]},
            "mae_tiny_course_rgb",
            "takes 3 bands, in this order: red, green, blue; bands [3, 2, 1] of rgb.tif are "
            "blue, green, red: set data.bands: [1, 2, 3]",
        ),
        (  # too few bands for the checkpoint
            {"image": "four.tif", "labels": "four_labels.tif", "classes": None},
            "mae_tiny_course_6band",
            "takes 6 bands, in this order: blue, green, red, nir, swir1, swir2; four.tif has 4",
        ),
    ],
)
def test_a_checkpoint_whose_bands_do_not_fit_names_the_bands_expected(
    tmp_path, scenes, capsys, no_training, data, checkpoint, said
):
    data = {k: str(scenes / v) if k in ("image", "labels") else v for k, v in data.items()}
    config = write_config(tmp_path, scenes, data=data, model={"checkpoint": checkpoint})
    assert said in _refused(config, capsys)


def test_fine_tuning_from_a_fine_tuned_classifier_is_refused(run, tmp_path, scenes, capsys):
    _, out = run
    config = write_config(tmp_path, scenes, model={"checkpoint": str(out / "model.safetensors")})
    err = _refused(config, capsys)
    assert "is a fine-tuned classifier (an encoder with a head, no decoder)" in err


# --------------------------------------------------------------------------- torchrun


def test_torchrun_two_cpu_processes_write_one_run(tmp_path, scenes):
    config = write_config(tmp_path, scenes, train={"epochs": 2})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mae_nb", "mae", "finetune", "--config", str(config)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["backend"] == "gloo"
    assert proc.stdout.count("test: OA") == 1 and "x 2 process(es) (gloo)" in proc.stdout
