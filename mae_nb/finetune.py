"""Hyperspectral masked pretraining, and the one fine-tuning loop (hyperspectral pixels, MAE tiles).

Chapters 07-08 and ``mae-nb hsi`` build on these::

    pretraining_region(split, patch_size=None) -> (H, W) bool  # train+val, windows clear of test
    pretrain_on_scene(scene, split=split, ...) -> PretrainResult  # masked pretraining there
    pretraining_patches(scene, image_size, region=...) -> (PatchDataset, Standardizer)
    split_record(split) -> dict                          # what a checkpoint records of its split
    course_sst_path() -> Path                            # where chapter 07 saves its model
    save_sst(path, result) / load_sst(path=None, num_classes=None) -> SpectralTransformer
    classifier_from_pretrained(pretrained, num_classes) -> SpectralTransformer   # new head
    sst_like(reference, num_classes, **changes)  # same architecture, random init (ablations)
    finetune(model, scene, split, fraction=1.0, ...) -> FinetuneResult   # `fraction` of the labels
    evaluate(model, scene, split, subset="test") -> dict   # oa, aa, kappa, confusion, map (H, W)
    predict(model, cube, mask, ...) -> (n,) classes 1..K of the pixels of mask

The one fine-tuning loop, :func:`train_classifier` (on :func:`mae_nb.train.fit`, with the MAE
paper's layer-wise learning-rate decay, :func:`layer_decay_groups`), also trains an MAE
encoder with a head (chapter 06, ``mae-nb mae finetune``)::

    mae_classifier(encoder, K, task="patch"|"image", mode="probe"|"partial"|"full"|"scratch")
    scene_tiles(x, labels, tile_size, patch_size) -> TileSet   # aligned tiles, label per patch
    image_set(images, targets, class_names) -> TileSet         # multi-label images
    finetune_mae(model, tiles, train, fraction, ...) -> FinetuneResult
    evaluate_tiles(model, tiles, test) -> dict   # oa, macro_f1 (patches) or map, sample_f1
    classification_map(model, x) -> (H, W) classes 1..K of a whole scene

Conventions. A model takes patches (N, B, p, p) around pixels and returns logits (N, K) of
the centre pixel (every model in :mod:`mae_nb.models.spectral` and
:mod:`mae_nb.models.baselines`). Scenes are :class:`~mae_nb.data.hsi.HyperspectralScene`
(cube (H, W, B), labels (H, W), 1..K and 0 = unlabelled); splits are
:class:`~mae_nb.data.hsi.SpatialSplit`. Pretraining uses no labels, but it must not see the
pixels a model is later scored on: given the split, it uses only :func:`pretraining_region`
(training and validation blocks, every patch window clear of the test region) and
standardizes each band there; without a split it uses every pixel and warns that this is
transductive. Fine-tuning and evaluation standardize with statistics of the
pixels of the split's *training region* (labelled or not, never val/test pixels), so every
label fraction sees the same inputs. Chapter 08's comparison of models and label fractions
is :mod:`mae_nb.studies.label_efficiency`.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from mae_nb.data.hsi import PatchDataset, dilate, fit_standardizer, subsample_labels
from mae_nb.data.registry import cache_dir
from mae_nb.errors import CheckpointError, InputError, InputTypeError, MissingFileError
from mae_nb.metrics import classification_report
from mae_nb.models.classifier import MAEClassifier, layer_id
from mae_nb.models.mae import MaskedAutoencoderViT
from mae_nb.models.spectral import SpectralTransformer, classification_loss, pretrain_loss
from mae_nb.train import fit, load_checkpoint, save_checkpoint

__all__ = [
    "SST_CHECKPOINT_NAME",
    "TRANSDUCTIVE_NOTICE",
    "FINETUNE_MODES",
    "FinetuneResult",
    "PretrainResult",
    "TileSet",
    "classification_map",
    "classifier_from_pretrained",
    "course_sst_path",
    "evaluate",
    "evaluate_tiles",
    "finetune",
    "finetune_mae",
    "image_set",
    "layer_decay_groups",
    "load_sst",
    "load_sst_weights",
    "patch_size_of",
    "mae_classifier",
    "predict",
    "predict_tiles",
    "pretrain_on_scene",
    "pretraining_patches",
    "pretraining_region",
    "regions_sha256",
    "save_sst",
    "scene_tiles",
    "scene_standardizer",
    "seen_test_pixels",
    "split_record",
    "sst_like",
    "train_classifier",
]

#: The file name of chapter 07's pretrained model in the course cache.
SST_CHECKPOINT_NAME = "sst_pretrained_ch07.safetensors"


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel / DataParallel wrapper."""
    return getattr(model, "module", model)


def patch_size_of(model: nn.Module) -> int:
    """The patch size p (``image_size``) a model expects: patches (N, B, p, p)."""
    m = _unwrap(model)
    size = getattr(m, "image_size", None)
    if size is None:
        size = getattr(m, "config", {}).get("image_size")
    if size is None:
        raise InputError(
            f"cannot tell the patch size of a {type(m).__name__}: it has no image_size or config"
        )
    return int(size)


def _num_classes(model: nn.Module) -> int | None:
    m = _unwrap(model)
    n = getattr(m, "num_classes", None)
    return None if n is None else int(n)


def _check_model(model: nn.Module, scene) -> None:
    n = _num_classes(model)
    if n is not None and n != scene.n_classes:
        raise InputError(
            f"the model has {n} output classes but the scene {scene.name!r} has "
            f"{scene.n_classes}; build it with num_classes={scene.n_classes} (or call "
            f"reset_classifier({scene.n_classes}))"
        )
    m = _unwrap(model)
    bands = getattr(m, "in_chans", None) or getattr(m, "config", {}).get("in_chans")
    if bands is not None and int(bands) != scene.n_bands:
        raise InputError(
            f"the model takes {bands} bands but the scene {scene.name!r} has {scene.n_bands}"
        )


