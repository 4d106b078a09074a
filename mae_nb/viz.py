"""Plots: each function takes data (arrays, dataclasses) and returns a matplotlib Figure.

Nothing here computes results; chapters compute with the other modules and look with these.
Widgets (``mae_nb.widgets``) wire sliders to a compute function and one of these.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from mae_nb.data.geotiff import composite, stretch
from mae_nb.errors import InputError


def _show_figures_inline() -> None:
    """In a Jupyter kernel, make returned Figures display (``%matplotlib inline``), once."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None or getattr(ip, "kernel", None) is None:
        return
    if Figure not in ip.display_formatter.formatters["image/png"].type_printers:
        ip.run_line_magic("matplotlib", "inline")


_show_figures_inline()

#: Colours of the synthetic scene's land-cover classes (water, forest, young crop, mature
#: crop, grassland, bare soil, urban, road); index 0 is unlabelled.
LAND_COVER_COLOURS = [
    "#000000",
    "#2b6cb0",
    "#1e5631",
    "#a4de02",
    "#4c9a2a",
    "#c2d96b",
    "#a0522d",
    "#d1495b",
    "#555555",
]


def land_cover_cmap(n_classes: int = 8):
    """A ListedColormap for label maps 0..n_classes (0 = unlabelled, black)."""
    from matplotlib.colors import ListedColormap

    colours = LAND_COVER_COLOURS if n_classes <= 8 else None
    if colours is None:
        import matplotlib

        base = matplotlib.colormaps["tab20"].resampled(n_classes)
        colours = ["#000000"] + [base(i) for i in range(n_classes)]
    return ListedColormap(colours[: n_classes + 1])


def _no_axes(ax) -> None:
    """Hide an image's axes, ticks included: a hidden axis still lays out its tick labels, which
    took half the time of drawing a four-panel figure (a slider update)."""
    ax.set(xticks=[], yticks=[])
    ax.set_axis_off()


def _figure(nrows: int, ncols: int, size: float = 3.2, **kw) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(size * ncols, size * nrows), layout="constrained", **kw)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(nrows, ncols)
    return fig, axes


def show_bands(
    image: np.ndarray,
    band_names: Sequence[str] | None = None,
    valid=None,
    ncols: int = 6,
    cmap: str = "gray",
) -> Figure:
    """Each band of ``image`` (C, H, W) stretched on its own (2-98 percentiles)."""
    c = image.shape[0]
    ncols = min(ncols, c)
    nrows = int(np.ceil(c / ncols))
    fig, axes = _figure(nrows, ncols, 2.4)
    for i, ax in enumerate(axes.ravel()):
        _no_axes(ax)
        if i < c:
            ax.imshow(stretch(image[i], valid=valid), cmap=cmap)
            ax.set_title(band_names[i] if band_names else f"band {i + 1}", fontsize=9)
    return fig


def show_composites(
    image: np.ndarray,
    composites: dict[str, Sequence[int]],
    valid=None,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Named band composites of ``image`` (C, H, W) side by side, plus the label map if given."""
    n = len(composites) + (labels is not None)
    fig, axes = _figure(1, n, 3.6)
    for ax, (name, bands) in zip(axes[0], composites.items()):
        ax.imshow(composite(image, bands, valid))
        ax.set_title(f"{name} {tuple(bands)}", fontsize=10)
        _no_axes(ax)
    if labels is not None:
        ax = axes[0, -1]
        show_labels(labels, class_names, ax=ax)
    return fig


def show_labels(labels: np.ndarray, class_names: Sequence[str] | None = None, ax=None) -> Figure:
    """A land-cover map with a legend."""
    from matplotlib.patches import Patch

    if ax is None:
        fig, axes = _figure(1, 1, 4.5)
        ax = axes[0, 0]
    n = int(labels.max()) if class_names is None else len(class_names)
    cmap = land_cover_cmap(n)
    ax.imshow(labels, cmap=cmap, vmin=0, vmax=n, interpolation="nearest")
    ax.set_title("land cover", fontsize=10)
    _no_axes(ax)
    if class_names is not None:
        handles = [Patch(color=cmap(i + 1), label=name) for i, name in enumerate(class_names)]
        ax.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False
        )
    return ax.figure


def band_histograms(
    image: np.ndarray,
    band_names: Sequence[str] | None = None,
    valid=None,
    bins: int = 64,
    percentiles: tuple[float, float] = (2, 98),
) -> Figure:
    """Histogram of each band's valid pixels, with the stretch percentiles marked."""
    fig, axes = _figure(1, 1, 4.5)
    ax = axes[0, 0]
    fig.set_size_inches(8, 3.5)
    mask = np.ones(image.shape[1:], bool) if valid is None else valid
    for i, band in enumerate(image):
        vals = band[mask].astype(float)
        name = band_names[i] if band_names else f"band {i + 1}"
        line = ax.hist(vals, bins=bins, histtype="step", label=name)[2][0]
        for q in np.percentile(vals, percentiles):
            ax.axvline(q, color=line.get_edgecolor(), ls=":", lw=0.8)
    ax.set_xlabel("pixel value (valid pixels only)")
    ax.set_ylabel("count")
    ax.legend(fontsize=8, ncol=2)
    return fig


def show_tiles(
    tiles: np.ndarray,
    rgb: Sequence[int] = (1, 2, 3),
    n: int = 16,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
) -> Figure:
    """The first ``n`` tiles (N, C, s, s) as RGB composites, each stretched on its own."""
    n = min(n, len(tiles))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = _figure(nrows, ncols, 1.6)
    for i, ax in enumerate(axes.ravel()):
        _no_axes(ax)
        if i < n:
            ax.imshow(
                composite(tiles[i], rgb) if tiles.shape[1] >= 3 else stretch(tiles[i, 0]),
                cmap="gray",
            )
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    return fig


def show_tile_grid(
    image: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    size: int,
    rgb: Sequence[int] = (1, 2, 3),
    valid=None,
) -> Figure:
    """The image with the outline of every tile drawn on it."""
    from matplotlib.patches import Rectangle

    fig, axes = _figure(1, 1, 5)
    ax = axes[0, 0]
    ax.imshow(
        composite(image, rgb, valid) if image.shape[0] >= 3 else stretch(image[0]), cmap="gray"
    )
    for r, c in zip(rows, cols):
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), size, size, fill=False, lw=0.7, ec="yellow"))
    ax.set_title(f"{len(rows)} tiles of {size} x {size} px", fontsize=10)
    _no_axes(ax)
    return fig


