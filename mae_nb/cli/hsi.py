"""``mae-nb hsi``: masked pretraining, fine-tuning and evaluation on hyperspectral scenes.

Every action reads one YAML config (``mae-nb hsi config OUT.yaml`` writes the defaults; the
schema and its checks are :mod:`mae_nb.cli.hsi_config`)::

    mae-nb hsi pretrain --config run.yaml   # masked pretraining, train/val blocks -> pretrain
    #                                         (OUTPUT/pretrain.safetensors)
    mae-nb hsi finetune --config run.yaml   # finetune.fraction of the labels -> finetune
    #                                         (OUTPUT/finetune.safetensors)
    mae-nb hsi evaluate --config run.yaml   # OA/AA/kappa on the test split -> evaluation.json, map

The same commands run data-parallel under ``torchrun --nproc_per_node=N -m mae_nb hsi ...``
(:mod:`mae_nb.distributed`: DistributedDataParallel, gloo on CPU, nccl on GPU; each process
gets its share of the patches; only rank 0 writes checkpoints and logs). Bad configs fail
before any work: the whole config is checked (every section, whatever the action), and
outputs that exist are refused without ``--overwrite``.

Pretraining never reads the test region by default: it uses the split's training and
validation blocks, each patch window clear of the test region
(:func:`mae_nb.finetune.pretraining_region`; ``pretrain.region: all`` opts into a transductive
pretraining on every pixel, with a notice), and records the split it kept clear of; fine-tuning
refuses a checkpoint of this scene pretrained for another split. The split's knobs are the
``split`` section (fractions, seed, grid or block_size, buffer, require_all_classes); the
results list the classes missing from any split.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mae_nb.cli.config import (
    config_command,
    refuse_existing,
    write_default_config,
    write_json,
)
from mae_nb.cli.hsi_config import DEFAULTS, load_config, output_paths
from mae_nb.errors import (
    CheckpointError,
    ConfigError,
    DataUnavailableError,
    MissingFileError,
)

if TYPE_CHECKING:
    from mae_nb.distributed import Distributed

# --------------------------------------------------------------------------- the pieces


def _scene(config: dict, quiet: bool):
    from mae_nb.data.hsi import SYNTHETIC_NAMES, load_hsi, load_mat_scene

    d = config["data"]
    if d["cube"] is not None:  # the config check made sure both files are there
        return load_mat_scene(
            Path(d["cube"]).expanduser(),
            Path(d["labels"]).expanduser(),
            cube_key=d["cube_key"],
            labels_key=d["labels_key"],
        )
    size, bands, seed = d["synthetic_size"], d["synthetic_bands"], d["synthetic_seed"]
    if d["name"] in SYNTHETIC_NAMES:  # the default preset or the hard one
        return load_hsi(d["name"], size=size, bands=bands, seed=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene = load_hsi(
            d["name"], size=size, bands=bands, seed=seed, quiet=quiet or not d["fallback"]
        )
    if scene.source == "synthetic" and not d["fallback"]:
        raise DataUnavailableError(
            f"{scene.notice.replace('NOTICE: ', '').split(' Falling back')[0]} "
            "Set MAE_NB_DATA_MIRRORS, run 'mae-nb data fetch', or set data.fallback: true "
            "to use the synthetic scene"
        )
    return scene


#: What the CLI adds to the split's error: the config keys of every knob it suggests.
SPLIT_KNOBS = (
    "In the config: a finer split.grid (e.g. [8, 8]) or a smaller split.block_size (px), a "
    "smaller data.patch_size or split.buffer, another split.seed, or split.require_all_classes: "
    "false (the classes missing from a split are then listed in the results)."
)


def _split(config: dict, scene):
    """The spatial split the config asks for (``split`` section, ``data.patch_size``)."""
    from mae_nb.data.hsi import spatial_split
    from mae_nb.errors import InputError

    s, patch = config["split"], config["data"]["patch_size"]
    grid = s["grid"] if s["grid"] == "auto" else tuple(s["grid"])
    if s["block_size"] is not None:
        h, w = scene.labels.shape
        grid = (max(1, round(h / s["block_size"])), max(1, round(w / s["block_size"])))
        if grid[0] * grid[1] < 2:
            raise ConfigError(
                f"split.block_size {s['block_size']} px makes one block of the {h} x {w} scene; "
                "give a smaller one"
            )
    try:
        return spatial_split(
            scene.labels,
            patch,
            fractions=s["fractions"],
            grid=grid,
            buffer=s["buffer"],
            seed=s["seed"],
            require_all_classes=s["require_all_classes"],
        )
    except InputError as exc:
        if "no spatial split" not in str(exc) and "grid must" not in str(exc):
            raise
        raise InputError(f"{exc} {SPLIT_KNOBS}") from None


def _split_report(split, scene) -> dict:
    """The split in a results file: :func:`mae_nb.finetune.split_record` and, per split, the
    classes (names) it lacks (empty lists when every class is everywhere)."""
    from mae_nb.data.hsi import SPLIT_NAMES
    from mae_nb.finetune import split_record

    missing = split.missing or {}
    return {
        **split_record(split),
        "missing_classes": {
            name: [scene.class_names[c - 1] for c in missing.get(name, [])] for name in SPLIT_NAMES
        },
    }


def _say(dist: Distributed, text: str) -> None:
    if dist.main:
        print(text, flush=True)


def _finish(
    dist: Distributed,
    args: argparse.Namespace,
    paths: dict[str, Path],
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
        write_json(
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


def _finetune_model(config: dict, scene, paths: dict, split):
    """``(classifier, init, test_pixels_seen)``: a fresh model (``finetune.init: random``;
    None) or the pretrained encoder of ``OUTPUT/pretrain.safetensors`` or of a checkpoint path
    with a new head, and how many pixels of ``split``'s test region its pretraining read (None:
    unknown). A checkpoint pretrained on this scene for another split is refused."""
    import torch

    from mae_nb.finetune import classifier_from_pretrained, load_sst
    from mae_nb.models.baselines import build_classifier

    m, f, patch = config["model"], config["finetune"], config["data"]["patch_size"]
    torch.manual_seed(f["seed"])
    init = f["init"]
    if init == "random":
        model = build_classifier(m["kind"], scene.n_bands, scene.n_classes, patch, **m["options"])
        return model, "random", None
    path = paths["pretrain"] if init == "pretrain" else Path(init).expanduser()
    if not path.is_file():
        raise MissingFileError(
            f"finetune.init: no pretrained checkpoint at {path}; run 'mae-nb hsi pretrain' with "
            "this config first (or set finetune.init: random)"
        )
    if not m["kind"].startswith("sst"):
        raise ConfigError(
            f"finetune.init {init!r} needs a spatial-spectral transformer (model.kind sst...), "
            f"not {m['kind']!r}; set finetune.init: random"
        )
    pretrained, saved = load_sst(path, with_config=True)
    got = (pretrained.config["in_chans"], pretrained.config["image_size"])
    if got != (scene.n_bands, patch):
        raise CheckpointError(
            f"{path} was pretrained on {got[0]} bands and {got[1]} px patches; this scene has "
            f"{scene.n_bands} bands and data.patch_size is {patch}"
        )
    seen = _pretraining_leak(path, saved, scene, split)
    return classifier_from_pretrained(pretrained, scene.n_classes), str(path), seen


def _pretraining_leak(path: Path, saved: dict, scene, split) -> int | None:
    """How many test pixels of ``split`` the pretraining saved at ``path`` read (None when
    unknown: another scene, or a checkpoint without a split record). Refuses a checkpoint of
    this scene pretrained for another split; says so when the pretraining was transductive."""
    from mae_nb.finetune import regions_sha256

    if (saved.get("scene"), saved.get("source")) != (scene.name, scene.source):
        return None  # pretrained on another scene: it never saw this one
    record = saved.get("split")
    if record is not None and record.get("regions_sha256") != regions_sha256(split):
        raise CheckpointError(
            f"{path} was pretrained on {scene.name} for another split (seed "
            f"{record.get('seed')}, grid {record.get('grid')}, buffer {record.get('buffer')}): "
            "its pretraining may have read this split's test pixels. Run 'mae-nb hsi pretrain' "
            "with this config's split section (or set finetune.init: random)"
        )
    seen = saved.get("test_pixels_seen")
    if seen != 0:
        print(
            f"NOTICE: {path} was pretrained on pixels of this scene's test region "
            f"({'an unknown number' if seen is None else seen}; pretrain.region: all): the "
            "scores of this fine-tuning are transductive and flatter the pretraining."
        )
    return seen


# --------------------------------------------------------------------------- actions


def _pretrain(config: dict, args: argparse.Namespace, dist: Distributed) -> int:
    import numpy as np
    import torch

    from mae_nb.distributed import LossModule, loss_of_module
    from mae_nb.finetune import (
        TRANSDUCTIVE_NOTICE,
        pretraining_patches,
        pretraining_region,
        seen_test_pixels,
    )
    from mae_nb.models.baselines import build_classifier
    from mae_nb.models.spectral import pretrain_loss
    from mae_nb.train import fit

    paths = output_paths(config)
    refuse_existing([paths["pretrain"], paths["pretrain_log"]], args.overwrite)
    kind = config["model"]["kind"]
    if not kind.startswith("sst"):
        raise ConfigError(
            "masked pretraining is for the spatial-spectral transformer (model.kind sst...), "
            f"not {kind!r}"
        )
    p, d = config["pretrain"], config["data"]
    scene = _scene(config, quiet=not dist.main)
    split = _split(config, scene)
    region = pretraining_region(split, d["patch_size"]) if p["region"] == "train+val" else None
    if region is None:
        _say(
            dist,
            "NOTICE: "
            + TRANSDUCTIVE_NOTICE.format(scene=scene.name).replace(
                "Pass split= (mae_nb.data.hsi.spatial_split)", "Set pretrain.region: train+val"
            ),
        )
    data, std = pretraining_patches(
        scene, d["patch_size"], p["max_pixels"], p["seed"], region=region
    )
    centres = np.zeros(scene.labels.shape, bool)
    centres[data.coords[:, 0], data.coords[:, 1]] = True
    seen = seen_test_pixels(split, centres, d["patch_size"])
    torch.manual_seed(p["seed"])
    model = build_classifier(
        kind,
        scene.n_bands,
        0,  # no head: pretraining only
        d["patch_size"],
        mask_ratio=p["mask_ratio"],
        decoder_dim=p["decoder_dim"],
        decoder_depth=p["decoder_depth"],
        **config["model"]["options"],
    )
    net = dist.wrap(LossModule(model, pretrain_loss))  # DDP syncs the gradients of forward
    loader = dist.loader(data, p["batch_size"], seed=p["seed"])
    _say(
        dist,
        f"masked pretraining on {scene!r}: {len(data)} patches ({p['region']}: "
        f"{seen} test pixels seen), {dist.world} process(es) "
        f"({dist.backend or 'single'}), {len(loader)} batches per process per epoch",
    )
    history = fit(
        net,
        loader,
        loss_of_module,
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
        "pixels": len(data),
        "region": p["region"],
        "region_pixels": int(scene.labels.size if region is None else region.sum()),
        "split": _split_report(split, scene),
        "test_pixels_seen": seen,
        "standardizer": std.to_dict(),
        "hsi_config": config,
    }
    log = {
        "patches": len(data),
        "batches_per_process": len(loader),
        "region": p["region"],
        "region_pixels": cfg["region_pixels"],
        "test_pixels_seen": seen,
        "split": cfg["split"],
    }
    message = f"final masked reconstruction loss {history.train['loss'][-1]:.4f}"
    return _finish(dist, args, paths, "pretrain", model, cfg, history, scene, log, message)


def _finetune(config: dict, args: argparse.Namespace, dist: Distributed) -> int:
    from mae_nb.finetune import finetune

    paths = output_paths(config)
    refuse_existing([paths["finetune"], paths["finetune_log"]], args.overwrite)
    f, kind = config["finetune"], config["model"]["kind"]
    scene = _scene(config, quiet=not dist.main)
    split = _split(config, scene)
    model, init, seen = _finetune_model(config, scene, paths, split)
    if hasattr(model, "mask_token"):  # for masked pretraining only; DDP wants a gradient for
        model.mask_token.requires_grad_(False)  # every trained tensor
    net = dist.wrap(model)

    def loader(dataset, batch_size, shuffle=True):
        return dist.loader(dataset, batch_size, shuffle=shuffle, seed=f["seed"])

    start = "random init" if init == "random" else f"pretrained: {init}"
    _say(
        dist,
        f"fine-tuning {kind} ({start}) on {f['fraction']:.1%} of the training labels of "
        f"{scene!r}; {dist.world} process(es) ({dist.backend or 'single'})",
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
    cfg = {
        "kind": kind,
        "model": getattr(model, "config", None),
        "init": init,
        "fraction": f["fraction"],
        "n_labels": result.n_labels,
        "pretraining_test_pixels_seen": seen,
        "split": _split_report(split, scene),
        "standardizer": result.standardizer.to_dict(),
        "hsi_config": config,
    }
    log = {
        "n_labels": result.n_labels,
        "steps_per_process": result.steps,
        "init": init,
        "pretraining_test_pixels_seen": seen,
        "split": cfg["split"],
    }
    message = (
        f"final training loss {result.history.train['loss'][-1]:.4f} on {result.n_labels} "
        "labelled pixels"
    )
    return _finish(dist, args, paths, "finetune", model, cfg, result.history, scene, log, message)


def _finetuned_model(path: Path, saved: dict, kind: str, scene):
    """The classifier saved by ``mae-nb hsi finetune`` at ``path`` (``saved``: its config)."""
    from mae_nb.models.baselines import build_classifier
    from mae_nb.models.spectral import SpectralTransformer

    mc = saved.get("model") or {}
    if (mc.get("in_chans"), mc.get("num_classes")) != (scene.n_bands, scene.n_classes):
        raise CheckpointError(
            f"{path} was trained for {mc.get('in_chans')} bands and {mc.get('num_classes')} "
            f"classes; the scene {scene.name!r} has {scene.n_bands} and {scene.n_classes}"
        )
    if kind.startswith("sst"):
        return SpectralTransformer.from_config(mc)
    options = {k: v for k, v in mc.items() if k not in ("in_chans", "num_classes", "image_size")}
    return build_classifier(kind, scene.n_bands, scene.n_classes, mc["image_size"], **options)


def _evaluate(config: dict, args: argparse.Namespace, dist: Distributed) -> int:
    import numpy as np

    from mae_nb.data.hsi import Standardizer
    from mae_nb.finetune import evaluate, load_sst_weights
    from mae_nb.train import load_checkpoint

    paths = output_paths(config)
    refuse_existing([paths["evaluation"], paths["map"]], args.overwrite)
    if not paths["finetune"].is_file():
        raise MissingFileError(
            f"no fine-tuned model at {paths['finetune']}; run 'mae-nb hsi finetune' with this "
            "config first"
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
    model = _finetuned_model(paths["finetune"], saved, kind, scene)
    load_sst_weights(model, payload["model"], paths["finetune"])
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
        pretraining_test_pixels_seen=saved.get("pretraining_test_pixels_seen"),
        split=_split_report(split, scene),
    )
    write_json(paths["evaluation"], record)
    paths["map"].parent.mkdir(parents=True, exist_ok=True)
    np.save(paths["map"], ev["map"])
    print(
        f"{kind} on the {e['subset']} split of {scene.name} ({ev['n_pixels']} px): "
        f"OA {ev['oa']:.1%}  AA {ev['aa']:.1%}  kappa {ev['kappa']:.3f}"
    )
    for name, acc in zip(scene.class_names, ev["per_class"]):
        print(f"  {name:<32} {'absent' if acc != acc else f'{acc:.1%}'}")
    height, width = ev["map"].shape
    print(f"wrote {paths['evaluation']} and {paths['map']} ({height} x {width})")
    dist.barrier()
    return 0


# --------------------------------------------------------------------------- parser


def add_parser(sub) -> None:
    p = sub.add_parser(
        "hsi",
        help="masked pretraining, fine-tuning and evaluation on hyperspectral scenes",
        description="Masked pretraining of the spatial-spectral transformer, fine-tuning with a "
        "share of the labels, and evaluation (OA/AA/kappa, classification map), driven by one "
        "YAML config. Runs data-parallel under torchrun --nproc_per_node=N -m mae_nb hsi ...",
    )
    hsub = p.add_subparsers(dest="hsi_command", metavar="ACTION", required=True)
    for name, func, text in (
        ("pretrain", _pretrain, "masked pretraining on the train/val blocks (no labels)"),
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
    return config_command(action, load_config)


def _write_config(args: argparse.Namespace) -> int:
    return write_default_config(args.out, DEFAULTS, "hsi", args.overwrite)