def scene_standardizer(scene, split):
    """Per-band standardizer fitted on the pixels of ``split``'s training region (H, W),
    labelled or not."""
    return fit_standardizer(scene.cube, split.regions == 0)


def classifier_from_pretrained(pretrained: nn.Module, num_classes: int) -> nn.Module:
    """A classifier with ``pretrained``'s encoder weights and a new head for ``num_classes``.

    ``pretrained``: a :class:`~mae_nb.models.spectral.SpectralTransformer` (e.g. from
    :func:`load_sst` or :func:`mae_nb.pretrained.sst_or_fallback`). The copy has no decoder (so
    every parameter gets a gradient, as DistributedDataParallel requires); the head is initialized
    from torch's current random state.
    """
    pretrained = _unwrap(pretrained)
    if not isinstance(pretrained, SpectralTransformer):
        raise InputTypeError(f"expected a SpectralTransformer, got {type(pretrained).__name__}")
    if int(num_classes) != num_classes or num_classes < 1:
        raise InputError(f"num_classes must be a positive integer, got {num_classes}")
    config = {**pretrained.config, "decoder_depth": -1, "num_classes": int(num_classes)}
    model = SpectralTransformer(**config)
    encoder = {
        k: v for k, v in pretrained.state_dict().items() if not k.startswith(("decoder_", "head."))
    }
    missing, unexpected = model.load_state_dict(encoder, strict=False)
    stray = [k for k in missing if not k.startswith("head.")] + list(unexpected)
    if stray:  # pragma: no cover - guards against a renamed parameter
        raise InputError(f"pretrained weights do not fit the classifier: {stray[:5]}")
    return model


def sst_like(reference: nn.Module, num_classes: int, **changes) -> nn.Module:
    """A randomly initialized classifier with ``reference``'s architecture (a
    SpectralTransformer).

    ``changes`` override constructor arguments, e.g. ``blockwise_embed=False`` or
    ``factorized_attention=False`` for the ablations. No decoder.
    """
    reference = _unwrap(reference)
    if not isinstance(reference, SpectralTransformer):
        raise InputTypeError(f"expected a SpectralTransformer, got {type(reference).__name__}")
    return SpectralTransformer(
        **{**reference.config, "decoder_depth": -1, "num_classes": int(num_classes), **changes}
    )


# --------------------------------------------------------------------------- masked pretraining


@dataclass
class PretrainResult:
    """What :func:`pretrain_on_scene` returns: the model, its History, the standardizer used
    and the config saved with the checkpoint (``{"model": ..., "scene": ..., ...}``)."""

    model: SpectralTransformer
    history: Any
    standardizer: Any
    config: dict = field(default_factory=dict)


def regions_sha256(split) -> str:
    """SHA-256 (hex) of ``split.regions`` (its shape and int8 values): two splits with the same
    digest put every pixel in the same train/val/test/buffer region."""
    regions = np.ascontiguousarray(split.regions, dtype=np.int8)
    digest = hashlib.sha256(f"{regions.shape[0]}x{regions.shape[1]}:".encode())
    digest.update(regions.tobytes())
    return digest.hexdigest()


def split_record(split) -> dict:
    """What a checkpoint records of the split its pretraining kept clear of: ``patch_size``,
    ``seed``, ``fractions`` (train, val, test), ``grid`` (rows, cols of blocks),
    ``buffer``, ``missing`` (classes absent from a split) and ``regions_sha256``
    (:func:`regions_sha256`)."""
    return {
        "patch_size": int(split.patch_size),
        "seed": int(split.seed),
        "fractions": [float(f) for f in split.fractions],
        "grid": [int(g) for g in split.grid],
        "buffer": int(split.buffer),
        "missing": {k: list(v) for k, v in (split.missing or {}).items()},
        "regions_sha256": regions_sha256(split),
    }


