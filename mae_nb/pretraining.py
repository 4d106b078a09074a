"""Masked pretraining of the spatial MAE on your own GeoTIFFs and on synthetic scenes.

The pieces ``mae-nb mae pretrain`` is made of, each usable on its own::

    sources = open_sources(inputs, holdout=0.25)      # files, folders, registry samples,
    #                                                   synthetic scenes; checked before any work
    stats = band_statistics(sources, "scene")          # per-band mean/std, computed once
    batches = CropBatches(sources, stats, crop_size=64, batch_size=64, steps=2000)
    state = pretrain(model, batches, lr=1.5e-3, ...)   # AdamW, warm-up + cosine, clipping

**Crops on the fly.** Batch ``k`` is a pure function of ``(seed, rank, k)``: its crops are
drawn at random positions of the sources' training regions and read with windowed reads (a
file is never loaded whole, and nothing is cached), the crops' mask noise and (for a range)
mask ratio are drawn from the same numbers. Resuming at step ``k`` therefore gives exactly the
batches an uninterrupted run would have seen, and every process of a data-parallel run
(``torchrun``) draws its own crops.

**Held out.** The right ``holdout`` share of the columns of every real scene is never read
while training (:attr:`Source.train_window`); :mod:`mae_nb.studies.heldout` scores a model
there. Synthetic scenes are held out by seed: evaluate on seeds the training never used.

**Normalization.** ``"dataset"``: one per-band mean and std over the training regions of all
sources (for an archive of one sensor in one unit); stored in the checkpoint as
``pretrained_cfg["mean"/"std"]``, so every later use feeds the model the same way.
``"scene"``: each source standardized by its own per-band statistics (for a mix of sources in
different units, like the course models); the checkpoint says ``normalize: "per-band"``, and
the model then standardizes any image by that image's own per-band statistics.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mae_nb.data import registry
from mae_nb.data.geotiff import check_bands, open_raster, read_window
from mae_nb.data.synthetic import synthetic_scene
from mae_nb.errors import CheckpointError, InputError, MaeNbError
from mae_nb.precision import choose
from mae_nb.train import History, fit, read_safetensors, seed_everything, write_safetensors

__all__ = [
    "NORMALIZATIONS",
    "CropBatches",
    "Source",
    "band_statistics",
    "load_training_state",
    "masked_pixel_loss",
    "open_sources",
    "pretrain",
    "save_training_state",
]

#: How the pixels are standardized (see the module docstring).
NORMALIZATIONS = ("dataset", "scene")

#: Suffixes of the GeoTIFFs a folder input contributes.
GEOTIFF_SUFFIXES = (".tif", ".tiff", ".TIF", ".TIFF")

# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    """One scene to draw crops from: a GeoTIFF (read window by window) or a synthetic scene
    (in memory).

    ``bands``: the 1-based bands read; ``train_cols``: columns ``[0, train_cols)`` are the
    training region, the rest is held out; ``data_range``: the source's range for PSNR
    (:mod:`mae_nb.metrics`); ``mean``/``std``: its standardization (set by
    :func:`band_statistics`); ``valid_share``: share of valid pixels in the training region.
    """

    name: str
    kind: str  # "file" or "synthetic"
    bands: list[int]
    height: int
    width: int
    train_cols: int
    data_range: float
    path: Path | None = None
    array: np.ndarray | None = field(default=None, repr=False)
    valid: np.ndarray | None = field(default=None, repr=False)
    valid_share: float = 1.0
    mean: np.ndarray | None = field(default=None, repr=False)
    std: np.ndarray | None = field(default=None, repr=False)
    _handle: Any = field(default=None, repr=False)
    _training_overview: Any = field(default=None, repr=False)

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def train_window(self) -> tuple[int, int, int, int]:
        """(row_off, col_off, height, width) of the training region."""
        return (0, 0, self.height, self.train_cols)

    @property
    def heldout_window(self) -> tuple[int, int, int, int] | None:
        """(row_off, col_off, height, width) of the held-out region (None: nothing held out)."""
        if self.train_cols >= self.width:
            return None
        return (0, self.train_cols, self.height, self.width - self.train_cols)

    def read(self, window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (C, h, w) float32 and validity (h, w) of ``window`` (row, col, h, w)."""
        r, c, h, w = window
        if self.kind == "synthetic":
            a = self.array[:, r : r + h, c : c + w]
            return a.astype(np.float32), self.valid[r : r + h, c : c + w]
        if self._handle is None or self._handle.closed:
            self._handle = open_raster(self.path)
        a, v = read_window(self._handle, self.bands, window)
        a = a.astype(np.float32)
        v = v & np.isfinite(a).all(axis=0)
        return a, v

    def overview(self, window=None, longest: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """A decimated read of ``window`` (default: the training region), at most ``longest``
        px on its longer side: for statistics without reading a large file whole. The training
        region's is read once (checking the sources and their statistics both use it)."""
        if window is None and longest == 512:
            if self._training_overview is None:
                self._training_overview = self.overview(self.train_window)
            return self._training_overview
        r, c, h, w = window
        if self.kind == "synthetic":
            return self.read((r, c, h, w))
        scale = max(1.0, max(h, w) / longest)
        shape = (max(1, round(h / scale)), max(1, round(w / scale)))
        if self._handle is None or self._handle.closed:
            self._handle = open_raster(self.path)
        a, v = read_window(self._handle, self.bands, (r, c, h, w), out_shape=shape)
        a = a.astype(np.float32)
        return a, v & np.isfinite(a).all(axis=0)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __getstate__(self):  # an open file handle does not travel to other processes
        state = dict(self.__dict__)
        state["_handle"] = None
        return state


def _files_of(entry: str | Path) -> list[Path]:
    path = Path(entry).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in GEOTIFF_SUFFIXES)
        if not files:
            raise InputError(f"the folder {path} holds no GeoTIFF (*.tif, *.tiff)")
        return files
    return [path]


