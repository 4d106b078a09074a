"""The YAML config of ``mae-nb hsi``: its sections, defaults, and the checks of every value.

``load_config(path)`` merges the file into :data:`DEFAULTS` and checks the *whole* config before
any work starts: unknown keys (with the known ones listed), types, ranges, choices, the files it
names and the model options, whatever action will run. Every problem is a
:class:`~mae_nb.errors.ConfigError` that names the key (``finetune.fraction``), so a bad value in
the ``finetune`` section stops ``mae-nb hsi pretrain`` at once rather than after pretraining.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

from mae_nb.cli.config import config_value as _get
from mae_nb.cli.config import read_config
from mae_nb.cli.config import refuse as _refuse
from mae_nb.errors import ConfigError

__all__ = [
    "DEFAULTS",
    "PRETRAIN_REGIONS",
    "default_config",
    "load_config",
    "output_paths",
    "validate_config",
]

#: The config's sections and their defaults; a config file overrides any of them.
DEFAULTS: dict[str, Any] = {
    "output": "runs/hsi",
    "device": "auto",  # auto (cuda, else cpu), cpu, cuda
    "data": {
        "name": "salinas-a",  # a registry scene (mae-nb data list), "synthetic" or "synthetic-hard"
        "cube": None,  # or your own scene: a cube .mat (H, W, B) and a label .mat (H, W)
        "labels": None,
        "cube_key": None,
        "labels_key": None,
        "fallback": False,  # run on the synthetic scene when the real one is not here
        "synthetic_size": 64,
        "synthetic_bands": 64,
        "synthetic_seed": 0,
        "patch_size": 5,
    },
    "split": {  # spatially disjoint train/val/test blocks (mae_nb.data.hsi.spatial_split)
        "fractions": [0.6, 0.1, 0.3],  # target shares of the labelled pixels: train, val, test
        "seed": 0,
        "grid": "auto",  # "auto", or [rows, cols] of blocks, e.g. [8, 8] (finer: more blocks)
        "block_size": None,  # or square blocks of about this many px (instead of grid)
        "buffer": None,  # px left out around the training region; None: patch_size // 2
        "require_all_classes": True,  # false: go on when a class misses a split (reported)
    },
    "model": {
        "kind": "sst",  # sst, sst-shared-embed, sst-joint-attention, vit, cnn3d
        "options": {"embed_dim": 32, "depth": 2, "num_heads": 2, "band_block_size": 16},
    },
    "pretrain": {
        "epochs": 5,
        "batch_size": 64,
        "lr": 1.0e-3,
        "weight_decay": 0.05,
        "mask_ratio": 0.7,
        "max_pixels": None,  # a seeded random subset of the pixels, or all
        "decoder_dim": 32,
        "decoder_depth": 1,
        "seed": 0,
        "region": "train+val",  # the split's train/val blocks clear of the test region, or "all"
    },
    "finetune": {
        "init": "pretrain",  # pretrain (OUTPUT/pretrain.safetensors), random, or a checkpoint path
        "fraction": 1.0,  # share of each class's training labels
        "steps": 100,
        "batch_size": 32,
        "lr": 1.0e-3,
        "weight_decay": 0.01,
        "seed": 0,
    },
    "evaluate": {
        "subset": "test",
        "batch_size": 256,
        "full_map": True,
    },
}

#: Sections whose keys are free (checked against the model's constructor instead).
_FREE = {("model", "options")}

#: Keys that must be whole numbers of at least 1 (``None`` allowed where the default is None).
_POSITIVE_INTEGERS = (
    "data.synthetic_size",
    "data.synthetic_bands",
    "data.patch_size",
    "split.block_size",
    "pretrain.epochs",
    "pretrain.batch_size",
    "pretrain.max_pixels",
    "pretrain.decoder_dim",
    "finetune.steps",
    "finetune.batch_size",
    "evaluate.batch_size",
)
_SEEDS = ("data.synthetic_seed", "split.seed", "pretrain.seed", "finetune.seed")

#: Keys whose value may be of more than one type (checked by :func:`validate_config`).
_ANY_TYPE = {"split.grid"}

#: Keys of earlier versions of the config and where they went.
_MOVED = {"data.split_fractions": "split.fractions", "data.split_seed": "split.seed"}

#: Where :func:`mae_nb.finetune.pretraining_region` may pretrain ("all": transductive).
PRETRAIN_REGIONS = ("train+val", "all")


def default_config() -> dict:
    """A fresh copy of :data:`DEFAULTS`."""
    return copy.deepcopy(DEFAULTS)


def load_config(path: str | Path | None) -> dict:
    """The defaults updated with the YAML file at ``path`` (the defaults for ``None``), checked
    whole by :func:`validate_config`."""
    config = read_config(path, DEFAULTS, "hsi", free=_FREE, any_type=_ANY_TYPE, moved=_MOVED)
    return validate_config(config)


def validate_config(config: dict) -> dict:
    """Check every value of a merged config (all sections, whatever the action) and return it.

    Raises :class:`~mae_nb.errors.ConfigError` naming the first key that is wrong: a whole
    number or a share out of range, a missing value, an unknown choice (device, data.name,
    model.kind, evaluate.subset), a file that is not there (data.cube, data.labels, a
    checkpoint path in finetune.init), or a model option the model does not take.
    """
    from mae_nb.data.hsi import HSI_DATASETS, SPLIT_NAMES
    from mae_nb.models.baselines import MODEL_KINDS

    for key in _POSITIVE_INTEGERS:
        value = _get(config, key)
        if value is None and _get(DEFAULTS, key) is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            _refuse(key, value, "a whole number of at least 1")
    for key in _SEEDS:
        value = _get(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            _refuse(key, value, "a whole number of at least 0")
    if config["data"]["patch_size"] % 2 == 0:
        _refuse("data.patch_size", config["data"]["patch_size"], "odd (a centre pixel)")
    if not isinstance(config["output"], str) or not config["output"].strip():
        _refuse("output", config["output"], "a folder path")
    if Path(config["output"]).expanduser().is_file():
        _refuse("output", config["output"], "a folder, not a file")
    if config["device"] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {config['device']!r}")
    _check_numbers(config)
    _check_data(config, HSI_DATASETS)
    _check_split(config)
    kind = config["model"]["kind"]
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model.kind {kind!r} is unknown; choose one of {', '.join(MODEL_KINDS)}")
    _check_model_options(config)
    _check_init(config)
    subset = config["evaluate"]["subset"]
    if subset not in SPLIT_NAMES:
        _refuse("evaluate.subset", subset, f"one of {', '.join(SPLIT_NAMES)}")
    return config


def _check_numbers(config: dict) -> None:
    p, f = config["pretrain"], config["finetune"]
    for key, value in (
        ("pretrain.lr", p["lr"]),
        ("finetune.lr", f["lr"]),
    ):
        if value is None or not value > 0:
            _refuse(key, value, "a number above 0")
    for key, value in (
        ("pretrain.weight_decay", p["weight_decay"]),
        ("finetune.weight_decay", f["weight_decay"]),
        ("pretrain.decoder_depth", p["decoder_depth"]),
    ):
        if value is None or not value >= 0:
            _refuse(key, value, "a number of at least 0")
    if p["mask_ratio"] is None or not 0 < p["mask_ratio"] < 1:
        _refuse("pretrain.mask_ratio", p["mask_ratio"], "in (0, 1), e.g. 0.7")
    if f["fraction"] is None or not 0 < f["fraction"] <= 1:
        _refuse("finetune.fraction", f["fraction"], "in (0, 1] (0.01 = 1 % of the labels)")


def _check_data(config: dict, names: tuple[str, ...]) -> None:
    from mae_nb.data.hsi import SYNTHETIC_NAMES

    d = config["data"]
    if d["cube"] is not None or d["labels"] is not None:
        if d["cube"] is None or d["labels"] is None:
            raise ConfigError("data.cube and data.labels go together: give both .mat files")
        for key in ("cube", "labels"):
            if not isinstance(d[key], str) or not Path(d[key]).expanduser().is_file():
                raise ConfigError(f"data.{key}: no file at {d[key]}")
    elif d["name"] not in (*names, *SYNTHETIC_NAMES):
        _refuse("data.name", d["name"], f"one of {', '.join((*names, *SYNTHETIC_NAMES))}")


def _check_split(config: dict) -> None:
    s = config["split"]
    fr = s["fractions"]
    if (
        len(fr) != 3
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in fr)
        or min(fr) < 0
        or fr[0] <= 0
        or fr[2] <= 0
        or abs(sum(fr) - 1) > 1e-6
    ):
        _refuse(
            "split.fractions",
            fr,
            "[train, val, test] shares >= 0 summing to 1, train and test above 0",
        )
    grid = s["grid"]
    if grid != "auto":
        if (
            not isinstance(grid, list)
            or len(grid) != 2
            or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid)
            or grid[0] * grid[1] < 2
        ):
            _refuse(
                "split.grid", grid, '"auto" or [rows, cols] of blocks (whole numbers, 2+ blocks)'
            )
        if s["block_size"] is not None:
            raise ConfigError(
                "split.grid and split.block_size both set the blocks: give one (the other "
                "stays auto / null)"
            )
    buffer = s["buffer"]
    if buffer is not None and (
        isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 0
    ):
        _refuse("split.buffer", buffer, "a whole number of at least 0 (px), or null")
    region = config["pretrain"]["region"]
    if region not in PRETRAIN_REGIONS:
        _refuse("pretrain.region", region, f"one of {', '.join(PRETRAIN_REGIONS)}")


def _check_model_options(config: dict) -> None:
    """Known option names, plain values, and a model that builds (on the meta device: no
    memory; with the synthetic scene's band count, or many bands for a real scene)."""
    import torch

    from mae_nb.data.hsi import SYNTHETIC_NAMES
    from mae_nb.errors import MaeNbError
    from mae_nb.models.baselines import CNN3D, ViTClassifier, build_classifier
    from mae_nb.models.spectral import SpectralTransformer

    kind, options = config["model"]["kind"], config["model"]["options"]
    cls = {"vit": ViTClassifier, "cnn3d": CNN3D}.get(kind, SpectralTransformer)
    allowed = set(inspect.signature(cls).parameters) - {"in_chans", "num_classes", "image_size"}
    for key, value in options.items():
        if key not in allowed:
            raise ConfigError(
                f"unknown config key 'model.options.{key}' for model.kind {kind!r}; "
                f"known: {', '.join(sorted(allowed))}"
            )
        if not isinstance(value, (int, float)):
            _refuse(f"model.options.{key}", value, "a number or true/false")
    d, p = config["data"], config["pretrain"]
    bands = d["synthetic_bands"] if d["name"] in SYNTHETIC_NAMES and d["cube"] is None else 4096
    extra = {}
    if kind.startswith("sst"):
        extra = {k: p[k] for k in ("decoder_dim", "decoder_depth", "mask_ratio")}
    try:
        with torch.device("meta"):
            build_classifier(kind, bands, 2, d["patch_size"], **{**extra, **options})
    except (MaeNbError, TypeError, ValueError) as exc:
        raise ConfigError(f"model.options do not make a {kind} model: {exc}") from None


def output_paths(config: dict) -> dict[str, Path]:
    """The files the actions write under ``output``: ``pretrain``, ``finetune`` (checkpoints),
    ``pretrain_log``, ``finetune_log``, ``evaluation`` (JSON), ``map`` (.npy), and ``dir``."""
    out = Path(config["output"]).expanduser()
    return {
        "dir": out,
        "pretrain": out / "pretrain.safetensors",
        "finetune": out / "finetune.safetensors",
        "pretrain_log": out / "pretrain_log.json",
        "finetune_log": out / "finetune_log.json",
        "evaluation": out / "evaluation.json",
        "map": out / "classification_map.npy",
    }


def _check_init(config: dict) -> None:
    init = config["finetune"]["init"]
    if not isinstance(init, str) or not init:
        _refuse("finetune.init", init, "pretrain, random or a checkpoint path")
    if init in ("pretrain", "random"):
        return
    path = Path(init).expanduser()
    if path.resolve() != output_paths(config)["pretrain"].resolve() and not path.is_file():
        raise ConfigError(
            f"finetune.init: no checkpoint at {path}; give an existing file, 'pretrain' (the "
            "output of 'mae-nb hsi pretrain') or 'random'"
        )