def pretraining_region(split, patch_size: int | None = None) -> np.ndarray:
    """(H, W) bool: the centre pixels masked pretraining may use without seeing the test region.

    A pixel qualifies when it lies in the training or validation blocks (``split.regions`` 0
    or 1) and its ``patch_size`` x ``patch_size`` window (default ``split.patch_size``) holds
    no pixel of the test region (``split.regions == 2``, labelled or not). Patches at the
    scene's border are reflect-padded from pixels inside the same window, so they see nothing
    more. Pretraining on these pixels never reads a test pixel (:func:`seen_test_pixels`
    counts them: 0).
    """
    p = int(split.patch_size if patch_size is None else patch_size)
    if p < 1 or p % 2 == 0:
        raise InputError(f"patch_size must be an odd positive integer, got {patch_size}")
    regions = np.asarray(split.regions)
    near_test = dilate(regions == 2, p // 2)
    return ((regions == 0) | (regions == 1)) & ~near_test


def seen_test_pixels(split, centres: np.ndarray, patch_size: int) -> int:
    """How many pixels of ``split``'s test region fall inside a ``patch_size`` window around
    one of ``centres`` ((H, W) bool): what a pretraining on those patches read of the test
    region. 0 for :func:`pretraining_region`."""
    seen = dilate(np.asarray(centres, bool), int(patch_size) // 2)
    return int((seen & (np.asarray(split.regions) == 2)).sum())


#: What :func:`pretrain_on_scene` says when no split keeps the test region out of pretraining.
TRANSDUCTIVE_NOTICE = (
    "masked pretraining on every pixel of {scene!r}, test region included (no split given): "
    "this is transductive, the model sees the pixels it will later be scored on, which "
    "flatters it. Pass split= (mae_nb.data.hsi.spatial_split) to pretrain on the training and "
    "validation blocks only."
)


def pretraining_patches(
    scene,
    image_size: int,
    max_pixels: int | None = None,
    seed: int = 0,
    *,
    region: np.ndarray | None = None,
):
    """``(PatchDataset, Standardizer)`` for masked pretraining on ``scene``.

    ``region``: (H, W) bool, the centre pixels to use (e.g. :func:`pretraining_region`), or
    None for every pixel of the scene (transductive when the scene is later scored). Every
    band is standardized over the pixels of ``region`` (no labels are involved); patches
    (B, p, p) are cut around every pixel of it, or around a seeded random ``max_pixels`` of
    them.
    """
    h, w = scene.cube.shape[:2]
    if region is None:
        region = np.ones((h, w), bool)
    region = np.asarray(region, bool)
    if region.shape != (h, w):
        raise InputError(f"region {region.shape} does not match the scene's {h} x {w} pixels")
    n = int(region.sum())
    if n == 0:
        raise InputError(
            "the pretraining region has no pixel: no training/validation pixel is more than "
            "half a patch away from the test region; use a smaller patch or a coarser split grid"
        )
    std = fit_standardizer(scene.cube, None if n == h * w else region)
    mask = region
    if max_pixels is not None and max_pixels < n:
        flat = np.flatnonzero(region)
        keep = np.random.default_rng(seed).choice(len(flat), int(max_pixels), replace=False)
        mask = np.zeros(h * w, bool)
        mask[flat[keep]] = True
        mask = mask.reshape(h, w)
    return PatchDataset(std.apply(scene.cube), None, mask, image_size), std


def pretrain_on_scene(
    scene,
    *,
    split=None,
    model: SpectralTransformer | None = None,
    model_kwargs: dict | None = None,
    image_size: int = 7,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    mask_ratio: float = 0.7,
    max_pixels: int | None = None,
    seed: int = 0,
    device=None,
    progress: bool = True,
) -> PretrainResult:
    """Masked pretraining on ``scene`` (a :class:`~mae_nb.data.hsi.HyperspectralScene`), no
    labels.

    With ``split`` (a :class:`~mae_nb.data.hsi.SpatialSplit` of this scene) the patches come
    only from :func:`pretraining_region` (``split``, ``image_size``): training and validation
    blocks, no window touching the test region, standardizer fitted there; the config records
    ``"split"`` (:func:`split_record`) and ``"test_pixels_seen"`` (0). Without it, every pixel
    is used, test region included: a warning says this is transductive, and the config records
    ``"split": None`` and ``"test_pixels_seen": None`` (unknown).

    Serves ``image_size`` x ``image_size`` patches around the region's pixels (or a seeded
    random ``max_pixels`` of them, :func:`pretraining_patches`), and trains ``model`` (default:
    a new :class:`~mae_nb.models.spectral.SpectralTransformer` with ``model_kwargs``) with
    :func:`mae_nb.train.fit` and :func:`~mae_nb.models.spectral.pretrain_loss`.
    """
    region = None
    if split is not None:
        if split.regions.shape != scene.labels.shape:
            raise InputError(
                f"the split {split.regions.shape} does not belong to the scene "
                f"{scene.labels.shape} (H, W)"
            )
        region = pretraining_region(split, image_size)
    else:
        warnings.warn(TRANSDUCTIVE_NOTICE.format(scene=scene.name), UserWarning, stacklevel=2)
    data, std = pretraining_patches(scene, image_size, max_pixels, seed, region=region)
    if model is None:
        torch.manual_seed(seed)
        model = SpectralTransformer(
            scene.n_bands, image_size=image_size, mask_ratio=mask_ratio, **(model_kwargs or {})
        )
    history = fit(
        model,
        data,
        lambda m, b: pretrain_loss(m, b, mask_ratio),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        weight_decay=weight_decay,
        seed=seed,
        device=device,
        progress=progress,
        desc="masked pretraining",
    )
    centres = np.zeros(scene.labels.shape, bool)
    centres[data.coords[:, 0], data.coords[:, 1]] = True
    config = {
        "model": model.config,
        "scene": scene.name,
        "source": scene.source,
        "mask_ratio": mask_ratio,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "pixels": len(data),
        "region_pixels": int(scene.labels.size if region is None else region.sum()),
        "split": None if split is None else split_record(split),
        "test_pixels_seen": None if split is None else seen_test_pixels(split, centres, image_size),
        "standardizer": std.to_dict(),
    }
    return PretrainResult(model, history, std, config)


# --------------------------------------------------------------------------- the course checkpoint


def load_sst_weights(model: nn.Module, state_dict: dict, path: str | Path) -> nn.Module:
    """Load a checkpoint's ``state_dict`` into ``model`` (built from the same file's config);
    weights that do not fit are a :class:`CheckpointError` naming ``path``."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: the weights do not fit its model config ({first})"
        ) from None
    return model


def course_sst_path() -> Path:
    """Where chapter 07 saves its pretrained transformer: ``<cache>/checkpoints/`` +
    :data:`SST_CHECKPOINT_NAME`."""
    return cache_dir() / "checkpoints" / SST_CHECKPOINT_NAME


def save_sst(path: str | Path | None, result: PretrainResult, *, overwrite: bool = False) -> Path:
    """Save a :class:`PretrainResult` (weights, config, history) to ``path`` (default
    :func:`course_sst_path`) with :func:`mae_nb.train.save_checkpoint`."""
    path = course_sst_path() if path is None else Path(path)
    return save_checkpoint(
        path, result.model, config=result.config, history=result.history, overwrite=overwrite
    )


def load_sst(
    path: str | Path | None = None,
    *,
    num_classes: int | None = None,
    map_location: str | torch.device = "cpu",
    with_config: bool = False,
):
    """The pretrained :class:`~mae_nb.models.spectral.SpectralTransformer` saved at ``path``
    (default :func:`course_sst_path`).

    The model is rebuilt from the checkpoint's ``config["model"]`` and its weights loaded
    strictly; ``num_classes`` then puts a new head on it. Raises ``MissingFileError`` (saying
    how to make one) when there is no checkpoint, ``CheckpointError`` when the file holds no
    spatial-spectral transformer. With ``with_config=True`` returns ``(model, config)``
    (scene, standardizer, epochs, ...).
    """
    path = course_sst_path() if path is None else Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"no pretrained spatial-spectral transformer at {path}; run notebook "
            "07_hyperspectral_masked_pretraining (or mae_nb.finetune.pretrain_on_scene and "
            "save_sst) first"
        )
    payload = load_checkpoint(path, map_location=map_location)
    config = payload.get("config") or {}
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(
            f"{path} has no config['model'] to rebuild a spatial-spectral transformer from "
            f"(config keys: {sorted(config)})"
        )
    model = load_sst_weights(
        SpectralTransformer.from_config(config["model"]), payload["model"], path
    )
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return (model, config) if with_config else model


# --------------------------------------------------------------------------- fine-tuning


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns. ``train_mask``: (H, W) bool, the labelled pixels used."""

    model: nn.Module
    history: Any
    train_mask: np.ndarray
    n_labels: int
    fraction: float
    standardizer: Any
    steps: int
    seconds: float


def finetune(
    model: nn.Module,
    scene,
    split,
    fraction: float = 1.0,
    *,
    seed: int = 0,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    val: bool = False,
    standardizer=None,
    device=None,
    progress: bool = True,
    desc: str | None = None,
    data_loader: Callable | None = None,
) -> FinetuneResult:
    """Train ``model`` (in place) on ``fraction`` of the training labels of ``scene``.

    model: patches (N, B, p, p) -> logits (N, K). ``fraction`` in (0, 1]: share of each
    class's training pixels kept (seeded by ``seed``, at least one per class; see
    :func:`mae_nb.data.hsi.subsample_labels`). Length: ``steps`` optimizer steps (default
    100), so that 1 % and 100 % of the labels get the same number of updates (the History then
    has one entry per round: ``steps`` cut into the most equal rounds, at most 20; the labelled
    pixels are reshuffled at every pass over them), or ``epochs`` full passes, not both.
    ``val=True`` logs the loss on the validation split each round/epoch. Cross-entropy
    (:func:`mae_nb.models.spectral.classification_loss`) with AdamW through
    :func:`mae_nb.train.fit`. ``data_loader(dataset, batch_size) -> DataLoader``
    replaces the default loader (the CLI passes one with a DistributedSampler).
    """
    _check_model(model, scene)
    _check_length(steps, epochs, batch_size)
    if split.regions.shape != scene.labels.shape:
        raise InputError(
            f"the split {split.regions.shape} does not belong to the scene "
            f"{scene.labels.shape} (H, W)"
        )
    train_mask = subsample_labels(split.train, scene.labels, fraction, seed=seed)
    std = scene_standardizer(scene, split) if standardizer is None else standardizer
    cube = std.apply(scene.cube)
    p = patch_size_of(model)
    data = PatchDataset(cube, scene.labels, train_mask, p)
    val_data = PatchDataset(cube, scene.labels, split.val, p) if val and split.val.any() else None
    start = time.perf_counter()
    history, steps_done = train_classifier(
        model,
        data,
        classification_loss,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        val_data=val_data,
        seed=seed,
        device=device,
        progress=progress,
        desc=desc or f"fine-tuning on {fraction:.1%} of the labels",
        data_loader=data_loader,
    )
    return FinetuneResult(
        model,
        history,
        train_mask,
        int(train_mask.sum()),
        float(fraction),
        std,
        steps_done,
        time.perf_counter() - start,
    )


def _check_length(steps, epochs, batch_size) -> None:
    if steps is not None and epochs is not None:
        raise InputError("give steps or epochs, not both")
    for name, value in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size)):
        if value is not None and (int(value) != value or value < 1):
            raise InputError(f"{name} must be a positive integer, got {value}")


