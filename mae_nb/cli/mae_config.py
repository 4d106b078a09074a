"""The YAML config of ``mae-nb mae``: its sections, defaults, and the checks of every value.

``load_mae_config(path)`` merges the file into :data:`MAE_DEFAULTS` and checks the whole
config before any work starts (unknown keys with the known ones listed, types, ranges,
choices, the model options); the inputs themselves (files, bands, sizes, nodata) are checked by
:func:`mae_nb.pretraining.open_sources`, still before the first step.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mae_nb.cli.config import config_value, read_config, refuse
from mae_nb.errors import ConfigError, MaeNbError

__all__ = ["MAE_DEFAULTS", "default_mae_config", "load_mae_config", "mae_output_paths"]

#: The config's sections and their defaults; a config file overrides any of them.
MAE_DEFAULTS: dict[str, Any] = {
    "output": "runs/mae",
    "device": "auto",  # auto (cuda, else cpu), cpu, cuda
    "seed": 0,
    "model": {
        "arch": "mae_vit_tiny_patch8",  # any mae_nb.models.mae preset
        "options": {},  # constructor overrides, e.g. decoder_depth: 4, norm_pix_loss: true
    },
    "data": {
        # GeoTIFF paths, folders of GeoTIFFs, {registry: landsat7-rgb}, {path: x.tif, bands:
        # [3, 2, 1]}, {synthetic: {seeds: [1, 2, 3], sizes: [256], bands: 3}}
        "inputs": [],
        "bands": None,  # 1-based bands of every file input without its own (null: all)
        "crop_size": 64,
        "min_valid": 1.0,  # share of a crop's pixels that must be valid
        "holdout": 0.25,  # right share of every real scene's columns never read in training
        "normalization": "dataset",  # dataset (one mean/std) or scene (each source its own)
        "augment": True,  # random 90-degree rotations and flips
    },
    "train": {
        "steps": 2000,
        "batch_size": 64,  # per process
        "lr": 1.5e-3,
        "min_lr": 1.0e-5,
        "warmup_steps": 100,
        "weight_decay": 0.05,
        "mask_ratio": 0.75,  # or [low, high]: a ratio drawn per batch
        "grad_clip": 1.0,
        "precision": "fp32",  # fp32 or bf16 (autocast)
        "log_every": 10,
        "checkpoint_every": 500,
        "threads": None,  # torch threads per process (null: torch's default)
        "save_dtype": "float32",  # float16 halves the model file
    },
    "evaluate": {
        "ratios": [0.25, 0.5, 0.75],
        "crops": 8,  # disjoint crops per real scene, in its held-out region
        "synthetic_seeds": [1000, 1001],  # unseen synthetic scenes (for synthetic inputs)
        "synthetic_size": 256,
        "seed": 0,
    },
}

_FREE = {("model", "options")}
_ANY_TYPE = {"train.mask_ratio", "data.bands", "data.inputs"}
_POSITIVE_INTEGERS = (
    "data.crop_size",
    "train.steps",
    "train.batch_size",
    "train.log_every",
    "train.checkpoint_every",
    "train.threads",
    "evaluate.crops",
    "evaluate.synthetic_size",
)
_INPUT_KEYS = {"path", "registry", "synthetic", "bands"}
_SYNTHETIC_KEYS = {"seeds", "sizes", "bands", "select"}


def default_mae_config() -> dict:
    """A fresh copy of :data:`MAE_DEFAULTS`."""
    return copy.deepcopy(MAE_DEFAULTS)


def load_mae_config(path: str | Path | None) -> dict:
    """The defaults updated with the YAML file at ``path``, checked whole; relative input
    paths are taken from the config file's folder."""
    config = read_config(path, MAE_DEFAULTS, "mae", free=_FREE, any_type=_ANY_TYPE)
    if path is not None:
        base = Path(path).resolve().parent
        config["data"]["inputs"] = [_anchor(e, base) for e in config["data"]["inputs"] or []]
    return validate_mae_config(config)