def _file_sources(entry: dict, holdout: float) -> list[Source]:
    if "registry" in entry:
        name = entry["registry"]
        dataset = registry.get(name)
        if dataset.kind != "geotiff":
            raise InputError(
                f"{name!r} is a {dataset.kind} dataset; pretraining reads single-file GeoTIFFs "
                "(registry samples of kind geotiff, your own files or folders)"
            )
        paths = [registry.fetch(name)[dataset.files[0].name]]
        declared = dataset.meta.get("value_range")
    else:
        paths, declared, name = _files_of(entry["path"]), None, None
    out = []
    for path in paths:
        with open_raster(path) as src:
            bands = check_bands(entry.get("bands"), src.count, path)
            h, w, dtype = src.height, src.width, np.dtype(src.dtypes[bands[0] - 1])
        cut = w - int(round(w * holdout))
        out.append(
            Source(
                name=name or path.name,
                kind="file",
                bands=bands,
                height=h,
                width=w,
                train_cols=cut,
                data_range=float(declared[1] - declared[0]) if declared else float("nan"),
                path=path,
            )
        )
        if not declared and dtype == np.uint8:
            out[-1].data_range = 255.0
    return out


def _synthetic_sources(spec: dict) -> list[Source]:
    from mae_nb.data.synthetic import SYNTHETIC_VALUE_RANGE

    seeds = spec.get("seeds", [0])
    sizes = spec.get("sizes", [256])
    n_bands = int(spec.get("bands", 3))
    out = []
    for k, seed in enumerate(seeds):
        size = int(sizes[k % len(sizes)])
        scene = synthetic_scene(size, size, n_bands, int(seed))
        bands = check_bands(spec.get("select"), n_bands, f"the {n_bands}-band synthetic scene")
        lo, hi = SYNTHETIC_VALUE_RANGE
        array = scene.image[[b - 1 for b in bands]] * float(hi - lo)  # reflectance x 10000
        out.append(
            Source(
                name=f"synthetic seed {seed} ({size} px)",
                kind="synthetic",
                bands=bands,
                height=size,
                width=size,
                train_cols=size,  # held out by seed, not by region
                data_range=float(hi - lo),
                array=array.astype(np.float32),
                valid=scene.valid.copy(),
            )
        )
    return out


