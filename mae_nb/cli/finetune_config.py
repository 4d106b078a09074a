"""The YAML config of ``mae-nb mae finetune``: its sections, defaults, and the checks of values.

``load_finetune_config(path)`` merges the file into :data:`FINETUNE_DEFAULTS` and checks the
whole config before any work starts (unknown keys with the known ones listed, types, ranges,
choices, that the image and the label raster are there); the rasters themselves (grid, class
values, bands against the checkpoint) are checked by ``mae-nb mae finetune`` next, still before
the first step. ``mae-nb mae config OUT.yaml --finetune`` writes the defaults.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mae_nb.cli.config import read_config, refuse
from mae_nb.errors import ConfigError

__all__ = [
    "FINETUNE_DEFAULTS",
    "default_finetune_config",
    "finetune_output_paths",
    "load_finetune_config",
    "validate_finetune_config",
]

#: The config's sections and their defaults; a config file overrides any of them.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "output": "runs/mae-finetune",
    "device": "auto",  # auto (cuda, else cpu), cpu, cuda
    "seed": 0,
    "data": {
        "image": None,  # a GeoTIFF, any band count
        "labels": None,  # a one-band label raster on the image's grid (0 / nodata: unlabelled)
        "bands": None,  # 1-based bands of the image, in the checkpoint's order (null: all)
        "classes": None,  # null: the values present; [1, 2, 3]; {1: water, 2: forest}
        "resample_labels": False,  # labels on another grid: nearest-neighbour onto the image's
        "tile_size": None,  # px, a multiple of the patch size (null: the model's input size)
        "min_fraction": 0.5,  # share of a patch its majority class must cover to label it
    },
    "model": {
        # a `mae-nb mae pretrain` model file, a course model (mae_tiny_course_rgb,
        # mae_tiny_course_6band), Meta's or Prithvi's registry names; null: the course model
        # for the image's band count
        "checkpoint": None,
        "mode": "full",  # probe, partial, full or scratch
        "last_blocks": 1,  # the blocks "partial" trains (with the final norm and the head)
    },
    "split": {
        "fractions": [0.6, 0.1, 0.3],  # train, val, test shares of the labelled pixels
        "block_tiles": 1,  # blocks of N x N tiles go whole to train, val or test
        "seed": 0,
        "require_all_classes": True,  # refuse a split with a class missing from train or test
    },
    "train": {
        "fraction": 1.0,  # share of each class's labelled training patches used
        "epochs": 20,
        "batch_size": 16,  # tiles per step and process
        "lr": 1.0e-3,
        "layer_decay": 0.75,  # lr x layer_decay ** (depth + 1 - layer), as in the MAE paper
        "weight_decay": 0.05,
        "threads": None,  # torch threads per process (null: torch's default)
    },
}

_ANY_TYPE = {"data.bands", "data.classes", "data.image", "data.labels", "model.checkpoint"}


def finetune_output_paths(config: dict) -> dict[str, Path]:
    """The files ``mae-nb mae finetune`` writes under ``output``."""
    out = Path(config["output"]).expanduser()
    return {
        "dir": out,
        "model": out / "model.safetensors",
        "config": out / "config.json",
        "metrics": out / "metrics.json",
        "map": out / "classes.tif",
    }


def load_finetune_config(path: str | Path | None) -> dict:
    """The defaults updated with the YAML file at ``path``, checked whole; relative image,
    label and checkpoint paths are taken from the config file's folder."""
    if path is not None and not Path(path).is_file():
        raise ConfigError(
            f"no config file at {path}; write one with: mae-nb mae config {path} --finetune"
        )
    config = read_config(path, FINETUNE_DEFAULTS, "mae", any_type=_ANY_TYPE)
    if path is not None:
        base = Path(path).resolve().parent
        d, m = config["data"], config["model"]
        for section, key in ((d, "image"), (d, "labels")):
            if isinstance(section[key], str):
                section[key] = _anchor(section[key], base)
        ckpt = m["checkpoint"]
        if isinstance(ckpt, str) and ("/" in ckpt or ckpt.endswith((".safetensors", ".pth"))):
            m["checkpoint"] = _anchor(ckpt, base)
    return validate_finetune_config(config)