def layer_decay_groups(
    model: nn.Module, lr: float, layer_decay: float = 0.75, weight_decay: float = 0.05
) -> list[dict]:
    """AdamW parameter groups with the MAE paper's layer-wise learning-rate decay.

    Each trainable parameter of ``model`` (an encoder with ``blocks``, e.g.
    :class:`~mae_nb.models.classifier.MAEClassifier`) gets ``lr * layer_decay ** (depth + 1 -
    layer_id)`` (:func:`mae_nb.models.classifier.layer_id`: patch embedding, cls token and
    positions 0, block ``i`` ``i + 1``, final norm and head ``depth + 1``, so the head trains
    at ``lr`` and the patch embedding at ``lr * layer_decay ** (depth + 1)``). Biases, norms
    and tokens (parameters with one dimension, ``cls_token``, ``pos_embed``) get no weight
    decay, as in the paper. One group per (layer, decay or not), each with ``lr``,
    ``weight_decay``, ``lr_scale``, ``layer_id`` and ``names``.
    """
    blocks = getattr(_unwrap(model), "blocks", None)
    if blocks is None:
        raise InputTypeError(
            f"layer-wise decay needs an encoder with blocks, got {type(_unwrap(model)).__name__}"
        )
    if not 0.0 < float(layer_decay) <= 1.0:
        raise InputError(f"layer_decay must be in (0, 1] (1 = no decay), got {layer_decay}")
    depth = len(blocks)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in _unwrap(model).named_parameters():
        if not param.requires_grad:
            continue
        lid = layer_id(name, depth)
        decay = not (param.ndim == 1 or name in ("cls_token", "pos_embed"))
        scale = float(layer_decay) ** (depth + 1 - lid)
        group = groups.setdefault(
            (lid, decay),
            {
                "params": [],
                "names": [],
                "lr": float(lr) * scale,
                "lr_scale": scale,
                "weight_decay": float(weight_decay) if decay else 0.0,
                "layer_id": lid,
            },
        )
        group["params"].append(param)
        group["names"].append(name)
    if not groups:
        raise InputError("the model has no trainable parameter (everything is frozen)")
    return [groups[k] for k in sorted(groups)]


