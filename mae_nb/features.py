"""MAE features for spatial analysis: embeddings, error maps, and how well they separate land cover.

The encoder of a masked autoencoder turns each patch into a vector (an *embedding*). With no
patch masked (``mask_ratio`` 0, every token visible, in its own order) the encoder's output
describes every place of an image. This module extracts those vectors for one crop or for a
whole scene (tiled at the model's input size), keeps where each one lies (pixel rows/cols and
map x/y through the raster's transform), and measures what they are worth with scikit-learn:
PCA maps, k-means clusters against land-cover labels (adjusted Rand index), a logistic
regression probe on a spatially disjoint split (accuracy, macro-F1) or block by block on
leave-one-block-out folds (:func:`score_folds`: one independent score per block, for studies),
and the reconstruction error as an anomaly detector (precision/recall of the top-k patches).

**Pools.** ``pool="patch"``: one embedding per patch, a (gh, gw, D) grid over the scene.
``pool="cls"``: the cls token of each tile; ``pool="mean"``: the mean of a tile's patch tokens;
both give one embedding per tile, a grid of tiles. ``block``: the output of encoder block
``block`` (0-based; negative counts from the end; default the last), always followed by the
encoder's final LayerNorm (as timm's ``get_intermediate_layers(norm=True)``), so blocks are on
one scale.

**Scenarios** (the first study's question: do features *after* 50 % masking or three passes of
25 % separate land cover better than after 25 %?). ``scenario="25%"``, ``"50%"`` or ``"3x25%"``
first reconstructs each tile as :func:`mae_nb.reconstruct.reconstruct` does (chained passes,
seeded per tile), then embeds the reconstruction with no masking; ``"none"`` embeds the image
itself. The *error map* of a scenario is the per-patch, per-band mean squared error of the
reconstruction in normalized units (see :func:`error_map`): single-pass scenarios use the
covering mode (disjoint masks, every patch predicted exactly once, from the true pixels
around it); ``3x25%`` is averaged over ``repeats`` chained draws.

**Units.** The model sees per-band standardized pixels: ImageNet statistics for Meta's RGB
checkpoints, otherwise the scene's own per-band mean and standard deviation (so a model trained
on uint8 Landsat tiles can be applied to a reflectance scene). Images that are not a multiple
of the patch size are cropped at the bottom and right, as :func:`mae_nb.reconstruct.reconstruct`
does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mae_nb.data.tiling import tile_starts
from mae_nb.errors import InputError, OutputExistsError
from mae_nb.precision import choose, running
from mae_nb.reconstruct import (
    check_passes,
    model_geometry,
    model_normalization,
    normalization,
    tile_passes,
)
from mae_nb.scene import (
    ArrayTiles,
    CellAccumulator,
    TileGrid,
    check_seed,
    inference,
    prepare_image,
    tile_batches,
)

__all__ = [
    "ERROR_SCENARIOS",
    "POOLS",
    "SCENARIOS",
    "Detection",
    "EmbeddingSplit",
    "Embeddings",
    "FeatureScore",
    "PCAMap",
    "ProbeResult",
    "adjusted_rand",
    "detect_top_k",
    "embed_image",
    "embedding_split",
    "error_map",
    "kmeans_map",
    "linear_probe",
    "model_bands",
    "patch_fraction",
    "patch_labels",
    "pca_map",
    "pixel_features",
    "plant_cloud",
    "plant_stripe",
    "scene_embeddings",
    "score_features",
    "score_folds",
    "spatial_folds",
    "untrained_copy",
    "write_embeddings",
]

#: Masking scenarios whose reconstruction is embedded: name -> (mask_ratio, iterations, mode);
#: None embeds the image itself.
SCENARIOS: dict[str, tuple[float, int, str] | None] = {
    "none": None,
    "25%": (0.25, 1, "chained"),
    "50%": (0.50, 1, "chained"),
    "3x25%": (0.25, 3, "chained"),
}

#: How each scenario's error map is measured (keyword arguments of :func:`error_map`).
ERROR_SCENARIOS: dict[str, dict[str, Any]] = {
    "25%": dict(mask_ratio=0.25, mode="covering"),
    "50%": dict(mask_ratio=0.50, mode="covering"),
    "3x25%": dict(mask_ratio=0.25, iterations=3, mode="chained", repeats=4),
}

POOLS = ("patch", "cls", "mean")


# --------------------------------------------------------------------------- the result


@dataclass
class Embeddings:
    """Vectors on a grid of cells over a scene, with where each cell lies.

    - ``values``: (gh, gw, D) float32, NaN where a cell is not ``valid``.
    - ``rows``, ``cols``: (gh,), (gw,) the top-left pixel of each cell in the scene.
    - ``cell_size``: pixels per cell side (the patch size, or the tile size for cls/mean pools).
    - ``valid``: (gh, gw) bool, cells with at least half of their pixels valid.
    - ``tile_rows``, ``tile_cols``: top-left pixels of the tiles the encoder saw (its context).
    - ``transform``, ``crs``: the scene's georeferencing (None for a bare array).
    - ``scene_shape``: (H, W) of the scene before cropping to whole patches.
    - ``pool``, ``block``, ``scenario``, ``source``: what the values are; ``meta``: more of it
      (``meta["precision"]``: the precision the model ran in, :mod:`mae_nb.precision`).
    """

    values: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    cell_size: int
    valid: np.ndarray
    scene_shape: tuple[int, int]
    tile_size: int
    tile_rows: np.ndarray
    tile_cols: np.ndarray
    transform: Any = None
    crs: Any = None
    pool: str = "patch"
    block: int | None = None
    scenario: str = "none"
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """The grid (gh, gw)."""
        return self.values.shape[0], self.values.shape[1]

    @property
    def dim(self) -> int:
        return self.values.shape[2]

    def flat(self, where: np.ndarray | None = None) -> np.ndarray:
        """(N, D) vectors of the cells where ``where`` (default: ``valid``) is True, row-major."""
        where = self.valid if where is None else np.asarray(where, bool) & self.valid
        return self.values[where]

    def pixel_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(gh, gw) pixel coordinates (row, col) of each cell's centre (corner-based: a cell
        starting at pixel 0 of size 8 has its centre at 4.0)."""
        r = self.rows[:, None] + self.cell_size / 2
        c = self.cols[None, :] + self.cell_size / 2
        return np.broadcast_to(r, self.shape).astype(float), np.broadcast_to(c, self.shape).astype(
            float
        )

    @property
    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """(gh, gw) map coordinates (x, y) of each cell's centre (pixels without a transform)."""
        r, c = self.pixel_centres()
        if self.transform is None:
            return c.copy(), r.copy()
        t = self.transform
        x = t.a * c + t.b * r + t.c
        y = t.d * c + t.e * r + t.f
        return x, y

    def grid_transform(self):
        """The affine transform of the cell grid (one cell = one pixel), for writing a GeoTIFF.

        Needs evenly spaced cells (patch grids always are; tile grids whose last tile is flush
        with the scene's edge are not).
        """
        from rasterio.transform import Affine

        s = self.cell_size
        for name, starts in (("rows", self.rows), ("cols", self.cols)):
            if len(starts) > 1 and not np.array_equal(np.diff(starts), np.full(len(starts) - 1, s)):
                raise InputError(
                    f"the cells' {name} are not evenly spaced by {s} px (a tile grid whose last "
                    "tile is flush with the edge); use pool='patch' to write a GeoTIFF"
                )
        base = self.transform if self.transform is not None else Affine.identity()
        return base @ Affine.translation(int(self.cols[0]), int(self.rows[0])) @ Affine.scale(s)

    def __repr__(self) -> str:
        gh, gw = self.shape
        return (
            f"Embeddings({self.pool}, {gh} x {gw} cells of {self.cell_size} px, D={self.dim}, "
            f"block={self.block}, scenario={self.scenario!r}, valid={self.valid.mean():.0%}, "
            f"source={self.source!r})"
        )