def plot_spectra(
    spectra: dict[str, np.ndarray],
    wavelengths: np.ndarray | None = None,
    ylabel: str = "reflectance",
    title: str | None = None,
) -> Figure:
    """Mean spectrum (and 10-90 % band) of each named group; ``spectra[name]``: (n_pixels, C)."""
    fig, axes = _figure(1, 1, 4.5)
    fig.set_size_inches(8, 4)
    ax = axes[0, 0]
    first = next(iter(spectra.values()))
    x = np.arange(1, first.shape[1] + 1) if wavelengths is None else wavelengths
    for name, s in spectra.items():
        s = np.asarray(s, float)
        (line,) = ax.plot(x, s.mean(0), label=name, marker="o" if len(x) <= 12 else None)
        if len(s) > 1:
            lo, hi = np.percentile(s, [10, 90], axis=0)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("wavelength (nm)" if wavelengths is not None else "band")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    return fig


def show_images(images: dict[str, np.ndarray], size: float = 3.6, cmap: str = "gray") -> Figure:
    """Named images side by side: (H, W, 3) in [0, 1] as colour, (H, W) with ``cmap``."""
    fig, axes = _figure(1, len(images), size)
    for ax, (name, img) in zip(axes[0], images.items()):
        ax.imshow(img, cmap=None if np.ndim(img) == 3 else cmap)
        ax.set_title(name, fontsize=10)
        _no_axes(ax)
    return fig


def plot_mae_reconstruction(
    original: np.ndarray,
    masked: np.ndarray,
    prediction: np.ndarray,
    pasted: np.ndarray,
    title: str | None = None,
    size: float = 3.2,
) -> Figure:
    """Meta's MAE demo figure: original, masked, reconstruction, reconstruction + visible.

    Each image is (H, W, 3) in [0, 1] (values outside are clipped); (N, H, W, 3) stacks give
    one row per sample. ``masked`` usually shows the hidden patches grey or black.
    """
    panels = [np.asarray(a, dtype=float) for a in (original, masked, prediction, pasted)]
    if (
        any(p.shape != panels[0].shape for p in panels)
        or panels[0].ndim not in (3, 4)
        or panels[0].shape[-1] != 3
    ):
        raise InputError(
            "original, masked, prediction and pasted must share a shape (H, W, 3) or (N, H, W, 3), "
            f"got {[p.shape for p in panels]}"
        )
    rows = [list(p) for p in panels] if panels[0].ndim == 4 else [[p] for p in panels]
    n = len(rows[0])
    fig, axes = _figure(n, 4, size)
    names = ("original", "masked", "reconstruction", "reconstruction + visible")
    for col, (name, images) in enumerate(zip(names, rows)):
        for row, img in enumerate(images):
            ax = axes[row, col]
            ax.imshow(np.clip(img, 0, 1))
            _no_axes(ax)
            if row == 0:
                ax.set_title(name, fontsize=11)
    if title:
        fig.suptitle(title)
    return fig


def plot_loss_curve(
    history,
    keys: Sequence[str] = ("loss",),
    title: str | None = None,
    logy: bool = False,
    val: bool = True,
) -> Figure:
    """Per-epoch training (solid) and validation (dashed) curves of a :class:`mae_nb.train.History`,
    or of several on one plot (``{name: history}``, one colour each). ``val=False`` leaves out
    the validation curves."""
    histories = history if isinstance(history, dict) else {None: history}
    fig, axes = _figure(1, 1, 4.0)
    ax = axes[0, 0]
    fig.set_size_inches(6.2, 3.7)
    for i, (name, h) in enumerate(histories.items()):
        for key in keys:
            for part, style, what in ((h.train, "-", "train"), (h.val, "--", "held out")):
                if not part.get(key) or (part is h.val and not val):
                    continue
                label = " ".join(
                    x for x in (name, what, key if len(keys) > 1 or name is None else None) if x
                )
                colour = f"C{i}" if name is not None and len(keys) == 1 else None
                ax.plot(
                    np.arange(1, len(part[key]) + 1),
                    part[key],
                    style,
                    color=colour,
                    marker="." if len(part[key]) < 30 else None,
                    label=label,
                )
    ax.set_xlabel("epoch")
    ax.set_ylabel(", ".join(keys))
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8 if len(histories) > 1 else 9)
    if title:
        ax.set_title(title)
    return fig


def plot_reconstruction(
    rec, bands: Sequence[int] | None = None, title: str | None = None, size: float = 3.2
) -> Figure:
    """Meta's four panels for a :class:`mae_nb.reconstruct.Reconstruction`, all with the original's
    stretch.

    ``bands``: 1-based bands shown as red, green, blue (default 1, 2, 3). The title says the
    scenario and the masked-patch PSNR unless one is given.
    """
    panels = rec.rgb(bands)
    if title is None:
        passes = (
            f"{rec.iterations} x {rec.mask_ratio:.0%}"
            if rec.iterations > 1
            else f"{rec.mask_ratio:.0%}"
        )
        title = (
            f"{passes} masked ({rec.mode}, seed {rec.seed}): {rec.masked_share:.0%} of patches "
            f"replaced, masked-patch PSNR {rec.psnr_masked:.2f} dB, SSIM {rec.ssim_masked:.3f}"
        )
    return plot_mae_reconstruction(
        panels["original"],
        panels["masked"],
        panels["prediction"],
        panels["pasted"],
        title=title,
        size=size,
    )