def train_classifier(
    model: nn.Module,
    data,
    loss_fn: Callable,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    layer_decay: float | None = None,
    val_data=None,
    seed: int = 0,
    device=None,
    progress: bool = True,
    desc: str | None = None,
    data_loader: Callable | None = None,
):
    """The course's one fine-tuning loop: ``(History, steps)`` after training ``model`` in place.

    Every classifier goes through it: the hyperspectral transformer (:func:`finetune`) and an
    MAE encoder with a head (:func:`finetune_mae`). ``data``: a Dataset whose batches
    ``loss_fn(model, batch)`` scores. Length: ``steps`` optimizer steps (default 100), so that
    1 % and 100 % of the labels get the same number of updates (the History then has one
    entry per round: ``steps`` cut into the most equal rounds, at most 20; the samples are
    reshuffled at every pass over them), or ``epochs`` full passes, not both. AdamW through
    :func:`mae_nb.train.fit`, over the trainable parameters; with ``layer_decay`` its groups
    are :func:`layer_decay_groups`. ``data_loader(dataset, batch_size, shuffle=True) ->
    DataLoader`` replaces the default loader (the CLI passes one with a DistributedSampler):
    then whole passes over each process's share, rounded up to ``steps``.
    """
    _check_length(steps, epochs, batch_size)
    if data_loader is not None:  # whole passes over each process's share, rounded up
        data = data_loader(data, batch_size)
        if val_data is not None:
            val_data = data_loader(val_data, batch_size, shuffle=False)
        batches = len(data)
        if epochs is None:
            epochs = math.ceil((100 if steps is None else steps) / batches)
    elif epochs is None:  # exactly `steps` steps, logged in up to 20 equal rounds (History entries)
        steps = 100 if steps is None else int(steps)
        epochs = max(d for d in range(1, min(steps, 20) + 1) if steps % d == 0)
        batches = steps // epochs
        data = _rounds_loader(data, batch_size, batches, seed)
    else:
        batches = math.ceil(len(data) / batch_size)
    optimizer = None
    if layer_decay is not None:
        optimizer = torch.optim.AdamW(layer_decay_groups(model, lr, layer_decay, weight_decay))
    elif not any(p.requires_grad for p in model.parameters()):
        raise InputError("the model has no trainable parameter (everything is frozen)")
    history = fit(
        model,
        data,
        loss_fn,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        val_data=val_data,
        weight_decay=weight_decay,
        optimizer=optimizer,
        device=device,
        seed=seed,
        progress=progress,
        desc=desc or "fine-tuning",
    )
    return history, int(epochs * batches)


def _rounds_loader(data, batch_size: int, batches: int, seed: int):
    """A DataLoader of exactly ``batches`` batches per pass: reshuffled permutations of ``data``
    strung together (``RandomSampler`` without replacement, ``num_samples`` beyond
    ``len(data)``)."""
    from torch.utils.data import DataLoader, RandomSampler

    size = min(batch_size, len(data))  # fewer samples than a batch: every batch holds them all
    sampler = RandomSampler(
        data, num_samples=batches * size, generator=torch.Generator().manual_seed(seed)
    )
    return DataLoader(data, batch_size=size, sampler=sampler)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(
    model: nn.Module,
    cube: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    batch_size: int = 64,
    device=None,
    progress: bool = False,
) -> np.ndarray:
    """Classes (1..K) of the pixels of ``mask`` (H, W) bool (all pixels if None), in
    ``np.argwhere`` order.

    cube: (H, W, B), already standardized. Returns (n,) int64. Patches are cut in batches of
    ``batch_size`` (border pixels get reflect-padded patches), so memory stays small.
    """
    from tqdm.auto import tqdm

    if int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}")
    data = PatchDataset(cube, None, mask, patch_size_of(model))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    out = np.empty(len(data), np.int64)
    for start in tqdm(
        range(0, len(data), batch_size), disable=not progress, desc="predicting", unit="batch"
    ):
        idx = np.arange(start, min(start + batch_size, len(data)))
        logits = model(data.patches(idx).to(device))
        out[idx] = logits.argmax(1).cpu().numpy() + 1
    return out


def evaluate(
    model: nn.Module,
    scene,
    split,
    *,
    subset: str = "test",
    full_map: bool = True,
    standardizer=None,
    batch_size: int = 64,
    device=None,
    progress: bool = False,
) -> dict:
    """Accuracy of ``model`` on the ``subset`` ("test", "val" or "train") pixels of ``split``.

    Returns ``{"oa", "aa", "kappa"}`` (floats), ``"confusion"`` (K, K) (rows = true class),
    ``"per_class"`` (K,) accuracies (NaN for a class absent from the subset), ``"map"`` (H, W)
    int: the predicted class 1..K of every pixel (``full_map=True``) or only of the subset's
    pixels (0 elsewhere, faster), ``"n_pixels"`` and ``"missing_classes"`` (class ids absent
    from the subset: they are left out of the average accuracy, with a warning).
    """
    _check_model(model, scene)
    sel = split.mask(subset)
    if not sel.any():
        raise InputError(
            f"the {subset} split has no labelled pixel; choose another split (fractions, grid)"
        )
    std = scene_standardizer(scene, split) if standardizer is None else standardizer
    cube = std.apply(scene.cube)
    labels = scene.labels
    pred_map = np.zeros(labels.shape, np.int64)
    if full_map:
        pred_map[:] = predict(
            model, cube, None, batch_size=batch_size, device=device, progress=progress
        ).reshape(labels.shape)
    else:
        rc = np.argwhere(sel)
        pred_map[rc[:, 0], rc[:, 1]] = predict(
            model, cube, sel, batch_size=batch_size, device=device, progress=progress
        )
    k = scene.n_classes
    present = np.unique(labels[sel])
    missing = [int(c) for c in range(1, k + 1) if c not in present]
    if missing:
        names = ", ".join(f"{c} ({scene.class_names[c - 1]})" for c in missing)
        warnings.warn(
            f"classes {names} have no pixel in the {subset} split; the average accuracy "
            f"is over the {k - len(missing)} classes present",
            stacklevel=2,
        )
    report = classification_report(labels[sel] - 1, pred_map[sel] - 1, n_classes=k)
    return {
        **report,
        "map": pred_map,
        "n_pixels": int(sel.sum()),
        "missing_classes": missing,
        "subset": subset,
    }


