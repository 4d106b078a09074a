"""Getting a masked autoencoder: Meta's, the course's own, chapter 03's, or a stand-in.

Every chapter and command gets its MAE here, one way:

- :func:`load_mae` loads one by name: ``"auto"`` (:func:`resolve_checkpoint`: Meta's ViT-L when
  the machine has room for it, else its ViT-B), a checkpoint of the registry (Meta's
  ``"mae_visualize_vit_large"``, fetched from the cache, a mirror folder or Meta's server; the
  course's own ``"mae_tiny_course_rgb"`` and ``"mae_tiny_course_6band"``, shipped inside the
  package), a file (Meta's format or one the course wrote), or ``"chapter03"``, the model
  chapter 03 trained and saved at :func:`course_mae_path` (with :func:`save_course_mae`).
- :data:`COURSE_MODELS` are the course's open MAEs, trained with ``mae-nb mae pretrain`` on
  public-domain Landsat scenes and synthetic scenes (``mae_nb/weights/NAME.yaml`` reproduces
  each); :func:`describe_course_model` says in one sentence how one was trained.
- :func:`train_course_mae` is chapter 03's training recipe in one call: the chapter builds it by
  hand, then calls this function. :func:`chapter03_recipe` holds chapter 03's parameters (full
  and smoke) and :func:`train_chapter03_mae` trains chapter 03's model with them, on chapter
  03's data and seeds: the same model a run of chapter 03 saves.
- :func:`mae_or_fallback` is what chapters 04-05 call: the checkpoint asked for if it can be had,
  else the course's open MAE for the image's band count, else chapter 03's saved model, else
  chapter 03's model trained here by :func:`train_chapter03_mae` (and saved, as chapter 03
  would), with a notice that says which and why.
- :func:`sst_or_fallback` does the same for chapter 08's spatial-spectral transformer: chapter
  07's pretrained model if it was pretrained on the same scene without the split's test
  pixels, else one pretrained here with chapter 07's recipe (:func:`chapter07_recipe`, same
  seeds: the model chapter 07 would save) on the split's training and validation blocks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mae_nb.data import registry
from mae_nb.data.geotiff import check_bands
from mae_nb.data.tiling import tile
from mae_nb.errors import CheckpointError, DataUnavailableError, InputError, MissingFileError
from mae_nb.finetune import (
    course_sst_path,
    load_sst,
    pretrain_on_scene,
    regions_sha256,
    save_sst,
)
from mae_nb.models.checkpoints import model_from_checkpoint
from mae_nb.models.mae import MaskedAutoencoderViT, create_mae
from mae_nb.models.spectral import SpectralTransformer
from mae_nb.reconstruct import normalization
from mae_nb.train import History, fit, save_checkpoint, seed_everything

__all__ = [
    "AUTO",
    "AUTO_LARGE_MIN_BYTES",
    "CHAPTER03",
    "COURSE_MODELS",
    "ModelChoice",
    "SSTChoice",
    "TrainedMAE",
    "available_memory",
    "chapter03_recipe",
    "chapter07_recipe",
    "course_mae_path",
    "describe_course_model",
    "in_training_units",
    "load_mae",
    "mae_or_fallback",
    "resolve_checkpoint",
    "save_course_mae",
    "seen_in_training",
    "sst_or_fallback",
    "train_chapter03_mae",
    "train_course_mae",
]

#: The name :func:`load_mae` and :func:`mae_or_fallback` give chapter 03's saved model.
CHAPTER03 = "chapter03"

#: The course's open MAEs (registry names, shipped inside the package) by band count.
COURSE_MODELS = {3: "mae_tiny_course_rgb", 6: "mae_tiny_course_6band"}


# --------------------------------------------------------------------------- loading

#: The checkpoint name that picks Meta's model by the memory this machine has.
AUTO = "auto"

#: Available memory below which ``"auto"`` takes Meta's ViT-B instead of its ViT-L (the ViT-L
#: alone peaks at about 2 GB in a kernel, the ViT-B at about 1.2 GB; Binder gives 2 GB).
AUTO_LARGE_MIN_BYTES = 3 * 1024**3


def _cgroup_room() -> int | None:
    """Bytes this process's cgroup may still take (its limit minus its usage), None if unlimited.

    Containers (Binder, Docker, a Kubernetes pod) cap memory by cgroup while ``psutil`` reports
    the host's memory, so both are read."""
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            cap = Path(limit).read_text().strip()
            used = int(Path(usage).read_text().strip())
        except (OSError, ValueError):
            continue
        if cap == "max" or not cap.isdigit() or int(cap) >= 1 << 60:
            return None
        return max(int(cap) - used, 0)
    return None