def plot_fills(
    original: np.ndarray,
    pixel_mask: np.ndarray,
    fills: dict[str, np.ndarray],
    bands: Sequence[int] = (1, 2, 3),
    title: str | None = None,
    size: float = 2.6,
) -> Figure:
    """One crop: the original, its masked input, and each way of filling the hidden patches.

    original: (C, H, W) (NaN at nodata); pixel_mask: (H, W), True where hidden; fills: name ->
    (C, H, W) with the hidden pixels filled (a model's pasted output, the blur, the mean fill).
    Every panel uses the original's 1-99 % stretch of ``bands`` (1-based red, green, blue), so
    the panels compare; the masked input shows hidden patches grey.
    """
    masked = np.where(pixel_mask[None], np.nan, original)
    lo, hi = _shared_stretch(original[None], bands, 1.0, 99.0)
    panels = {"original": original, "masked input": masked, **fills}
    fig, axes = _figure(1, len(panels), size)
    for ax, (name, image) in zip(axes[0], panels.items()):
        ax.imshow(_tile_rgb(image, bands, lo, hi))
        ax.set_title(name, fontsize=9)
        _no_axes(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_scenario_comparison(
    comparison, metrics: Sequence[str] = ("psnr_masked", "ssim_masked", "psnr")
) -> Figure:
    """Mean ± standard deviation of each scenario (bars) for a few metrics of a
    :class:`mae_nb.studies.scenarios.ScenarioComparison` (anything with its ``summary()``); the
    blur baseline is marked on masked-patch PSNR."""
    labels = {
        "psnr_masked": "PSNR, masked patches (dB)",
        "ssim_masked": "SSIM, masked patches",
        "psnr": "PSNR, whole crop (dB)",
        "ssim": "SSIM, whole crop",
        "detail": "detail level (1 = original)",
    }
    summary = comparison.summary()
    names = list(summary)
    fig, axes = _figure(1, len(metrics), 3.4)
    x = np.arange(len(names))
    for ax, m in zip(axes[0], metrics):
        means = [summary[n][m][0] for n in names]
        sds = [summary[n][m][1] for n in names]
        ax.bar(x, means, yerr=sds, color="#4c72b0", alpha=0.85, capsize=3)
        if m == "psnr_masked":
            base = [summary[n]["baseline_psnr_masked"][0] for n in names]
            ax.scatter(x, base, marker="_", s=400, color="#dd8452", zorder=3, label="blur baseline")
            ax.legend(fontsize=8)
        ax.set_xticks(x, names, rotation=20, fontsize=9)
        ax.set_title(labels.get(m, m), fontsize=10)
        finite = [v for v in means if np.isfinite(v)]
        if finite and "psnr" in m:
            ax.set_ylim(
                min(finite) - 3,
                max(finite + [summary[n]["baseline_psnr_masked"][0] for n in names]) + 2,
            )
        ax.grid(axis="y", alpha=0.3)
    return fig


def plot_crops(
    scene_rgb: np.ndarray, crops: Sequence[tuple[int, int]], size: int, title: str | None = None
) -> Figure:
    """A scene (H, W, 3) in [0, 1] with each crop (top-left corners, ``size`` px squares)
    outlined and numbered as its index: shows that the crops are disjoint and where they lie."""
    from matplotlib.patches import Rectangle

    fig, axes = _figure(1, 1, 5.0)
    ax = axes[0, 0]
    ax.imshow(np.clip(scene_rgb, 0, 1))
    for i, (r, c) in enumerate(crops):
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), size, size, fill=False, ec="#ffdd00", lw=1.5))
        ax.text(c + 3, r + 3, str(i), color="#ffdd00", fontsize=9, va="top", ha="left")
    ax.set_title(title or f"{len(crops)} disjoint crops of {size} x {size} px", fontsize=10)
    _no_axes(ax)
    return fig


