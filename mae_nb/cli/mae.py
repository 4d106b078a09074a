"""``mae-nb mae``: masked-autoencoder pretraining on your own GeoTIFFs, and its evaluation.

One YAML config drives both actions (``mae-nb mae config OUT.yaml`` writes the defaults; the
schema and its checks are :mod:`mae_nb.cli.mae_config`)::

    mae-nb mae pretrain --config run.yaml    # -> OUTPUT/model.safetensors, train_log.csv/json,
    #                                            config.json, state.safetensors (for --resume)
    mae-nb mae pretrain --config run.yaml --resume   # go on from OUTPUT/state.safetensors
    mae-nb mae evaluate --config run.yaml    # held-out crops vs blur and mean fill
    #                                            -> OUTPUT/evaluation.json
    mae-nb mae finetune --config ft.yaml     # land cover from a GeoTIFF and its label raster
    #                                            (its own config: mae-nb mae config --finetune;
    #                                            :mod:`mae_nb.cli.mae_finetune`)

Any preset of :mod:`mae_nb.models.mae`, any band count and band selection; crops drawn on the
fly with windowed reads (:mod:`mae_nb.pretraining`). The same commands run data-parallel under
``torchrun --nproc_per_node=N -m mae_nb mae pretrain ...`` (gloo on CPU, nccl on GPU; each
process draws its own crops; rank 0 writes). The whole config and every input are checked
before the first step; an output folder that holds another run is refused without
``--overwrite``.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from mae_nb.cli.config import (
    config_command,
    refuse_existing,
    with_train_threads,
    write_default_config,
    write_json,
)
from mae_nb.cli.finetune_config import FINETUNE_DEFAULTS, load_finetune_config
from mae_nb.cli.mae_config import MAE_DEFAULTS, load_mae_config, mae_output_paths
from mae_nb.cli.mae_finetune import finetune_command
from mae_nb.errors import CheckpointError, InputError, MissingFileError


def _sources(config: dict, quiet: bool):
    from mae_nb.pretraining import band_statistics, open_sources

    d = config["data"]
    sources = open_sources(
        d["inputs"], bands=d["bands"], holdout=d["holdout"], crop_size=d["crop_size"], quiet=quiet
    )
    return sources, band_statistics(sources, d["normalization"])


def _model(config: dict, n_bands: int):
    import torch

    from mae_nb.models.mae import create_mae

    torch.manual_seed(config["seed"])
    model = create_mae(
        config["model"]["arch"],
        img_size=config["data"]["crop_size"],
        in_chans=n_bands,
        **config["model"]["options"],
    )
    return model


def _model_config(model, config: dict, norm: dict, sources, steps_done: int) -> dict:
    """What goes into the model file: how to rebuild it and feed it, and what it saw."""
    cfg = dict(model.pretrained_cfg)
    if norm["mode"] == "dataset":
        cfg.update(mean=norm["mean"], std=norm["std"], normalize="given")
    else:  # each image standardized by its own per-band statistics
        cfg.update(mean=None, std=None, normalize="per-band")
    cfg.update(
        source="mae-nb mae pretrain",
        tile=config["data"]["crop_size"],
        mask_ratio=config["train"]["mask_ratio"],
        steps=steps_done,
        bands=config["data"]["bands"],
        trained_on=[
            {"name": s.name, "bands": s.bands, "train_window": list(s.train_window)}
            for s in sources
        ],
        normalization=norm,
        mae_config=config,
    )
    return cfg


def _check_resume(state: dict, model, path: Path) -> None:
    saved = state["config"].get("model_kwargs") or {}
    mine = model.pretrained_cfg["kwargs"]
    arch = state["config"].get("arch")
    if arch != model.pretrained_cfg["arch"] or saved != mine:
        diff = {k: (saved.get(k), v) for k, v in mine.items() if saved.get(k) != v}
        raise CheckpointError(
            f"cannot resume from {path}: it was trained as {arch} with {diff or saved} "
            f"(saved, this config), this config builds {model.pretrained_cfg['arch']}; resume "
            "with the config that started the run, or start a new one in another output folder"
        )


def _pretrain(config: dict, args: argparse.Namespace, dist) -> int:
    return with_train_threads(config, lambda: _pretrain_run(config, args, dist))


def _pretrain_run(config: dict, args: argparse.Namespace, dist) -> int:

    from mae_nb.pretraining import (
        CropBatches,
        PretrainLog,
        load_training_state,
        optimizer_for,
        pretrain,
        save_training_state,
    )
    from mae_nb.train import save_checkpoint

    t, d = config["train"], config["data"]
    paths = mae_output_paths(config)
    resume_from = None
    if args.resume:
        resume_from = paths["state"] if args.resume is True else Path(args.resume)
        if not resume_from.is_file():
            raise MissingFileError(f"--resume: no training state at {resume_from}")
    elif not args.overwrite:
        refuse_existing([paths["model"], paths["state"], paths["log_csv"]], False)
    sources, norm = _sources(config, quiet=not dist.main)
    n_bands = sources[0].n_bands
    model = _model(config, n_bands)
    optimizer = optimizer_for(model, t["lr"], t["weight_decay"])
    start, log = 0, PretrainLog(every=t["log_every"])
    if resume_from is not None:
        state = load_training_state(resume_from)
        _check_resume(state, model, resume_from)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        log.restore(state["config"].get("log", []), state["config"].get("log_pending", (0.0, 0)))
        if start >= t["steps"]:
            raise CheckpointError(
                f"{resume_from} is already at step {start} of train.steps={t['steps']}; raise "
                "train.steps to train further"
            )
    patch = model.patch_size
    ratio = t["mask_ratio"] if isinstance(t["mask_ratio"], (int, float)) else tuple(t["mask_ratio"])
    batches = CropBatches(
        sources, crop_size=d["crop_size"], batch_size=t["batch_size"], steps=t["steps"],
        patch_size=patch, mask_ratio=ratio, min_valid=d["min_valid"], augment=d["augment"],
        seed=config["seed"], rank=dist.rank,
    )  # fmt: skip
    net = dist.wrap(model)
    if dist.main:
        print(
            f"MAE pretraining: {config['model']['arch']} on {len(sources)} source(s), "
            f"{n_bands} band(s), {d['crop_size']} px crops, steps {start}..{t['steps']} x "
            f"{t['batch_size']} crops x {dist.world} process(es) ({dist.backend or 'single'}), "
            f"normalization {norm['mode']}, device {dist.device}",
            flush=True,
        )
    saved_kwargs = {
        "arch": model.pretrained_cfg["arch"],
        "model_kwargs": model.pretrained_cfg["kwargs"],
    }

    def state_config(step_done: int) -> dict:
        return {
            **saved_kwargs,
            "log": log.rows,
            "log_pending": log.pending(),  # the steps since the last row, for --resume
            "normalization": norm,
            "steps_done": step_done,
        }

    def checkpoint(step: int, opt) -> None:
        if dist.main and (step + 1) % t["checkpoint_every"] == 0 and step + 1 < t["steps"]:
            save_training_state(paths["state"], model, opt, step + 1, state_config(step + 1))

    started = time.perf_counter()
    optimizer, history, log = pretrain(
        model, batches, lr=t["lr"], warmup_steps=t["warmup_steps"], min_lr=t["min_lr"],
        weight_decay=t["weight_decay"], grad_clip=t["grad_clip"], precision=t["precision"],
        device=dist.device, start_step=start, optimizer=optimizer, log=log, on_step=checkpoint,
        seed=config["seed"] + dist.rank, progress=dist.main, net=net,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if dist.main:
        model = model.cpu().eval()
        cfg = _model_config(model, config, norm, sources, t["steps"])
        half = t["save_dtype"] == "float16"
        model_to_save = copy.deepcopy(model).half() if half else model
        save_checkpoint(paths["model"], model_to_save, config=cfg, history=history, overwrite=True)
        save_training_state(paths["state"], model, optimizer, t["steps"], state_config(t["steps"]))
        extra = {
            "world_size": dist.world,
            "backend": dist.backend,
            "device": str(dist.device),
            "seconds_this_run": round(seconds, 1),
            "resumed_from_step": start,
            "sources": [s.name for s in sources],
            "normalization": norm,
        }
        log.write(paths["log_csv"], paths["log_json"], extra)
        write_json(paths["config"], {"config": config, "model": cfg})
        last = log.rows[-1]["loss"] if log.rows else float("nan")
        print(
            f"final loss {last:.4f} (mean of the last {t['log_every']} steps); wrote "
            f"{paths['model']}, {paths['log_csv']}, {paths['state']}"
        )
    dist.barrier()
    return 0


def _evaluate(config: dict, args: argparse.Namespace, dist) -> int:
    from mae_nb.pretrained import load_mae
    from mae_nb.pretraining import band_statistics, open_sources
    from mae_nb.studies.heldout import score_heldout

    paths = mae_output_paths(config)
    path = Path(args.checkpoint) if args.checkpoint else paths["model"]
    if not path.is_file():
        raise MissingFileError(
            f"no model at {path}: run 'mae-nb mae pretrain --config ...' first, or pass "
            "--checkpoint"
        )
    if dist.main:
        model = load_mae(path)
        d, e = config["data"], config["evaluate"]
        files = [i for i in d["inputs"] if not (isinstance(i, dict) and "synthetic" in i)]
        synth = [i["synthetic"] for i in d["inputs"] if isinstance(i, dict) and "synthetic" in i]
        inputs = list(files)
        if synth:
            spec = dict(synth[0] or {})
            spec.update(seeds=e["synthetic_seeds"], sizes=[e["synthetic_size"]])
            inputs.append({"synthetic": spec})
        sources = open_sources(
            inputs, bands=d["bands"], holdout=d["holdout"], crop_size=d["crop_size"], quiet=True
        )
        band_statistics(sources, d["normalization"])
        crop = d["crop_size"]
        narrow = [s.name for s in sources if s.kind == "file" and s.width - s.train_cols < crop]
        if len(narrow) == len(sources):
            raise InputError(
                f"nothing held out to evaluate on: data.holdout ({d['holdout']:.0%} of the "
                f"columns) leaves no strip of data.crop_size ({crop} px) in "
                f"{', '.join(narrow[:5])}; pretrain with a wider data.holdout, or add synthetic "
                "inputs (scored on unseen seeds)"
            )
        if narrow:
            print(f"not scored (held-out strip narrower than {crop} px): {', '.join(narrow[:5])}")
        # a model pretrained with dataset statistics is fed with those it stored, as it trained
        # (not with statistics pooled over the evaluation's scenes)
        stored = model.pretrained_cfg.get("mean") is not None
        scores = score_heldout(
            {"model": model}, sources, ratios=e["ratios"], crop_size=d["crop_size"],
            crops=e["crops"], seed=e["seed"],
            normalization=(lambda name, source: (None, None)) if stored else None,
        )  # fmt: skip
        if not scores.rows:
            raise InputError(
                f"no held-out crop of {crop} px with every pixel valid in "
                f"{', '.join(s.name for s in sources[:5])}; lower data.crop_size"
            )
        table = scores.table()
        gains = {
            str(r): {over: scores.gain("model", over, r).__dict__ for over in ("blur", "mean_fill")}
            for r in e["ratios"]
        }
        write_json(
            paths["evaluation"],
            {"checkpoint": str(path), "table": table, "gains": gains, "rows": scores.rows},
        )
        print(scores.markdown())
        for r in e["ratios"]:
            b, m = scores.gain("model", "blur", r), scores.gain("model", "mean_fill", r)
            print(
                f"mask ratio {r:.0%}: model - blur {b.describe(' dB')}, "
                f"model - mean fill {m.describe(' dB')} ({b.n} crops)"
            )
        print(f"wrote {paths['evaluation']}")
    dist.barrier()
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "mae",
        help="pretrain a masked autoencoder on your GeoTIFFs, evaluate it, fine-tune it",
        description="Masked-autoencoder pretraining of any mae_nb.models.mae preset on GeoTIFF "
        "files, folders, registry samples and synthetic scenes (any band count), and its "
        "evaluation on held-out crops, driven by one YAML config. Runs data-parallel under "
        "torchrun --nproc_per_node=N -m mae_nb mae pretrain ...",
    )
    msub = p.add_subparsers(dest="mae_command", metavar="ACTION", required=True)
    a = msub.add_parser("pretrain", help="masked pretraining -> OUTPUT/model.safetensors")
    a.add_argument("--config", type=Path, required=True, metavar="CONFIG.yaml")
    a.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="STATE.safetensors",
        help="go on from OUTPUT/state.safetensors (or the file given)",
    )
    a.add_argument("--overwrite", action="store_true", help="replace a run in OUTPUT")
    a.set_defaults(func=_run(_pretrain))
    e = msub.add_parser("evaluate", help="held-out crops: masked PSNR vs blur and mean fill")
    e.add_argument("--config", type=Path, required=True, metavar="CONFIG.yaml")
    e.add_argument(
        "--checkpoint", default=None, help="a model file (default OUTPUT/model.safetensors)"
    )
    e.set_defaults(func=_run(_evaluate))
    f = msub.add_parser(
        "finetune",
        help="fine-tune an MAE encoder for land cover on a GeoTIFF and its label raster",
        description="Fine-tune an MAE encoder (probe, partial, full, or the same architecture "
        "from scratch) on a GeoTIFF with a label raster; writes OUTPUT/model.safetensors, "
        "config.json, metrics.json (OA, macro-F1) and classes.tif (the map, on the image's "
        "grid). Config: mae-nb mae config OUT.yaml --finetune.",
    )
    f.add_argument("--config", type=Path, required=True, metavar="CONFIG.yaml")
    f.add_argument("--overwrite", action="store_true", help="replace a run in OUTPUT")
    f.set_defaults(func=config_command(finetune_command, load_finetune_config))
    c = msub.add_parser("config", help="write the default config to a YAML file to edit")
    c.add_argument("out", type=Path, metavar="OUT.yaml")
    c.add_argument("--overwrite", action="store_true", help="replace OUT.yaml if it exists")
    c.add_argument(
        "--finetune", action="store_true", help="the config of `mae-nb mae finetune` instead"
    )
    c.set_defaults(func=_write_config)


def _write_config(args: argparse.Namespace) -> int:
    if args.finetune:
        return write_default_config(
            args.out, FINETUNE_DEFAULTS, "mae", args.overwrite, actions="finetune"
        )
    return write_default_config(args.out, MAE_DEFAULTS, "mae", args.overwrite)


def _run(action):
    return config_command(action, load_mae_config)