def open_sources(
    inputs: Sequence[dict | str],
    *,
    bands: Sequence[int] | None = None,
    holdout: float = 0.25,
    crop_size: int = 64,
    quiet: bool = False,
) -> list[Source]:
    """The sources named by ``inputs``, checked before any training starts.

    Each input is a path (a GeoTIFF, or a folder whose ``*.tif``/``*.tiff`` files are all
    used) or a mapping: ``{"path": ..., "bands": [3, 2, 1]}``, ``{"registry":
    "landsat7-rgb"}`` (a sample of ``mae-nb data list``, found in the cache or a mirror
    folder), ``{"synthetic": {"seeds": [1, 2], "sizes": [256], "bands": 6, "select": [...]}}``.
    ``bands`` (1-based) applies to every file input without its own. Refused with a clear
    error: no input, a band out of range for a file, sources with different band counts after
    the selection, a training region smaller than ``crop_size``. Sources whose training region
    has no valid pixel are skipped and counted (an error if none is left).
    """
    if not inputs:
        raise InputError(
            "no input to pretrain on: give GeoTIFF files, folders, registry "
            "samples or synthetic scenes"
        )
    if not 0 <= holdout < 1:
        raise InputError(f"holdout must be a share of the columns in [0, 1), got {holdout}")
    sources: list[Source] = []
    for entry in inputs:
        entry = {"path": entry} if isinstance(entry, (str, Path)) else dict(entry)
        if "synthetic" in entry:
            sources += _synthetic_sources(dict(entry["synthetic"] or {}))
        else:
            entry.setdefault("bands", None if bands is None else list(bands))
            sources += _file_sources(entry, holdout)
    counts = {s.n_bands for s in sources}
    if len(counts) > 1:
        listed = ", ".join(f"{s.name}: {s.n_bands}" for s in sources[:8])
        raise InputError(
            f"the inputs have different band counts ({listed}); select the same bands of every "
            "file with 'bands' (e.g. bands: [3, 2, 1])"
        )
    for s in sources:
        if s.height < crop_size or s.train_cols < crop_size:
            raise InputError(
                f"crops of {crop_size} px do not fit in {s.name} (training region {s.height} x "
                f"{s.train_cols} px after holding out {holdout:.0%} of its columns); lower "
                "crop_size or holdout, or leave this scene out"
            )
    kept, empty = [], []
    for s in sources:
        a, v = s.overview()
        s.valid_share = float(v.mean())
        if not v.any():  # skipped (counted below) before its undefined value range is asked
            empty.append(s)
            continue
        if s.kind == "file" and not math.isfinite(s.data_range):
            from mae_nb.data.geotiff import value_range

            s.data_range = value_range(a, v)
        kept.append(s)
    if empty and not quiet:
        print(
            f"skipped {len(empty)} source(s) with no valid pixel in the training region: "
            + ", ".join(s.name for s in empty[:5])
        )
    if not kept:
        raise InputError(
            f"every source ({len(sources)}) is nodata in its training region; nothing to train on"
        )
    return kept


# --------------------------------------------------------------------------- statistics