def _anchor(entry: Any, base: Path) -> Any:
    if isinstance(entry, str):
        return str(base / Path(entry).expanduser()) if not Path(entry).is_absolute() else entry
    if isinstance(entry, dict) and isinstance(entry.get("path"), str):
        return {**entry, "path": _anchor(entry["path"], base)}
    return entry


def _whole(value: Any, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_bands(key: str, bands: Any) -> None:
    if bands is not None and (
        not isinstance(bands, list) or not bands or not all(_whole(b) for b in bands)
    ):
        refuse(key, bands, "a list of 1-based band numbers like [3, 2, 1], or null")


def _check_inputs(inputs: Any) -> None:
    if not isinstance(inputs, list) or not inputs:
        raise ConfigError(
            "data.inputs names no input: list GeoTIFF files or folders, registry samples "
            "({registry: landsat7-rgb}) or synthetic scenes ({synthetic: {seeds: [1, 2]}})"
        )
    for k, entry in enumerate(inputs):
        key = f"data.inputs[{k}]"
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or not (set(entry) & {"path", "registry", "synthetic"}):
            refuse(key, entry, "a path, {path: ...}, {registry: NAME} or {synthetic: {...}}")
        unknown = set(entry) - _INPUT_KEYS
        if unknown:
            raise ConfigError(
                f"unknown key(s) {sorted(unknown)} in {key}; known: "
                + ", ".join(sorted(_INPUT_KEYS))
            )
        if len(set(entry) & {"path", "registry", "synthetic"}) > 1:
            refuse(key, entry, "one of path, registry or synthetic")
        _check_bands(f"{key}.bands", entry.get("bands"))
        if "path" in entry and not Path(str(entry["path"])).expanduser().exists():
            raise ConfigError(f"{key}: no file or folder at {entry['path']}")
        if "registry" in entry:
            from mae_nb.data import registry

            try:
                dataset = registry.get(str(entry["registry"]))
            except MaeNbError as exc:
                raise ConfigError(f"{key}: {exc}") from None
            if dataset.kind != "geotiff":
                refuse(f"{key}.registry", entry["registry"], "a single-file GeoTIFF sample")
        if "synthetic" in entry:
            spec = entry["synthetic"] or {}
            if not isinstance(spec, dict) or set(spec) - _SYNTHETIC_KEYS:
                refuse(
                    f"{key}.synthetic", spec, f"a mapping of {', '.join(sorted(_SYNTHETIC_KEYS))}"
                )
            seeds, sizes = spec.get("seeds", [0]), spec.get("sizes", [256])
            if not isinstance(seeds, list) or not seeds or not all(_whole(s, 0) for s in seeds):
                refuse(f"{key}.synthetic.seeds", seeds, "a list of whole numbers >= 0")
            if not isinstance(sizes, list) or not sizes or not all(_whole(s, 16) for s in sizes):
                refuse(f"{key}.synthetic.sizes", sizes, "a list of sizes in px (>= 16)")
            if not _whole(spec.get("bands", 3)):
                refuse(f"{key}.synthetic.bands", spec.get("bands"), "a whole number >= 1")
            _check_bands(f"{key}.synthetic.select", spec.get("select"))


def validate_mae_config(config: dict) -> dict:
    """Check every value of a merged config and return it; a ConfigError names the first
    key that is wrong."""
    from mae_nb.models.mae import ARCHS, create_mae

    for key in _POSITIVE_INTEGERS:
        value = config_value(config, key)
        if value is None and config_value(MAE_DEFAULTS, key) is None:
            continue
        if not _whole(value):
            refuse(key, value, "a whole number of at least 1")
    if not _whole(config["seed"], 0) or not _whole(config["evaluate"]["seed"], 0):
        refuse("seed", config["seed"], "a whole number of at least 0")
    if not isinstance(config["output"], str) or not config["output"].strip():
        refuse("output", config["output"], "a folder path")
    if Path(config["output"]).expanduser().is_file():
        refuse("output", config["output"], "a folder, not a file")
    if config["device"] not in ("auto", "cpu", "cuda"):
        refuse("device", config["device"], "auto, cpu or cuda")
    d, t, e = config["data"], config["train"], config["evaluate"]
    _check_inputs(d["inputs"])
    _check_bands("data.bands", d["bands"])
    if not 0 < d["min_valid"] <= 1:
        refuse("data.min_valid", d["min_valid"], "a share in (0, 1]")
    if not 0 <= d["holdout"] < 1:
        refuse("data.holdout", d["holdout"], "a share of the columns in [0, 1), e.g. 0.25")
    if d["normalization"] not in ("dataset", "scene"):
        refuse("data.normalization", d["normalization"], "dataset or scene")
    for key in ("lr", "weight_decay", "min_lr", "grad_clip"):
        if t[key] is not None and not t[key] >= 0:
            refuse(f"train.{key}", t[key], "a number of at least 0")
    if not t["lr"] > 0:
        refuse("train.lr", t["lr"], "a number above 0")
    if not _whole(t["warmup_steps"], 0):
        refuse("train.warmup_steps", t["warmup_steps"], "a whole number of at least 0")
    ratio = t["mask_ratio"]
    ok_number = isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0 < ratio < 1
    ok_range = (
        isinstance(ratio, list)
        and len(ratio) == 2
        and all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ratio)
        and 0 < ratio[0] <= ratio[1] < 1
    )
    if not (ok_number or ok_range):
        refuse("train.mask_ratio", ratio, "in (0, 1), e.g. 0.75, or a range [low, high]")
    if t["precision"] not in ("fp32", "bf16"):
        refuse("train.precision", t["precision"], "fp32 or bf16")
    if t["save_dtype"] not in ("float32", "float16"):
        refuse("train.save_dtype", t["save_dtype"], "float32 or float16")
    ratios = e["ratios"]
    if not ratios or not all(isinstance(r, (int, float)) and 0 < r < 1 for r in ratios):
        refuse("evaluate.ratios", ratios, "a list of mask ratios in (0, 1)")
    if not all(_whole(s, 0) for s in e["synthetic_seeds"]):
        refuse("evaluate.synthetic_seeds", e["synthetic_seeds"], "a list of whole numbers >= 0")
    if e["synthetic_size"] < d["crop_size"]:  # the unseen scenes must hold a crop
        refuse(
            "evaluate.synthetic_size",
            e["synthetic_size"],
            f"at least data.crop_size ({d['crop_size']})",
        )
    arch = config["model"]["arch"]
    if arch not in ARCHS:
        raise ConfigError(
            f"model.arch {arch!r} is unknown; choose one of {', '.join(sorted(ARCHS))}"
        )
    options = config["model"]["options"]
    for key in ("in_chans", "img_size"):
        if key in options:
            raise ConfigError(
                f"model.options.{key} is set by the data (bands, data.crop_size); remove it"
            )
    import torch

    for img_size in (None, d["crop_size"]):  # the preset's own size first: its patch size
        try:
            with torch.device("meta"):
                size = {} if img_size is None else {"img_size": img_size}
                model = create_mae(arch, in_chans=3, **size, **options)
        except (MaeNbError, TypeError, ValueError) as exc:
            raise ConfigError(f"model.options do not make a {arch} model: {exc}") from None
        if d["crop_size"] % model.patch_size:
            refuse(
                "data.crop_size", d["crop_size"], f"a multiple of the patch size {model.patch_size}"
            )
    return config


def mae_output_paths(config: dict) -> dict[str, Path]:
    """The files ``mae-nb mae`` writes under ``output``."""
    out = Path(config["output"]).expanduser()
    return {
        "dir": out,
        "model": out / "model.safetensors",
        "state": out / "state.safetensors",
        "log_csv": out / "train_log.csv",
        "log_json": out / "train_log.json",
        "config": out / "config.json",
        "evaluation": out / "evaluation.json",
    }