def available_memory() -> int:
    """Bytes of memory available to this process now: ``psutil``'s available memory, or the
    room left under the container's cgroup limit when that is smaller."""
    import psutil

    room = psutil.virtual_memory().available
    cgroup = _cgroup_room()
    return room if cgroup is None else min(room, cgroup)


def resolve_checkpoint(checkpoint: str | Path = AUTO, *, quiet: bool = False) -> str | Path:
    """The checkpoint ``"auto"`` stands for on this machine; any other value unchanged.

    ``"auto"``: Meta's ``mae_visualize_vit_large`` when at least
    :data:`AUTO_LARGE_MIN_BYTES` (about 3 GB) are available (:func:`available_memory`), else
    ``mae_visualize_vit_base`` (Binder's 2 GB cannot hold the ViT-L next to a notebook). Says
    which and why (printed unless ``quiet``).
    """
    if str(checkpoint) != AUTO:
        return checkpoint
    room = available_memory()
    gb = f"{room / 1024**3:.1f} GB available"
    floor = f"{AUTO_LARGE_MIN_BYTES / 1024**3:.0f} GB"
    if room >= AUTO_LARGE_MIN_BYTES:
        name, why = "mae_visualize_vit_large", f"{gb}, at least the {floor} it needs"
    else:
        name, why = (
            "mae_visualize_vit_base",
            (f"only {gb}, below the {floor} Meta's ViT-L needs, so its ViT-B instead"),
        )
    if not quiet:
        print(f"checkpoint 'auto': {name} ({why})")
    return name


def course_mae_path() -> Path:
    """Where chapter 03 saves its trained tiny MAE (a safetensors file in the cache)."""
    return registry.cache_dir() / "checkpoints" / "mae_tiny_ch03.safetensors"


def _registry_checkpoints() -> list[str]:
    return [d.name for d in registry.REGISTRY.values() if d.kind == "checkpoint"]


def load_mae(
    source: str | Path = CHAPTER03,
    *,
    arch: str | None = None,
    map_location: str | torch.device = "cpu",
) -> MaskedAutoencoderViT:
    """An MAE ready to use (eval mode): ``"chapter03"``, a registry name, or a checkpoint file.

    ``"auto"``: Meta's ViT-L or ViT-B, by the memory available (:func:`resolve_checkpoint`).
    ``"chapter03"``: the model chapter 03 saved (:func:`course_mae_path`). A registry name:
    the course's open MAEs (:data:`COURSE_MODELS`, shipped with mae-nb), or Meta's checkpoints
    (``mae_visualize_vit_base``, ``mae_visualize_vit_large``, ``..._ganloss``, ``..._huge``;
    ``mae_pretrain_vit_base_full``, ``..._large_full``, ``..._huge_full``, which were trained
    with normalized-pixel targets and load with ``model.norm_pix_loss = True``, so
    :func:`mae_nb.reconstruct.reconstruct` un-normalizes their predictions), fetched with
    :func:`mae_nb.data.fetch` (cache, mirror folders, then Meta's server). A path:
    a file in Meta's format (``{"model": state_dict}``) or one the course wrote.
    ``arch``: the preset of a Meta file (default: the registry's, or read from its shapes).
    ``model.pretrained_cfg`` holds the architecture, ``source``, and the ``mean``/``std`` the
    model expects its input standardized with (ImageNet's for Meta's RGB models, the training
    image's per-band statistics for chapter 03's). Loading is
    :func:`mae_nb.models.checkpoints.model_from_checkpoint` (memory-mapped: ViT-L within 2 GB).
    """
    source = resolve_checkpoint(source)
    name = str(source)
    if name == CHAPTER03:
        path = course_mae_path()
        if not path.is_file():
            raise DataUnavailableError(
                f"no chapter 03 checkpoint at {path}: run chapter 03 first (`mae-nb run 03`) to "
                "train and save it"
            )
        return model_from_checkpoint(path, map_location=map_location)
    if isinstance(source, str) and name in registry.REGISTRY:
        dataset = registry.get(name)
        if dataset.kind != "checkpoint":
            raise CheckpointError(f"{name!r} is a {dataset.kind} dataset, not a model checkpoint")
        path = registry.fetch(name)[dataset.files[0].name]
        model = model_from_checkpoint(path, arch or dataset.meta.get("arch"), map_location)
        model.pretrained_cfg["source"] = name
        if dataset.meta.get("norm_pix_loss"):  # Meta's *_full files: normalized-pixel targets
            model.norm_pix_loss = True
            model.pretrained_cfg["norm_pix"] = True
            model.pretrained_cfg["kwargs"]["norm_pix_loss"] = True
        return model
    path = Path(source).expanduser()
    if not path.exists():
        raise MissingFileError(
            f"{name!r} is neither a file nor a checkpoint of the registry "
            f"({', '.join(_registry_checkpoints())}) nor {CHAPTER03!r} (chapter 03's model)"
        )
    return model_from_checkpoint(path, arch, map_location)