# --------------------------------------------------------------------------- inputs


def model_bands(model, sample) -> list[int]:
    """1-based bands of ``sample`` to feed ``model``.

    For a :class:`~mae_nb.data.Sample`, :meth:`~mae_nb.data.Sample.bands_for`: its true-colour
    composite (``sample.rgb``) for a 3-band model, else all bands when the counts match, else an
    error naming both counts. For an array: all bands when the counts match.
    """
    in_chans = model_geometry(model).in_chans
    if hasattr(sample, "bands_for"):  # a Sample: its one rule (true colour first, clear errors)
        return sample.bands_for(in_chans)
    count = sample.raster.count if hasattr(sample, "raster") else np.asarray(sample).shape[0]
    if count == in_chans:
        return list(range(1, count + 1))
    if in_chans == 3 and hasattr(sample, "rgb"):
        return list(sample.rgb)
    raise InputError(
        f"the model takes in_chans={in_chans} bands, the image has {count} and no RGB "
        "composite is known; pass bands=[...] explicitly"
    )


def _scene_tiles(model, image, valid, bands, normalize, tile_size):
    """The scene as the model sees it: ``(SceneImage, ArrayTiles of its normalized pixels, the
    TileGrid of tiles of the model's input size every tile_size px)``.

    ``normalize="auto"``: ImageNet's statistics for a model trained with them, else the scene's
    own per-band statistics (not the ones a model was trained with: see the module docstring).
    """
    geom = model_geometry(model)
    scene = prepare_image(image, geom.in_chans, geom.patch_size, bands=bands, valid=valid)
    size = geom.tile_size(tile_size)
    (h, w), (hc, wc) = scene.shape, (scene.height, scene.width)
    if h < size or w < size:
        raise InputError(
            f"the scene ({h} x {w} px) is smaller than one tile of the model ({size} x {size} px);"
            " use a larger scene, or a model built for smaller tiles"
        )
    kind = model_normalization(model, normalize)[0]
    kind = "per-band" if kind == "auto" else kind
    norm = normalization(scene.array, kind, scene.valid, dtype=scene.dtype)
    tiles = ArrayTiles(norm.model_input(scene.array, scene.valid), scene.valid)
    return scene, tiles, TileGrid(hc, wc, size, size)


def _scenario(name: str):
    if name not in SCENARIOS:
        raise InputError(
            f"unknown scenario {name!r}; choose one of {', '.join(map(repr, SCENARIOS))}"
        )
    return SCENARIOS[name]


# --------------------------------------------------------------------------- the encoder


def _block_index(model, block: int | None) -> int:
    depth = len(model.blocks)
    if block is None:
        return depth - 1
    if isinstance(block, bool) or int(block) != block or not -depth <= block < depth:
        raise InputError(
            f"block must be an encoder block index in [{-depth}, {depth - 1}] "
            f"(the encoder has {depth} blocks), got {block!r}"
        )
    return int(block) % depth


def _pool(tokens: torch.Tensor, pool: str, grid: tuple[int, int]) -> torch.Tensor:
    """tokens (N, 1 + L, D) -> (N, gh, gw, D) for "patch", (N, D) for "cls"/"mean"."""
    if pool == "patch":
        return tokens[:, 1:].reshape(tokens.shape[0], grid[0], grid[1], tokens.shape[2])
    if pool == "cls":
        return tokens[:, 0]
    return tokens[:, 1:].mean(dim=1)


def _check_pool(pool: str) -> None:
    if pool not in POOLS:
        raise InputError(f"pool must be one of {', '.join(map(repr, POOLS))}, got {pool!r}")


