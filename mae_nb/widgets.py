"""Sliders for the chapters: each widget only wires ipywidgets to a compute function and a
plotting function of ``mae_nb.viz``, so the same work runs headless by calling those two.

Sliders use ``continuous_update=False``: the model runs when the slider is released, not on
every pixel of the drag.
"""

from __future__ import annotations


def reconstruction_sliders(model, image, *, bands=None, valid=None, rgb=None, mask_ratio: float = 0.75,
                           iterations: int = 1, seed: int = 0, mode: str = "chained", **kwargs):
    """Sliders for mask ratio (0.05-0.95), iterations (1-10) and seed on one image.

    Each change runs ``mae_nb.reconstruct.reconstruct(model, image, mask_ratio, iterations, seed,
    mode, bands=bands, valid=valid, **kwargs)`` and shows ``mae_nb.viz.plot_reconstruction(rec,
    bands=rgb)`` with the masked-patch PSNR beside it: exactly what a cell calling those two
    shows. A bad combination (e.g. covering mode with more passes than groups) is reported in
    words instead of the figure. Returns the widget box (display it, or leave it last in a cell).
    """
    import io

    import ipywidgets as W

    from mae_nb.reconstruct import reconstruct
    from mae_nb.viz import plot_reconstruction

    ratio_s = W.FloatSlider(value=mask_ratio, min=0.05, max=0.95, step=0.05, description="mask ratio",
                            continuous_update=False, readout_format=".2f")
    iter_s = W.IntSlider(value=iterations, min=1, max=10, description="iterations", continuous_update=False)
    seed_s = W.IntSlider(value=seed, min=0, max=99, description="seed", continuous_update=False)
    mode_s = W.ToggleButtons(options=["chained", "covering"], value=mode, description="mode")
    score = W.HTML()
    # the figure as a PNG image widget: no Output-widget capture, which papermill/nbclient can hang on
    picture = W.Image(format="png")

    def update(*_):
        try:
            rec = reconstruct(model, image, ratio_s.value, iter_s.value, seed_s.value, mode_s.value,
                              bands=bands, valid=valid, **kwargs)
        except ValueError as exc:
            score.value = f"<b>cannot run:</b> {exc}"
            return
        fig = plot_reconstruction(rec, bands=rgb)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        picture.value = buffer.getvalue()
        width, height = (fig.get_size_inches() * 80).round().astype(int)
        # shown at the size it was drawn, never squeezed by the box around it
        picture.layout = W.Layout(width=f"{width}px", height=f"{height}px", flex="0 0 auto", object_fit="contain")
        score.value = (f"<b>masked-patch PSNR {rec.psnr_masked:.2f} dB</b><br>SSIM {rec.ssim_masked:.3f}<br>"
                       f"whole crop: PSNR {rec.psnr:.2f} dB<br>{rec.masked_share:.0%} of patches replaced<br>"
                       f"{rec.seconds:.2f} s")

    for s in (ratio_s, iter_s, seed_s, mode_s):
        s.observe(update, names="value")
    update()
    box = W.VBox([W.HBox([ratio_s, iter_s, seed_s]), mode_s,
                  W.HBox([picture, score], layout=W.Layout(align_items="flex-start", flex_flow="row wrap"))])
    box.update = update  # so a test (or a person) can re-run it by hand
    box.controls = {"mask_ratio": ratio_s, "iterations": iter_s, "seed": seed_s, "mode": mode_s, "score": score,
                    "picture": picture}
    return box


def pca_view(model, image, block: int | None = None, scenario: str = "none", *, bands=None, seed: int = 0,
             scene_rgb=None, title: str | None = None):
    """What :func:`pca_explorer` shows for one setting: the PCA false-colour map of the scene's patch
    embeddings from encoder ``block`` after masking ``scenario`` (``mae_nb.features.scene_embeddings``,
    ``mae_nb.features.pca_map``), drawn by ``mae_nb.viz.plot_pca_map``. Returns the Figure."""
    from mae_nb.features import pca_map, scene_embeddings
    from mae_nb.viz import plot_pca_map

    emb = scene_embeddings(model, image, block=block, scenario=scenario, seed=seed, bands=bands)
    pca = pca_map(emb)
    return plot_pca_map(pca.rgb, scene_rgb, cell_size=emb.cell_size, explained=pca.explained,
                        title=title or f"block {emb.block}, scenario {scenario}")


def pca_explorer(model, image, *, bands=None, seed: int = 0, scene_rgb=None, block: int = -1,
                 scenario: str = "none"):
    """A slider for the encoder block and one for the masking scenario; each change redraws
    :func:`pca_view` (the same call a cell can make). Returns the widget box."""
    import io

    import ipywidgets as W

    from mae_nb.features import SCENARIOS

    depth = len(model.blocks)
    block_s = W.IntSlider(value=block % depth, min=0, max=depth - 1, description="block", continuous_update=False)
    scen_s = W.SelectionSlider(options=list(SCENARIOS), value=scenario, description="scenario",
                               continuous_update=False)
    out = W.Image(format="png")  # the figure as a PNG: a plain widget update, no captured output

    def update(*_):
        fig = pca_view(model, image, block_s.value, scen_s.value, bands=bands, seed=seed, scene_rgb=scene_rgb)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        out.value = buf.getvalue()

    for s in (block_s, scen_s):
        s.observe(update, names="value")
    update()
    box = W.VBox([W.HBox([block_s, scen_s]), out])
    box.update = update
    box.controls = {"block": block_s, "scenario": scen_s}
    return box