def band_statistics(sources: Sequence[Source], mode: str = "dataset") -> dict:
    """Per-band mean and std of the training regions, computed once, set on every source.

    ``mode="dataset"``: one mean/std pooled over all sources (weighted by their valid pixels);
    ``"scene"``: each source its own. Read from decimated overviews (at most 512 px a side), so
    a large file is not read whole. Returns ``{"mode", "mean", "std", "per_source": [...]}``
    (lists of floats, for the checkpoint's JSON).
    """
    if mode not in NORMALIZATIONS:
        raise InputError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {mode!r}")
    per = []
    for s in sources:
        a, v = s.overview()
        px = a[:, v].astype(np.float64)
        per.append((px.shape[1], px.mean(axis=1), px.var(axis=1)))
    n = np.array([p[0] for p in per], np.float64)
    means = np.stack([p[1] for p in per])
    variances = np.stack([p[2] for p in per])
    w = n / n.sum()
    pooled_mean = (w[:, None] * means).sum(axis=0)
    pooled_var = (w[:, None] * (variances + (means - pooled_mean) ** 2)).sum(axis=0)
    for k, s in enumerate(sources):
        if mode == "scene":
            s.mean, s.std = means[k], np.sqrt(variances[k])
        else:
            s.mean, s.std = pooled_mean, np.sqrt(pooled_var)
        s.std = np.maximum(s.std, 1e-6 * max(s.data_range, 1e-12)).astype(np.float64)
    return {
        "mode": mode,
        "mean": pooled_mean.tolist() if mode == "dataset" else None,
        "std": np.sqrt(pooled_var).tolist() if mode == "dataset" else None,
        "per_source": [
            {"name": s.name, "mean": s.mean.tolist(), "std": s.std.tolist()} for s in sources
        ],
    }


# --------------------------------------------------------------------------- batches