def _anchor(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def _whole(value: Any, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_finetune_config(config: dict) -> dict:
    """Check every value of a merged config and return it; a ConfigError names the first
    key that is wrong."""
    from mae_nb.finetune import FINETUNE_MODES

    if not _whole(config["seed"], 0):
        refuse("seed", config["seed"], "a whole number of at least 0")
    if not isinstance(config["output"], str) or not config["output"].strip():
        refuse("output", config["output"], "a folder path")
    if Path(config["output"]).expanduser().is_file():
        refuse("output", config["output"], "a folder, not a file")
    if config["device"] not in ("auto", "cpu", "cuda"):
        refuse("device", config["device"], "auto, cpu or cuda")
    d, m, s, t = config["data"], config["model"], config["split"], config["train"]
    for key in ("image", "labels"):
        value = d[key]
        if value is None:
            what = (
                "the GeoTIFF to classify"
                if key == "image"
                else "the label raster (one band, 0 = unlabelled) on the image's grid"
            )
            raise ConfigError(f"data.{key} is not set: give {what}")
        if not isinstance(value, str):
            refuse(f"data.{key}", value, "a file path")
        if not Path(value).expanduser().is_file():
            raise ConfigError(f"data.{key}: no file at {value}")
    bands = d["bands"]
    if bands is not None and (
        not isinstance(bands, list) or not bands or not all(_whole(b) for b in bands)
    ):
        refuse("data.bands", bands, "a list of 1-based band numbers like [3, 2, 1], or null")
    if d["classes"] is not None and not isinstance(d["classes"], (list, dict)):
        refuse("data.classes", d["classes"], "a list of values, a mapping value: name, or null")
    if d["tile_size"] is not None and not _whole(d["tile_size"]):
        refuse("data.tile_size", d["tile_size"], "a whole number of pixels, or null")
    if not _number(d["min_fraction"]) or not 0 < d["min_fraction"] <= 1:
        refuse("data.min_fraction", d["min_fraction"], "a share in (0, 1]")
    ckpt = m["checkpoint"]
    if ckpt is not None and (not isinstance(ckpt, str) or not ckpt.strip()):
        refuse("model.checkpoint", ckpt, "a model file, a registry name, or null")
    if m["mode"] not in FINETUNE_MODES:
        refuse("model.mode", m["mode"], ", ".join(FINETUNE_MODES))
    if not _whole(m["last_blocks"]):
        refuse("model.last_blocks", m["last_blocks"], "a whole number of at least 1")
    fr = s["fractions"]
    if (
        not isinstance(fr, list)
        or len(fr) != 3
        or not all(_number(f) and f >= 0 for f in fr)
        or fr[0] <= 0
        or fr[2] <= 0
        or abs(sum(fr) - 1) > 1e-6
    ):
        refuse("split.fractions", fr, "[train, val, test] >= 0 summing to 1, train and test > 0")
    if not _whole(s["block_tiles"]):
        refuse("split.block_tiles", s["block_tiles"], "a whole number of tiles, at least 1")
    if not _whole(s["seed"], 0):
        refuse("split.seed", s["seed"], "a whole number of at least 0")
    if not 0 < t["fraction"] <= 1:
        refuse("train.fraction", t["fraction"], "a share in (0, 1], e.g. 0.1 for 10 %")
    for key in ("epochs", "batch_size"):
        if not _whole(t[key]):
            refuse(f"train.{key}", t[key], "a whole number of at least 1")
    if t["threads"] is not None and not _whole(t["threads"]):
        refuse("train.threads", t["threads"], "a whole number of at least 1, or null")
    if not t["lr"] > 0:
        refuse("train.lr", t["lr"], "a number above 0")
    if not 0 < t["layer_decay"] <= 1:
        refuse("train.layer_decay", t["layer_decay"], "in (0, 1] (1: one learning rate)")
    if not t["weight_decay"] >= 0:
        refuse("train.weight_decay", t["weight_decay"], "a number of at least 0")
    return config


def default_finetune_config() -> dict:
    """A fresh copy of :data:`FINETUNE_DEFAULTS`."""
    return copy.deepcopy(FINETUNE_DEFAULTS)