def mask_ratio_explorer(model, imgs, *, rgb=(1, 2, 3), mask_ratio: float = 0.5, patch_size: int | None = None,
                        seed: int = 0, n: int = 5):
    """A mask-ratio slider (0-0.9) and a seed slider over a trained autoencoder of chapter 02.

    Each change runs ``mae_nb.models.autoencoders.masked_reconstruction(model, imgs, ratio,
    patch_size, seed)`` and shows ``mae_nb.viz.plot_masked_reconstruction(result, rgb, n)``:
    exactly what a cell calling those two shows. Returns the widget box; ``box.update()``
    re-runs it by hand and ``box.result`` is the last result.
    """
    import ipywidgets as W
    from IPython.display import display

    from mae_nb.models.autoencoders import masked_reconstruction
    from mae_nb.viz import plot_masked_reconstruction

    ratio_s = W.FloatSlider(value=mask_ratio, min=0.0, max=0.9, step=0.05, description="mask ratio",
                            continuous_update=False, readout_format=".2f")
    seed_s = W.IntSlider(value=seed, min=0, max=99, description="seed", continuous_update=False)
    score = W.HTML()
    out = W.Output()

    def update(*_):
        try:
            result = masked_reconstruction(model, imgs[:n], ratio_s.value, patch_size, seed_s.value)
        except ValueError as exc:
            score.value = f"<b>cannot run:</b> {exc}"
            return
        box.result = result
        hidden = "n/a" if result.psnr_hidden != result.psnr_hidden else f"{result.psnr_hidden:.2f} dB"
        score.value = f"PSNR hidden pixels: <b>{hidden}</b>; visible pixels: {result.psnr_visible:.2f} dB"
        fig = plot_masked_reconstruction(result, rgb, n)
        with out:
            out.clear_output(wait=True)
            display(fig)

    box = W.VBox([W.HBox([ratio_s, seed_s]), score, out])
    box.result = None
    for s in (ratio_s, seed_s):
        s.observe(update, names="value")
    update()
    box.update = update
    box.controls = {"mask_ratio": ratio_s, "seed": seed_s, "score": score}
    return box


def show_spectral_reconstruction(model, imgs, mask_ratio: float = 0.7, seed: int = 0, *, wavelengths=None,
                                 titles=None, ncols: int = 3):
    """What :func:`spectral_mask_explorer` shows for one setting: ``(figure, reconstruction)``.

    Runs ``mae_nb.models.spectral.reconstruct(model, imgs, mask_ratio, seed)`` and
    ``mae_nb.viz.plot_spectral_reconstruction(rec, wavelengths=..., titles=...)``.
    """
    from mae_nb.models.spectral import reconstruct
    from mae_nb.viz import plot_spectral_reconstruction

    rec = reconstruct(model, imgs, mask_ratio, seed)
    return plot_spectral_reconstruction(rec, wavelengths=wavelengths, titles=titles, ncols=ncols), rec


def spectral_mask_explorer(model, imgs, *, mask_ratio: float = 0.7, seed: int = 0, wavelengths=None,
                           titles=None, ncols: int = 3):
    """Mask-ratio (0.1-0.95) and seed sliders over a pretrained spatial-spectral transformer.

    imgs: (N, B, p, p) standardized patches. Each change calls
    :func:`show_spectral_reconstruction` (reconstruct + plot) and shows the masked-value MSE:
    exactly what a cell calling that function shows. Returns the widget box; ``box.update()``
    re-runs it, ``box.result`` is the last reconstruction.
    """
    import ipywidgets as W
    from IPython.display import display

    ratio_s = W.FloatSlider(value=mask_ratio, min=0.1, max=0.95, step=0.05, description="mask ratio",
                            continuous_update=False, readout_format=".2f")
    seed_s = W.IntSlider(value=seed, min=0, max=99, description="seed", continuous_update=False)
    score = W.HTML()
    out = W.Output()

    def update(*_):
        try:
            fig, rec = show_spectral_reconstruction(model, imgs, ratio_s.value, seed_s.value,
                                                    wavelengths=wavelengths, titles=titles, ncols=ncols)
        except ValueError as exc:
            score.value = f"<b>cannot run:</b> {exc}"
            return
        box.result = rec
        score.value = f"MSE on masked values: <b>{rec.loss:.4f}</b> (standardized units)"
        with out:
            out.clear_output(wait=True)
            display(fig)

    box = W.VBox([W.HBox([ratio_s, seed_s]), score, out])
    box.result = None
    for s in (ratio_s, seed_s):
        s.observe(update, names="value")
    box.update = update
    update()
    return box
