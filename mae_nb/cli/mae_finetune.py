"""``mae-nb mae finetune``: fine-tune an MAE encoder for land cover on a GeoTIFF and its labels.

One YAML config (``mae-nb mae config OUT.yaml --finetune`` writes the defaults; the schema and
its checks are :mod:`mae_nb.cli.finetune_config`)::

    mae-nb mae finetune --config ft.yaml   # -> OUTPUT/model.safetensors, config.json,
    #                                         metrics.json, classes.tif

Every input is checked before the first step: the config (unknown keys, types, ranges), the
image and its bands against the checkpoint (count and, where both name their bands, order),
the label raster (:func:`mae_nb.data.labels.read_labels`: its grid, its values against the
class list), the spatial split (blocks of whole tiles, :func:`mae_nb.data.hsi.spatial_split`),
and that every class has a labelled training patch. The training is the course's one
fine-tuning loop (:func:`mae_nb.finetune.finetune_mae`, layer-wise learning-rate decay); the
map is written back with the image's CRS and transform
(:func:`mae_nb.data.labels.write_class_map`). Data-parallel under
``torchrun --nproc_per_node=N -m mae_nb mae finetune ...`` (each process trains on its share of
the tiles; rank 0 scores and writes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mae_nb.cli.config import refuse_existing, with_train_threads, write_json
from mae_nb.cli.finetune_config import finetune_output_paths
from mae_nb.errors import CheckpointError, InputError

__all__ = ["finetune_command"]

#: Sentinel-2 band names and the words band descriptions use, as the course's band names.
_BAND_WORDS = {
    "blue": "blue", "green": "green", "red": "red", "nir": "nir", "swir1": "swir1",
    "swir2": "swir2", "b02": "blue", "b2": "blue", "b03": "green", "b3": "green", "b04": "red",
    "b4": "red", "b08": "nir", "b8": "nir", "b8a": "nir", "b11": "swir1", "b12": "swir2",
}  # fmt: skip


def _band_word(description: str) -> str | None:
    """The course's name (blue, green, red, nir, swir1, swir2) of a band description, or None."""
    words = description.lower().replace("_", " ").replace("-", " ").replace("(", " ").split()
    found = {_BAND_WORDS[w] for w in words if w in _BAND_WORDS}
    return found.pop() if len(found) == 1 else None


def _expected_bands(model, name: str) -> list[str] | None:
    """The bands ``model`` takes, in order, when known: its ``band_names``, Meta's RGB models and
    the course models (true colour; blue, green, red, nir, swir1, swir2)."""
    from mae_nb.data.synthetic import SENSOR_BANDS
    from mae_nb.pretrained import COURSE_MODELS
    from mae_nb.reconstruct import model_normalization

    cfg = getattr(model, "pretrained_cfg", None) or {}
    if cfg.get("band_names"):
        return [str(b) for b in cfg["band_names"]]
    for count, course in COURSE_MODELS.items():
        if name == course:
            return list(SENSOR_BANDS[count][1])
    if model.in_chans == 3 and model_normalization(model)[0] == "imagenet":
        return ["red", "green", "blue"]
    return None


def _choose_bands(model, name: str, raster_path: Path, bands: list[int] | None) -> list[int]:
    """The 1-based image bands to feed ``model``: ``bands`` or all, checked in count and (where
    the model and the file both name their bands) order; an error names the bands expected."""
    from mae_nb.data.geotiff import check_bands, open_raster

    with open_raster(raster_path) as src:
        count, descriptions = src.count, [d or "" for d in src.descriptions]
    in_chans = int(model.in_chans)
    expected = _expected_bands(model, name)
    words = [_band_word(d) for d in descriptions]
    where = {w: i + 1 for i, w in enumerate(words) if w is not None}
    ewords = [_band_word(e) for e in expected] if expected else None
    named = bool(ewords) and all(ewords) and all(e in where for e in ewords)
    wanted = f"{in_chans} bands" + (f", in this order: {', '.join(expected)}" if expected else "")
    fix = (
        f"set data.bands: {[where[e] for e in ewords]}"
        if named
        else f"set data.bands to {in_chans} 1-based band numbers of the image"
        + (" in that order" if expected else "")
        + ", or choose a checkpoint for this image's bands"
    )
    if bands is None:
        if count != in_chans and named:
            return [where[e] for e in ewords]  # named bands: picked in the model's order
        if count != in_chans:
            raise InputError(
                f"the checkpoint {name} takes {wanted}; {raster_path.name} has {count} band(s): "
                f"{fix}"
            )
        bands = list(range(1, count + 1))
    bands = check_bands(bands, count, raster_path)
    if len(bands) != in_chans:
        raise InputError(
            f"the checkpoint {name} takes {wanted}; data.bands chooses {len(bands)} of "
            f"{raster_path.name}: {fix}"
        )
    chosen = [words[b - 1] for b in bands]
    if ewords and all(ewords) and all(chosen) and chosen != ewords:
        raise InputError(
            f"the checkpoint {name} takes {wanted}; bands {bands} of {raster_path.name} are "
            f"{', '.join(descriptions[b - 1] for b in bands)}: {fix}"
        )
    return bands