def plot_training_pull(comparison, title: str | None = None) -> Figure:
    """Claim 1's pull towards the training statistics per scenario, for the model and the blur
    baseline on the same pixels (bars, ± two clustered standard errors), with the two readings
    marked: 0 = the image's statistics, 1 = the training data's
    (:meth:`mae_nb.studies.scenarios.ScenarioComparison.pull`)."""
    names = [s for s in comparison.scenarios if len(comparison.values(s, "pull_den"))]
    fig, axes = _figure(1, 1, 4.2)
    ax = axes[0, 0]
    x = np.arange(len(names))
    for k, (of, colour) in enumerate((("model", "#4c72b0"), ("blur", "#dd8452"))):
        est = [comparison.pull(s, of) for s in names]
        means = [e.mean for e in est]
        err = [2 * e.se if e.known else 0.0 for e in est]
        label = "the model" if of == "model" else "blur of the visible pixels"
        ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=err, color=colour, capsize=3, label=label)
    ax.axhline(0, color="k", lw=0.8)
    ax.axhline(1, color="k", lw=0.8, ls="--")
    ax.text(len(names) - 0.5, 1, " training data", va="bottom", ha="right", fontsize=8)
    ax.text(len(names) - 0.5, 0, " the image", va="bottom", ha="right", fontsize=8)
    ax.set_xticks(x, names, rotation=20, fontsize=9)
    ax.set_ylabel("pull towards the training statistics")
    ax.set_title(title or "claim 1: pull of the masked patches' mean and std", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_error_map(
    original_rgb: np.ndarray,
    reconstruction_rgb: np.ndarray,
    error: np.ndarray,
    title: str | None = None,
    units: str = "",
) -> Figure:
    """A scene, its reconstruction (both (H, W, 3) in [0, 1]) and a per-pixel error map (H, W) with
    a colour bar."""
    fig, axes = _figure(1, 3, 4.0)
    for ax, img, name in zip(
        axes[0], (original_rgb, reconstruction_rgb), ("original", "reconstruction")
    ):
        ax.imshow(np.clip(img, 0, 1))
        ax.set_title(name, fontsize=10)
        _no_axes(ax)
    ax = axes[0, 2]
    finite = error[np.isfinite(error)]
    vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    im = ax.imshow(np.ma.masked_invalid(error), cmap="magma", vmin=0, vmax=max(vmax, 1e-12))
    ax.set_title("error (RMSE over bands)", fontsize=10)
    _no_axes(ax)
    fig.colorbar(im, ax=ax, shrink=0.8, label=units)
    if title:
        fig.suptitle(title)
    return fig


# -------------------------------------------------------- hyperspectral classification (chapter 08)


def plot_label_efficiency(
    rows, metric: str = "oa", models: Sequence[str] | None = None, title: str | None = None
) -> Figure:
    """Accuracy against the share of training labels, one line per model: mean ± std over seeds.

    ``rows``: :func:`mae_nb.studies.label_efficiency.run_label_efficiency`'s dicts (``model``,
    ``fraction``, ``metric``; one per run). The x axis is logarithmic.
    """
    rows = list(rows)
    if not rows:
        raise InputError("rows is empty: run studies.label_efficiency.run_label_efficiency first")
    if metric not in rows[0]:
        raise InputError(f"metric {metric!r} is not in the rows; they have {sorted(rows[0])}")
    names = list(dict.fromkeys(r["model"] for r in rows)) if models is None else list(models)
    fig, axes = _figure(1, 1, 4.6)
    fig.set_size_inches(6.8, 4.4)
    ax = axes[0, 0]
    for i, name in enumerate(names):
        fractions = sorted({r["fraction"] for r in rows if r["model"] == name})
        if not fractions:
            raise InputError(f"model {name!r} is not in the rows")
        values = [
            [r[metric] for r in rows if r["model"] == name and r["fraction"] == f]
            for f in fractions
        ]
        mean = np.array([np.mean(v) for v in values]) * 100
        std = np.array([np.std(v) for v in values]) * 100
        ax.plot(fractions, mean, marker="osD^vP*X"[i % 8], label=name)
        if any(len(v) > 1 for v in values):
            ax.fill_between(fractions, mean - std, mean + std, alpha=0.15)
    ax.set_xscale("log")
    ticks = sorted({r["fraction"] for r in rows})
    ax.set_xticks(ticks, [f"{f * 100:g} %" for f in ticks])
    ax.minorticks_off()
    label = {"oa": "overall accuracy", "aa": "average accuracy", "kappa": "Cohen's kappa"}.get(
        metric, metric
    )
    ax.set_xlabel("share of the training labels used")
    ax.set_ylabel(f"{label} (x 100)" if metric == "kappa" else f"{label} (%)")
    ax.set_title(title or f"Label efficiency: {label} on the test split", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_confusion(
    confusion,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str | None = None,
) -> Figure:
    """A confusion matrix (K, K) (rows = true class, columns = predicted), rows normalized by
    default."""
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise InputError(f"confusion must be a square (K, K) matrix, got shape {cm.shape}")
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i + 1) for i in range(k)]
    if len(names) != k:
        raise InputError(f"{len(names)} class names for a {k} x {k} confusion matrix")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig, axes = _figure(1, 1)
    fig.set_size_inches(2.8 + 0.5 * k, 2.2 + 0.45 * k)
    ax = axes[0, 0]
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    top = shown.max() or 1
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shown[i, j] > 0.6 * top else "black",
                )
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(
        title
        or ("confusion matrix (each row sums to 1)" if normalize else "confusion matrix (pixels)"),
        fontsize=10,
    )
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def plot_classification_maps(
    labels: np.ndarray,
    predictions,
    class_names: Sequence[str] | None = None,
    test_mask: np.ndarray | None = None,
) -> Figure:
    """Ground truth (H, W) next to one or more predicted maps.

    labels: (H, W), 0 = unlabelled, classes 1..K; ``predictions``: an (H, W) map or
    ``{title: (H, W) map}``. With ``test_mask`` (H, W) bool, the test region is outlined on
    the ground truth and each map's accuracy on the labelled test pixels is in its title.
    """
    from matplotlib.patches import Patch

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"labels must be an (H, W) map, got shape {labels.shape}")
    maps = dict(predictions) if isinstance(predictions, dict) else {"prediction": predictions}
    if not maps:
        raise InputError("predictions is empty; give an (H, W) map or {title: map}")
    for name, m in maps.items():
        if np.shape(m) != labels.shape:
            raise InputError(f"map {name!r} has shape {np.shape(m)}, the labels {labels.shape}")
    k = (
        len(class_names)
        if class_names is not None
        else int(max(labels.max(), *(np.max(m) for m in maps.values())))
    )
    cmap = land_cover_cmap(k)
    fig, axes = _figure(1, 1 + len(maps), 3.4)
    panels = [("ground truth", labels)] + list(maps.items())
    sel = None if test_mask is None else np.asarray(test_mask, bool) & (labels > 0)
    for i, (ax, (name, m)) in enumerate(zip(axes[0], panels)):
        m = np.asarray(m)
        ax.imshow(m, cmap=cmap, vmin=0, vmax=k, interpolation="nearest")
        if sel is not None and i > 0 and sel.any():
            name = f"{name}\ntest OA {(m[sel] == labels[sel]).mean():.1%}"
        ax.set_title(name, fontsize=9)
        _no_axes(ax)
    if test_mask is not None:
        axes[0, 0].contour(
            np.asarray(test_mask, float), levels=[0.5], colors="white", linewidths=0.8
        )
    names = (
        list(class_names) if class_names is not None else [f"class {i}" for i in range(1, k + 1)]
    )
    handles = [Patch(color=cmap(i + 1), label=names[i]) for i in range(k)]
    axes[0, -1].legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False
    )
    return fig


