"""Fine-tuning and evaluating per-pixel classifiers of hyperspectral scenes; the label-efficiency study.

Chapter 07 and ``mae-nb hsi finetune|evaluate`` build on these::

    finetune(model, scene, split, fraction=1.0, ...) -> FinetuneResult   # labels of `fraction` of the
                                                                         # training pixels, mae_nb.train.fit
    evaluate(model, scene, split, subset="test") -> dict   # oa, aa, kappa, confusion, per_class, map (H, W)
    predict(model, cube, mask, ...) -> (n,) classes 1..K of the pixels of mask
    course_pretrained(scene, ...) -> Pretrained     # chapter 06's checkpoint, or a brief pretraining (notice)
    classifier_from_pretrained(pretrained, num_classes) -> SpectralTransformer   # encoder weights, new head
    sst_like(reference, num_classes, **changes)     # same architecture, random init (ablations: changes)
    label_efficiency(models, scene, split, fractions, seeds, ...) -> rows    # the grid models x fractions x seeds
    summarize(rows) / format_table(rows)     # mean +- std per model and fraction
    compare(rows, a, b) / verdict(rows, ...) # paired gains, and the paper's claims checked against them

Conventions. A model takes patches (N, B, p, p) around pixels and returns logits (N, K) of
the centre pixel (every model in :mod:`mae_nb.models.spectral` and
:mod:`mae_nb.models.baselines`). Scenes are :class:`~mae_nb.data.hsi.HyperspectralScene`
(cube (H, W, B), labels (H, W), 1..K and 0 = unlabelled); splits are
:class:`~mae_nb.data.hsi.SpatialSplit`. Inputs are standardized per band with statistics of
the pixels of the split's *training region* (labelled or not, never val/test pixels), so
every label fraction sees the same inputs. A *row* of the study is a plain dict
``{"model", "fraction", "seed", "n_labels", "oa", "aa", "kappa", "seconds"}``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mae_nb.errors import InputError, InputTypeError

__all__ = [
    "DEFAULT_FRACTIONS",
    "FinetuneResult",
    "Pretrained",
    "classifier_from_pretrained",
    "compare",
    "course_pretrained",
    "evaluate",
    "finetune",
    "format_table",
    "format_verdict",
    "label_efficiency",
    "patch_size_of",
    "predict",
    "scene_standardizer",
    "sst_like",
    "summarize",
    "verdict",
]

#: Label fractions of chapter 07's default study (share of each class's training labels).
DEFAULT_FRACTIONS = (0.01, 0.05, 0.10, 1.0)


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
            f"the model has {n} output classes but the scene {scene.name!r} has {scene.n_classes}; "
            f"build it with num_classes={scene.n_classes} (or call reset_classifier({scene.n_classes}))"
        )
    bands = getattr(_unwrap(model), "in_chans", None) or getattr(_unwrap(model), "config", {}).get(
        "in_chans"
    )
    if bands is not None and int(bands) != scene.n_bands:
        raise InputError(
            f"the model takes {bands} bands but the scene {scene.name!r} has {scene.n_bands}"
        )


def scene_standardizer(scene, split):
    """Per-band standardizer fitted on the pixels of ``split``'s training region (H, W), labelled or not."""
    from mae_nb.data.hsi import fit_standardizer

    return fit_standardizer(scene.cube, split.regions == 0)


def classifier_from_pretrained(pretrained: nn.Module, num_classes: int) -> nn.Module:
    """A classifier with ``pretrained``'s encoder weights and a new head for ``num_classes`` classes.

    ``pretrained``: a :class:`~mae_nb.models.spectral.SpectralTransformer` (e.g. from
    :func:`~mae_nb.models.spectral.load_pretrained`). The copy has no decoder (so every
    parameter gets a gradient, as DistributedDataParallel requires); the head is initialized
    from torch's current random state.
    """
    from mae_nb.models.spectral import SpectralTransformer

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
    """A randomly initialized classifier with ``reference``'s architecture (a SpectralTransformer).

    ``changes`` override constructor arguments, e.g. ``blockwise_embed=False`` or
    ``factorized_attention=False`` for the ablations. No decoder.
    """
    from mae_nb.models.spectral import SpectralTransformer

    reference = _unwrap(reference)
    if not isinstance(reference, SpectralTransformer):
        raise InputTypeError(f"expected a SpectralTransformer, got {type(reference).__name__}")
    return SpectralTransformer(
        **{**reference.config, "decoder_depth": -1, "num_classes": int(num_classes), **changes}
    )