# --------------------------------------------------------------------------- MAE encoders

#: What :func:`mae_classifier` can build: a linear probe of the frozen encoder, the last
#: blocks fine-tuned, the whole encoder fine-tuned, the same architecture from scratch.
FINETUNE_MODES = ("probe", "partial", "full", "scratch")


def mae_classifier(
    encoder: nn.Module,
    num_classes: int,
    *,
    task: str = "patch",
    mode: str = "full",
    last_blocks: int = 1,
    seed: int = 0,
) -> MAEClassifier:
    """A :class:`~mae_nb.models.classifier.MAEClassifier` on ``encoder``'s weights, set up
    for ``mode``.

    ``encoder``: a :class:`~mae_nb.models.mae.MaskedAutoencoderViT` (e.g. from
    :func:`mae_nb.pretrained.mae_or_fallback`; it is copied, not changed). ``mode``:
    ``"probe"`` (encoder frozen, the head trains), ``"partial"`` (the last ``last_blocks``
    blocks, final norm and head train), ``"full"`` (everything trains) or ``"scratch"`` (the
    same architecture re-initialized, everything trains). The head and a scratch encoder are
    drawn with ``torch.manual_seed(seed)``.
    """
    encoder = _unwrap(encoder)
    if not isinstance(encoder, MaskedAutoencoderViT):
        raise InputTypeError(
            f"expected an MAE (mae_nb.models.mae.MaskedAutoencoderViT), got "
            f"{type(encoder).__name__}"
        )
    if mode not in FINETUNE_MODES:
        raise InputError(f"mode must be one of {FINETUNE_MODES}, got {mode!r}")
    torch.manual_seed(seed)
    model = MAEClassifier(encoder, num_classes, task=task)
    if mode == "scratch":
        model.reinitialize()
    model.set_trainable(mode, last_blocks)
    return model


@dataclass
class TileSet:
    """Model-ready images with their labels, for :func:`finetune_mae` and :func:`evaluate_tiles`.

    - ``images``: (N, C, t, t) float32, already in the model's units (normalized);
    - ``labels``: ``task="patch"``: (N, gh, gw) int64, the class 1..K of each patch (0 = no
      label: unlabelled, mixed or nodata); ``task="image"``: (N, K) 0/1 targets (multi-label);
    - ``rows``, ``cols``: (N,) the top-left pixel of each tile in the scene (0 for images);
    - ``patch_size``, ``class_names`` (K names), ``scene_shape`` (H, W) of the scene (None for
      separate images), ``names``: one name per image (separate images).
    """

    images: np.ndarray
    labels: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    patch_size: int
    class_names: tuple
    task: str = "patch"
    scene_shape: tuple | None = None
    names: tuple = ()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def tile_size(self) -> int:
        return int(self.images.shape[-1])

    def counts(self, where: np.ndarray | None = None) -> np.ndarray:
        """(K,) labelled patches (patch task) or images (image task) per class, over the tiles
        where ``where`` (N,) is True (default all)."""
        sel = np.ones(len(self), bool) if where is None else np.asarray(where, bool)
        if self.task == "image":
            return self.labels[sel].sum(0).astype(np.int64)
        return np.bincount(self.labels[sel].ravel(), minlength=self.n_classes + 1)[1:]