def describe_course_model(model: MaskedAutoencoderViT) -> str:
    """How a model ``mae-nb mae pretrain`` wrote was trained, in one sentence (from its config)."""
    cfg = model.pretrained_cfg
    run = cfg.get("mae_config") or {}
    train, data = run.get("train", {}), run.get("data", {})
    names = [s["name"] for s in cfg.get("trained_on", [])]
    synthetic = sum(n.startswith("synthetic") for n in names)
    real = [n for n in names if not n.startswith("synthetic")]
    seen = ", ".join(real + ([f"{synthetic} synthetic scenes"] if synthetic else []))
    ratio = train.get("mask_ratio")
    masking = (
        f"{ratio[0]:.0%}-{ratio[1]:.0%}"
        if isinstance(ratio, list)
        else f"{ratio:.0%}"
        if ratio is not None
        else "?"
    )
    params = sum(p.numel() for p in model.parameters()) / 1e6
    held = data.get("holdout")
    return (
        f"a {params:.1f} M-parameter ViT MAE ({cfg.get('arch')}, {model.in_chans} bands) trained "
        f"by `mae-nb mae pretrain` for {cfg.get('steps')} steps of {train.get('batch_size')} "
        f"crops of {data.get('crop_size')} px, masking {masking}, on {seen}"
        + (f" (the right {held:.0%} of each real scene held out)" if held else "")
    )


