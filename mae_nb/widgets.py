"""Sliders for the chapters, each wiring ipywidgets to a compute and a plotting function.

Each widget only wires ipywidgets to a compute function and a plotting function of
``mae_nb.viz``, so the same work runs headless by calling those two.

Sliders use ``continuous_update=False``: the model runs when the slider is released, not on
every pixel of the drag.

A slider needs a live kernel. Run by the course's runner (``mae-nb run``, which sets
``mae_nb.runner.STATIC_STRIPS_ENV``), each widget's output also holds a static strip: the figure
its ``draw`` function makes at a few slider positions (:func:`static_strip`), which a page
without a kernel (the course's website, ``mae-nb build book``) shows instead of the widget.
JupyterLab shows the live widget and ignores the strip.
"""

from __future__ import annotations

import base64
import io
import os
import re
from typing import Any, Callable, Mapping, Sequence

from mae_nb.errors import InputError
from mae_nb.runner import STATIC_STRIPS_ENV


def figure_jpeg(fig, dpi: int = 80) -> bytes:
    """A matplotlib Figure as JPEG bytes (quality 90), as a slider shows it.

    JPEG rather than PNG: a four-panel figure of images encodes in about half the time and a
    sixth of the bytes, which keeps a slider update of ViT-B under 0.3 s on a 2-core CPU
    (``benchmarks/slider_latency.py``).
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=dpi, pil_kwargs={"quality": 90})
    return buffer.getvalue()


def _position_label(position: Mapping[str, Any], html: str) -> str:
    """``mask ratio 0.25 · masked-patch PSNR 21.3 dB``: a strip row's settings and its first
    readout line, without the HTML."""
    settings = ", ".join(
        f"{name.replace('_', ' ')} {value:g}"
        if isinstance(value, float)
        else f"{name.replace('_', ' ')} {value}"
        for name, value in position.items()
    )
    first = re.sub(r"<[^>]+>", "", re.split(r"<br\s*/?>", html)[0]).strip()
    return f"{settings} \u00b7 {first}" if first else settings


def static_strip(
    draw: Callable[..., tuple[Any, str, Any]],
    values: Mapping[str, Any],
    positions: Sequence[Mapping[str, Any]],
    *,
    dpi: int = 80,
) -> bytes:
    """What a widget shows at a few slider positions, one row each, as one JPEG for a static page.

    ``draw`` is the widget's own function (``draw(**values) -> (Figure, html, result)``),
    ``values`` the controls' values, ``positions`` the settings to show (each a mapping of
    control name to value, applied over ``values``). Each row is ``draw``'s figure as the slider
    shows it, titled with its settings and the first line of the widget's readout. A position
    that ``draw`` cannot run (``ValueError``) is left out; none that can run is an error.
    """
    import numpy as np
    from matplotlib.figure import Figure
    from PIL import Image

    unknown = sorted({k for p in positions for k in p} - set(values))
    if unknown:
        raise InputError(
            f"strip positions name {unknown}, which are not controls of this widget; "
            f"its controls are {sorted(values)}"
        )
    rows = []
    for position in positions:
        try:
            fig, html, _ = draw(**{**values, **position})
        except ValueError:
            continue
        picture = Image.open(io.BytesIO(figure_jpeg(fig, dpi))).convert("RGB")
        rows.append((np.asarray(picture), _position_label(position, html)))
    if not rows:
        raise InputError(f"none of the strip positions {list(positions)} could be drawn")
    title_px = 28
    width = max(a.shape[1] for a, _ in rows)
    heights = [a.shape[0] + title_px for a, _ in rows]
    strip = Figure(figsize=(width / dpi, sum(heights) / dpi), dpi=dpi)
    top = 1.0
    for picture, label in rows:
        h, w = picture.shape[:2]
        share = (h + title_px) / sum(heights)
        ax = strip.add_axes((0, top - share, w / width, h / sum(heights)))
        ax.imshow(picture, interpolation="nearest")
        ax.set_axis_off()
        strip.text(
            0.01,
            top - 0.3 * title_px / sum(heights),
            label,
            va="center",
            fontsize=11,
            weight="bold",
        )
        top -= share
    return figure_jpeg(strip, dpi)


def explorer(
    controls: dict[str, Any],
    draw: Callable[..., tuple[Any, str, Any]],
    *,
    dpi: int = 80,
    strip: Sequence[Mapping[str, Any]] = (),
):
    """Wire ``controls`` (name -> ipywidget) to ``draw(**values) -> (Figure, html, result)``.

    Every chapter's sliders are built on this: a change of any control calls ``draw`` with the
    controls' values and shows its Figure as a JPEG image widget with ``html`` beside it (the
    number that moves). The figure is an ``Image`` widget rather than an ``Output`` widget, on
    which papermill/nbclient can hang (jupyter/nbclient#312). A ``ValueError`` from ``draw``
    (a combination that cannot run) is shown in words instead of the figure.

    ``strip``: slider positions (mappings of control name to value) for the static strip that
    a run by the course's runner adds to the output (:func:`static_strip`); ``box.strip`` holds
    its JPEG bytes then, else None.

    Returns the widget box, with ``box.update()`` to re-run it by hand, ``box.result`` (the last
    result) and ``box.controls`` (the controls plus ``"score"`` and ``"picture"``).
    """
    import ipywidgets as W

    score = W.HTML()
    # shown at its drawn aspect ratio: never stretched to the row's height or squeezed in width
    picture = W.Image(
        format="jpeg", layout=W.Layout(object_fit="contain", max_width="100%", height="auto")
    )
    row = W.Box(list(controls.values()), layout=W.Layout(flex_flow="row wrap"))
    box = W.VBox([row, W.HBox([picture, score], layout=W.Layout(align_items="flex-start"))])
    box.result = None

    def update(*_):
        try:
            fig, html, result = draw(**{name: c.value for name, c in controls.items()})
        except ValueError as exc:
            score.value = f"<b>cannot run:</b> {exc}"
            return
        box.result = result
        picture.value = figure_jpeg(fig, dpi)
        score.value = html

    for control in controls.values():
        control.observe(update, names="value")
    box.update = update
    box.controls = {**controls, "score": score, "picture": picture}
    update()
    box.strip = None
    if strip and os.environ.get(STATIC_STRIPS_ENV):
        values = {name: c.value for name, c in controls.items()}
        box.strip = static_strip(draw, values, strip, dpi=dpi)
        live = box._repr_mimebundle_
        jpeg = base64.b64encode(box.strip).decode("ascii")

        def bundle(**kwargs):  # the live widget, and the strip for a page without a kernel
            data = live(**kwargs)
            return {**data, "image/jpeg": jpeg} if isinstance(data, dict) else data

        box._repr_mimebundle_ = bundle
    return box


def _ratio_slider(value: float, low: float, high: float):
    import ipywidgets as W

    return W.FloatSlider(
        value=value,
        min=low,
        max=high,
        step=0.05,
        description="mask ratio",
        continuous_update=False,
        readout_format=".2f",
    )


def _seed_slider(value: int):
    import ipywidgets as W

    return W.IntSlider(value=value, min=0, max=99, description="seed", continuous_update=False)


def reconstruction_sliders(
    model,
    image,
    *,
    bands=None,
    valid=None,
    rgb=None,
    mask_ratio: float = 0.75,
    iterations: int = 1,
    seed: int = 0,
    mode: str = "chained",
    **kwargs,
):
    """Sliders for mask ratio (0.05-0.95), iterations (1-10) and seed on one image.

    Each change runs ``mae_nb.reconstruct.reconstruct(model, image, mask_ratio, iterations, seed,
    mode, bands=bands, valid=valid, **kwargs)`` and shows ``mae_nb.viz.plot_reconstruction(rec,
    bands=rgb)`` with the masked-patch PSNR beside it: exactly what a cell calling those two
    shows (pass ``data_range=sample.data_range`` when ``image`` is a crop, so the PSNR is the
    course's, :mod:`mae_nb.metrics`; a ``Sample`` brings its own). A bad combination (e.g.
    covering mode with more passes than groups) is reported in words instead of the figure.
    ``precision`` (in ``kwargs``, "auto" by default, :mod:`mae_nb.precision`): the first
    change pays for the model's bf16 or int8 copy, the next ones reuse it; the time shown says
    which precision ran. Returns the widget box (display it, or leave it last in a cell).
    """
    import ipywidgets as W

    from mae_nb.reconstruct import reconstruct
    from mae_nb.viz import plot_reconstruction

    def draw(mask_ratio, iterations, seed, mode):
        rec = reconstruct(
            model, image, mask_ratio, iterations, seed, mode, bands=bands, valid=valid, **kwargs
        )
        html = (
            f"<b>masked-patch PSNR {rec.psnr_masked:.2f} dB</b><br>SSIM {rec.ssim_masked:.3f}<br>"
            f"whole crop: PSNR {rec.psnr:.2f} dB<br>{rec.masked_share:.0%} of patches replaced<br>"
            f"{rec.seconds:.2f} s ({rec.precision})"
        )
        return plot_reconstruction(rec, bands=rgb), html, rec

    return explorer(
        {
            "mask_ratio": _ratio_slider(mask_ratio, 0.05, 0.95),
            "iterations": W.IntSlider(
                value=iterations, min=1, max=10, description="iterations", continuous_update=False
            ),
            "seed": _seed_slider(seed),
            "mode": W.ToggleButtons(
                options=["chained", "covering"], value=mode, description="mode"
            ),
        },
        draw,
        strip=[
            {"mask_ratio": 0.25, "iterations": 1},
            {"mask_ratio": 0.5, "iterations": 1},
            {"mask_ratio": 0.75, "iterations": 1},
            {"mask_ratio": 0.25, "iterations": 3},
        ],
    )


def pca_view(
    model,
    image,
    block: int | None = None,
    scenario: str = "none",
    *,
    bands=None,
    seed: int = 0,
    scene_rgb=None,
    title: str | None = None,
):
    """What :func:`pca_explorer` shows for one setting: the PCA false-colour map of the scene's
    patch embeddings from encoder ``block`` after masking ``scenario``
    (``mae_nb.features.scene_embeddings``, ``mae_nb.features.pca_map``), drawn by
    ``mae_nb.viz.plot_pca_map``. Returns the Figure."""
    from mae_nb.features import pca_map, scene_embeddings
    from mae_nb.viz import plot_pca_map

    emb = scene_embeddings(model, image, block=block, scenario=scenario, seed=seed, bands=bands)
    pca = pca_map(emb)
    return plot_pca_map(
        pca.rgb,
        scene_rgb,
        cell_size=emb.cell_size,
        explained=pca.explained,
        title=title or f"block {emb.block}, scenario {scenario}",
    )


def pca_explorer(
    model,
    image,
    *,
    bands=None,
    seed: int = 0,
    scene_rgb=None,
    block: int = -1,
    scenario: str = "none",
):
    """A slider for the encoder block and one for the masking scenario; each change redraws
    :func:`pca_view` (the same call a cell can make). Returns the widget box."""
    import ipywidgets as W

    from mae_nb.features import SCENARIOS

    depth = len(model.blocks)

    def draw(block, scenario):
        fig = pca_view(model, image, block, scenario, bands=bands, seed=seed, scene_rgb=scene_rgb)
        return fig, "", None

    return explorer(
        {
            "block": W.IntSlider(
                value=block % depth,
                min=0,
                max=depth - 1,
                description="block",
                continuous_update=False,
            ),
            "scenario": W.SelectionSlider(
                options=list(SCENARIOS),
                value=scenario,
                description="scenario",
                continuous_update=False,
            ),
        },
        draw,
        dpi=90,
        strip=[
            {"block": 0, "scenario": "none"},
            {"block": depth - 1, "scenario": "none"},
            {"block": depth - 1, "scenario": "50%"},
        ],
    )


def mask_ratio_explorer(
    model,
    imgs,
    *,
    rgb=(1, 2, 3),
    mask_ratio: float = 0.5,
    patch_size: int | None = None,
    seed: int = 0,
    n: int = 5,
    units=None,
):
    """A mask-ratio slider (0-0.9) and a seed slider over a trained autoencoder of chapter 02.

    Each change runs ``mae_nb.models.autoencoders.masked_reconstruction(model, imgs, ratio,
    patch_size, seed, units=units)`` (``units``: the split's, ``split.units``, so the PSNR is
    the course's, in the source's units; without it no PSNR is shown) and shows
    ``mae_nb.viz.plot_masked_reconstruction(result, rgb, n)``: exactly what a cell calling those
    two shows. Returns the widget box; ``box.update()`` re-runs it by hand and ``box.result`` is
    the last result.
    """
    from mae_nb.models.autoencoders import masked_reconstruction
    from mae_nb.viz import plot_masked_reconstruction

    def draw(mask_ratio, seed):
        result = masked_reconstruction(model, imgs[:n], mask_ratio, patch_size, seed, units=units)
        hidden = (
            "n/a" if result.psnr_hidden != result.psnr_hidden else f"{result.psnr_hidden:.2f} dB"
        )
        html = (
            f"PSNR hidden pixels: <b>{hidden}</b><br>visible pixels: {result.psnr_visible:.2f} dB"
        )
        return plot_masked_reconstruction(result, rgb, n), html, result

    return explorer(
        {"mask_ratio": _ratio_slider(mask_ratio, 0.0, 0.9), "seed": _seed_slider(seed)},
        draw,
        strip=[{"mask_ratio": r} for r in (0.25, 0.5, 0.75)],
    )


def show_spectral_reconstruction(
    model,
    imgs,
    mask_ratio: float = 0.7,
    seed: int = 0,
    *,
    wavelengths=None,
    titles=None,
    ncols: int = 3,
):
    """What :func:`spectral_mask_explorer` shows for one setting: ``(figure, reconstruction)``.

    Runs ``mae_nb.models.spectral.reconstruct_spectra(model, imgs, mask_ratio, seed)`` and
    ``mae_nb.viz.plot_spectral_reconstruction(rec, wavelengths=..., titles=...)``.
    """
    from mae_nb.models.spectral import reconstruct_spectra
    from mae_nb.viz import plot_spectral_reconstruction

    rec = reconstruct_spectra(model, imgs, mask_ratio, seed)
    return plot_spectral_reconstruction(
        rec, wavelengths=wavelengths, titles=titles, ncols=ncols
    ), rec


def spectral_mask_explorer(
    model,
    imgs,
    *,
    mask_ratio: float = 0.7,
    seed: int = 0,
    wavelengths=None,
    titles=None,
    ncols: int = 3,
):
    """Mask-ratio (0.1-0.95) and seed sliders over a pretrained spatial-spectral transformer.

    imgs: (N, B, p, p) standardized patches. Each change calls
    :func:`show_spectral_reconstruction` (reconstruct + plot) and shows the masked-value MSE:
    exactly what a cell calling that function shows. Returns the widget box; ``box.update()``
    re-runs it, ``box.result`` is the last reconstruction.
    """

    def draw(mask_ratio, seed):
        fig, rec = show_spectral_reconstruction(
            model, imgs, mask_ratio, seed, wavelengths=wavelengths, titles=titles, ncols=ncols
        )
        return fig, f"MSE on masked values: <b>{rec.loss:.4f}</b> (standardized units)", rec

    return explorer(
        {"mask_ratio": _ratio_slider(mask_ratio, 0.1, 0.95), "seed": _seed_slider(seed)},
        draw,
        strip=[{"mask_ratio": r} for r in (0.3, 0.6, 0.9)],
    )


def attention_explorer(
    model,
    image,
    *,
    picture=None,
    block: int = -1,
    head: int | str = "all",
    query="cls",
    mask_ratio: float = 0.0,
    seed: int = 0,
):
    """Sliders for the encoder block, the head (``"all"`` or one) and the query (the class token
    or a patch, by row and column) over a ViT-MAE's attention on one image.

    ``image``: (C, H, W), the model's input (normalized); ``picture``: (H, W, 3) in [0, 1], what
    to draw the maps over. Each change runs ``mae_nb.models.attention.attention_maps(model,
    image, block, heads=..., query=..., mask_ratio=mask_ratio, seed=seed)`` and shows
    ``mae_nb.viz.plot_attention_maps(result, picture)``: exactly what a cell calling those two
    shows. Bad arguments raise at once (a block or head out of range, a query outside the grid,
    a model that is not a ViT-MAE). Returns the widget box; ``box.update()`` re-runs it and
    ``box.result`` is the last :class:`~mae_nb.models.attention.AttentionMaps`.
    """
    import ipywidgets as W
    import numpy as np

    from mae_nb.models.attention import attention_maps
    from mae_nb.viz import plot_attention_maps

    heads = None if head == "all" else head
    first = attention_maps(  # checks every argument before a slider is built
        model, image, block, heads=heads, query=query, mask_ratio=mask_ratio, seed=seed
    )
    depth, n_heads = len(model.blocks), int(model.blocks[first.block].attn.num_heads)
    (gh, gw), start = first.grid, first.query

    def draw(block, head, query, row, col):
        att = attention_maps(
            model,
            image,
            block,
            heads=None if head == "all" else head,
            query="cls" if query == "class token" else (row, col),
            mask_ratio=mask_ratio,
            seed=seed,
        )
        lines = [f"query: <b>{att.describe_query()}</b>, block {att.block}"]
        for h, m, cls in zip(att.heads, att.maps, att.to_cls):
            r, c = np.unravel_index(np.nanargmax(m), m.shape)
            lines.append(f"head {h}: {cls:.1%} on the class token, most on patch ({r}, {c})")
        return plot_attention_maps(att, picture), "<br>".join(lines), att

    def slider(name, value, high):
        return W.IntSlider(value=value, min=0, max=high, description=name, continuous_update=False)

    return explorer(
        {
            "block": slider("block", first.block, depth - 1),
            "head": W.SelectionSlider(
                options=["all", *range(n_heads)],
                value=head if head == "all" else first.heads[0],
                description="head",
                continuous_update=False,
            ),
            "query": W.ToggleButtons(
                options=["class token", "patch"],
                value="class token" if start == "cls" else "patch",
                description="query",
            ),
            "row": slider("row", gh // 2 if start == "cls" else start[0], gh - 1),
            "col": slider("col", gw // 2 if start == "cls" else start[1], gw - 1),
        },
        draw,
        strip=[
            {"block": 0, "head": "all", "query": "class token"},
            {"block": depth - 1, "head": "all", "query": "class token"},
            {"block": depth - 1, "head": "all", "query": "patch"},
        ],
    )
