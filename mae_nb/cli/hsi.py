"""``mae-nb hsi``: masked pretraining, fine-tuning and evaluation on hyperspectral scenes.

Every action reads one YAML config (``mae-nb hsi config OUT.yaml`` writes the defaults)::

    mae-nb hsi pretrain --config run.yaml    # masked pretraining on all pixels -> OUTPUT/pretrain.pt
    mae-nb hsi finetune --config run.yaml    # labels of finetune.fraction    -> OUTPUT/finetune.pt
    mae-nb hsi evaluate --config run.yaml    # OA/AA/kappa on the test split  -> OUTPUT/evaluation.json, map

The same commands run data-parallel under ``torchrun --nproc_per_node=N -m mae_nb hsi ...``
(DistributedDataParallel: gloo on CPU, nccl on GPU; a DistributedSampler gives each
process its share of the patches; only rank 0 writes checkpoints and logs). Bad configs
fail before any work: unknown keys (with the known ones listed), missing files, and
outputs that exist without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any

from mae_nb.errors import MaeNbError, OutputExistsError

#: The config's sections and their defaults; a config file overrides any of them.
DEFAULTS: dict[str, Any] = {
    "output": "runs/hsi",
    "device": "auto",  # auto (cuda, else cpu), cpu, cuda
    "data": {
        "name": "salinas-a",  # a registry scene (mae-nb data list), or "synthetic"
        "cube": None,  # or your own scene: a cube .mat (H, W, B) and a label .mat (H, W)
        "labels": None,
        "cube_key": None,
        "labels_key": None,
        "fallback": False,  # run on the synthetic scene when the real one is not here
        "synthetic_size": 64,
        "synthetic_bands": 64,
        "synthetic_seed": 0,
        "patch_size": 5,
        "split_fractions": [0.6, 0.1, 0.3],  # train, val, test (spatially disjoint blocks)
        "split_seed": 0,
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
    },
    "finetune": {
        "init": "pretrain",  # pretrain (OUTPUT/pretrain.pt), random, or a checkpoint path
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


def default_config() -> dict:
    return copy.deepcopy(DEFAULTS)


def _merge(defaults: dict, given: dict, where: str) -> dict:
    if not isinstance(given, dict):
        raise MaeNbError(
            f"config section {where or 'top level'} must be a mapping, got {type(given).__name__}"
        )
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in defaults:
            raise MaeNbError(
                f"unknown config key {path!r}; known keys{' in ' + where if where else ''}: "
                + ", ".join(defaults)
            )
        default = defaults[key]
        if isinstance(default, dict) and tuple(path.split(".")) not in _FREE:
            out[key] = _merge(default, value or {}, path)
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise MaeNbError(
                    f"config key {path!r} must be a mapping of keyword arguments, got {value!r}"
                )
            out[key] = dict(value)
        else:
            out[key] = _check_type(path, value, default)
    return out


def _check_type(path: str, value: Any, default: Any) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise MaeNbError(f"config key {path!r} must be true or false, got {value!r}")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MaeNbError(f"config key {path!r} must be a number, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool) and int(value) != value:
            raise MaeNbError(f"config key {path!r} must be a whole number, got {value!r}")
    elif isinstance(default, list) and not isinstance(value, list):
        raise MaeNbError(f"config key {path!r} must be a list like {default}, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise MaeNbError(f"config key {path!r} must be text, got {value!r}")
    return value


def load_config(path: str | Path | None) -> dict:
    """The defaults updated with the YAML file at ``path``; unknown keys and wrong types are errors."""
    import yaml

    if path is None:
        return default_config()
    path = Path(path)
    if not path.is_file():
        raise MaeNbError(f"no config file at {path}; write one with: mae-nb hsi config {path}")
    try:
        given = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MaeNbError(f"{path} is not valid YAML: {exc}") from None
    config = _merge(DEFAULTS, given, "")
    _check_model_options(config)
    kind = config["model"]["kind"]
    from mae_nb.models.baselines import MODEL_KINDS

    if kind not in MODEL_KINDS:
        raise MaeNbError(f"model.kind {kind!r} is unknown; choose one of {', '.join(MODEL_KINDS)}")
    if config["device"] not in ("auto", "cpu", "cuda"):
        raise MaeNbError(f"device must be auto, cpu or cuda, got {config['device']!r}")
    return config


def _check_model_options(config: dict) -> None:
    from mae_nb.models.baselines import CNN3D, ViTClassifier
    from mae_nb.models.spectral import SpectralTransformer

    kind = config["model"]["kind"]
    cls = {"vit": ViTClassifier, "cnn3d": CNN3D}.get(kind, SpectralTransformer)
    allowed = set(inspect.signature(cls).parameters) - {"in_chans", "num_classes", "image_size"}
    for key in config["model"]["options"]:
        if key not in allowed:
            raise MaeNbError(
                f"unknown config key 'model.options.{key}' for model.kind {kind!r}; "
                f"known: {', '.join(sorted(allowed))}"
            )


# --------------------------------------------------------------------------- distributed set-up


class _Dist:
    """Rank, world size and device of this process; DDP set up when launched by torchrun."""

    def __init__(self, device_pref: str):
        import torch
        import torch.distributed as dist

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref == "cuda"
        if use_cuda and not torch.cuda.is_available():
            raise MaeNbError("device: cuda was asked for but no CUDA device is available")
        self.device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        self.distributed = self.world > 1
        if self.distributed and not dist.is_initialized():
            import atexit

            dist.init_process_group("nccl" if use_cuda else "gloo")
            # kept for later commands in this process (a process group cannot be re-created
            # reliably under torchrun), torn down when the process ends
            atexit.register(self.close)
        self.backend = dist.get_backend() if self.distributed else None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel

        model.to(self.device)
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def loader(self, dataset, batch_size: int, shuffle: bool = True, seed: int = 0):
        """A DataLoader; under DDP with a DistributedSampler that reshuffles every epoch by itself."""
        import torch
        from torch.utils.data import DataLoader

        if not self.distributed:
            gen = torch.Generator().manual_seed(seed)
            return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen)
        sampler = _epoch_sampler(
            dataset, num_replicas=self.world, rank=self.rank, shuffle=shuffle, seed=seed
        )
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler)

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        import torch.distributed as dist

        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _epoch_sampler(dataset, **kwargs):
    """A DistributedSampler that advances its epoch at each pass (``fit`` does not call set_epoch),
    so every epoch shuffles differently, the same way on every process."""
    from torch.utils.data import DistributedSampler

    class EpochSampler(DistributedSampler):
        def __iter__(self):
            indices = super().__iter__()
            self.set_epoch(self.epoch + 1)
            return indices

    return EpochSampler(dataset, **kwargs)


# --------------------------------------------------------------------------- the pieces


def _scene(config: dict, quiet: bool):
    from mae_nb.data.hsi import load_hsi, load_mat_scene

    d = config["data"]
    if d["cube"] is not None or d["labels"] is not None:
        if d["cube"] is None or d["labels"] is None:
            raise MaeNbError("data.cube and data.labels go together: give both .mat files")
        for key in ("cube", "labels"):
            if not Path(d[key]).expanduser().is_file():
                raise MaeNbError(f"data.{key}: no file at {d[key]}")
        return load_mat_scene(
            Path(d["cube"]).expanduser(),
            Path(d["labels"]).expanduser(),
            cube_key=d["cube_key"],
            labels_key=d["labels_key"],
        )
    if d["name"] == "synthetic":
        return load_hsi(
            None, size=d["synthetic_size"], bands=d["synthetic_bands"], seed=d["synthetic_seed"]
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene = load_hsi(
            d["name"],
            size=d["synthetic_size"],
            bands=d["synthetic_bands"],
            seed=d["synthetic_seed"],
            quiet=quiet or not d["fallback"],
        )
    if scene.source == "synthetic" and not d["fallback"]:
        raise MaeNbError(
            f"{scene.notice.replace('NOTICE: ', '').split(' Falling back')[0]} "
            "Set MAE_NB_DATA_MIRRORS, run 'mae-nb data fetch', or set data.fallback: true "
            "to use the synthetic scene"
        )
    return scene


def _split(config: dict, scene):
    from mae_nb.data.hsi import spatial_split

    d = config["data"]
    return spatial_split(
        scene.labels, d["patch_size"], fractions=d["split_fractions"], seed=d["split_seed"]
    )


def _paths(config: dict) -> dict[str, Path]:
    out = Path(config["output"]).expanduser()
    return {
        "dir": out,
        "pretrain": out / "pretrain.pt",
        "finetune": out / "finetune.pt",
        "pretrain_log": out / "pretrain_log.json",
        "finetune_log": out / "finetune_log.json",
        "evaluation": out / "evaluation.json",
        "map": out / "classification_map.npy",
    }


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    for p in paths:
        if p.exists() and not overwrite:
            raise OutputExistsError(
                f"{p} already exists; pass --overwrite to replace it (or change 'output')"
            )


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")


def _say(dist: _Dist, text: str) -> None:
    if dist.main:
        print(text, flush=True)


def _finish(
    dist: _Dist,
    args: argparse.Namespace,
    paths: dict,
    action: str,
    model,
    cfg: dict,
    history,
    scene,
    log: dict,
    message: str,
) -> int:
    """Rank 0 saves ``paths[action]`` (checkpoint with ``cfg`` and ``history``) and
    ``paths[action + "_log"]`` (``log`` plus history, world size, backend, scene); every rank
    then waits for it."""
    from mae_nb.train import save_checkpoint

    if dist.main:
        save_checkpoint(paths[action], model, config=cfg, history=history, overwrite=args.overwrite)
        _write_json(
            paths[f"{action}_log"],
            {
                "history": history.to_dict(),
                "world_size": dist.world,
                "backend": dist.backend,
                **log,
                "scene": scene.name,
                "source": scene.source,
            },
        )
        print(f"{message}; wrote {paths[action]} and {paths[action + '_log']}")
    dist.barrier()
    return 0


def _build_finetune_model(config: dict, scene, paths: dict, dist: _Dist):
    import torch

    from mae_nb.finetune import classifier_from_pretrained
    from mae_nb.models.baselines import build_classifier
    from mae_nb.models.spectral import SpectralTransformer
    from mae_nb.train import load_checkpoint

    m, f = config["model"], config["finetune"]
    torch.manual_seed(f["seed"])
    init = f["init"]
    if init == "random":
        return build_classifier(
            m["kind"], scene.n_bands, scene.n_classes, config["data"]["patch_size"], **m["options"]
        ), "random"
    path = paths["pretrain"] if init == "pretrain" else Path(init).expanduser()
    if not path.is_file():
        hint = (
            "run 'mae-nb hsi pretrain' with this config first"
            if init == "pretrain"
            else "check finetune.init"
        )
        raise MaeNbError(
            f"finetune.init: no pretrained checkpoint at {path}; {hint} (or set finetune.init: random)"
        )
    if not m["kind"].startswith("sst"):
        raise MaeNbError(
            f"finetune.init {init!r} needs a spatial-spectral transformer (model.kind sst...), "
            f"not {m['kind']!r}; set finetune.init: random"
        )
    payload = load_checkpoint(path)
    model_config = (payload.get("config") or {}).get("model")
    if not isinstance(model_config, dict):
        raise MaeNbError(f"{path} has no model config to rebuild the transformer from")
    if (
        model_config.get("in_chans") != scene.n_bands
        or model_config.get("image_size") != config["data"]["patch_size"]
    ):
        raise MaeNbError(
            f"{path} was pretrained on {model_config.get('in_chans')} bands and {model_config.get('image_size')} px "
            f"patches; this scene has {scene.n_bands} bands and data.patch_size is {config['data']['patch_size']}"
        )
    pretrained = SpectralTransformer.from_config(model_config)
    pretrained.load_state_dict(payload["model"])
    return classifier_from_pretrained(pretrained, scene.n_classes), str(path)


# --------------------------------------------------------------------------- actions


def _pretrain(config: dict, args: argparse.Namespace, dist: _Dist) -> int:
    import torch

    from mae_nb.models.spectral import SpectralTransformer, pretraining_patches
    from mae_nb.train import fit

    paths = _paths(config)
    _refuse_existing([paths["pretrain"], paths["pretrain_log"]], args.overwrite)
    if not config["model"]["kind"].startswith("sst"):
        raise MaeNbError(
            f"masked pretraining is for the spatial-spectral transformer (model.kind sst...), "
            f"not {config['model']['kind']!r}"
        )
    p, d = config["pretrain"], config["data"]
    scene = _scene(config, quiet=not dist.main)
    data, std = pretraining_patches(
        scene, d["patch_size"], p["max_pixels"], p["seed"]
    )  # no labels involved
    options = dict(config["model"]["options"])
    if config["model"]["kind"] == "sst-shared-embed":
        options["blockwise_embed"] = False
    if config["model"]["kind"] == "sst-joint-attention":
        options["factorized_attention"] = False
    torch.manual_seed(p["seed"])
    model = SpectralTransformer(
        scene.n_bands,
        image_size=d["patch_size"],
        mask_ratio=p["mask_ratio"],
        decoder_dim=p["decoder_dim"],
        decoder_depth=p["decoder_depth"],
        **options,
    )
    net = dist.wrap(_pretrain_objective(model))
    loader = dist.loader(data, p["batch_size"], seed=p["seed"])
    _say(
        dist,
        f"masked pretraining on {scene!r}: {len(data)} patches, {dist.world} process(es) "
        f"({dist.backend or 'single'}), {len(loader)} batches per process per epoch",
    )
    history = fit(
        net,
        loader,
        _objective_loss,
        epochs=p["epochs"],
        lr=p["lr"],
        weight_decay=p["weight_decay"],
        device=dist.device,
        seed=p["seed"] + dist.rank,
        progress=dist.main,
        desc="masked pretraining",
    )
    cfg = {
        "model": model.config,
        "scene": scene.name,
        "source": scene.source,
        "mask_ratio": p["mask_ratio"],
        "standardizer": std.to_dict(),
        "hsi_config": config,
    }
    return _finish(
        dist,
        args,
        paths,
        "pretrain",
        model,
        cfg,
        history,
        scene,
        {"patches": len(data), "batches_per_process": len(loader)},
        f"final masked reconstruction loss {history.train['loss'][-1]:.4f}",
    )


def _finetune(config: dict, args: argparse.Namespace, dist: _Dist) -> int:
    from mae_nb.finetune import finetune

    paths = _paths(config)
    _refuse_existing([paths["finetune"], paths["finetune_log"]], args.overwrite)
    f = config["finetune"]
    scene = _scene(config, quiet=not dist.main)
    split = _split(config, scene)
    model, init = _build_finetune_model(config, scene, paths, dist)
    if hasattr(
        model, "mask_token"
    ):  # used only by masked pretraining; DDP wants a gradient for every trained tensor
        model.mask_token.requires_grad_(False)
    net = dist.wrap(model)

    def loader(dataset, batch_size, shuffle=True):
        return dist.loader(dataset, batch_size, shuffle=shuffle, seed=f["seed"])

    _say(
        dist,
        f"fine-tuning {config['model']['kind']} ({'pretrained: ' + init if init != 'random' else 'random init'}) "
        f"on {f['fraction']:.1%} of the training labels of {scene!r}; {dist.world} process(es) "
        f"({dist.backend or 'single'})",
    )
    result = finetune(
        net,
        scene,
        split,
        f["fraction"],
        seed=f["seed"],
        steps=f["steps"],
        batch_size=f["batch_size"],
        lr=f["lr"],
        weight_decay=f["weight_decay"],
        device=dist.device,
        progress=dist.main,
        data_loader=loader,
    )
    kind = config["model"]["kind"]
    cfg = {
        "kind": kind,
        "model": getattr(model, "config", None),
        "init": init,
        "fraction": f["fraction"],
        "n_labels": result.n_labels,
        "standardizer": result.standardizer.to_dict(),
        "hsi_config": config,
    }
    return _finish(
        dist,
        args,
        paths,
        "finetune",
        model,
        cfg,
        result.history,
        scene,
        {"n_labels": result.n_labels, "steps_per_process": result.steps, "init": init},
        f"final training loss {result.history.train['loss'][-1]:.4f} on {result.n_labels} labelled pixels",
    )


def _evaluate(config: dict, args: argparse.Namespace, dist: _Dist) -> int:
    import numpy as np

    from mae_nb.data.hsi import Standardizer
    from mae_nb.finetune import evaluate
    from mae_nb.models.baselines import build_classifier
    from mae_nb.models.spectral import SpectralTransformer
    from mae_nb.train import load_checkpoint

    paths = _paths(config)
    _refuse_existing([paths["evaluation"], paths["map"]], args.overwrite)
    if not paths["finetune"].is_file():
        raise MaeNbError(
            f"no fine-tuned model at {paths['finetune']}; run 'mae-nb hsi finetune' with this config first"
        )
    if not dist.main:  # evaluation is cheap: rank 0 does it alone
        dist.barrier()
        return 0
    e = config["evaluate"]
    scene = _scene(config, quiet=False)
    split = _split(config, scene)
    payload = load_checkpoint(paths["finetune"])
    saved = payload.get("config") or {}
    kind = saved.get("kind", config["model"]["kind"])
    mc = saved.get("model") or {}
    if (mc.get("in_chans"), mc.get("num_classes")) != (scene.n_bands, scene.n_classes):
        raise MaeNbError(
            f"{paths['finetune']} was trained for {mc.get('in_chans')} bands and {mc.get('num_classes')} "
            f"classes; the scene {scene.name!r} has {scene.n_bands} and {scene.n_classes}"
        )
    if kind.startswith("sst"):
        model = SpectralTransformer.from_config(mc)
    else:
        options = {
            k: v for k, v in mc.items() if k not in ("in_chans", "num_classes", "image_size")
        }
        model = build_classifier(kind, scene.n_bands, scene.n_classes, mc["image_size"], **options)
    model.load_state_dict(payload["model"])
    model.to(dist.device)
    std = Standardizer.from_dict(saved["standardizer"]) if "standardizer" in saved else None
    ev = evaluate(
        model,
        scene,
        split,
        subset=e["subset"],
        full_map=e["full_map"],
        standardizer=std,
        batch_size=e["batch_size"],
        device=dist.device,
        progress=True,
    )
    record = {k: ev[k] for k in ("oa", "aa", "kappa", "n_pixels", "missing_classes", "subset")}
    record.update(
        confusion=ev["confusion"].tolist(),
        per_class=dict(zip(scene.class_names, ev["per_class"].tolist())),
        scene=scene.name,
        source=scene.source,
        model=kind,
        fraction=saved.get("fraction"),
        init=saved.get("init"),
    )
    _write_json(paths["evaluation"], record)
    paths["map"].parent.mkdir(parents=True, exist_ok=True)
    np.save(paths["map"], ev["map"])
    print(
        f"{kind} on the {e['subset']} split of {scene.name} ({ev['n_pixels']} px): "
        f"OA {ev['oa']:.1%}  AA {ev['aa']:.1%}  kappa {ev['kappa']:.3f}"
    )
    for name, acc in zip(scene.class_names, ev["per_class"]):
        print(f"  {name:<32} {'absent' if acc != acc else f'{acc:.1%}'}")
    print(
        f"wrote {paths['evaluation']} and {paths['map']} ({ev['map'].shape[0]} x {ev['map'].shape[1]})"
    )
    dist.barrier()
    return 0


def _pretrain_objective(model):
    """``model`` wrapped so that ``forward`` is the masked reconstruction loss: DDP syncs the
    gradients of ``forward`` only, and pretraining runs ``forward_pretrain``."""
    from torch import nn

    class PretrainObjective(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, imgs):
            return self.model.forward_pretrain(imgs)["loss"]

    return PretrainObjective(model)


def _objective_loss(net, batch):
    imgs = batch[0] if isinstance(batch, (tuple, list)) else batch
    return {"loss": net(imgs)}


# --------------------------------------------------------------------------- parser


def add_parser(sub) -> None:
    p = sub.add_parser(
        "hsi",
        help="masked pretraining, fine-tuning and evaluation on hyperspectral scenes",
        description="Masked pretraining of the spatial-spectral transformer, fine-tuning with a share of the "
        "labels, and evaluation (OA/AA/kappa, classification map), driven by one YAML config. "
        "Runs data-parallel under torchrun --nproc_per_node=N -m mae_nb hsi ...",
    )
    hsub = p.add_subparsers(dest="hsi_command", metavar="ACTION", required=True)
    for name, func, text in (
        ("pretrain", _pretrain, "masked pretraining on all pixels (no labels)"),
        ("finetune", _finetune, "fine-tune on finetune.fraction of the training labels"),
        ("evaluate", _evaluate, "accuracy on the test split and the classification map"),
    ):
        a = hsub.add_parser(name, help=text, description=text)
        a.add_argument(
            "--config",
            type=Path,
            default=None,
            metavar="CONFIG.yaml",
            help="YAML config (default: the built-in defaults; see 'mae-nb hsi config')",
        )
        a.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
        a.set_defaults(func=_run(func))
    c = hsub.add_parser(
        "config",
        help="write the default config to a YAML file to edit",
        description="Write the default config (every key, with comments) to OUT.yaml.",
    )
    c.add_argument("out", type=Path, metavar="OUT.yaml")
    c.add_argument("--overwrite", action="store_true", help="replace OUT.yaml if it exists")
    c.set_defaults(func=_write_config)


def _run(action):
    def run(args: argparse.Namespace) -> int:
        config = load_config(args.config)
        dist = _Dist(config["device"])
        start = time.perf_counter()
        code = action(config, args, dist)
        if dist.main:
            print(f"done in {time.perf_counter() - start:.1f} s")
        return code

    return run


def _write_config(args: argparse.Namespace) -> int:
    import yaml

    if args.out.exists() and not args.overwrite:
        raise OutputExistsError(f"{args.out} already exists; pass --overwrite to replace it")
    text = (
        "# mae-nb hsi config: every key with its default. Remove what you do not change.\n"
        "# Run: mae-nb hsi pretrain|finetune|evaluate --config THIS.yaml  (or under torchrun -m mae_nb)\n"
        + yaml.safe_dump(DEFAULTS, sort_keys=False)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0
