"""Masked pretraining, fine-tuning and evaluation of per-pixel classifiers of hyperspectral scenes.

Chapters 07-07 and ``mae-nb hsi`` build on these::

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
from mae_nb.models.spectral import SpectralTransformer, classification_loss, pretrain_loss
from mae_nb.train import fit, load_checkpoint, save_checkpoint

__all__ = [
    "SST_CHECKPOINT_NAME",
    "TRANSDUCTIVE_NOTICE",
    "FinetuneResult",
    "PretrainResult",
    "classifier_from_pretrained",
    "course_sst_path",
    "evaluate",
    "finetune",
    "load_sst",
    "load_sst_weights",
    "patch_size_of",
    "predict",
    "pretrain_on_scene",
    "pretraining_patches",
    "pretraining_region",
    "regions_sha256",
    "save_sst",
    "scene_standardizer",
    "seen_test_pixels",
    "split_record",
    "sst_like",
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
    if steps is not None and epochs is not None:
        raise InputError("give steps or epochs, not both")
    for name, value in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size)):
        if value is not None and (int(value) != value or value < 1):
            raise InputError(f"{name} must be a positive integer, got {value}")
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
    start = time.perf_counter()
    history = fit(
        model,
        data,
        classification_loss,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        val_data=val_data,
        weight_decay=weight_decay,
        device=device,
        seed=seed,
        progress=progress,
        desc=desc or f"fine-tuning on {fraction:.1%} of the labels",
    )
    return FinetuneResult(
        model,
        history,
        train_mask,
        int(train_mask.sum()),
        float(fraction),
        std,
        epochs * batches,
        time.perf_counter() - start,
    )


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