def _patch_majority(labels: np.ndarray, p: int, k: int, min_fraction: float) -> np.ndarray:
    """(H/p, W/p) majority class of each p x p patch of ``labels`` (H, W) (0 = none, or less
    than ``min_fraction`` of the patch)."""
    h, w = labels.shape
    blocks = labels.reshape(h // p, p, w // p, p)
    counts = np.stack([(blocks == c).sum(axis=(1, 3)) for c in range(1, k + 1)], -1)
    best = counts.argmax(-1)
    top = np.take_along_axis(counts, best[..., None], -1)[..., 0]
    return np.where((top > 0) & (top >= min_fraction * p * p), best + 1, 0).astype(np.int64)


def scene_tiles(
    x: np.ndarray,
    labels: np.ndarray | None,
    tile_size: int,
    patch_size: int,
    *,
    valid: np.ndarray | None = None,
    class_names=None,
    n_classes: int | None = None,
    min_fraction: float = 0.5,
) -> TileSet:
    """Cut a scene into the aligned grid of ``tile_size`` tiles (tile (i, j) starts at pixel
    (i * t, j * t); a partial tile at the bottom or right is left out), with each patch's
    majority label.

    ``x``: (C, H, W) float, the scene already in the model's units (see
    :func:`mae_nb.studies.finetuning.model_input`). ``labels``: (H, W) ints 1..K, 0 =
    unlabelled (or None: no labels). A patch is labelled with its majority class when that
    class covers at least ``min_fraction`` of it and no pixel of it is invalid (``valid``
    (H, W) bool, False at nodata). The aligned grid matches
    :func:`mae_nb.data.labels.tile_regions`, which tells which split region each tile lies in.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise InputError(f"x must be a (C, H, W) image, got shape {x.shape}")
    t, p = int(tile_size), int(patch_size)
    if p < 1 or t < p or t % p:
        raise InputError(f"tile_size {tile_size} must be a multiple of patch_size {patch_size}")
    _, h, w = x.shape
    if h < t or w < t:
        raise InputError(f"the scene ({h} x {w} px) is smaller than one {t} x {t} px tile")
    gh, gw = h // t, w // t
    rows, cols = np.meshgrid(np.arange(gh) * t, np.arange(gw) * t, indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    crop = x[:, : gh * t, : gw * t].astype(np.float32)
    images = crop.reshape(x.shape[0], gh, t, gw, t).transpose(1, 3, 0, 2, 4)
    images = np.ascontiguousarray(images.reshape(gh * gw, x.shape[0], t, t))
    if labels is None:
        k = int(n_classes or len(class_names or ()) or 1)
        patch = np.zeros((gh * gw, t // p, t // p), np.int64)
    else:
        labels = np.asarray(labels)
        if labels.shape != (h, w):
            raise InputError(
                f"the labels map is {labels.shape[0]} x {labels.shape[1]} px, the scene "
                f"{h} x {w}: give a map of the same scene, pixel for pixel"
            )
        if labels.min() < 0:
            raise InputError("labels must be 0 (unlabelled) or class numbers 1..K")
        k = int(n_classes or (len(class_names) if class_names else labels.max()))
        if labels.max() > k:
            raise InputError(f"labels go up to {labels.max()}, but there are only {k} classes")
        lab = labels[: gh * t, : gw * t].astype(np.int64)
        if valid is not None:
            lab = np.where(np.asarray(valid, bool)[: gh * t, : gw * t], lab, -1)
        maj = _patch_majority(np.where(lab < 0, 0, lab), p, k, min_fraction)
        if valid is not None:  # a patch with a nodata pixel has no label
            bad = _patch_majority((lab < 0).astype(np.int64), p, 1, 1e-9) > 0
            maj[bad] = 0
        n = t // p
        patch = maj.reshape(gh, n, gw, n).transpose(0, 2, 1, 3).reshape(gh * gw, n, n)
    names = tuple(class_names) if class_names else tuple(f"class {c}" for c in range(1, k + 1))
    if len(names) != k:
        raise InputError(f"{len(names)} class names for {k} classes")
    return TileSet(images, patch, rows, cols, p, names, "patch", (h, w))


def image_set(images: np.ndarray, targets: np.ndarray, class_names, names=()) -> TileSet:
    """A :class:`TileSet` of separate images (N, C, H, W) (model units) with multi-label
    ``targets`` (N, K) 0/1, for ``task="image"``."""
    images = np.asarray(images, np.float32)
    targets = np.asarray(targets)
    if images.ndim != 4:
        raise InputError(f"images must be (N, C, H, W), got shape {images.shape}")
    if targets.shape != (len(images), len(class_names)):
        raise InputError(
            f"targets must be (N, K) = ({len(images)}, {len(class_names)}), got {targets.shape}"
        )
    if not np.isin(targets, (0, 1)).all():
        raise InputError("targets must be 0 or 1 (each label present or not)")
    zeros = np.zeros(len(images), int)
    return TileSet(
        images,
        targets.astype(np.float32),
        zeros,
        zeros,
        0,
        tuple(class_names),
        "image",
        None,
        tuple(names),
    )


def _check_classifier(model: nn.Module, tiles: TileSet) -> MAEClassifier:
    m = _unwrap(model)
    if not isinstance(m, MAEClassifier):
        raise InputTypeError(
            f"expected an MAEClassifier (mae_nb.finetune.mae_classifier), got {type(m).__name__}"
        )
    if m.task != tiles.task:
        raise InputError(
            f"the model predicts per {m.task}, the tiles are labelled per {tiles.task}"
        )
    if m.num_classes != tiles.n_classes:
        raise InputError(
            f"the model has {m.num_classes} output classes, the tiles {tiles.n_classes} "
            f"({', '.join(tiles.class_names)}); build it with num_classes={tiles.n_classes}"
        )
    if m.in_chans != tiles.images.shape[1]:
        raise InputError(
            f"the model takes {m.in_chans} bands, the tiles have {tiles.images.shape[1]}"
        )
    if tiles.task == "patch" and tiles.patch_size != m.patch_size:
        raise InputError(
            f"the tiles are labelled per {tiles.patch_size} px patch, the model's patches are "
            f"{m.patch_size} px: cut them with patch_size={m.patch_size}"
        )
    return m


def _tile_mask(mask, tiles: TileSet, what: str) -> np.ndarray:
    mask = np.asarray(mask, bool).ravel()
    if mask.shape != (len(tiles),):
        raise InputError(f"{what} must be (N,) bool, one per tile ({len(tiles)}), got {mask.shape}")
    return mask


def _patch_loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y - 1, ignore_index=-1)


def _multilabel_loss(model, batch):
    x, y = batch
    return nn.functional.binary_cross_entropy_with_logits(model(x), y)


def finetune_mae(
    model: nn.Module,
    tiles: TileSet,
    train,
    fraction: float = 1.0,
    *,
    seed: int = 0,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 16,
    lr: float = 1e-3,
    layer_decay: float | None = 0.75,
    weight_decay: float = 0.05,
    device=None,
    progress: bool = True,
    desc: str | None = None,
    data_loader: Callable | None = None,
) -> FinetuneResult:
    """Train an :class:`~mae_nb.models.classifier.MAEClassifier` (in place) on ``fraction`` of
    the labels of the training tiles, with :func:`train_classifier` (the one loop).

    ``train``: (N,) bool, the training tiles (a spatially disjoint split, e.g. tiles of the
    training region: :func:`mae_nb.data.labels.tile_regions`). Patch task: ``fraction`` of
    each class's labelled training patches is kept (seeded, nested across fractions, at least
    one per class: :func:`mae_nb.data.hsi.subsample_labels`; the others are ignored by the
    cross-entropy) and only tiles with a kept patch are served. Image task: a seeded
    ``fraction`` of the training images (at least one), binary cross-entropy per label.
    AdamW with layer-wise decay ``layer_decay`` (:func:`layer_decay_groups`; None: one
    learning rate). Returns a :class:`FinetuneResult` whose ``train_mask`` is (N, gh, gw)
    (patch task: the patches used) or (N,) (image task).
    """
    from torch.utils.data import TensorDataset

    m = _check_classifier(model, tiles)
    _check_length(steps, epochs, batch_size)
    train = _tile_mask(train, tiles, "train")
    if not train.any():
        raise InputError("no training tile: the split puts every tile in validation or test")
    if tiles.task == "patch":
        region = np.broadcast_to(train[:, None, None], tiles.labels.shape)
        n = tiles.labels.shape[1]
        flat = subsample_labels(
            region.reshape(-1, n),
            tiles.labels.reshape(-1, n),
            fraction,
            seed=seed,
            class_names=tiles.class_names,
        )
        used = flat.reshape(tiles.labels.shape)
        keep = used.any(axis=(1, 2))
        y = torch.from_numpy(np.where(used, tiles.labels, 0)[keep])
        loss_fn = _patch_loss
    else:
        if not 0.0 < float(fraction) <= 1.0:
            raise InputError(f"fraction must be in (0, 1], got {fraction}")
        idx = np.flatnonzero(train)
        take = max(1, round(float(fraction) * len(idx)))
        chosen = np.random.default_rng(seed).permutation(idx)[:take]
        used = np.zeros(len(tiles), bool)
        used[chosen] = True
        keep = used
        y = torch.from_numpy(tiles.labels[keep].astype(np.float32))
        loss_fn = _multilabel_loss
    data = TensorDataset(torch.from_numpy(tiles.images[keep]), y)
    start = time.perf_counter()
    history, steps_done = train_classifier(
        model,
        data,
        loss_fn,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        layer_decay=layer_decay,
        seed=seed,
        device=device,
        progress=progress,
        desc=desc or f"{m.mode}: {fraction:.0%} of the labels",
        data_loader=data_loader,
    )
    return FinetuneResult(
        model,
        history,
        used,
        int(used.sum()),
        float(fraction),
        None,
        steps_done,
        time.perf_counter() - start,
    )


@torch.no_grad()
def predict_tiles(model: nn.Module, images, *, batch_size: int = 32, device=None) -> np.ndarray:
    """Predictions for ``images`` (a :class:`TileSet` or (N, C, H, W) model-unit images).

    Patch task: (N, H/p, W/p) int64, the class 1..K of every patch. Image task: (N, K)
    float32, the probability of each label (sigmoid).
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}")
    m = _unwrap(model)
    x = images.images if isinstance(images, TileSet) else np.asarray(images, np.float32)
    device = torch.device(device) if device is not None else next(m.parameters()).device
    m.eval()
    out = []
    for start in range(0, len(x), batch_size):
        logits = m(torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size])).to(device))
        if m.task == "image":
            out.append(torch.sigmoid(logits).float().cpu().numpy())
        else:
            out.append(logits.argmax(1).cpu().numpy() + 1)
    return np.concatenate(out)