@dataclass
class Pretrained:
    """What :func:`course_pretrained` returns: the model, where it came from, and a notice ("" if none)."""

    model: nn.Module
    source: str  # "chapter 06" or "brief pretraining"
    config: dict
    notice: str = ""


def course_pretrained(
    scene,
    *,
    patch_size: int = 5,
    epochs: int = 2,
    max_pixels: int | None = 2000,
    batch_size: int = 32,
    model_kwargs: Mapping | None = None,
    seed: int = 0,
    progress: bool = True,
    quiet: bool = False,
) -> Pretrained:
    """Chapter 06's pretrained transformer for ``scene``, or a brief pretraining when there is none.

    The checkpoint (:func:`mae_nb.models.spectral.course_checkpoint_path`) is used when it was
    pretrained on this scene (same name, source and band count). Otherwise (missing, another
    scene) a notice is printed and the model is pretrained here for ``epochs`` on
    ``max_pixels`` random pixels with ``model_kwargs`` (e.g. ``embed_dim``, ``depth``) and
    ``patch_size``: short, so it shows the mechanics rather than what a full pretraining gives
    (``batch_size`` 32 keeps the peak memory of a notebook kernel well under 2 GB).
    """
    from mae_nb.models.spectral import course_checkpoint_path, load_pretrained, pretrain_on_scene

    path = course_checkpoint_path()
    reason = f"there is no checkpoint at {path}"
    if path.is_file():
        model, config = load_pretrained(path, with_config=True)
        got = (config.get("scene"), config.get("source"), model.config["in_chans"])
        if got == (scene.name, scene.source, scene.n_bands):
            return Pretrained(model, "chapter 06", config)
        reason = (
            f"the checkpoint at {path} was pretrained on {got[0]!r} ({got[1]}, {got[2]} bands), "
            f"not on {scene.name!r} ({scene.source}, {scene.n_bands} bands)"
        )
    notice = (
        f"NOTICE: chapter 06's pretrained model is not usable here: {reason}. Pretraining briefly "
        f"instead ({epochs} epoch{'s' * (epochs != 1)} on {max_pixels or 'all'} pixels); run notebook "
        "06_hyperspectral_masked_pretraining first for the real thing."
    )
    if not quiet:
        print(notice)
    result = pretrain_on_scene(
        scene,
        image_size=patch_size,
        epochs=epochs,
        max_pixels=max_pixels,
        seed=seed,
        batch_size=batch_size,
        model_kwargs=dict(model_kwargs or {}),
        progress=progress,
    )
    return Pretrained(result.model, "brief pretraining", result.config, notice)


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
    :func:`mae_nb.data.hsi.subsample_labels`). Length: ``steps`` optimizer steps (default 100),
    so that 1 % and 100 % of the labels get the same number of updates (the History then has one
    entry per round: ``steps`` cut into the most equal rounds, at most 20; the labelled pixels are
    reshuffled at every pass over them), or ``epochs`` full passes, not both. ``val=True`` logs the loss on the validation split each round/epoch. Cross-entropy (:func:`mae_nb.models.spectral.classification_loss`) with AdamW
    through :func:`mae_nb.train.fit`. ``data_loader(dataset, batch_size) -> DataLoader``
    replaces the default loader (the CLI passes one with a DistributedSampler).
    """
    from mae_nb.data.hsi import PatchDataset, subsample_labels
    from mae_nb.models.spectral import classification_loss
    from mae_nb.train import fit

    _check_model(model, scene)
    if steps is not None and epochs is not None:
        raise InputError("give steps or epochs, not both")
    for name, value in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size)):
        if value is not None and (int(value) != value or value < 1):
            raise InputError(f"{name} must be a positive integer, got {value}")
    if split.regions.shape != scene.labels.shape:
        raise InputError(
            f"the split {split.regions.shape} does not belong to the scene {scene.labels.shape} (H, W)"
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
    strung together (``RandomSampler`` without replacement, ``num_samples`` beyond ``len(data)``)."""
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
    """Classes (1..K) of the pixels of ``mask`` (H, W) bool (all pixels if None), in ``np.argwhere`` order.

    cube: (H, W, B), already standardized. Returns (n,) int64. Patches are cut in batches of
    ``batch_size`` (border pixels get reflect-padded patches), so memory stays small.
    """
    from tqdm.auto import tqdm

    from mae_nb.data.hsi import PatchDataset

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
    from mae_nb.metrics import classification_report

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