class CropBatches(torch.utils.data.Dataset):
    """Batch ``k`` of a pretraining run: ``{"x", "valid", "noise", "ratio"}``.

    ``x``: (B, C, T, T) standardized crops (0 at nodata), ``valid``: (B, T, T), ``noise``:
    (B, L) the masks' noise, ``ratio``: the batch's mask ratio (``mask_ratio`` a number, or a
    ``(low, high)`` range drawn per batch). A pure function of ``(seed, rank, k)`` (see the
    module docstring). Crops come from the sources' training regions, each source drawn with
    a probability proportional to its valid training area; a crop needs at least ``min_valid``
    of its pixels valid (50 tries per crop, then the error says so). ``augment``: random
    rotations by 90 degrees and flips.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        *,
        crop_size: int,
        batch_size: int,
        steps: int,
        patch_size: int,
        mask_ratio: float | Sequence[float] = 0.75,
        min_valid: float = 1.0,
        augment: bool = True,
        seed: int = 0,
        rank: int = 0,
    ):
        if any(s.mean is None for s in sources):
            raise InputError("compute the sources' statistics first (band_statistics)")
        self.sources = list(sources)
        self.crop_size, self.batch_size, self.steps = crop_size, batch_size, steps
        self.patches = (crop_size // patch_size) ** 2
        self.mask_ratio = mask_ratio
        self.min_valid, self.augment, self.seed, self.rank = min_valid, augment, seed, rank
        area = np.array([s.height * s.train_cols * s.valid_share for s in self.sources])
        self.weights = area / area.sum()

    def __len__(self) -> int:
        return self.steps

    def _crop(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        t = self.crop_size
        for _ in range(50):
            s = self.sources[rng.choice(len(self.sources), p=self.weights)]
            r = int(rng.integers(0, s.height - t + 1))
            c = int(rng.integers(0, s.train_cols - t + 1))
            a, v = s.read((r, c, t, t))
            if v.mean() >= self.min_valid:
                x = (a - s.mean[:, None, None]) / s.std[:, None, None]
                return np.where(v[None], np.nan_to_num(x), 0.0).astype(np.float32), v
        raise MaeNbError(
            f"found no {t} px crop with at least {self.min_valid:.0%} valid pixels in 50 tries; "
            "lower data.min_valid or crop_size, or leave the mostly-nodata scenes out"
        )

    def __getitem__(self, step: int) -> dict:
        if not 0 <= step < self.steps:
            raise InputError(f"step {step} is outside the run's {self.steps} steps")
        rng = np.random.default_rng([self.seed, self.rank, step])
        xs, vs = [], []
        for _ in range(self.batch_size):
            x, v = self._crop(rng)
            if self.augment:
                k = int(rng.integers(4))
                x, v = np.rot90(x, k, axes=(1, 2)), np.rot90(v, k)
                if rng.random() < 0.5:
                    x, v = x[:, :, ::-1], v[:, ::-1]
            xs.append(np.ascontiguousarray(x))
            vs.append(np.ascontiguousarray(v))
        if isinstance(self.mask_ratio, (int, float)):
            ratio = float(self.mask_ratio)
        else:
            ratio = float(rng.uniform(*self.mask_ratio))
        noise = torch.from_numpy(rng.random((self.batch_size, self.patches), dtype=np.float32))
        return {
            "x": torch.from_numpy(np.stack(xs)),
            "valid": torch.from_numpy(np.stack(vs)),
            "noise": noise,
            "ratio": ratio,
        }


def masked_pixel_loss(model, batch: dict, precision: str = "fp32") -> torch.Tensor:
    """The MAE loss of one :class:`CropBatches` batch: mean squared error over the masked
    patches' valid pixels (nodata pixels never count), under bf16 autocast if asked."""
    x, valid, noise = batch["x"], batch["valid"], batch["noise"]
    with torch.autocast(x.device.type, torch.bfloat16, enabled=precision == "bf16"):
        loss, pred, mask = model(x, batch["ratio"], noise)
    if bool(valid.all()):
        return loss
    core = getattr(model, "module", model)  # DDP wraps the model
    target = core.patchify(x)
    if core.norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (
            target.var(-1, keepdim=True) + 1e-6
        ) ** 0.5
    p, c = core.patch_size, core.in_chans
    n, h, w = valid.shape
    weight = valid.float().reshape(n, h // p, p, w // p, p).permute(0, 1, 3, 2, 4)
    weight = weight.reshape(n, -1, p * p, 1).expand(-1, -1, -1, c).reshape(n, -1, p * p * c)
    weight = weight * mask[..., None]
    err = (pred.float() - target) ** 2
    return (err * weight).sum() / weight.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- training state


def save_training_state(path: str | Path, model, optimizer, step: int, config: dict) -> Path:
    """Model and AdamW state after ``step`` steps as one safetensors file (no pickle): tensors
    ``model.*`` and ``optim.<param index>.<name>``, the rest (step, param groups, ``config``) as
    JSON metadata."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"optim.{idx}.{name}"] = (
                value if isinstance(value, torch.Tensor) else torch.tensor(value)
            )
    meta = {
        "format": "mae_nb.training_state",
        "step": str(step),
        "param_groups": json.dumps(opt["param_groups"]),
        "mae_nb.config": json.dumps(config),
    }
    return write_safetensors(path, tensors, meta)


def load_training_state(path: str | Path) -> dict:
    """What :func:`save_training_state` wrote: ``{"model": state dict, "optimizer": AdamW
    state dict, "step": int, "config": dict}``."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != "mae_nb.training_state":
        raise CheckpointError(f"{path} is not a training state written by mae-nb mae pretrain")
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    optimizer = {"state": state, "param_groups": json.loads(meta["param_groups"])}
    return {
        "model": model,
        "optimizer": optimizer,
        "step": int(meta["step"]),
        "config": json.loads(meta.get("mae_nb.config", "{}")),
    }


# --------------------------------------------------------------------------- the loop


def optimizer_for(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW as in the MAE paper: betas (0.9, 0.95), no weight decay on biases, norms and
    embeddings (timm's ``param_groups_weight_decay``)."""
    from timm.optim import param_groups_weight_decay

    groups = param_groups_weight_decay(model, weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def lr_at(step: int, steps: int, lr: float, warmup: int, min_lr: float = 0.0) -> float:
    """Learning rate at ``step``: linear warm-up over ``warmup`` steps, then a half-cosine
    decay to ``min_lr`` at ``steps`` (the MAE paper's schedule, per step)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


@dataclass
class PretrainLog:
    """Rows of the training log: every ``every`` steps the mean loss since the last row."""

    every: int
    rows: list[dict] = field(default_factory=list)
    _sum: float = 0.0
    _count: int = 0

    def add(self, step: int, loss: float, lr: float, seconds: float) -> dict | None:
        self._sum += loss
        self._count += 1
        if (step + 1) % self.every:
            return None
        row = {
            "step": step + 1,
            "loss": self._sum / self._count,
            "lr": lr,
            "seconds": round(seconds, 2),
        }
        self.rows.append(row)
        self._sum, self._count = 0.0, 0
        return row

    def pending(self) -> list:
        """The steps since the last row as ``[loss sum, count]``: a training state keeps them,
        so a run resumed between two rows logs the same means as one that went through."""
        return [self._sum, self._count]

    def restore(self, rows: Sequence[dict], pending: Sequence[float] = (0.0, 0)) -> None:
        """Go on from the ``rows`` and :meth:`pending` steps a training state kept."""
        self.rows = [dict(r) for r in rows]
        self._sum, self._count = float(pending[0]), int(pending[1])

    def write(self, csv_path: Path, json_path: Path, extra: dict) -> None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", "loss", "lr", "seconds"])
            writer.writeheader()
            writer.writerows(self.rows)
        json_path.write_text(json.dumps({**extra, "log": self.rows}, indent=1) + "\n")


def pretrain(
    model,
    batches: CropBatches,
    *,
    lr: float,
    warmup_steps: int,
    min_lr: float = 0.0,
    weight_decay: float = 0.05,
    grad_clip: float | None = 1.0,
    precision: str = "fp32",
    device: torch.device | str = "cpu",
    start_step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    log: PretrainLog | None = None,
    on_step: Callable[[int, torch.optim.Optimizer], None] | None = None,
    seed: int = 0,
    progress: bool = True,
    net=None,
) -> tuple[torch.optim.Optimizer, History, PretrainLog]:
    """Train ``model`` on ``batches`` from ``start_step`` to ``len(batches)`` with
    :func:`mae_nb.train.fit` (one pass over the steps).

    ``net``: what to call (``model`` in DistributedDataParallel under torchrun); ``optimizer``:
    a resumed AdamW (default :func:`optimizer_for`). The learning rate follows :func:`lr_at`;
    ``on_step(step, optimizer)`` runs after each update (checkpoints). Returns the optimizer,
    the :class:`~mae_nb.train.History` and the :class:`PretrainLog`.
    """
    if precision not in ("fp32", "bf16"):
        raise InputError(f"precision must be fp32 or bf16 for training, got {precision!r}")
    if precision == "bf16":
        choose("bf16", model)  # warns once on a CPU that emulates bf16
    net = model if net is None else net
    optimizer = optimizer or optimizer_for(model, lr, weight_decay)
    log = log or PretrainLog(every=10)
    steps = len(batches)
    remaining = torch.utils.data.Subset(batches, range(start_step, steps))
    loader = torch.utils.data.DataLoader(remaining, batch_size=None, shuffle=False)
    start = time.perf_counter()
    step = start_step

    def before(_):
        rate = lr_at(step, steps, lr, warmup_steps, min_lr)
        for group in optimizer.param_groups:
            group["lr"] = rate

    def after(logs):
        nonlocal step
        log.add(step, logs["loss"], optimizer.param_groups[0]["lr"], time.perf_counter() - start)
        if on_step is not None:
            on_step(step, optimizer)
        step += 1

    seed_everything(seed)
    history = fit(
        net,
        loader,
        lambda m, b: masked_pixel_loss(m, b, precision),
        epochs=1,
        optimizer=optimizer,
        device=device,
        seed=seed,
        progress=progress,
        desc="MAE pretraining",
        grad_clip=grad_clip,
        shuffle=False,
        before_step=before,
        after_step=after,
    )
    return optimizer, history, log