def _load_encoder(checkpoint: str | None, n_bands: int):
    """``(MAE, name)`` from ``model.checkpoint`` (None: the course model for ``n_bands``)."""
    from mae_nb.pretrained import COURSE_MODELS, load_mae

    if checkpoint is None:
        if n_bands not in COURSE_MODELS:
            raise InputError(
                f"no course model takes {n_bands} band(s) (they take "
                f"{', '.join(f'{k} ({v})' for k, v in COURSE_MODELS.items())}): set "
                "model.checkpoint (a `mae-nb mae pretrain` model file or a registry name), or "
                "choose data.bands"
            )
        checkpoint = COURSE_MODELS[n_bands]
    try:
        model = load_mae(checkpoint)
    except CheckpointError as exc:
        if "no decoder weights" in str(exc) and "fine-tuned classifier" in str(exc):
            raise CheckpointError(
                f"model.checkpoint {checkpoint} is a fine-tuned classifier (an encoder with a "
                "head, no decoder), e.g. the model.safetensors of an earlier `mae-nb mae "
                "finetune`; fine-tune from the MAE it started from (its config.json names it)"
            ) from None
        raise
    return model, str(checkpoint)


def _prepare(config: dict):
    """Everything checked and cut before training: a dict of the pieces."""
    from mae_nb.data.geotiff import open_raster, read_raster
    from mae_nb.data.hsi import spatial_split
    from mae_nb.data.labels import read_labels, tile_regions
    from mae_nb.finetune import scene_tiles
    from mae_nb.studies.finetuning import model_input

    d, m, s = config["data"], config["model"], config["split"]
    image_path = Path(d["image"])
    with open_raster(image_path) as src:
        n_bands = len(d["bands"]) if d["bands"] else src.count
    model, name = _load_encoder(m["checkpoint"], n_bands)
    bands = _choose_bands(model, name, image_path, d["bands"])
    raster = read_raster(image_path, bands)
    labels = read_labels(d["labels"], raster, d["classes"], resample=d["resample_labels"])
    p = int(model.patch_size)
    t = int(d["tile_size"] or model.img_size[0])
    if t % p:
        raise InputError(f"data.tile_size {t} must be a multiple of the model's patch size {p}")
    h, w = raster.shape
    if h < t or w < t:
        raise InputError(
            f"{image_path.name} is {h} x {w} px, smaller than one {t} x {t} px tile of the "
            "model: give a larger image or a smaller data.tile_size"
        )
    gh, gw = h // t, w // t
    in_tiles = np.zeros((h, w), bool)
    in_tiles[: gh * t, : gw * t] = True
    block = int(s["block_tiles"]) * t
    try:
        split = spatial_split(
            np.where(in_tiles, labels.labels, 0), 1, fractions=s["fractions"],
            block_size=block, seed=s["seed"], require_all_classes=s["require_all_classes"],
        )  # fmt: skip
    except InputError as exc:
        raise InputError(
            f"{exc} In the config: a smaller split.block_tiles (blocks are {block} px: "
            f"{s['block_tiles']} x {t} px tiles) or data.tile_size, another split.seed, or "
            "split.require_all_classes: false"
        ) from None
    x = model_input(model, raster.array, raster.valid)
    tiles = scene_tiles(
        x, labels.labels, t, p, valid=raster.valid, class_names=labels.class_names,
        n_classes=labels.n_classes, min_fraction=d["min_fraction"],
    )  # fmt: skip
    regions = tile_regions(split, t).ravel()
    masks = {name: regions == i for i, name in enumerate(("train", "val", "test"))}
    counts = {k: tiles.counts(v) for k, v in masks.items()}
    empty = [k for k, n in enumerate(counts["train"], start=1) if n == 0]
    if empty:
        raise InputError(
            "no training patch for class "
            + ", ".join(labels.describe(k) for k in empty)
            + f" at train.fraction {config['train']['fraction']:g}: the training blocks hold no "
            f"{p} x {p} px patch whose majority ({d['min_fraction']:.0%} or more) is "
            f"{'that class' if len(empty) == 1 else 'those classes'} (training patches per "
            f"class: {dict(zip(labels.class_names, counts['train'].tolist()))}). Try another "
            "split.seed, a smaller split.block_tiles, a lower data.min_fraction, or leave the "
            "class out of data.classes (set its pixels to 0)"
        )
    if not counts["test"].sum():
        raise InputError(
            "no labelled test patch: the test blocks hold no labelled patch; try another "
            "split.seed or a smaller split.block_tiles"
        )
    return dict(model=model, name=name, bands=bands, raster=raster, labels=labels, split=split,
                tiles=tiles, x=x, masks=masks, counts=counts, tile=t)  # fmt: skip