# ------------------------------------------------------------------------- chapter 05: MAE features


def _grid_extent(shape: tuple[int, int], cell_size: int) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) in scene pixels of a (gh, gw) grid of cells."""
    return (0, shape[1] * cell_size, shape[0] * cell_size, 0)


def plot_pca_map(
    pca_rgb: np.ndarray,
    scene_rgb: np.ndarray | None = None,
    *,
    cell_size: int = 1,
    explained: Sequence[float] | None = None,
    title: str | None = None,
    size: float = 4.0,
) -> Figure:
    """The first three PCA components of embeddings as a false-colour map (gh, gw, 3) in [0, 1],
    next to the scene's composite (H, W, 3) when given, both over the scene's pixels
    (``cell_size``: pixels per grid cell)."""
    panels = ([("scene", scene_rgb, None)] if scene_rgb is not None else []) + [
        ("PCA of embeddings (R, G, B = PC1-3)", pca_rgb, _grid_extent(pca_rgb.shape[:2], cell_size))
    ]
    fig, axes = _figure(1, len(panels), size)
    for ax, (name, img, extent) in zip(axes[0], panels):
        ax.imshow(np.clip(img, 0, 1), extent=extent, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        _no_axes(ax)
    if scene_rgb is not None:
        axes[0, 1].set_xlim(0, scene_rgb.shape[1])
        axes[0, 1].set_ylim(scene_rgb.shape[0], 0)
    if explained is not None:
        ev = ", ".join(f"{v:.0%}" for v in list(explained)[:3])
        axes[0, -1].set_xlabel(f"explained variance: {ev}")
        axes[0, -1].xaxis.label.set_visible(True)
    if title:
        fig.suptitle(title)
    return fig


def plot_segmentation(
    labels: np.ndarray,
    clusters: np.ndarray,
    scene_rgb: np.ndarray | None = None,
    *,
    cell_size: int = 1,
    class_names: Sequence[str] | None = None,
    ari: float | None = None,
    title: str | None = None,
    size: float = 3.6,
) -> Figure:
    """Land-cover labels per cell (gh, gw), 0 = none, next to k-means clusters (gh, gw), -1 = none,
    and the scene's composite when given; the adjusted Rand index in the clusters' title."""
    import matplotlib

    n = int(max(labels.max(), 1))
    panels = 2 + (scene_rgb is not None)
    fig, axes = _figure(1, panels, size)
    axes = list(axes[0])
    extent = _grid_extent(labels.shape, cell_size)
    if scene_rgb is not None:
        ax = axes.pop(0)
        ax.imshow(scene_rgb)
        ax.set_title("scene", fontsize=10)
        _no_axes(ax)
    axes[0].imshow(
        labels, cmap=land_cover_cmap(n), vmin=0, vmax=n, extent=extent, interpolation="nearest"
    )
    axes[0].set_title("land cover (majority per patch)", fontsize=10)
    if class_names:
        from matplotlib.patches import Patch

        cmap = land_cover_cmap(n)
        present = [k for k in range(1, n + 1) if (labels == k).any()]
        axes[0].legend(
            handles=[
                Patch(color=cmap(k), label=class_names[k - 1])
                for k in present
                if k <= len(class_names)
            ],
            fontsize=7,
            loc="lower left",
            framealpha=0.8,
        )
    shown = np.ma.masked_less(clusters, 0)
    axes[1].imshow(
        shown,
        cmap=matplotlib.colormaps["tab20"],
        vmin=0,
        vmax=19,
        extent=extent,
        interpolation="nearest",
    )
    axes[1].set_title(
        f"k-means clusters{f' (ARI {ari:.2f})' if ari is not None else ''}", fontsize=10
    )
    for ax in axes:
        _no_axes(ax)
    if title:
        fig.suptitle(title)
    return fig


def plot_probe(
    labels: np.ndarray,
    prediction: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    *,
    cell_size: int = 1,
    title: str | None = None,
    size: float = 3.6,
) -> Figure:
    """A linear probe on a spatial split: the labels (gh, gw) with the training cells dimmed, and
    the probe's predictions on the test cells (``prediction`` 0 elsewhere)."""
    n = int(max(labels.max(), prediction.max(), 1))
    cmap = land_cover_cmap(n)
    extent = _grid_extent(labels.shape, cell_size)
    fig, axes = _figure(1, 3, size)
    axes[0, 0].imshow(
        np.where(train, 1, 0) + np.where(test, 2, 0),
        cmap="Greys",
        vmin=0,
        vmax=2.5,
        extent=extent,
        interpolation="nearest",
    )
    axes[0, 0].set_title("split: train (grey), test (dark)", fontsize=10)
    axes[0, 1].imshow(
        np.where(test, labels, 0), cmap=cmap, vmin=0, vmax=n, extent=extent, interpolation="nearest"
    )
    axes[0, 1].set_title("test labels", fontsize=10)
    axes[0, 2].imshow(
        np.where(test, prediction, 0),
        cmap=cmap,
        vmin=0,
        vmax=n,
        extent=extent,
        interpolation="nearest",
    )
    axes[0, 2].set_title("probe's predictions", fontsize=10)
    for ax in axes[0]:
        _no_axes(ax)
    if title:
        fig.suptitle(title)
    return fig