# --------------------------------------------------------------------------- the study


def label_efficiency(
    models: Mapping[str, Callable[[], nn.Module]],
    scene,
    split,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    progress: bool = True,
    keep_maps: bool = False,
    keep_models: bool = False,
    **finetune_kwargs,
) -> list[dict]:
    """Fine-tune and test every model at every label fraction for every seed.

    ``models``: ``{name: factory}``, where ``factory()`` builds a fresh model (called after
    ``torch.manual_seed(seed)``, so random initializations and heads differ between seeds).
    ``finetune_kwargs`` go to :func:`finetune` (``steps``, ``lr``, ``batch_size``, ...).
    Returns one row per run: ``{"model", "fraction", "seed", "n_labels", "oa", "aa", "kappa",
    "seconds"}``; with ``keep_maps`` also ``"map"`` (H, W) (the test pixels' predictions, 0
    elsewhere) and ``"confusion"`` (K, K); with ``keep_models`` also ``"result"``, the
    :class:`FinetuneResult` (trained model, History, labels used), to look at a run closely
    without training it again.
    """
    from tqdm.auto import tqdm

    from mae_nb.train import release_memory

    if not models:
        raise InputError("models is empty; pass {name: factory} of the models to compare")
    fractions = [float(f) for f in fractions]
    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise InputError(f"fractions must be in (0, 1] (0.01 = 1 % of the labels), got {f}")
    if not seeds:
        raise InputError("seeds is empty; give at least one seed")
    for name, factory in models.items():
        if isinstance(factory, nn.Module) or not callable(factory):
            raise InputTypeError(
                f"models[{name!r}] must be a function that builds a model, got {type(factory).__name__}"
            )
    std = scene_standardizer(scene, split)
    runs = [(s, f, name) for s in seeds for f in fractions for name in models]
    rows: list[dict] = []
    bar = tqdm(runs, desc="label efficiency", unit="run", disable=not progress)
    for seed, fraction, name in bar:
        bar.set_postfix_str(f"{name}, {fraction:.1%}, seed {seed}")
        torch.manual_seed(seed)
        model = models[name]()
        result = finetune(
            model,
            scene,
            split,
            fraction,
            seed=seed,
            standardizer=std,
            progress=False,
            **finetune_kwargs,
        )
        ev = evaluate(model, scene, split, full_map=False, standardizer=std)
        row = {
            "model": name,
            "fraction": fraction,
            "seed": int(seed),
            "n_labels": result.n_labels,
            "oa": ev["oa"],
            "aa": ev["aa"],
            "kappa": ev["kappa"],
            "seconds": round(result.seconds, 2),
        }
        if keep_maps:
            row.update(map=ev["map"], confusion=ev["confusion"])
        if keep_models:
            row["result"] = result
        rows.append(row)
        del model, result, ev
        release_memory()  # without it the kernel's memory grows run after run (heap fragmentation)
    return rows


def _check_rows(rows: Sequence[Mapping], metric: str) -> list[Mapping]:
    rows = list(rows)
    if not rows:
        raise InputError("no rows: run label_efficiency first")
    if metric not in rows[0]:
        raise InputError(f"metric {metric!r} is not in the rows; they have {sorted(rows[0])}")
    return rows