def finetune_command(config: dict, args: argparse.Namespace, dist) -> int:
    """``mae-nb mae finetune``: check everything, fine-tune, score, write the four outputs."""
    return with_train_threads(config, lambda: _finetune(config, args, dist))


def _finetune(config: dict, args: argparse.Namespace, dist) -> int:
    from mae_nb.data.labels import write_class_map
    from mae_nb.finetune import classification_map, evaluate_tiles, finetune_mae, mae_classifier
    from mae_nb.studies.finetuning import majority_baseline
    from mae_nb.train import save_checkpoint

    paths = finetune_output_paths(config)
    refuse_existing([paths[k] for k in ("model", "config", "metrics", "map")], args.overwrite)
    m, t = config["model"], config["train"]
    seed = config["seed"]
    p = _prepare(config)
    labels, tiles, masks = p["labels"], p["tiles"], p["masks"]
    classifier = mae_classifier(
        p["model"], labels.n_classes, mode=m["mode"], last_blocks=m["last_blocks"], seed=seed
    )
    net = dist.wrap(classifier)

    def loader(dataset, batch_size, shuffle=True):
        return dist.loader(dataset, batch_size, shuffle=shuffle, seed=seed)

    if dist.main:
        n = {k: int(v.sum()) for k, v in masks.items()}
        print(
            f"fine-tuning {p['name']} ({m['mode']}) on {Path(config['data']['image']).name}, "
            f"bands {p['bands']}, {labels.n_classes} classes, {p['tile']} px tiles: "
            f"{n['train']} train / {n['val']} val / {n['test']} test tiles, "
            f"{t['fraction']:.0%} of the training labels, {t['epochs']} epoch(s) x "
            f"{dist.world} process(es) ({dist.backend or 'single'}), device {dist.device}",
            flush=True,
        )
    started = time.perf_counter()
    result = finetune_mae(
        net, tiles, masks["train"], t["fraction"], seed=seed, epochs=t["epochs"],
        batch_size=t["batch_size"], lr=t["lr"], layer_decay=t["layer_decay"],
        weight_decay=t["weight_decay"], device=dist.device, progress=dist.main,
        data_loader=loader,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if dist.main:
        classifier = classifier.eval()
        scores = {}
        for split in ("test", "val"):
            if tiles.counts(masks[split]).sum():
                r = evaluate_tiles(classifier, tiles, masks[split])
                scores[split] = {
                    "oa": r["oa"], "macro_f1": r["macro_f1"], "aa": r["aa"], "kappa": r["kappa"],
                    "n_patches": r["n_patches"], "confusion": np.asarray(r["confusion"]).tolist(),
                }  # fmt: skip
        baseline = majority_baseline(tiles, masks["test"])
        raster = p["raster"]
        classes = classification_map(classifier, p["x"], valid=raster.valid, tile_size=p["tile"])
        write_class_map(paths["map"], classes, labels, raster, overwrite=True)
        cfg = {
            **{k: v for k, v in classifier.pretrained_cfg.items() if k != "mae_config"},
            "source": "mae-nb mae finetune",
            "classifier": {
                "task": classifier.task,
                "num_classes": classifier.num_classes,
                "mode": m["mode"],
                "last_blocks": classifier.last_blocks,
                "class_values": labels.class_values,
                "class_names": labels.class_names,
                "tile_size": p["tile"],
                "bands": p["bands"],
                "checkpoint": p["name"],
            },  # fmt: skip
        }
        save_checkpoint(paths["model"], classifier.cpu(), config=cfg, history=result.history,
                        overwrite=True)  # fmt: skip
        metrics = {
            "checkpoint": p["name"],
            "mode": m["mode"],
            "fraction": t["fraction"],
            "n_labels": result.n_labels,
            "steps_per_process": result.steps,
            "seconds": round(seconds, 1),
            "world_size": dist.world,
            "backend": dist.backend,
            "device": str(dist.device),
            "classes": dict(zip(labels.class_names, labels.class_values)),
            "patches_per_class": {
                k: dict(zip(labels.class_names, v.tolist())) for k, v in p["counts"].items()
            },
            "split": {
                "fractions": list(p["split"].fractions),
                "grid": list(p["split"].grid),
                "block_px": p["tile"] * config["split"]["block_tiles"],
                "tiles": {k: int(v.sum()) for k, v in masks.items()},
            },
            "majority_oa": baseline,
            **scores.get("test", {}),
            "val": scores.get("val"),
            "history": result.history.to_dict(),
        }
        write_json(paths["metrics"], metrics)
        write_json(paths["config"], {"config": config, "model": cfg})
        test = scores["test"]
        print(
            f"test: OA {test['oa']:.3f}, macro-F1 {test['macro_f1']:.3f} on {test['n_patches']} "
            f"patches (majority class {baseline:.3f}); wrote {paths['model']}, "
            f"{paths['metrics']}, {paths['map']}"
        )
    dist.barrier()
    return 0