def plot_feature_study(rows: Sequence[dict], metric: str = "macro_f1", size: float = 4.0) -> Figure:
    """One panel per feature kind: ``metric`` per masking scenario, one dot per seed and the mean
    as a bar (``rows`` from :func:`mae_nb.studies.features.compare_feature_scenarios`)."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    fig, axes = _figure(1, len(kinds), size)
    for ax, kind in zip(axes[0], kinds):
        mine = [r for r in rows if r["kind"] == kind]
        scenarios = list(dict.fromkeys(r["scenario"] for r in mine))
        for i, s in enumerate(scenarios):
            v = np.array([r[metric] for r in mine if r["scenario"] == s])
            ax.bar(i, v.mean(), color="#9ecae1", width=0.6)
            ax.plot(
                np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, "o", color="#08519c", ms=4
            )
        ax.set_xticks(range(len(scenarios)), scenarios)
        ax.set_title(f"{kind}s", fontsize=10)
        ax.set_ylabel(metric)
        ax.set_ylim(0, min(1.0, max(r[metric] for r in mine) + 0.05))  # bars start at 0
    return fig


def plot_anomaly(
    scene_rgb: np.ndarray,
    score: np.ndarray,
    flagged: np.ndarray,
    truth: np.ndarray,
    *,
    cell_size: int = 1,
    title: str | None = None,
    size: float = 3.6,
) -> Figure:
    """Anomaly detection from an error map: the scene with the planted anomaly, the per-cell score
    (gh, gw), and the top-k flagged cells (red) against the true ones (outlined)."""
    extent = _grid_extent(score.shape, cell_size)
    fig, axes = _figure(1, 3, size)
    axes[0, 0].imshow(scene_rgb)
    axes[0, 0].set_title("scene with the anomaly", fontsize=10)
    im = axes[0, 1].imshow(score, cmap="magma", extent=extent, interpolation="nearest")
    fig.colorbar(im, ax=axes[0, 1], shrink=0.8)
    axes[0, 1].set_title("reconstruction error per patch", fontsize=10)
    axes[0, 2].imshow(scene_rgb, alpha=0.5)
    overlay = np.zeros(score.shape + (4,))
    overlay[flagged] = (1, 0, 0, 0.6)
    axes[0, 2].imshow(overlay, extent=extent, interpolation="nearest")
    axes[0, 2].contour(
        np.kron(truth.astype(float), np.ones((cell_size, cell_size))),
        levels=[0.5],
        colors="cyan",
        linewidths=1,
    )
    axes[0, 2].set_title("top-k flagged (red), truth (cyan)", fontsize=10)
    for ax in axes[0]:
        _no_axes(ax)
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------- chapters 01-02: autoencoders


def _shared_stretch(tiles: np.ndarray, rgb: Sequence[int], low: float = 2.0, high: float = 98.0):
    """Per-band (lo, hi) percentiles of the ``rgb`` bands (1-based) over all finite pixels of
    ``tiles`` (N, C, H, W)."""
    sel = np.asarray(tiles, np.float64)[:, [b - 1 for b in rgb]]
    lo, hi = [], []
    for b in range(sel.shape[1]):
        v = sel[:, b][np.isfinite(sel[:, b])]
        a, z = np.percentile(v, [low, high]) if v.size else (0.0, 1.0)
        lo.append(a)
        hi.append(z if z > a else a + 1e-6)
    return np.asarray(lo), np.asarray(hi)


def _tile_rgb(tile: np.ndarray, rgb: Sequence[int], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(H, W, 3) display image of one tile (C, H, W) with a given stretch; NaN (hidden/nodata) is
    grey."""
    t = np.asarray(tile, np.float64)[[b - 1 for b in rgb]]
    out = np.clip((t - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1)
    out = np.where(np.isfinite(t).all(axis=0)[None], out, 0.5)
    return np.moveaxis(out, 0, -1)


def _np_tiles(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def plot_tile_reconstructions(
    originals,
    reconstructions: dict,
    rgb: Sequence[int] = (1, 2, 3),
    n: int = 6,
    size: float = 1.7,
    scores: dict | None = None,
    original_label: str = "original",
) -> Figure:
    """Original tiles (top row) and each model's reconstructions (one row per entry), as RGB
    composites.

    originals: (N, C, H, W); reconstructions: {name: (N, C, H, W)}. Every panel uses the
    originals' 2-98 % stretch, so colours compare across rows. ``scores``: {name: text} shown
    after the row's name (e.g. its PSNR).
    """
    orig = _np_tiles(originals)
    n = min(n, len(orig))
    rows = {original_label: orig, **{k: _np_tiles(v) for k, v in reconstructions.items()}}
    lo, hi = _shared_stretch(orig[:n], rgb)
    fig, axes = _figure(len(rows), n, size)
    for r, (name, arr) in enumerate(rows.items()):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(_tile_rgb(arr[i], rgb, lo, hi))
            ax.set_xticks([])
            ax.set_yticks([])
        label = name if not scores or name not in scores else f"{name}\n{scores[name]}"
        axes[r, 0].set_ylabel(label, fontsize=9)
    return fig


def plot_masked_reconstruction(
    result, rgb: Sequence[int] = (1, 2, 3), n: int = 5, size: float = 1.8, title: str | None = None
) -> Figure:
    """Original, input with hidden patches (grey) and reconstruction for the first ``n`` tiles.

    ``result``: a :class:`mae_nb.models.autoencoders.MaskedReconstruction`. The title gives
    the mask ratio and the PSNR on hidden and visible pixels unless ``title`` is given.
    """
    rows = {
        "original": result.imgs,
        f"input ({result.mask_ratio:.0%} hidden)": result.hidden,
        "reconstruction": result.reconstruction,
    }
    fig = plot_tile_reconstructions(
        result.imgs, {k: v for k, v in rows.items() if k != "original"}, rgb, n, size
    )
    if title is None:
        hidden = "n/a" if not np.isfinite(result.psnr_hidden) else f"{result.psnr_hidden:.1f} dB"
        title = (
            f"mask ratio {result.mask_ratio:.2f}: PSNR on hidden pixels {hidden}, "
            f"on visible pixels {result.psnr_visible:.1f} dB"
        )
    fig.suptitle(title, fontsize=10)
    return fig


def plot_histories(
    histories: dict,
    key: str = "loss",
    val: bool = True,
    logy: bool = True,
    title: str | None = None,
) -> Figure:
    """Per-epoch ``key`` of several :class:`mae_nb.train.History` ({name: history}) on one plot:
    :func:`plot_loss_curve` with one key, on a log scale by default."""
    return plot_loss_curve(histories, keys=(key,), title=title, logy=logy, val=val)


def plot_metric_curves(
    x: Sequence[float],
    series: dict,
    xlabel: str,
    ylabel: str = "PSNR (dB)",
    logx: bool = False,
    title: str | None = None,
    hlines: dict | None = None,
) -> Figure:
    """One line per entry of ``series`` ({name: values at ``x``}), plus dotted reference lines
    ``hlines`` ({name: y})."""
    fig, axes = _figure(1, 1, 4.0)
    fig.set_size_inches(6.0, 3.6)
    ax = axes[0, 0]
    for name, ys in series.items():
        ax.plot(list(x), list(ys), marker="o", label=name)
    for i, (name, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, linestyle=":", color=f"C{len(series) + i}", label=name)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def plot_latent_scatter(
    points: np.ndarray,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    values: np.ndarray | None = None,
    value_name: str = "",
    title: str | None = None,
) -> Figure:
    """A 2-D view of latent codes (``points`` (N, 2)), coloured by land-cover ``labels`` (1..K) or
    by ``values``."""
    fig, axes = _figure(1, 1, 4.2)
    fig.set_size_inches(6.2, 4.4)
    ax = axes[0, 0]
    if labels is not None:
        cmap = land_cover_cmap(len(class_names) if class_names else int(np.max(labels)))
        for k in np.unique(labels):
            sel = labels == k
            name = class_names[k - 1] if class_names and 0 < k <= len(class_names) else str(k)
            ax.scatter(
                points[sel, 0], points[sel, 1], s=14, color=cmap(int(k)), label=name, alpha=0.8
            )
        ax.legend(fontsize=8, markerscale=1.5, loc="best")
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], s=14, c=values, cmap="viridis", alpha=0.8)
        if values is not None:
            fig.colorbar(sc, ax=ax, label=value_name)
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def plot_latent_vs_prior(
    codes: dict, prior_samples: np.ndarray, dims: tuple[int, int] = (0, 1), title: str | None = None
) -> Figure:
    """Latent codes ({name: (N, D)}) next to samples of the prior (M, D), in latent dimensions
    ``dims``.

    One panel per entry of ``codes``, the prior's samples in grey behind each.
    """
    fig, axes = _figure(1, len(codes), 3.6)
    p = np.asarray(prior_samples)
    a, b = dims
    both = np.concatenate([p[:, [a, b]]] + [np.asarray(z)[:, [a, b]] for z in codes.values()])
    lim = np.nanpercentile(np.abs(both), 99.5) * 1.1
    for ax, (name, z) in zip(axes[0], codes.items()):
        z = np.asarray(z)
        ax.scatter(p[:, a], p[:, b], s=4, color="0.75", label="prior samples")
        ax.scatter(z[:, a], z[:, b], s=8, color="C3", alpha=0.7, label="codes of tiles")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"z[{a}]")
        ax.set_ylabel(f"z[{b}]")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    return fig


