"""Plots: each function takes data (arrays, dataclasses) and returns a matplotlib Figure.

Nothing here computes results; chapters compute with the other modules and look with these.
Widgets (``mae_nb.widgets``) wire sliders to a compute function and one of these.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from mae_nb.data.geotiff import composite, stretch

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
LAND_COVER_COLOURS = ["#000000", "#2b6cb0", "#1e5631", "#a4de02", "#4c9a2a", "#c2d96b", "#a0522d", "#d1495b", "#555555"]


def land_cover_cmap(n_classes: int = 8):
    """A ListedColormap for label maps 0..n_classes (0 = unlabelled, black)."""
    from matplotlib.colors import ListedColormap

    colours = LAND_COVER_COLOURS if n_classes <= 8 else None
    if colours is None:
        import matplotlib

        base = matplotlib.colormaps["tab20"].resampled(n_classes)
        colours = ["#000000"] + [base(i) for i in range(n_classes)]
    return ListedColormap(colours[: n_classes + 1])


def _figure(nrows: int, ncols: int, size: float = 3.2, **kw) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(size * ncols, size * nrows), layout="constrained", **kw)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(nrows, ncols)
    return fig, axes


def show_bands(image: np.ndarray, band_names: Sequence[str] | None = None, valid=None,
               ncols: int = 6, cmap: str = "gray") -> Figure:
    """Each band of ``image`` (C, H, W) stretched on its own (2-98 percentiles)."""
    c = image.shape[0]
    ncols = min(ncols, c)
    nrows = int(np.ceil(c / ncols))
    fig, axes = _figure(nrows, ncols, 2.4)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < c:
            ax.imshow(stretch(image[i], valid=valid), cmap=cmap)
            ax.set_title(band_names[i] if band_names else f"band {i + 1}", fontsize=9)
    return fig


def show_composites(image: np.ndarray, composites: dict[str, Sequence[int]], valid=None,
                    labels: np.ndarray | None = None, class_names: Sequence[str] | None = None) -> Figure:
    """Named band composites of ``image`` (C, H, W) side by side, plus the label map if given."""
    n = len(composites) + (labels is not None)
    fig, axes = _figure(1, n, 3.6)
    for ax, (name, bands) in zip(axes[0], composites.items()):
        ax.imshow(composite(image, bands, valid))
        ax.set_title(f"{name} {tuple(bands)}", fontsize=10)
        ax.set_axis_off()
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
    ax.set_axis_off()
    if class_names is not None:
        handles = [Patch(color=cmap(i + 1), label=name) for i, name in enumerate(class_names)]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return ax.figure


def band_histograms(image: np.ndarray, band_names: Sequence[str] | None = None, valid=None,
                    bins: int = 64, percentiles: tuple[float, float] = (2, 98)) -> Figure:
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


def show_tiles(tiles: np.ndarray, rgb: Sequence[int] = (1, 2, 3), n: int = 16, ncols: int = 8,
               titles: Sequence[str] | None = None) -> Figure:
    """The first ``n`` tiles (N, C, s, s) as RGB composites, each stretched on its own."""
    n = min(n, len(tiles))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = _figure(nrows, ncols, 1.6)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < n:
            ax.imshow(composite(tiles[i], rgb) if tiles.shape[1] >= 3 else stretch(tiles[i, 0]), cmap="gray")
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    return fig


def show_tile_grid(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int,
                   rgb: Sequence[int] = (1, 2, 3), valid=None) -> Figure:
    """The image with the outline of every tile drawn on it."""
    from matplotlib.patches import Rectangle

    fig, axes = _figure(1, 1, 5)
    ax = axes[0, 0]
    ax.imshow(composite(image, rgb, valid) if image.shape[0] >= 3 else stretch(image[0]), cmap="gray")
    for r, c in zip(rows, cols):
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), size, size, fill=False, lw=0.7, ec="yellow"))
    ax.set_title(f"{len(rows)} tiles of {size} x {size} px", fontsize=10)
    ax.set_axis_off()
    return fig


def plot_spectra(spectra: dict[str, np.ndarray], wavelengths: np.ndarray | None = None,
                 ylabel: str = "reflectance", title: str | None = None) -> Figure:
    """Mean spectrum (and 10-90 % band) of each named group; ``spectra[name]``: (n_pixels, C)."""
    fig, axes = _figure(1, 1, 4.5)
    fig.set_size_inches(8, 4)
    ax = axes[0, 0]
    first = next(iter(spectra.values()))
    x = np.arange(1, first.shape[1] + 1) if wavelengths is None else wavelengths
    for name, s in spectra.items():
        s = np.asarray(s, float)
        line, = ax.plot(x, s.mean(0), label=name, marker="o" if len(x) <= 12 else None)
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
        ax.set_axis_off()
    return fig