def evaluate_tiles(model: nn.Module, tiles: TileSet, test, *, batch_size: int = 32) -> dict:
    """Scores of ``model`` on the ``test`` tiles ((N,) bool).

    Patch task: ``{"oa", "macro_f1", "aa", "kappa", "confusion", "n_patches", "prediction"}``
    over the labelled test patches (macro-F1 over the classes present in them,
    scikit-learn); ``prediction`` (N, gh, gw), 0 outside the test tiles. Image task:
    :func:`mae_nb.metrics.multilabel_report` of the test images' probabilities
    (``"map"``, ``"sample_f1"``, ...) and ``"scores"`` (n_test, K).
    """
    from sklearn.metrics import f1_score

    from mae_nb.metrics import multilabel_report

    _check_classifier(model, tiles)
    test = _tile_mask(test, tiles, "test")
    if not test.any():
        raise InputError("no test tile: the split puts no tile in the test region")
    pred = predict_tiles(model, tiles.images[test], batch_size=batch_size)
    if tiles.task == "image":
        return {**multilabel_report(tiles.labels[test], pred), "scores": pred}
    truth = tiles.labels[test]
    sel = truth > 0
    if not sel.any():
        raise InputError("the test tiles hold no labelled patch")
    yt, yp = truth[sel] - 1, pred[sel] - 1
    report = classification_report(yt, yp, n_classes=tiles.n_classes)
    present = np.unique(yt)
    full = np.zeros(tiles.labels.shape, np.int64)
    full[test] = pred
    return {
        **report,
        "macro_f1": float(f1_score(yt, yp, labels=present, average="macro", zero_division=0)),
        "n_patches": int(sel.sum()),
        "prediction": full,
    }


def classification_map(
    model: nn.Module,
    x: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    batch_size: int = 32,
    tile_size: int | None = None,
) -> np.ndarray:
    """(H, W) int64 class map 1..K of a whole scene ``x`` (C, H, W) in the model's units.

    The scene is cut into tiles of ``tile_size`` px (default the model's input size; a multiple
    of its patch size, as the tiles it was fine-tuned on), the last ones flush with the bottom
    and right edges, so every pixel is covered; every pixel gets the class of its patch. 0 where
    ``valid`` (H, W) is False. Write it with :func:`mae_nb.data.labels.write_class_map` (or
    :func:`mae_nb.data.geotiff.write_raster` with ``like=`` the scene) for a GeoTIFF on the
    scene's grid.
    """
    from mae_nb.data.tiling import tile_starts

    m = _unwrap(model)
    if m.task != "patch":
        raise InputError("a classification map needs a patch classifier (task='patch')")
    x = np.asarray(x, np.float32)
    if x.ndim != 3 or x.shape[0] != m.in_chans:
        raise InputError(f"x must be ({m.in_chans}, H, W), got shape {x.shape}")
    p = m.patch_size
    t = int(m.img_size[0] if tile_size is None else tile_size)
    if t < p or t % p:
        raise InputError(f"tile_size must be a multiple of the patch size {p}, got {tile_size}")
    h, w = x.shape[1:]
    if h < t or w < t:
        raise InputError(f"the scene ({h} x {w} px) is smaller than one {t} x {t} px tile")
    starts = [(r, c) for r in tile_starts(h, t, t) for c in tile_starts(w, t, t)]
    out = np.zeros((h, w), np.int64)
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        batch = np.stack([x[:, r : r + t, c : c + t] for r, c in chunk])
        pred = predict_tiles(m, batch, batch_size=batch_size)
        for (r, c), grid in zip(chunk, pred):
            out[r : r + t, c : c + t] = np.kron(grid, np.ones((p, p), np.int64))
    if valid is not None:
        out[~np.asarray(valid, bool)] = 0
    return out