def plot_spectral_reconstruction(
    rec,
    indices: Sequence[int] | None = None,
    wavelengths=None,
    titles: Sequence[str] | None = None,
    ncols: int = 3,
    size: float = 3.6,
) -> Figure:
    """Masked spectra next to true ones, for the centre pixel of patches of a
    :class:`mae_nb.models.spectral.SpectralReconstruction` (like the paper's figure).

    Per patch: the true spectrum (black), the model's prediction on the masked bands (red
    dots), and the masked bands shaded. Values are in standardized units.
    """
    idx = list(range(min(len(rec.original), 6))) if indices is None else list(indices)
    ncols = min(ncols, len(idx))
    nrows = int(np.ceil(len(idx) / ncols))
    fig, axes = _figure(nrows, ncols, size)
    fig.set_size_inches(size * 1.4 * ncols, size * nrows)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(idx):
            _no_axes(ax)
            continue
        sp = rec.centre_spectra(idx[k])
        x = np.arange(1, len(sp["true"]) + 1) if wavelengths is None else np.asarray(wavelengths)
        m = sp["masked"]
        step = np.median(np.diff(x)) if len(x) > 1 else 1.0
        for run_start, run_end in _runs(m):
            ax.axvspan(x[run_start] - step / 2, x[run_end - 1] + step / 2, color="0.85", lw=0)
        ax.plot(x, sp["true"], color="k", lw=1.2, label="true")
        ax.plot(
            x[m], sp["predicted"][m], ".", color="#d1495b", ms=3.5, label="reconstructed (masked)"
        )
        err = float(np.mean((sp["predicted"][m] - sp["true"][m]) ** 2)) if m.any() else float("nan")
        name = titles[k] if titles is not None else f"patch {idx[k]}"
        ax.set_title(f"{name}\n{int(m.mean() * 100)} % of bands masked, MSE {err:.3f}", fontsize=9)
        ax.set_xlabel("wavelength (nm)" if wavelengths is not None else "band")
        ax.set_ylabel("standardized value")
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(fontsize=8, loc="best")
    return fig


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of a 1-D boolean array."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(edges[::2], edges[1::2]))