def seen_in_training(model: MaskedAutoencoderViT, name: str, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels of the scene ``name`` (a registry name, or a file name) that
    ``model`` read while training, from the training windows ``mae-nb mae pretrain`` records
    (``pretrained_cfg["trained_on"]``). All False for a scene it never saw or a model without
    that record. Score a model only where this is False (chapter 04 picks its crops there)."""
    seen = np.zeros(shape, bool)
    for entry in model.pretrained_cfg.get("trained_on") or []:
        if entry.get("name") == name:
            r, c, h, w = entry["train_window"]
            seen[r : r + h, c : c + w] = True
    return seen


def save_course_mae(
    model: MaskedAutoencoderViT,
    history: History | None = None,
    *,
    path: str | Path | None = None,
    **config: Any,
) -> Path:
    """Save ``model`` as the course's MAE (default :func:`course_mae_path`), for chapters 04-05.

    The file holds ``{"model": state dict (Meta's names), "config": model.pretrained_cfg plus
    ``config`` (e.g. ``data="landsat7-olinda"``), "history": history}``; :func:`load_mae`
    rebuilds the model from it, with the ``mean``/``std`` it was trained with. Overwrites.
    """
    config = {**model.pretrained_cfg, **config}
    path = course_mae_path() if path is None else Path(path)
    return save_checkpoint(path, model, config=config, history=history, overwrite=True)


# --------------------------------------------------------------------------- chapter 03's recipe


@dataclass
class TrainedMAE:
    """What :func:`train_course_mae` made: the model (eval mode, on the CPU), its per-epoch
    ``history``, and the normalized tiles (N, C, T, T) it trained and was validated on."""

    model: MaskedAutoencoderViT
    history: History
    train_tiles: torch.Tensor
    val_tiles: torch.Tensor


def train_course_mae(
    image: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    bands: list[int] | None = None,
    tile_size: int = 64,
    stride: int = 32,
    epochs: int = 5,
    mask_ratio: float = 0.75,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    val_fraction: float = 0.0,
    max_tiles: int | None = None,
    progress: bool = True,
    norm_pix_loss: bool = False,
) -> TrainedMAE:
    """Train the course's tiny MAE (``mae_vit_tiny_patch8``) on tiles of ``image``: chapter 03.

    image: (C, H, W) in its own units (``bands``: 1-based bands to use); ``valid`` (H, W): False
    for nodata. The recipe chapter 03 teaches step by step:

    1. standardize each band by its mean and std over the valid pixels
       (:func:`mae_nb.reconstruct.normalization`, ``"per-band"``); both go to
       ``model.pretrained_cfg["mean"/"std"]``, so later chapters feed the model the same way;
    2. cut fully valid ``tile_size`` tiles every ``stride`` px; with ``val_fraction`` the bottom
       share of the rows gives the validation tiles and the tiles above it the training tiles
       (spatially disjoint), at most ``max_tiles`` of them;
    3. train with AdamW (weight decay 0.05) on the loss of the masked patches, each batch with a
       fresh random mask and a random rotation and flip; validation uses the same masks every
       epoch (noise drawn from seed 0), so its curve is not noise.

    ``norm_pix_loss``: train on normalized-pixel targets (each patch standardized by its own mean
    and variance, as Meta's ``*_full`` checkpoints were); the model's predictions are then
    normalized patches (:func:`mae_nb.reconstruct.unnormalize_patches`). The same ``seed`` gives
    the same model. Returns a :class:`TrainedMAE`.
    """
    image = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
    if image.ndim != 3:
        raise InputError(f"image must have shape (C, H, W), got {image.shape}")
    if bands is not None:
        image = image[[b - 1 for b in check_bands(bands, image.shape[0], "the image")]]
    image = image.astype(np.float32)
    valid = np.ones(image.shape[1:], bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != image.shape[1:]:
        raise InputError(f"valid must have the image's shape {image.shape[1:]}, got {valid.shape}")
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    valid = valid & np.isfinite(image).all(axis=0)
    norm = normalization(image, "per-band", valid)
    x = np.where(valid[None], norm.apply(np.nan_to_num(image)), 0.0).astype(np.float32)
    split = int(image.shape[1] * (1 - val_fraction))  # rows above: training; below: validation
    tiles = tile(x, tile_size, stride=stride, valid=valid)
    train_tiles = torch.from_numpy(tiles.tiles[tiles.rows + tile_size <= split][:max_tiles])
    val_tiles = torch.from_numpy(tiles.tiles[tiles.rows >= split])
    if len(train_tiles) == 0:
        raise InputError(
            f"no fully valid {tile_size} x {tile_size} tile to train on in the image "
            f"({image.shape[1]} x {image.shape[2]} px, the top {split} rows for training)"
        )

    def mae_loss(model: MaskedAutoencoderViT, x: torch.Tensor) -> torch.Tensor:
        """Random masks, rotations and flips while training; fixed masks for validation."""
        if model.training:
            x = torch.rot90(x, int(torch.randint(4, (1,))), dims=(2, 3))
            x = x.flip(3) if torch.rand(1) < 0.5 else x
            return model(x, mask_ratio)[0]
        generator = torch.Generator().manual_seed(0)
        noise = torch.rand(len(x), model.num_patches, generator=generator)
        return model(x, mask_ratio, noise)[0]

    seed_everything(seed)
    model = create_mae(
        "mae_vit_tiny_patch8",
        img_size=tile_size,
        in_chans=image.shape[0],
        norm_pix_loss=bool(norm_pix_loss),
    )
    history = fit(
        model,
        train_tiles,
        mae_loss,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        val_data=val_tiles if len(val_tiles) else None,
        weight_decay=0.05,
        seed=seed,
        progress=progress,
        desc="tiny MAE",
    )
    model = model.cpu().eval()
    model.pretrained_cfg.update(
        mean=norm.mean.tolist(),
        std=norm.std.tolist(),
        bands=list(bands) if bands is not None else None,
        tile=tile_size,
        mask_ratio=mask_ratio,
        epochs=epochs,
        norm_pix=bool(norm_pix_loss),
        source="trained here",
    )
    return TrainedMAE(model, history, train_tiles, val_tiles)


def chapter03_recipe(smoke: bool = False) -> dict[str, Any]:
    """Chapter 03's training recipe: its parameters and derived values, for a full or smoke run.

    ``data`` and ``size``: the sample chapter 03 loads (``load_sample(data, bands=6, size=size,
    seed=seed)``, the synthetic scene when the real one is not here); the other keys are
    :func:`train_course_mae`'s arguments. ``tests/test_pretrained.py`` checks that chapter 03's
    parameters cell gives exactly these values, so the two cannot drift apart.
    """
    return dict(
        data="landsat7-olinda",
        size=352,
        seed=0,
        tile_size=64,
        stride=32,
        epochs=1 if smoke else 60,
        mask_ratio=0.75,
        lr=5e-4,
        batch_size=8,
        val_fraction=0.25,
        max_tiles=16 if smoke else None,
    )


def train_chapter03_mae(
    smoke: bool = False, *, save: bool = True, progress: bool = True, quiet: bool = False
) -> TrainedMAE:
    """Chapter 03's model, trained here with :func:`chapter03_recipe` (same data, same seeds).

    The result equals what a run of chapter 03 (``SMOKE = smoke``) trains on this machine; with
    ``save`` it is saved where chapter 03 saves it (:func:`course_mae_path`, with the data
    source and ``smoke`` in its config), so the next chapter finds it in the cache.
    """
    from mae_nb.data import load_sample

    recipe = chapter03_recipe(smoke)
    data, size = recipe.pop("data"), recipe.pop("size")
    sample = load_sample(data, bands=6, size=size, seed=recipe["seed"], quiet=quiet)
    trained = train_course_mae(
        sample.image, sample.valid, bands=list(sample.rgb), progress=progress, **recipe
    )
    trained.model.pretrained_cfg["source"] = "chapter 03's recipe, trained here"
    if save:
        save_course_mae(trained.model, trained.history, data=sample.source, smoke=smoke)
    return trained


# --------------------------------------------------------------------------- with a fallback


@dataclass
class ModelChoice:
    """The model a chapter got and why: ``source`` is ``"meta"`` (Meta's checkpoint asked for),
    ``"course model"`` (one of :data:`COURSE_MODELS`), ``"chapter 03"`` (chapter 03's saved
    model) or ``"trained here"`` (chapter 03's recipe run here, or for a band count chapter 03
    does not train, a stand-in trained on the image); ``notice`` says why it is not the one
    asked for."""

    model: MaskedAutoencoderViT
    source: str
    name: str
    notice: str = ""


def mae_or_fallback(
    checkpoint: str = AUTO,
    image: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    *,
    epochs: int = 5,
    seed: int = 0,
    quiet: bool = False,
    smoke: bool = False,
) -> ModelChoice:
    """The checkpoint asked for if it can be had; else the course's open MAE; else chapter 03's
    model, from the cache or trained here with chapter 03's recipe.

    ``checkpoint``: ``"auto"`` (Meta's ViT-L, or its ViT-B where less than about 3 GB of memory
    is available: :func:`resolve_checkpoint`), a registry name (Meta's
    ``mae_visualize_vit_large``, ``..._base``; the course's ``mae_tiny_course_rgb``), a file, or
    ``"chapter03"`` to start from chapter 03's model. When a registry checkpoint is not
    available (offline, no copy in the cache or a mirror), the course's open MAE for the image's
    band count (:data:`COURSE_MODELS`; RGB without an image) is used; failing that chapter 03's
    saved model (when it takes the image's band count); if chapter 03 has not been run either,
    chapter 03's model is trained here with its own recipe (:func:`train_chapter03_mae`,
    ``smoke`` picks the recipe of chapter 03's smoke run) and saved where chapter 03 saves it,
    so a learner who starts here gets the model one who ran chapter 03 has. Only an image whose
    band count chapter 03 does not train (it trains on 3 true-colour bands) gets a stand-in
    trained for ``epochs`` on the image itself with :func:`train_course_mae`. Every fallback
    prints (unless ``quiet``) and warns its notice, which names the model used and how it was
    trained. When chapter 03's model meets an ``image`` in other units than it was trained on,
    the image is standardized by its own per-band statistics instead (said in the notice).
    """
    checkpoint = resolve_checkpoint(checkpoint, quiet=quiet)
    first = ""
    if str(checkpoint) != CHAPTER03:
        try:
            model = load_mae(checkpoint)
            kind = "course model" if str(checkpoint) in COURSE_MODELS.values() else "meta"
            return ModelChoice(model, kind, str(checkpoint))
        except DataUnavailableError as exc:
            reason = str(exc).split(" from http")[0].split(" (")[0]
            first = f"The checkpoint {checkpoint!r} is not available here ({reason})"
        bands = 3 if image is None else int(np.asarray(image).shape[0])
        name = COURSE_MODELS.get(bands)
        if name is not None and name != str(checkpoint):
            try:
                model = load_mae(name)
            except DataUnavailableError:
                model = None
            if model is not None:
                notice = (
                    f"NOTICE: {first}. Using the course's open MAE {name!r} instead: "
                    f"{describe_course_model(model)}. Every number below describes this model."
                )
                if not quiet:
                    print(notice)
                warnings.warn(notice, stacklevel=2)
                return ModelChoice(model, "course model", name, notice)
    bands = None if image is None else int(np.asarray(image).shape[0])
    try:
        model = load_mae(CHAPTER03)
        if bands is not None and model.in_chans != bands:
            raise DataUnavailableError(f"chapter 03's model takes {model.in_chans} bands")
    except DataUnavailableError:
        start = first + ", and chapter 03" if first else "Chapter 03"
        if bands is None or bands == 3:
            recipe = chapter03_recipe(smoke)
            notice = (
                f"NOTICE: {start}'s model was not found in the cache ({course_mae_path()}). "
                "Training it here with chapter 03's own recipe (`train_chapter03_mae`: "
                f"{recipe['epochs']} epoch(s) on {recipe['data']!r}, seed {recipe['seed']}"
                f"{', its smoke run' if smoke else ''}), the model a run of chapter 03 saves, "
                "and saving it there. Every number below describes this model."
            )
            if not quiet:
                print(notice)
            trained = train_chapter03_mae(smoke, progress=not quiet, quiet=quiet)
            warnings.warn(notice, stacklevel=2)
            model = trained.model
            units = _adapt_units(model, image, valid) if image is not None else ""
            if units:
                notice = f"{notice} {units}"
                if not quiet:
                    print(units)
            return ModelChoice(model, "trained here", "chapter 03's tiny MAE", notice)
        notice = (
            f"NOTICE: {start}'s model for {bands} bands was not found (chapter 03 trains on 3 "
            f"true-colour bands). Training the tiny MAE for {epochs} epoch(s) on this image as "
            "a stand-in: every number below describes this briefly trained model."
        )
        if not quiet:
            print(notice)
        trained = train_course_mae(image, valid, epochs=epochs, seed=seed, progress=not quiet)
        warnings.warn(notice, stacklevel=2)
        name = f"a tiny MAE trained here for {epochs} epoch(s)"
        return ModelChoice(trained.model, "trained here", name, notice)
    notice = ""
    if first:
        notice = (
            f"NOTICE: {first}. Using chapter 03's tiny MAE instead ({course_mae_path()}): a 2 "
            "M-parameter model trained for minutes on one image. Every number below describes "
            "this stand-in."
        )
    units = _adapt_units(model, image, valid) if image is not None else ""
    if units:
        notice = f"{notice} {units}" if notice else f"NOTICE: {units}"
    if notice:
        if not quiet:
            print(notice)
        warnings.warn(notice, stacklevel=2)
    return ModelChoice(model, "chapter 03", "chapter 03's tiny MAE", notice)


def in_training_units(model: MaskedAutoencoderViT, mean, std) -> bool:
    """Whether an image with per-band ``mean`` and ``std`` is in the units ``model`` was trained
    on (its ``pretrained_cfg["mean"/"std"]``): every band's mean within 2 training standard
    deviations, and its spread within a factor 3 (``pretrained_cfg["spread_factor"]`` where the
    constants span far more than one scene: Prithvi's, over all HLS scenes, allow 20). False for
    a model without such statistics."""
    cfg = model.pretrained_cfg
    if cfg.get("mean") is None or cfg.get("std") is None or len(cfg["mean"]) != len(mean):
        return False
    saved_mean, saved_std = np.asarray(cfg["mean"], np.float64), np.asarray(cfg["std"], np.float64)
    off = np.abs(np.asarray(mean, np.float64) - saved_mean) / saved_std
    ratio = np.asarray(std, np.float64) / saved_std
    factor = float(cfg.get("spread_factor") or 3.0)
    return bool(off.max() < 2 and ratio.min() > 1 / factor and ratio.max() < factor)


def _adapt_units(model: MaskedAutoencoderViT, image: np.ndarray, valid: np.ndarray | None) -> str:
    """Chapter 03 standardized each band over its training image. If this image's bands are in
    other units (e.g. the model was trained on the synthetic scene's reflectance x 10000 and this
    is 8-bit Landsat), standardize it by its own per-band statistics instead; say so."""
    cfg = model.pretrained_cfg
    image = np.asarray(image, np.float32)
    if cfg.get("mean") is None or cfg.get("std") is None or len(cfg["mean"]) != image.shape[0]:
        return ""
    own = normalization(image, "per-band", valid)
    saved_mean = np.asarray(cfg["mean"], np.float64)
    if in_training_units(model, own.mean, own.std):
        return ""
    cfg.update(mean=own.mean.tolist(), std=own.std.tolist())
    return (
        "Chapter 03's model was trained on data in other units (band means "
        f"{np.round(saved_mean, 1).tolist()}, this image {np.round(own.mean, 1).tolist()}), so "
        "this image is standardized by its own per-band statistics."
    )


# ------------------------------------------------------------------ the spectral transformer


@dataclass
class SSTChoice:
    """What :func:`sst_or_fallback` returns: the model, where it came from (``"chapter 07"``:
    the checkpoint chapter 07 saved; ``"chapter 07's recipe"``: pretrained here exactly as
    chapter 07 pretrains; ``"brief pretraining"``: pretrained here with a changed recipe),
    its config (``config["test_pixels_seen"]``: 0 when its pretraining kept clear of the
    split's test region, None when unknown) and a notice (``""`` if none; else why chapter
    07's model was not used)."""

    model: SpectralTransformer
    source: str
    config: dict
    notice: str = ""

    @property
    def leak_free(self) -> bool:
        """True when the pretraining is recorded to have read no pixel of the split's test
        region."""
        return self.config.get("test_pixels_seen") == 0


def _unusable_checkpoint(config: dict, model: SpectralTransformer, scene, split) -> str:
    """Why chapter 07's checkpoint (``config``, ``model``) cannot serve ``scene`` and
    ``split``; ``""`` when it can."""
    got = (config.get("scene"), config.get("source"), model.config["in_chans"])
    if got != (scene.name, scene.source, scene.n_bands):
        return (
            f"it was pretrained on {got[0]!r} ({got[1]}, {got[2]} bands), "
            f"not on {scene.name!r} ({scene.source}, {scene.n_bands} bands)"
        )
    if split is None:
        return ""
    record = config.get("split")
    if record is None or config.get("test_pixels_seen") != 0:
        return (
            "it was pretrained on every pixel of the scene, test region included "
            "(transductive: it has seen the pixels it would be scored on)"
        )
    if record.get("regions_sha256") != regions_sha256(split):
        return (
            f"it was pretrained clear of the test region of another split (patch "
            f"{record.get('patch_size')}, seed {record.get('seed')}, grid {record.get('grid')}, "
            f"buffer {record.get('buffer')}), so it may have seen this split's test pixels"
        )
    if model.config["image_size"] != split.patch_size:
        return (
            f"it takes {model.config['image_size']} px patches and this split is built for "
            f"{split.patch_size} px patches"
        )
    return ""


def chapter07_recipe(smoke: bool = False) -> dict[str, Any]:
    """Chapter 07's masked-pretraining recipe: its parameters and derived values, full or smoke.

    ``patch_size`` and ``seed`` (also the seed of the spatial split, as chapter 08 cuts it),
    the :class:`~mae_nb.models.spectral.SpectralTransformer` ``model_kwargs``, and the
    :func:`~mae_nb.finetune.pretrain_on_scene` arguments. ``tests/test_pretrained.py`` checks
    that chapter 07's parameters cell gives exactly these values.
    """
    return dict(
        patch_size=5,
        seed=0,
        model_kwargs=dict(
            band_block_size=16,
            embed_dim=32 if smoke else 48,
            depth=1 if smoke else 3,
            num_heads=4,
        ),
        mask_ratio=0.7,
        epochs=3 if smoke else 4,
        batch_size=64,
        lr=2e-3 if smoke else 1e-3,
        max_pixels=2048 if smoke else None,
    )


def sst_or_fallback(
    scene,
    *,
    split=None,
    smoke: bool = False,
    progress: bool = True,
    quiet: bool = False,
    **recipe: Any,
) -> SSTChoice:
    """Chapter 07's pretrained transformer for ``scene``, or one pretrained here with chapter
    07's recipe when it cannot be used.

    The checkpoint at :func:`course_sst_path` is used when it was pretrained on this scene
    (same name, source and band count) and, given ``split`` (a
    :class:`~mae_nb.data.hsi.SpatialSplit` of the scene), when it was pretrained on that very
    split's :func:`~mae_nb.finetune.pretraining_region` (same recorded regions SHA-256, 0 test
    pixels seen, patches of ``split.patch_size``). Otherwise (missing, another scene, a
    transductive pretraining, another split) a notice says why, and the model is pretrained
    here on ``split``'s pretraining region (every pixel, with a transductive warning, when
    ``split`` is None) with :func:`chapter07_recipe` (``smoke``: the recipe of chapter 07's
    smoke run), the same function and seeds as chapter 07, so it is the model chapter 07 saves;
    with a ``split``, it is then saved where chapter 07 saves it. ``recipe`` overrides keys of
    the recipe (``epochs``, ``max_pixels``, ``batch_size``, ``lr``, ``mask_ratio``,
    ``model_kwargs``, ``patch_size``, ``seed``; the default patch size is ``split.patch_size``);
    a model trained with overrides is not saved.
    """
    base = chapter07_recipe(smoke)
    unknown = sorted(set(recipe) - set(base))
    if unknown:
        raise InputError(
            f"sst_or_fallback got unknown recipe key(s) {unknown}; chapter 07's recipe has "
            + ", ".join(base)
        )
    if split is not None and recipe.get("patch_size") is None:
        recipe["patch_size"] = int(split.patch_size)
    recipe = {k: v for k, v in recipe.items() if v is not None or k == "max_pixels"}
    changed = {k for k, v in recipe.items() if base[k] != v}
    full = {**base, **recipe}
    patch_size = int(full["patch_size"])
    if split is not None and patch_size != split.patch_size:
        raise InputError(
            f"patch_size {patch_size} differs from the split's {split.patch_size} px patches; "
            "build the split with the model's patch size"
        )
    path = course_sst_path()
    reason = f"there is no checkpoint at {path}"
    if path.is_file():
        model, config = load_sst(path, with_config=True)
        why = _unusable_checkpoint(config, model, scene, split)
        if not why:
            if not quiet:
                print(f"Using chapter 07's pretrained model ({path}).")
            return SSTChoice(model, "chapter 07", config)
        reason = f"the checkpoint at {path}: {why}"
    where = (
        "every pixel"
        if split is None
        else "the training and validation blocks of the split (no test pixel)"
    )
    how = f"chapter 07's recipe{' (its smoke run)' if smoke else ''}" + (
        f" with {', '.join(sorted(changed))} changed" if changed else ""
    )
    epochs, max_pixels = full["epochs"], full["max_pixels"]
    notice = (
        f"NOTICE: chapter 07's pretrained model is not usable here: {reason}. Pretraining "
        f"here instead with {how} on {where} ({epochs} epoch{'s' * (epochs != 1)} on "
        f"{max_pixels or 'all'} pixels, seed {full['seed']})"
        + (
            ", the model a run of chapter 07 saves."
            if not changed
            else "; run notebook 07_hyperspectral_masked_pretraining for chapter 07's model."
        )
    )
    if not quiet:
        print(notice)
    result = pretrain_on_scene(
        scene,
        split=split,
        image_size=patch_size,
        epochs=epochs,
        max_pixels=max_pixels,
        seed=full["seed"],
        batch_size=full["batch_size"],
        lr=full["lr"],
        mask_ratio=full["mask_ratio"],
        model_kwargs=dict(full["model_kwargs"] or {}),
        progress=progress,
    )
    source = "chapter 07's recipe" if not changed else "brief pretraining"
    if split is not None and not changed:
        result.config["smoke"] = smoke
        save_sst(path, result, overwrite=True)
    return SSTChoice(result.model, source, result.config, notice)