def embed_image(
    model,
    image,
    pool: str = "patch",
    block: int | None = None,
    *,
    bands=None,
    normalize: str = "auto",
    precision: str = "auto",
) -> np.ndarray:
    """Embeddings of one crop (C, H, W) of the model's input size: (gh, gw, D) for ``pool="patch"``,
    (D,) for ``"cls"``/``"mean"``. No patch is masked (``model.forward_features``).
    ``precision``: see :mod:`mae_nb.precision` ("auto" by default)."""
    _check_pool(pool)
    precision = choose(precision, model)
    scene, tiles, grid = _scene_tiles(model, image, None, bands, normalize, None)
    size, g = grid.size, grid.size // model_geometry(model).patch_size
    if (scene.height, scene.width) != (size, size):
        raise InputError(
            f"embed_image takes one crop of the model's size ({size} x {size} px), got "
            f"{scene.height} x {scene.width}; use scene_embeddings for a larger image"
        )
    with inference(model) as device, running(model, precision) as runner:
        tokens = runner.forward_features(torch.from_numpy(tiles.array)[None].to(device), block)
    return _pool(tokens, pool, (g, g))[0].float().cpu().numpy()


def scene_embeddings(
    model,
    image,
    *,
    pool: str = "patch",
    block: int | None = None,
    scenario: str = "none",
    seed: int = 0,
    valid: np.ndarray | None = None,
    bands: Sequence[int] | None = None,
    normalize: str = "auto",
    tile_size: int | None = None,
    batch_size: int = 16,
    progress: bool = False,
    source: str = "",
    precision: str = "auto",
) -> Embeddings:
    """Embeddings of a whole scene, tile by tile, with their positions.

    image: (C, H, W) array, a :class:`~mae_nb.data.Raster` or a ``Sample`` (then ``transform``
    and ``crs`` come along). The scene is cropped to whole patches and cut into tiles of the
    model's input size (``tile_size``), every ``tile_size`` pixels, the last row and column of
    tiles flush with the edge (where two tiles overlap, a patch's embedding is their mean).
    ``pool``: "patch" (grid of patches), "cls" or "mean" (grid of tiles). ``block``: encoder
    block. ``scenario``: "none" (the image) or a masking scenario of :data:`SCENARIOS`, whose
    reconstruction (seeded by ``seed`` and the tile's index) is embedded instead.
    ``precision``: see :mod:`mae_nb.precision` ("auto" by default; ``meta["precision"]`` says
    which one ran).
    """
    _check_pool(pool)
    recon, block, seed = _scenario(scenario), _block_index(model, block), check_seed(seed)
    precision = choose(precision, model)
    scene, tiles, grid = _scene_tiles(model, image, valid, bands, normalize, tile_size)
    p = model_geometry(model).patch_size
    g, patches = grid.size // p, (scene.height // p, scene.width // p)
    cells = CellAccumulator(patches if pool == "patch" else grid.shape)
    batches = tile_batches(
        tiles, grid, batch_size, by_strip=False, skip_empty=False, progress=progress,
        desc=f"embed ({scenario})",
    )  # fmt: skip
    with inference(model) as device, running(model, precision) as runner:
        for batch in batches:
            x = torch.from_numpy(batch.pixels).to(device)
            if recon is not None:  # embed the scenario's reconstruction, nodata left as it was
                pasted = tile_passes(model, x, batch.index, seed, *recon, precision)[0]
                x = torch.where(torch.from_numpy(batch.valid)[:, None].to(device), pasted, x)
            out = _pool(runner.forward_features(x, block), pool, (g, g)).float().cpu().numpy()
            for t, r, c, v in zip(batch.index, batch.rows, batch.cols, out.astype(np.float64)):
                if pool == "patch":
                    cells.add(r // p, c // p, v)
                else:
                    cells.add(*divmod(int(t), grid.shape[1]), v[None, None])
    if pool == "patch":
        rows, cols, cell = np.arange(patches[0]) * p, np.arange(patches[1]) * p, p
    else:
        rows, cols, cell = grid.row_starts, grid.col_starts, grid.size
    cell_valid = patch_fraction(scene.valid, rows, cols, cell) >= 0.5
    values = np.where(cell_valid[..., None], cells.mean(), np.nan).astype(np.float32)
    return Embeddings(
        values, rows, cols, cell, cell_valid, scene.shape, grid.size, grid.row_starts,
        grid.col_starts, scene.transform, scene.crs, pool, block, scenario, source,
        meta={"precision": precision},
    )  # fmt: skip


def error_map(
    model,
    image,
    mask_ratio: float = 0.25,
    iterations: int | None = None,
    mode: str = "covering",
    *,
    repeats: int = 1,
    seed: int = 0,
    valid: np.ndarray | None = None,
    bands: Sequence[int] | None = None,
    normalize: str = "auto",
    tile_size: int | None = None,
    batch_size: int = 16,
    source: str = "",
    precision: str = "auto",
) -> Embeddings:
    """Reconstruction error per patch and band, over a whole scene: values (gh, gw, C).

    Each tile is reconstructed as :func:`mae_nb.reconstruct.reconstruct` does (same masks for the
    same seed and tile); the error of a patch is the mean squared difference between the
    reconstruction and the image over its valid pixels, per band, in normalized units (so bands
    weigh alike), averaged over the passes/draws in which the patch was masked. ``mode="covering"``
    (default): disjoint masks, every patch predicted exactly once per draw from the true pixels
    around it. ``mode="chained"``: the study's passes; a patch never masked in any of the
    ``repeats`` draws (seeds ``seed``, ``seed + 1``, ...) is NaN and not ``valid``.
    Use ``values.mean(-1)`` as an anomaly score. ``precision``: see :mod:`mae_nb.precision`.
    """
    if int(repeats) != repeats or repeats < 1:
        raise InputError(f"repeats must be a whole number >= 1, got {repeats}")
    seed = check_seed(seed)
    scene, tiles, grid = _scene_tiles(model, image, valid, bands, normalize, tile_size)
    p = model_geometry(model).patch_size
    g, c, patches = grid.size // p, scene.count, (scene.height // p, scene.width // p)
    ratio, passes, _ = check_passes(mask_ratio, iterations, mode, precision, g * g)
    precision = choose(precision, model)
    cells = CellAccumulator(patches)
    with inference(model) as device:
        for rep in range(int(repeats)):
            for batch in tile_batches(tiles, grid, batch_size, by_strip=False, skip_empty=False):
                n, x = len(batch), torch.from_numpy(batch.pixels).to(device)
                ok = torch.from_numpy(batch.valid).to(device)
                pasted, masks = tile_passes(
                    model, x, batch.index, seed + rep, ratio, passes, mode, precision
                )
                sq = ((pasted.float() - x) ** 2 * ok[:, None]).reshape(n, c, g, p, g, p)
                npx = ok.float().reshape(n, g, p, g, p).sum(dim=(2, 4)).clamp(min=1)  # (n, g, g)
                err = (sq.sum(dim=(3, 5)) / npx[:, None]).permute(0, 2, 3, 1).cpu().numpy()
                hit = (masks.amax(dim=0) > 0).reshape(n, g, g).cpu().numpy()  # masked in a pass
                for e, h, r, cc in zip(err, hit, batch.rows, batch.cols):
                    cells.add(r // p, cc // p, e, h)
    rows, cols = np.arange(patches[0]) * p, np.arange(patches[1]) * p
    cell_valid = (patch_fraction(scene.valid, rows, cols, p) >= 0.5) & (cells.count > 0)
    values = np.where(cell_valid[..., None], cells.mean(), np.nan).astype(np.float32)
    name = f"{mode} {mask_ratio:g}" + (f" x{iterations}" if iterations else "")
    return Embeddings(
        values, rows, cols, p, cell_valid, scene.shape, grid.size, grid.row_starts,
        grid.col_starts, scene.transform, scene.crs, "error", None, name, source,
        meta={
            "repeats": int(repeats), "units": "MSE of normalized pixels, per band",
            "precision": precision,
        },
    )  # fmt: skip


def pixel_features(
    image,
    patch_size: int,
    *,
    valid=None,
    bands=None,
    tile_size: int | None = None,
    source: str = "raw pixels",
) -> Embeddings:
    """The baseline: each patch's own pixels, per-band standardized and flattened, (gh, gw, p*p*C).

    Cells are laid out as :func:`scene_embeddings` lays out patches, so the two compare cell by
    cell.
    """
    p = int(patch_size)
    scene = prepare_image(image, None, p, bands=bands, valid=valid)
    c, hc, wc = scene.array.shape
    norm = normalization(scene.array, "per-band", scene.valid, dtype=scene.dtype)
    x = norm.model_input(scene.array, scene.valid)
    gh, gw = hc // p, wc // p
    values = x.reshape(c, gh, p, gw, p).transpose(1, 3, 2, 4, 0).reshape(gh, gw, p * p * c)
    rows, cols = np.arange(gh) * p, np.arange(gw) * p
    cell_valid = patch_fraction(scene.valid, rows, cols, p) >= 0.5
    size = int(tile_size or p)
    values = np.where(cell_valid[..., None], values, np.nan).astype(np.float32)
    tile_rows = tile_starts(hc, min(size, hc), min(size, hc))
    tile_cols = tile_starts(wc, min(size, wc), min(size, wc))
    return Embeddings(
        values, rows, cols, p, cell_valid, scene.shape, size, tile_rows, tile_cols,
        scene.transform, scene.crs, "pixels", None, "none", source,
    )  # fmt: skip


def _blas_threads(n_samples: int):
    """One BLAS and OpenMP thread for the small problems of this module (hundreds to thousands
    of cells): there, thread start-up and busy-waiting cost more than they gain, and on a shared
    CPU threads that spin (OpenBLAS, OpenMP) make a probe 10x slower. Large problems keep the
    default."""
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1) if n_samples < 20000 else nullcontext()


def untrained_copy(model, seed: int = 0):
    """``model``'s architecture and input convention (``pretrained_cfg``) with freshly initialized
    weights (its ``initialize_weights``, seeded): the control that says what training added to
    the features."""
    import copy

    if not hasattr(model, "initialize_weights"):
        raise InputError(f"{type(model).__name__} has no initialize_weights() to re-initialize")
    out = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        out.initialize_weights()
    return out.eval()


# --------------------------------------------------------------------------- labels on the grid


def patch_fraction(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """(gh, gw) share of True pixels of ``mask`` (H, W) in each cell (rows[i], cols[j], size)."""
    mask = np.asarray(mask, bool)
    cum = np.pad(mask.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # integral image
    r0, c0 = np.asarray(rows)[:, None], np.asarray(cols)[None, :]
    r1, c1 = np.minimum(r0 + size, mask.shape[0]), np.minimum(c0 + size, mask.shape[1])
    area = (r1 - r0) * (c1 - c0)
    return (cum[r1, c1] - cum[r0, c1] - cum[r1, c0] + cum[r0, c0]) / np.maximum(area, 1)


def _check_labels_shape(labels: np.ndarray, emb: Embeddings, what: str = "labels map") -> None:
    if labels.shape != tuple(emb.scene_shape):
        raise InputError(
            f"the {what} has shape {labels.shape} but the scene is {emb.scene_shape[0]} x "
            f"{emb.scene_shape[1]} px; give a map of the same scene, pixel for pixel"
        )


def patch_labels(labels: np.ndarray, emb: Embeddings, min_fraction: float = 0.5) -> np.ndarray:
    """Majority land-cover label of each cell of ``emb``: (gh, gw) int, 0 where the majority class
    covers less than ``min_fraction`` of the cell, the cell is unlabelled (0) or not valid.

    labels: (H, W) ints, 0 = unlabelled, the same shape as the scene ``emb`` was computed on.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"labels must be a 2-D (H, W) map, got shape {labels.shape}")
    _check_labels_shape(labels, emb)
    if not 0 < min_fraction <= 1:
        raise InputError(f"min_fraction must be in (0, 1], got {min_fraction}")
    labels = labels.astype(np.int64)
    out = np.zeros(emb.shape, np.int64)
    s = emb.cell_size
    n = int(labels.max()) + 1 if labels.size else 1
    for i, r in enumerate(emb.rows):
        for j, c in enumerate(emb.cols):
            counts = np.bincount(labels[r : r + s, c : c + s].ravel(), minlength=n)
            area = counts.sum()
            counts[0] = 0
            k = int(counts.argmax())
            if counts[k] > 0 and counts[k] >= min_fraction * area:
                out[i, j] = k
    return np.where(emb.valid, out, 0)


# --------------------------------------------------------------------------- looking at embeddings


@dataclass
class PCAMap:
    """``components``: (gh, gw, k) PCA scores (NaN where not valid); ``rgb``: (gh, gw, 3) the first
    three stretched to [0, 1] for display; ``explained``: (k,) explained variance ratios."""

    components: np.ndarray
    rgb: np.ndarray
    explained: np.ndarray
    pca: Any = field(repr=False, default=None)


def pca_map(emb: Embeddings, n_components: int = 3, seed: int = 0) -> PCAMap:
    """PCA (scikit-learn) of the valid cells' vectors; the first three components as a
    false-colour map."""
    from sklearn.decomposition import PCA

    data = emb.flat()
    k = int(n_components)
    if k < 1 or k > min(data.shape):
        raise InputError(
            f"n_components must be in [1, {min(data.shape)}] for {data.shape[0]} cells of "
            f"dimension {data.shape[1]}, got {n_components}"
        )
    with _blas_threads(len(data)):
        pca = PCA(n_components=k, random_state=seed).fit(data)
        scores = pca.transform(data)
    comps = np.full(emb.shape + (k,), np.nan, np.float32)
    comps[emb.valid] = scores
    rgb = np.zeros(emb.shape + (3,), np.float32)
    for i in range(min(3, k)):
        v = comps[..., i][emb.valid]
        lo, hi = np.percentile(v, [2, 98])
        rgb[..., i] = np.where(
            emb.valid, np.clip((comps[..., i] - lo) / max(hi - lo, 1e-12), 0, 1), 0
        )
    if k < 3:
        rgb[..., k:] = rgb[..., :1]
    return PCAMap(comps, rgb, pca.explained_variance_ratio_.astype(np.float32), pca)


def kmeans_map(
    emb: Embeddings, n_clusters: int = 8, seed: int = 0, standardize: bool = True
) -> np.ndarray:
    """k-means (scikit-learn) clusters of the valid cells: (gh, gw) int in 0..n_clusters-1, -1
    elsewhere."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    data = emb.flat()
    if not 2 <= n_clusters <= len(data):
        raise InputError(f"n_clusters must be in [2, {len(data)}] (valid cells), got {n_clusters}")
    if standardize:
        data = StandardScaler().fit_transform(data)
    with _blas_threads(len(data)):
        km = KMeans(n_clusters=int(n_clusters), n_init=4, random_state=seed).fit(data)
    out = np.full(emb.shape, -1, np.int64)
    out[emb.valid] = km.labels_
    return out


def adjusted_rand(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Adjusted Rand index (scikit-learn) between a cluster map and a label grid, both (gh, gw),
    over cells that are labelled (> 0) and clustered (>= 0). 1 = the same partition, ~0 = chance."""
    from sklearn.metrics import adjusted_rand_score

    clusters, labels = np.asarray(clusters), np.asarray(labels)
    if clusters.shape != labels.shape:
        raise InputError(
            f"the cluster map {clusters.shape} and the label grid {labels.shape} differ in shape; "
            "compute the label grid with patch_labels(labels, emb) for the same embeddings"
        )
    keep = (labels > 0) & (clusters >= 0)
    if keep.sum() < 2:
        raise InputError("fewer than 2 cells are both labelled and clustered; nothing to compare")
    return float(adjusted_rand_score(labels[keep], clusters[keep]))


# ------------------------------------------------------------------------- spatially disjoint probe


@dataclass
class EmbeddingSplit:
    """Cells for training and testing a probe: ``train``, ``test`` (gh, gw) bool, never both;
    ``boundary``: the pixel column (or row) where "halves" cut; ``overlap_pixels``: pixels that a
    train cell and a test cell share (0 by construction)."""

    train: np.ndarray
    test: np.ndarray
    scheme: str
    boundary: int | None = None
    overlap_pixels: int = 0

    def describe(self) -> str:
        where = f" at pixel {self.boundary}" if self.boundary is not None else ""
        return (
            f"{self.scheme}{where}: {int(self.train.sum())} train cells, "
            f"{int(self.test.sum())} test cells, {self.overlap_pixels} shared pixels"
        )


def _footprint(emb: Embeddings, cells: np.ndarray) -> np.ndarray:
    out = np.zeros(emb.scene_shape, bool)
    s = emb.cell_size
    for i, j in zip(*np.nonzero(cells)):
        out[emb.rows[i] : emb.rows[i] + s, emb.cols[j] : emb.cols[j] + s] = True
    return out


def embedding_split(
    emb: Embeddings,
    scheme: str = "halves",
    *,
    test_fraction: float = 0.5,
    axis: int = 1,
    block: int = 2,
) -> EmbeddingSplit:
    """A spatially disjoint train/test split of the cells of ``emb``.

    ``"halves"``: train on one side (left for ``axis=1``, top for ``axis=0``), test on the other;
    the cut lies on a boundary between the encoder's tiles nearest to ``1 - test_fraction`` of the
    scene, so no test embedding was computed from pixels a training embedding saw. ``"blocks"``:
    a checkerboard of ``block`` x ``block`` tiles. Any test cell that would share a pixel with a
    training cell is dropped, so ``overlap_pixels`` is 0.
    """
    if scheme not in ("halves", "blocks"):
        raise InputError(f"scheme must be 'halves' or 'blocks', got {scheme!r}")
    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if axis not in (0, 1):
        raise InputError(f"axis must be 0 (top/bottom) or 1 (left/right), got {axis}")
    starts = emb.rows if axis == 0 else emb.cols
    tiles = emb.tile_rows if axis == 0 else emb.tile_cols
    length = emb.scene_shape[axis]
    boundary = None
    if scheme == "halves":
        t = emb.tile_size
        candidates = [int(s) for s in tiles[1:] if not any(o < s < o + t for o in tiles)]
        if not candidates:
            raise InputError(
                "the scene holds a single tile across; a spatial split needs at least two tiles "
                f"along {'rows' if axis == 0 else 'columns'}"
            )
        target = (1 - test_fraction) * length
        boundary = min(
            candidates, key=lambda s: (abs(s - target), -s)
        )  # a tie: the larger training side
        side = starts >= boundary
        train = ~side[:, None] if axis == 0 else ~side[None, :]
        train = np.broadcast_to(train, emb.shape).copy()
    else:
        if int(block) != block or block < 1:
            raise InputError(f"block must be a positive whole number of tiles, got {block}")
        span = emb.tile_size * int(block)
        bi = (emb.rows[:, None] // span) + (emb.cols[None, :] // span)
        train = (bi % 2) == 0
    test = ~train
    train, test = train & emb.valid, test & emb.valid
    if train.any() and test.any():
        shared = _footprint(emb, train)
        s = emb.cell_size
        for i, j in zip(*np.nonzero(test)):
            if shared[emb.rows[i] : emb.rows[i] + s, emb.cols[j] : emb.cols[j] + s].any():
                test[i, j] = False
    overlap = int((_footprint(emb, train) & _footprint(emb, test)).sum())
    return EmbeddingSplit(train, test, scheme, boundary, overlap)


def _block_edges(starts: np.ndarray, tile_size: int, length: int, block: int) -> list[int]:
    """Pixel edges of blocks of ``block`` tiles along one axis: cuts only at tile starts that lie
    inside no other tile (so no tile, i.e. no encoder context, straddles a cut)."""
    cuts = [int(s) for s in starts[1:] if not any(o < s < o + tile_size for o in starts)]
    edges = [0] + cuts[block - 1 :: block]
    return sorted(set(edges)) + [int(length)]


def spatial_folds(emb: Embeddings, block: int = 1) -> list[EmbeddingSplit]:
    """Leave-one-block-out folds of the cells of ``emb``: one :class:`EmbeddingSplit` per block.

    The scene is cut into blocks of ``block`` x ``block`` encoder tiles (cuts on tile boundaries,
    as in :func:`embedding_split`); fold ``k`` tests on block ``k`` and trains on every other
    block, dropping any test cell that shares a pixel with a training cell. Each block is scored
    by a probe that never saw it, so per-block scores are the study's independent samples (their
    differences are clustered by block, not by seed). Blocks without valid cells are skipped.
    """
    if int(block) != block or block < 1:
        raise InputError(f"block must be a positive whole number of tiles, got {block}")
    h, w = emb.scene_shape
    redges = _block_edges(emb.tile_rows, emb.tile_size, h, int(block))
    cedges = _block_edges(emb.tile_cols, emb.tile_size, w, int(block))
    if (len(redges) - 1) * (len(cedges) - 1) < 2:
        raise InputError(
            f"the scene holds a single block of {block} x {block} tiles; leave-one-block-out "
            "folds need at least two (a larger scene or a smaller block)"
        )
    rb = np.searchsorted(redges, emb.rows, side="right") - 1
    cb = np.searchsorted(cedges, emb.cols, side="right") - 1
    index = rb[:, None] * (len(cedges) - 1) + cb[None, :]
    folds = []
    for k in range((len(redges) - 1) * (len(cedges) - 1)):
        test = (index == k) & emb.valid
        train = (index != k) & emb.valid
        if not test.any():
            continue
        shared = _footprint(emb, train)
        s = emb.cell_size
        for i, j in zip(*np.nonzero(test)):
            if shared[emb.rows[i] : emb.rows[i] + s, emb.cols[j] : emb.cols[j] + s].any():
                test[i, j] = False
        overlap = int((shared & _footprint(emb, test)).sum())
        folds.append(EmbeddingSplit(train, test, f"fold {len(folds) + 1}", None, overlap))
    for f in folds:
        f.scheme = f"{f.scheme} of {len(folds)} (blocks of {block} x {block} tiles)"
    return folds


@dataclass
class ProbeResult:
    """A linear probe's scores on the test cells: ``accuracy``, ``macro_f1`` (scikit-learn),
    ``classes`` used, ``dropped`` (class -> training cells, classes left out as too rare),
    ``prediction`` (gh, gw) with 0 outside the test cells."""

    accuracy: float
    macro_f1: float
    n_train: int
    n_test: int
    classes: list[int]
    dropped: dict[int, int]
    prediction: np.ndarray = field(repr=False)


def linear_probe(
    emb: Embeddings,
    labels: np.ndarray,
    split: EmbeddingSplit,
    *,
    min_per_class: int = 5,
    rare: str = "raise",
    C: float = 1.0,
    max_iter: int = 2000,
    seed: int = 0,
) -> ProbeResult:
    """Logistic regression (scikit-learn, on standardized features) from cell vectors to labels.

    labels: (gh, gw) per-cell labels (:func:`patch_labels`), 0 = unlabelled. Trained on
    ``split.train``, scored on ``split.test``. A class with fewer than ``min_per_class``
    training cells raises a ValueError naming it (``rare="raise"``), or is left out of training
    and testing (``rare="drop"``; listed in ``dropped``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    if labels.shape != emb.shape:
        raise InputError(
            f"the label grid has shape {labels.shape} but the embeddings are a {emb.shape} grid; "
            "use patch_labels(labels_map, emb) to put a pixel map on the same grid"
        )
    if rare not in ("raise", "drop"):
        raise InputError(f"rare must be 'raise' or 'drop', got {rare!r}")
    if split.train.shape != emb.shape:
        raise InputError(
            f"the split is for a {split.train.shape} grid, the embeddings are {emb.shape}"
        )
    finite = np.isfinite(emb.values).all(axis=-1) & emb.valid
    train = split.train & finite & (labels > 0)
    test = split.test & finite & (labels > 0)
    if (train & test).any():
        raise InputError("the split's train and test cells overlap; use embedding_split")
    classes, counts = np.unique(labels[train], return_counts=True)
    rare_classes = {int(k): int(n) for k, n in zip(classes, counts) if n < min_per_class}
    test_only = sorted(set(np.unique(labels[test]).tolist()) - set(classes.tolist()))
    for k in test_only:
        rare_classes[int(k)] = 0
    if rare_classes and rare == "raise":
        detail = ", ".join(f"class {k}: {n}" for k, n in sorted(rare_classes.items()))
        raise InputError(
            f"too few training cells for the probe ({detail}; at least "
            f"min_per_class={min_per_class} each). Use a larger scene or another split, lower "
            "min_per_class, or pass rare='drop' to leave these classes out"
        )
    keep = np.array([k for k in classes if int(k) not in rare_classes], dtype=np.int64)
    if len(keep) < 2:
        seen = dict(zip(classes.tolist(), counts.tolist())) or "no labelled cells"
        raise InputError(
            f"the probe needs at least 2 classes with {min_per_class} or more training cells; "
            f"the training side has {seen}. Use a larger scene or another split"
        )
    train &= np.isin(labels, keep)
    test &= np.isin(labels, keep)
    if not test.any():
        raise InputError("no labelled test cell of a trained class; use another split")
    clf = make_pipeline(
        StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    )
    with np.errstate(all="ignore"), _blas_threads(int(train.sum())):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            from sklearn.exceptions import ConvergenceWarning

            warnings.simplefilter("ignore", category=ConvergenceWarning)
            clf.fit(emb.values[train].astype(np.float64), labels[train])
            pred = clf.predict(emb.values[test].astype(np.float64))
    y = labels[test]
    prediction = np.zeros(emb.shape, np.int64)
    prediction[test] = pred
    return ProbeResult(
        float(accuracy_score(y, pred)),
        float(f1_score(y, pred, average="macro", zero_division=0)),
        int(train.sum()),
        int(test.sum()),
        keep.tolist(),
        rare_classes,
        prediction,
    )


# --------------------------------------------------------------------------- anomalies


def plant_stripe(
    image: np.ndarray,
    start: int,
    width: int = 4,
    axis: int = 1,
    brightness: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``image`` (C, H, W) with a bright stripe (a sensor artefact): ``width`` columns
    (``axis=1``) or rows (``axis=0``) from ``start`` set to ``brightness`` times each band's 99th
    percentile. Returns (image float32, mask (H, W) bool of the stripe's pixels)."""
    image = np.asarray(image, np.float32)
    if image.ndim != 3:
        raise InputError(f"expected an image of shape (C, H, W), got {image.shape}")
    n = image.shape[1 + axis]
    if not 0 <= start < n or width < 1 or start + width > n:
        raise InputError(
            f"the stripe [{start}, {start + width}) must lie inside the image's {n} "
            f"{'rows' if axis == 0 else 'columns'}"
        )
    out = image.copy()
    mask = np.zeros(image.shape[1:], bool)
    if axis == 1:
        mask[:, start : start + width] = True
    else:
        mask[start : start + width, :] = True
    level = brightness * np.nanpercentile(image.reshape(image.shape[0], -1), 99, axis=1)
    out[:, mask] = level[:, None]
    return out, mask


def plant_cloud(
    image: np.ndarray,
    centre: tuple[int, int],
    radius: float,
    *,
    seed: int = 0,
    brightness: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``image`` (C, H, W) under a soft, bright synthetic cloud around ``centre``.

    ``centre``: (row, col). The cloud's opacity falls off from the centre with a little seeded
    texture; each band tends to ``brightness`` times its 99th percentile under it. Returns
    (image float32, mask (H, W) bool where the opacity exceeds 0.5).
    """
    from scipy import ndimage

    image = np.asarray(image, np.float32)
    if image.ndim != 3:
        raise InputError(f"expected an image of shape (C, H, W), got {image.shape}")
    if radius <= 0:
        raise InputError(f"radius must be positive, got {radius}")
    _, h, w = image.shape
    rr, cc = np.mgrid[:h, :w]
    d = np.hypot(rr - centre[0], cc - centre[1]) / radius
    texture = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(h, w)), radius / 4)
    texture /= max(np.abs(texture).max(), 1e-9)
    alpha = np.clip(1.2 - d + 0.3 * texture, 0, 1) ** 0.7
    white = brightness * np.nanpercentile(image.reshape(image.shape[0], -1), 99, axis=1)
    out = image * (1 - alpha) + white[:, None, None] * alpha
    return out.astype(np.float32), alpha > 0.5


@dataclass
class Detection:
    """Top-k anomaly detection on a grid: ``flagged`` (gh, gw) the k highest-scoring cells;
    ``precision``, ``recall`` (scikit-learn) against the true anomalous cells."""

    precision: float
    recall: float
    k: int
    n_true: int
    flagged: np.ndarray = field(repr=False)


def detect_top_k(
    scores: np.ndarray, truth: np.ndarray, k: int | None = None, valid: np.ndarray | None = None
) -> Detection:
    """Flag the ``k`` cells with the highest ``scores`` (gh, gw) (default k: the number of true
    cells) and score them against ``truth`` (gh, gw) bool with precision and recall."""
    from sklearn.metrics import precision_score, recall_score

    scores, truth = np.asarray(scores, np.float64), np.asarray(truth, bool)
    if scores.shape != truth.shape:
        raise InputError(
            f"scores {scores.shape} and truth {truth.shape} must be grids of the same shape"
        )
    valid = np.isfinite(scores) if valid is None else np.asarray(valid, bool) & np.isfinite(scores)
    n_true = int((truth & valid).sum())
    k = n_true if k is None else int(k)
    if not 1 <= k <= int(valid.sum()):
        raise InputError(
            f"k must be in [1, {int(valid.sum())}] (valid cells), got {k}"
            + (" (no true anomalous cell: pass k)" if n_true == 0 else "")
        )
    order = np.argsort(np.where(valid, scores, -np.inf), axis=None, kind="stable")[::-1][:k]
    flagged = np.zeros(scores.shape, bool)
    flagged.flat[order] = True
    y, f = truth[valid], flagged[valid]
    return Detection(
        float(precision_score(y, f, zero_division=0)),
        float(recall_score(y, f, zero_division=0)),
        k,
        n_true,
        flagged,
    )


# ---------------------------------------------------------------------- one call per feature source


@dataclass
class FeatureScore:
    """How well one set of features separates land cover: probe ``accuracy``/``macro_f1`` on a
    spatially disjoint split, k-means ``ari``, and the grids behind them (``labels``: per-cell
    majority labels, ``clusters``, ``split``, ``probe``) for plotting."""

    accuracy: float
    macro_f1: float
    ari: float
    labels: np.ndarray = field(repr=False)
    clusters: np.ndarray = field(repr=False)
    split: EmbeddingSplit = field(repr=False)
    probe: ProbeResult = field(repr=False)
    cell_size: int = 1

    def row(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "ari": self.ari}


def score_features(
    emb: Embeddings,
    labels: np.ndarray,
    *,
    n_clusters: int | None = None,
    split_scheme: str = "halves",
    min_per_class: int = 5,
    seed: int = 0,
) -> FeatureScore:
    """Probe and cluster ``emb`` against the land-cover map ``labels`` (H, W) of its scene.

    Per-cell majority labels (:func:`patch_labels`); a linear probe on :func:`embedding_split`
    (classes too rare on the training side are left out: ``rare="drop"``); k-means with
    ``n_clusters`` (default: as many as classes) scored by the adjusted Rand index.
    """
    grid = patch_labels(labels, emb)
    split = embedding_split(emb, split_scheme)
    probe = linear_probe(emb, grid, split, min_per_class=min_per_class, rare="drop", seed=seed)
    k = n_clusters or max(2, len(np.unique(grid[grid > 0])))
    clusters = kmeans_map(emb, k, seed=seed)
    return FeatureScore(
        probe.accuracy,
        probe.macro_f1,
        adjusted_rand(clusters, grid),
        grid,
        clusters,
        split,
        probe,
        emb.cell_size,
    )


def score_folds(
    emb: Embeddings,
    labels: np.ndarray,
    *,
    block: int = 1,
    n_clusters: int | None = None,
    min_per_class: int = 5,
    seed: int = 0,
) -> list[dict]:
    """Probe and cluster ``emb`` block by block: one row per :func:`spatial_folds` fold.

    Each row: ``fold`` (1-based), ``accuracy`` and ``macro_f1`` of a linear probe trained on the
    other blocks and scored on this one, ``ari`` of one k-means of the whole scene (it never
    sees labels) restricted to this block's cells, and ``n_test`` cells. A block with no test cell
    of a class the probe was trained on gets NaN scores (left out of means). labels: (H, W).
    """
    grid = patch_labels(labels, emb)
    k = n_clusters or max(2, len(np.unique(grid[grid > 0])))
    clusters = kmeans_map(emb, k, seed=seed)
    rows = []
    for i, split in enumerate(spatial_folds(emb, block), start=1):
        try:
            probe = linear_probe(
                emb, grid, split, min_per_class=min_per_class, rare="drop", seed=seed
            )
            acc, f1, n = probe.accuracy, probe.macro_f1, probe.n_test
        except InputError:  # no labelled test cell of a trained class in this block
            acc, f1, n = float("nan"), float("nan"), 0
        keep = split.test & (grid > 0) & (clusters >= 0)
        ari = adjusted_rand(np.where(keep, clusters, -1), grid) if keep.sum() >= 2 else np.nan
        rows.append(dict(fold=i, accuracy=acc, macro_f1=f1, ari=float(ari), n_test=n))
    return rows


# --------------------------------------------------------------------------- GeoTIFF


def write_embeddings(
    path: str | Path, emb: Embeddings, n_components: int | None = 8, *, overwrite: bool = False
) -> Path:
    """Write ``emb`` as a multi-band GeoTIFF on its cell grid, with the scene's CRS and a transform
    scaled to the cells (one pixel per patch), NaN at invalid cells, so GIS tools can read it.

    ``n_components``: write that many PCA components (bands "PC1", ...), or all ``D`` dimensions
    (``None``; bands "dim 0", ...). An existing file is never replaced unless ``overwrite=True``.
    """
    from mae_nb.data.geotiff import write_raster

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass overwrite=True to replace it")
    transform = emb.grid_transform()
    if n_components is None:
        data = np.moveaxis(emb.values, -1, 0)
        names = [f"dim {i}" for i in range(emb.dim)]
    else:
        comps = pca_map(emb, n_components).components
        data = np.moveaxis(comps, -1, 0)
        names = [f"PC{i + 1}" for i in range(comps.shape[-1])]
    return write_raster(
        path,
        data.astype(np.float32),
        crs=emb.crs,
        transform=transform,
        nodata=float("nan"),
        valid=emb.valid,
        band_names=names,
        overwrite=overwrite,
    )