def plot_mask_ratio_errors(
    ratios: Sequence[float], errors: Sequence[dict], title: str | None = None
) -> Figure:
    """Masked-value MSE against mask ratio for each series of ``errors[i]`` (dicts such as
    :func:`mae_nb.models.spectral.masked_errors` returns)."""
    fig, axes = _figure(1, 1, 4.0)
    fig.set_size_inches(6.0, 3.6)
    ax = axes[0, 0]
    for key, style in (("model", "o-"), ("visible_mean", "s--"), ("zero", ":")):
        if key in errors[0]:
            ax.plot(ratios, [e[key] for e in errors], style, label=key.replace("_", " "))
    ax.set_xlabel("mask ratio")
    ax.set_ylabel("MSE on masked values")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    if title:
        ax.set_title(title)
    return fig


def plot_split(regions: np.ndarray, labels: np.ndarray, title: str | None = None) -> Figure:
    """A spatial split: regions (H, W) (0 train, 1 val, 2 test, -1 buffer) next to the
    labels (H, W).

    Labelled pixels are drawn in their region's colour, unlabelled ones pale, so one sees
    which blocks went where and the buffer that keeps test pixels out of training patches.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    regions, labels = np.asarray(regions), np.asarray(labels)
    if regions.shape != labels.shape or regions.ndim != 2:
        raise InputError(
            f"regions {regions.shape} and labels {labels.shape} must be the same (H, W)"
        )
    colours = ["#bbbbbb", "#1f77b4", "#ff7f0e", "#2ca02c"]  # buffer, train, val, test
    pale = ["#eeeeee", "#c6dbef", "#fdd0a2", "#c7e9c0"]
    shown = np.where(labels > 0, regions + 1, regions + 5)
    fig, axes = _figure(1, 1, 4.4)
    fig.set_size_inches(7.4, 4.2)
    ax = axes[0, 0]
    ax.imshow(shown, cmap=ListedColormap(colours + pale), vmin=0, vmax=7, interpolation="nearest")
    counts = {
        name: int(((regions == i) & (labels > 0)).sum())
        for i, name in ((0, "train"), (1, "val"), (2, "test"))
    }
    handles = [
        Patch(color=colours[i + 1], label=f"{n} ({counts[n]} labelled px)")
        for i, n in enumerate(counts)
    ]
    handles.append(Patch(color=colours[0], label="buffer (no split)"))
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False
    )
    ax.set_title(title or "spatially disjoint split (pale: unlabelled)", fontsize=10)
    _no_axes(ax)
    return fig


def plot_attention_maps(
    att,
    picture: np.ndarray | None = None,
    *,
    size: float = 2.6,
    alpha: float = 0.6,
    title: str | None = None,
) -> Figure:
    """Attention maps (:class:`mae_nb.models.attention.AttentionMaps`) over the image, per head.

    ``picture``: (H, W, 3) in [0, 1] (or (H, W)), the image the model read, drawn under every
    map; without it the maps are drawn alone. The first panel is the picture with the query
    patch outlined; then one panel per head, each with its own colour scale (0 to its largest
    weight) and its share of attention on the class token in the title. Patches hidden by the
    mask (no token) are grey.
    """
    import matplotlib
    from matplotlib.patches import Rectangle

    maps = np.asarray(att.maps)
    gh, gw = maps.shape[1:]
    p = att.patch_size
    extent = _grid_extent((gh, gw), p)
    if picture is not None:
        picture = np.clip(np.asarray(picture, dtype=np.float32), 0, 1)
        if picture.shape[:2] != (gh * p, gw * p):
            raise InputError(
                f"picture {picture.shape[:2]} must be the model's input size "
                f"({gh * p}, {gw * p}): {gh} x {gw} patches of {p} px"
            )
    cmap = matplotlib.colormaps["inferno"].with_extremes(bad=(0.5, 0.5, 0.5, 0.9))
    panels = len(maps) + (picture is not None)
    fig, axes = _figure(1, panels, size)
    axes = axes[0]

    def mark(ax):
        if att.query != "cls":
            r, c = att.query
            ax.add_patch(Rectangle((c * p, r * p), p, p, fill=False, ec="cyan", lw=2))

    if picture is not None:
        ax = axes[0]
        ax.imshow(picture, cmap="gray", extent=extent)
        mark(ax)
        ax.set_title(f"query: {att.describe_query()}", fontsize=9)
        _no_axes(ax)
    for ax, head, m, cls in zip(axes[panels - len(maps) :], att.heads, maps, att.to_cls):
        if picture is not None:
            ax.imshow(picture, cmap="gray", extent=extent)
        vmax = float(np.nanmax(m)) if np.isfinite(m).any() else 1.0
        ax.imshow(
            np.ma.masked_invalid(m),
            cmap=cmap,
            vmin=0,
            vmax=vmax,
            alpha=alpha if picture is not None else 1.0,
            extent=extent,
            interpolation="nearest",
        )
        mark(ax)
        ax.set_title(f"head {head}: {cls:.1%} on the class token", fontsize=9)
        _no_axes(ax)
    fig.suptitle(
        title or f"block {att.block}: where {att.describe_query()} looks (brighter = more)",
        fontsize=10,
    )
    return fig