def summarize(
    rows: Sequence[Mapping], metrics: Sequence[str] = ("oa", "aa", "kappa")
) -> list[dict]:
    """Mean and standard deviation over seeds: one dict per (model, fraction), in the rows' order.

    Keys: ``model``, ``fraction``, ``n`` (seeds), ``n_labels`` (mean), and ``<metric>`` /
    ``<metric>_std`` for each metric.
    """
    rows = _check_rows(rows, metrics[0])
    groups: dict[tuple, list[Mapping]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["fraction"]), []).append(r)
    out = []
    for (model, fraction), group in groups.items():
        entry = {
            "model": model,
            "fraction": fraction,
            "n": len(group),
            "n_labels": float(np.mean([g.get("n_labels", np.nan) for g in group])),
        }
        for m in metrics:
            values = np.array([g[m] for g in group], float)
            entry[m] = float(values.mean())
            entry[f"{m}_std"] = float(values.std())
        out.append(entry)
    return out


def format_table(rows: Sequence[Mapping], metrics: Sequence[str] = ("oa", "aa", "kappa")) -> str:
    """A markdown table: one line per model and fraction, ``mean ± std`` over seeds (in %, kappa x 100)."""
    summary = summarize(rows, metrics)
    head = "| model | labels | pixels | " + " | ".join(m.upper() for m in metrics) + " |"
    lines = [head, "|---|---:|---:|" + "---:|" * len(metrics)]
    for s in sorted(
        summary,
        key=lambda e: (
            e["fraction"],
            list(dict.fromkeys(r["model"] for r in rows)).index(e["model"]),
        ),
    ):
        cells = [
            f"{100 * s[m]:.1f} ± {100 * s[m + '_std']:.1f}" if s["n"] > 1 else f"{100 * s[m]:.1f}"
            for m in metrics
        ]
        lines.append(
            f"| {s['model']} | {s['fraction']:.1%} | {s['n_labels']:.0f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def compare(
    rows: Sequence[Mapping],
    a: str,
    b: str,
    *,
    fractions: Sequence[float] | None = None,
    metric: str = "oa",
) -> dict:
    """Paired gain of model ``a`` over model ``b`` (same fraction and seed) in ``metric`` points.

    Returns ``{"gain"`` (mean of the differences x 100), ``"se"`` (its standard error),
    ``"n"`` (pairs), ``"per_fraction"`` ``{fraction: mean gain}``, ``"fractions"``}. Only the
    given ``fractions`` (all by default) count. A pair is (fraction, seed).
    """
    rows = _check_rows(rows, metric)
    names = {r["model"] for r in rows}
    for name in (a, b):
        if name not in names:
            raise InputError(f"model {name!r} is not in the rows; they have {sorted(names)}")
    wanted = None if fractions is None else {float(f) for f in fractions}
    va = {(r["fraction"], r["seed"]): r[metric] for r in rows if r["model"] == a}
    vb = {(r["fraction"], r["seed"]): r[metric] for r in rows if r["model"] == b}
    keys = sorted(k for k in va if k in vb and (wanted is None or k[0] in wanted))
    if not keys:
        raise InputError(
            f"no (fraction, seed) run of both {a!r} and {b!r}"
            + ("" if wanted is None else f" at fractions {sorted(wanted)}")
        )
    diffs = np.array([100 * (va[k] - vb[k]) for k in keys])
    per_fraction: dict[float, list[float]] = {}
    for k, d in zip(keys, diffs):
        per_fraction.setdefault(k[0], []).append(float(d))
    se = float(diffs.std(ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
    return {
        "gain": float(diffs.mean()),
        "se": se,
        "n": len(diffs),
        "per_fraction": {f: float(np.mean(v)) for f, v in per_fraction.items()},
        "fractions": sorted(per_fraction),
    }


def _judge(gain: float, se: float) -> str:
    """``supported`` (gain > 0 beyond 2 standard errors), ``contradicted`` (< 0 beyond 2 se), else ``inconclusive``.

    With a single pair (no standard error) a gain of more than 1 point counts.
    """
    margin = 2 * se if math.isfinite(se) else 1.0
    if gain > margin and gain > 0:
        return "supported"
    if gain < -margin and gain < 0:
        return "contradicted"
    return "inconclusive"


def verdict(
    rows: Sequence[Mapping],
    *,
    pretrained: str,
    random_init: str,
    vit: str | None = None,
    cnn: str | None = None,
    ablations: Mapping[str, str] | None = None,
    low_fraction: float = 0.10,
    metric: str = "oa",
) -> list[dict]:
    """The paper's claims checked against ``rows``: one dict per claim that the rows can test.

    Names are the ``model`` values in the rows. ``ablations``: ``{what is removed: model name}``
    (e.g. ``{"blockwise embedding": "SST shared embedding"}``), each compared with
    ``random_init`` (the full model trained the same way). Each claim: ``{"claim", "paper"``
    (the paper's figure, text), ``"a"``, ``"b"``, ``"gain"``, ``"se"``, ``"n"``,
    ``"per_fraction"``, ``"status"`` (``supported``/``contradicted``/``inconclusive``),
    ``"reaches_paper"`` (bool: gain at least the paper's lower figure)}.
    """
    rows = _check_rows(rows, metric)
    low = sorted({r["fraction"] for r in rows if r["fraction"] <= low_fraction})
    claims = []

    def add(claim, paper, paper_min, a, b, fractions):
        if not fractions:
            return
        c = compare(rows, a, b, fractions=fractions, metric=metric)
        claims.append(
            {
                "claim": claim,
                "paper": paper,
                "a": a,
                "b": b,
                **c,
                "status": _judge(c["gain"], c["se"]),
                "reaches_paper": paper_min is not None and c["gain"] >= paper_min,
            }
        )

    names = {r["model"] for r in rows}
    add(
        "masked pretraining helps with few labels",
        "+7-8 points with 0.1-10 % of the labels",
        7.0,
        pretrained,
        random_init,
        low,
    )
    if cnn in names:
        add(
            "pretrained transformer beats the 3D-CNN with few labels",
            "+7-8 points with 0.1-10 % of the labels",
            7.0,
            pretrained,
            cnn,
            low,
        )
    if vit in names:
        add(
            "spatial-spectral transformer beats a standard ViT",
            "+5 (EnMAP) to +15 (Houston2018) points",
            5.0,
            random_init,
            vit,
            sorted({r["fraction"] for r in rows}),
        )
    for removed, name in (ablations or {}).items():
        if name in names:
            fr = sorted({r["fraction"] for r in rows if r["model"] == name})
            add(
                f"{removed} helps (ablation)",
                "part of the +5 to +15 points over a ViT",
                None,
                random_init,
                name,
                fr,
            )
    return claims


def format_verdict(claims: Sequence[Mapping], scale: str = "") -> str:
    """Plain sentences for :func:`verdict`'s claims, computed from their numbers."""
    if not claims:
        return "No claim could be tested with these runs."
    word = {
        "supported": "SUPPORTED",
        "contradicted": "CONTRADICTED",
        "inconclusive": "INCONCLUSIVE",
    }
    lines = [f"Verdict at the scale run here{f' ({scale})' if scale else ''}:"]
    for c in claims:
        se = f" ± {c['se']:.1f}" if math.isfinite(c["se"]) else ""
        per = ", ".join(f"{f:.1%}: {g:+.1f}" for f, g in c["per_fraction"].items())
        size = ""
        if c["status"] == "supported" and c["paper"].startswith("+"):
            size = (
                " and at least as large as the paper's"
                if c["reaches_paper"]
                else " but smaller than the paper's"
            )
        lines.append(
            f"- {c['claim']}: {word[c['status']]}{size}. {c['a']} vs {c['b']}: {c['gain']:+.1f}{se} points "
            f"over {c['n']} paired runs ({per}); paper: {c['paper']}."
        )
    return "\n".join(lines)
