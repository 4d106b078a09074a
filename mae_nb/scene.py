"""A scene tile by tile: seeded tiles read in windows, results accumulated and written in strips.

Everything that runs a model over a scene larger than its input walks it the same way:

- :func:`prepare_image` turns what a user hands in (a ``(C, H, W)`` array or tensor, a
  :class:`~mae_nb.data.Raster`, a ``Sample``) into a :class:`SceneImage`: bands picked, band count
  checked against the model (with a hint for channels-last arrays), cropped at the bottom and
  right to whole patches, and a mask of its valid pixels.
- :class:`TileGrid` says where the ``size`` x ``size`` tiles lie (every ``stride`` pixels,
  row-major, the last row and column flush with the edge); tile ``i`` draws its masks from
  :func:`tile_generator` ``(seed, i)``, so a tile's result does not depend on the batch size.
- :class:`ArrayTiles` (an image in memory) and :class:`RasterTiles` (a GeoTIFF, read one row of
  tiles at a time) deliver tiles; :func:`tile_batches` groups them into batches.
  :func:`check_seed` makes sure a seed is a whole number before any work.
- :class:`BlendAccumulator` averages overlapping tiles with :func:`blend_weights` in a buffer one
  strip of tiles tall, and hands back rows as soon as no later tile touches them, so memory does
  not grow with the number of rows; :class:`CellAccumulator` averages values per cell of a grid
  (a patch or a tile).
- :class:`StripWriter` writes those rows to a tiled GeoTIFF with the source's CRS, transform and
  nodata, under a temporary name renamed when complete; :func:`to_dtype` is its dtype policy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from mae_nb.data.geotiff import check_bands, check_window, open_raster, read_window
from mae_nb.data.tiling import tile_starts
from mae_nb.errors import InputError, OutputExistsError
from mae_nb.precision import model_device

__all__ = [
    "ArrayTiles",
    "BlendAccumulator",
    "CellAccumulator",
    "RasterTiles",
    "SceneImage",
    "StripWriter",
    "TileBatch",
    "TileGrid",
    "blend_weights",
    "check_outputs",
    "check_seed",
    "inference",
    "model_device",
    "prepare_image",
    "tile_batches",
    "tile_generator",
    "to_dtype",
]


# --------------------------------------------------------------------------- the model


@contextlib.contextmanager
def inference(model: torch.nn.Module) -> Iterator[torch.device]:
    """Run ``model`` in eval mode without autograd; yield its device; restore its mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model_device(model)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- the image


@dataclass
class SceneImage:
    """An image ready to be cut into patches and tiles.

    - ``array``: (C, h, w) float32 in the image's units, cropped to whole patches (NaN kept).
    - ``valid``: (h, w) bool, False at nodata (the caller's mask, else the raster's) and wherever
      a band is not finite.
    - ``dtype``: the image's dtype before conversion (uint8 tells the normalization 0..255).
    - ``shape``: (H, W) before cropping; ``transform``, ``crs``: a raster's georeferencing.
    """

    array: np.ndarray
    valid: np.ndarray
    dtype: np.dtype
    shape: tuple[int, int]
    transform: Any = None
    crs: Any = None

    @property
    def count(self) -> int:
        return self.array.shape[0]

    @property
    def height(self) -> int:
        return self.array.shape[1]

    @property
    def width(self) -> int:
        return self.array.shape[2]

    @property
    def crop(self) -> tuple[int, int]:
        """Rows and columns cut from the bottom and right to make whole patches."""
        return self.shape[0] - self.height, self.shape[1] - self.width


def _band_count_error(shape: tuple[int, ...], in_chans: int, bands) -> InputError:
    c = shape[0]
    if bands is None and len(shape) == 3 and shape[-1] == in_chans and c != in_chans:
        return InputError(
            f"the image has shape {tuple(shape)}, which looks channels-last (H, W, C); the model "
            f"expects (C, H, W) with C = in_chans = {in_chans}: pass image.transpose(2, 0, 1) "
            "(or tensor.permute(2, 0, 1))"
        )
    hint = "pick three with bands=[r, g, b]" if in_chans == 3 else f"choose {in_chans} with bands"
    return InputError(
        f"the image has {c} band(s) but the model expects in_chans={in_chans}; {hint} (1-based)"
        + (", e.g. mae_nb.features.model_bands(model, sample)" if c > in_chans else "")
    )


def prepare_image(
    image,
    in_chans: int | None = None,
    patch_size: int = 1,
    *,
    bands: Sequence[int] | None = None,
    valid: np.ndarray | None = None,
) -> SceneImage:
    """``image`` as a :class:`SceneImage`: bands picked and checked, cropped to whole patches.

    image: a (C, H, W) array or tensor (also (1, C, H, W), or (H, W) for one band), a
    :class:`~mae_nb.data.Raster` or a ``Sample`` (their valid mask, transform and CRS come along).
    ``bands``: 1-based bands to keep. ``in_chans``: the band count the model takes (checked;
    an (H, W, C) array is recognised and the transpose named). ``patch_size``: the image is
    cropped at the bottom and right to a multiple of it (never padded) and must hold one patch.
    ``valid``: (H, W) bool, False at nodata; it replaces a raster's own mask.
    """
    transform = crs = None
    if hasattr(image, "raster"):  # a mae_nb.data.Sample
        image = image.raster
    if hasattr(image, "array") and hasattr(image, "valid"):  # a Raster
        transform, crs = getattr(image, "transform", None), getattr(image, "crs", None)
        valid = image.valid if valid is None else valid
        image = image.array
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise InputError(f"expected one image of shape (C, H, W), got shape {image.shape}")
    if bands is not None:
        image = image[[b - 1 for b in check_bands(bands, image.shape[0], "the image")]]
    if in_chans is not None and image.shape[0] != in_chans:
        raise _band_count_error(image.shape, in_chans, bands)
    c, h, w = image.shape
    p = int(patch_size)
    if p < 1:
        raise InputError(f"patch_size must be a whole number >= 1, got {patch_size}")
    if h < p or w < p:
        raise InputError(f"the image is {h} x {w} pixels, smaller than one {p} x {p} patch")
    valid = np.ones((h, w), bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != (h, w):
        raise InputError(f"valid must have the image's shape {(h, w)}, got {valid.shape}")
    hc, wc = h // p * p, w // p * p
    array = image[:, :hc, :wc].astype(np.float32)
    valid = valid[:hc, :wc] & np.isfinite(array).all(axis=0)
    return SceneImage(array, valid, image.dtype, (h, w), transform, crs)


# --------------------------------------------------------------------------- tiles


def check_seed(seed) -> int:
    """``seed`` as an int; a clear error for anything that is not a whole number."""
    try:
        value = int(seed)
        whole = value == float(seed) and not isinstance(seed, (bool, np.bool_))
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        raise InputError(f"seed must be a whole number, got {seed!r}")
    return value


def tile_generator(seed: int, index: int) -> torch.Generator:
    """The random generator of tile ``index`` of a run seeded with ``seed`` (its masks)."""
    state = np.random.SeedSequence([check_seed(seed), int(index)]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


@dataclass(frozen=True)
class TileGrid:
    """``size`` x ``size`` tiles every ``stride`` pixels over a ``height`` x ``width`` scene.

    Tiles are numbered row-major; the last row and column of tiles are flush with the edge (a
    scene smaller than a tile gets one tile that reaches past it).
    """

    height: int
    width: int
    size: int
    stride: int

    @property
    def row_starts(self) -> np.ndarray:
        return tile_starts(max(self.height, self.size), self.size, self.stride)

    @property
    def col_starts(self) -> np.ndarray:
        return tile_starts(max(self.width, self.size), self.size, self.stride)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of tiles."""
        return len(self.row_starts), len(self.col_starts)

    def __len__(self) -> int:
        return self.shape[0] * self.shape[1]

    def strips(self) -> list[list[tuple[int, int, int]]]:
        """Each row of tiles as ``(index, row, col)`` of its tiles, top to bottom."""
        cols = self.col_starts
        return [
            [(i * len(cols) + j, int(r), int(c)) for j, c in enumerate(cols)]
            for i, r in enumerate(self.row_starts)
        ]


def _padded(pixels: np.ndarray, ok: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A tile cut at the edge of what was read, padded to size x size with invalid zeros."""
    if ok.shape != (size, size):
        pad = ((0, size - ok.shape[0]), (0, size - ok.shape[1]))
        pixels, ok = np.pad(pixels, ((0, 0), *pad)), np.pad(ok, pad)
    return pixels.astype(np.float32), ok.copy()


class ArrayTiles:
    """Tiles of an image in memory: (C, H, W) pixels and an (H, W) valid mask."""

    def __init__(self, array: np.ndarray, valid: np.ndarray):
        self.array, self.valid = array, valid
        self.count, self.height, self.width = array.shape

    def read(self, row: int, col: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(C, size, size) float32 pixels, (size, size) validity; outside the image is invalid."""
        pixels = self.array[:, row : row + size, col : col + size]
        return _padded(pixels, self.valid[row : row + size, col : col + size], size)

    def release(self) -> None:
        """Nothing to forget: the image is in memory."""


class RasterTiles:
    """Tiles of a raster file (or a ``window`` of it), read in windows; a context manager.

    ``bands``: 1-based bands (default all); ``window``: ``(row_off, col_off, height, width)``.
    While open, GDAL's block cache is kept small (16 MB), so memory stays flat with the scene.
    """

    def __init__(self, path: str | Path, bands: Sequence[int] | None = None, window=None):
        self.path, self._bands, self._window = Path(path), bands, window
        self._stack, self._cache = contextlib.ExitStack(), None

    def __enter__(self) -> RasterTiles:
        import rasterio
        from rasterio.windows import Window
        from rasterio.windows import transform as window_transform

        self._stack.enter_context(rasterio.Env(GDAL_CACHEMAX=16))
        try:
            src = self.src = self._stack.enter_context(open_raster(self.path))
            self.bands = check_bands(self._bands, src.count, self.path)
            self.window = check_window(self._window, src.height, src.width, self.path)
        except BaseException:
            self._stack.close()
            raise
        r, c, h, w = self.window
        self.count, self.height, self.width = len(self.bands), h, w
        self.dtype, self.nodata = src.dtypes[self.bands[0] - 1], src.nodata
        self.descriptions = [src.descriptions[b - 1] or f"band {b}" for b in self.bands]
        self.crs, self.transform = src.crs, window_transform(Window(c, r, w, h), src.transform)
        return self

    def __exit__(self, *exc) -> None:
        self._cache = None
        self._stack.close()

    def _strip(self, row: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``row``..``row + size`` of the window, every column (at least a tile wide), in the
        file's dtype, with their validity: one read for a whole row of tiles (reading tile by
        tile costs GDAL a mask computation per tile), kept until the next row of tiles."""
        if self._cache is None or self._cache[0] != (row, size):
            self._cache = None  # let the last row of tiles go before reading the next
            r0, c0, width = row + self.window[0], self.window[1], max(self.width, size)
            fill = self.nodata if self.nodata is not None else 0
            strip = np.empty((self.count, size, width), self.dtype)
            valid = np.empty((size, width), bool)
            for j in range(0, width, 2048):  # in column chunks: GDAL's masks are a band each
                k = min(width, j + 2048)
                boundless = r0 + size > self.src.height or c0 + k > self.src.width
                window = (r0, c0 + j, size, k - j)
                strip[:, :, j:k], valid[:, j:k] = read_window(
                    self.src, self.bands, window, boundless=boundless, fill_value=fill
                )
            self._cache = ((row, size), strip, valid)
        return self._cache[1], self._cache[2]

    def read(self, row: int, col: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(C, size, size) float32 pixels and (size, size) validity of the tile at (row, col) of
        the window; outside the window is invalid. Read a row of tiles after another."""
        strip, valid = self._strip(row, size)
        pixels, ok = _padded(strip[:, :, col : col + size], valid[:, col : col + size], size)
        ok &= np.isfinite(pixels).all(axis=0)
        ok[max(0, self.height - row) :, :] = False
        ok[:, max(0, self.width - col) :] = False
        return pixels, ok

    def read_rows(self, top: int, n: int, cols: slice) -> np.ndarray:
        """(C, n, cols) float32 pixels of rows ``top``..``top + n`` of the window."""
        from rasterio.windows import Window

        # without the masks (read_window's): GDAL computes them at a cost, and these rows' blocks
        # were read (and found sound) with their row of tiles
        r0, c0 = top + self.window[0], cols.start + self.window[1]
        window = Window(c0, r0, cols.stop - cols.start, n)
        return self.src.read(self.bands, window=window).astype(np.float32)

    def release(self) -> None:
        """Forget the row of tiles read last (:func:`tile_batches` calls this once it is read)."""
        self._cache = None

    def overview(self, max_side: int = 1024) -> SceneImage:
        """The whole raster (not only the window), decimated to at most ``max_side`` px a side."""
        src = self.src
        factor = max(1, -(-max(src.height, src.width) // max_side))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        pixels, ok = read_window(src, self.bands, out_shape=shape)
        return SceneImage(pixels.astype(np.float32), ok, np.dtype(self.dtype), shape)

    def writer(self, path: str | Path, **kwargs) -> StripWriter:
        """A :class:`StripWriter` of the window's size and georeferencing; ``kwargs``: its
        ``count``, ``dtype``, ``nodata``, ``descriptions`` (default: the source's)."""
        spec = dict(count=self.count, dtype=self.dtype, nodata=self.nodata)
        spec["descriptions"] = self.descriptions
        spec.update(kwargs)
        return StripWriter(
            path,
            height=self.height,
            width=self.width,
            crs=self.crs,
            transform=self.transform,
            **spec,
        )


@dataclass
class TileBatch:
    """Tiles read together: ``index``, ``rows``, ``cols`` (n,) (number and top-left pixel of
    each), ``pixels`` (n, C, size, size) float32 in the image's units, ``valid`` (n, size, size).
    ``tiles``: tiles visited for this batch (with the empty ones left out); ``final_rows``: the
    scene rows above this one no later tile touches."""

    index: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    pixels: np.ndarray
    valid: np.ndarray
    tiles: int
    final_rows: int

    def __len__(self) -> int:
        return len(self.index)


def tile_batches(
    source: ArrayTiles | RasterTiles,
    grid: TileGrid,
    batch_size: int,
    *,
    by_strip: bool = True,
    skip_empty: bool = True,
    progress: bool = False,
    desc: str = "tiles",
) -> Iterator[TileBatch]:
    """The tiles of ``grid`` read from ``source``, ``batch_size`` at a time, row-major.

    ``by_strip``: a batch never spans two rows of tiles. ``skip_empty``: leave out tiles with no
    valid pixel (a batch may then be empty; it still reports ``final_rows``).
    """
    if int(batch_size) < 1:  # checked now, not when the first batch is asked for
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    return _batches(source, grid, int(batch_size), by_strip, skip_empty, progress, desc)


def _batches(source, grid, batch_size, by_strip, skip_empty, progress, desc):
    from tqdm.auto import tqdm

    strips = grid.strips()
    jobs = [t for strip in strips for t in strip]
    groups = strips if by_strip else [jobs]
    starts = [t[1] for t in jobs] + [grid.height]  # the row of each tile, then the end
    done = 0
    with tqdm(total=len(jobs), unit="tile", disable=not progress, desc=desc) as bar:
        for group in groups:
            for k in range(0, len(group), batch_size):
                batch = group[k : k + batch_size]
                reads = [(t, r, c, *source.read(r, c, grid.size)) for t, r, c in batch]
                if starts[done + len(batch)] != batch[-1][1]:  # the row of tiles is read
                    source.release()
                if skip_empty:
                    reads = [x for x in reads if x[4].any()]
                done += len(batch)
                s, c = grid.size, source.count
                tiles = TileBatch(
                    np.array([x[0] for x in reads], int),
                    np.array([x[1] for x in reads], int),
                    np.array([x[2] for x in reads], int),
                    np.stack([x[3] for x in reads]) if reads else np.zeros((0, c, s, s), "f4"),
                    np.stack([x[4] for x in reads]) if reads else np.zeros((0, s, s), bool),
                    len(batch),
                    min(starts[done], grid.height),
                )
                del reads  # the tiles live on in the batch only
                yield tiles
                bar.update(len(batch))


# --------------------------------------------------------------------------- accumulators


def blend_weights(size: int, overlap: int) -> np.ndarray:
    """(size, size) weights that ramp linearly from the tile's edge over ``overlap`` pixels.

    Where tiles overlap, their outputs are averaged with these weights, so seams fade out.
    """
    i = np.arange(size, dtype=np.float64) + 0.5
    ramp = np.minimum(i, size - i) / max(overlap, 1)
    ramp = np.clip(ramp, 1e-3, 1.0)
    return np.outer(ramp, ramp).astype(np.float32)


class BlendAccumulator:
    """Overlapping tiles averaged with :func:`blend_weights`, one strip of rows at a time.

    Holds (C, size, width) sums and (size, width) weights: the rows of the tiles being added.
    Tiles must arrive strip by strip, top to bottom; :meth:`pop` hands back finished rows.
    """

    def __init__(self, count: int, height: int, width: int, size: int, overlap: int):
        if not 0 <= overlap <= size // 2:
            raise InputError(
                f"overlap must be between 0 and half a tile ({size // 2} px), got {overlap}"
            )
        self.height, self.width, self.size = height, width, size
        self.weights = blend_weights(size, overlap)
        self.sums = np.zeros((count, size, width), np.float32)
        self.wsum = np.zeros((size, width), np.float32)
        self.top = 0  # the scene row of the buffer's first row

    def add(self, rows, cols, values: np.ndarray, valid: np.ndarray) -> None:
        """Tiles at ``rows``, ``cols`` (n,): ``values`` (n, C, size, size) and ``valid``
        (n, size, size) (invalid pixels weigh 0)."""
        size, top = self.size, self.top
        for r, c, y, ok in zip(rows, cols, values, valid):
            hh, ww = min(size, self.height - r), min(size, self.width - c)
            wt = (self.weights * ok)[:hh, :ww]
            self.sums[:, r - top : r - top + hh, c : c + ww] += y[:, :hh, :ww] * wt
            self.wsum[r - top : r - top + hh, c : c + ww] += wt

    def pop(
        self, final_rows: int, step: int = 1024
    ) -> Iterator[tuple[int, slice, np.ndarray, np.ndarray]]:
        """The blended rows above ``final_rows`` (no later tile may touch them), in column chunks
        of ``step`` (small temporaries): ``(top, cols, values (C, n, k), covered (n, k))``, where
        ``covered`` is False where no valid pixel of any tile fell. Consume it to the end."""
        n = final_rows - self.top
        if n <= 0:
            return
        for j in range(0, self.width, step):
            cols = slice(j, min(self.width, j + step))
            ws = self.wsum[:n, cols]
            ok = ws > 0
            yield self.top, cols, self.sums[:, :n, cols] / np.where(ok, ws, 1.0), ok
        keep = self.size - n
        self.sums[:, :keep] = self.sums[:, n : n + keep]
        self.sums[:, keep:] = 0
        self.wsum[:keep] = self.wsum[n : n + keep]
        self.wsum[keep:] = 0
        self.top = final_rows


class CellAccumulator:
    """Values averaged per cell of a (gh, gw) grid (a patch or a tile per cell), in float64."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = tuple(shape)
        self.total = np.zeros((*self.shape, 0), np.float64)
        self.count = np.zeros(self.shape, np.float64)

    def add(self, i: int, j: int, values: np.ndarray, weight: np.ndarray | None = None) -> None:
        """Add ``values`` (a, b, D) to the cells from (i, j); ``weight`` (a, b) (default 1)."""
        a, b, d = values.shape
        if self.total.shape[2] != d:
            self.total = np.zeros((*self.shape, d), np.float64)
        if weight is None:
            self.total[i : i + a, j : j + b] += values
            self.count[i : i + a, j : j + b] += 1
        else:
            self.total[i : i + a, j : j + b] += values * weight[..., None]
            self.count[i : i + a, j : j + b] += weight

    def mean(self) -> np.ndarray:
        """(gh, gw, D) mean per cell (0 where nothing was added)."""
        return self.total / np.maximum(self.count, 1)[..., None]


# --------------------------------------------------------------------------- writing


def to_dtype(a: np.ndarray, dtype, nodata, valid: np.ndarray) -> np.ndarray:
    """Float (C, h, w) -> ``dtype``: rounded and clipped for integers, ``nodata`` (NaN for floats
    without one) where not ``valid``, and a valid pixel that would land on the nodata value moved
    one step off it."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        out = np.clip(np.rint(np.nan_to_num(a)), info.min, info.max).astype(dt)
        if nodata is not None and info.min <= nodata <= info.max:
            nd = dt.type(nodata)
            out[(out == nd) & valid[None]] = nd + 1 if nd < info.max else nd - 1
    else:
        out = a.astype(dt)
    if nodata is not None:
        out[:, ~valid] = dt.type(nodata)
    elif not np.issubdtype(dt, np.integer):
        out[:, ~valid] = np.nan
    return out


def check_outputs(source: Path, outputs: Sequence[Path], overwrite: bool) -> None:
    """Refuse outputs that are the ``source``, already exist (unless ``overwrite``) or repeat."""
    for path in outputs:
        if path.exists() and path.resolve() == Path(source).resolve():
            raise InputError(f"the output {path} is the input file; choose another output path")
        if path.exists() and not overwrite:
            raise OutputExistsError(
                f"{path} already exists; pass overwrite=True (or --overwrite) to replace it"
            )
    if len({p.resolve() for p in outputs}) < len(outputs):
        raise InputError(f"every output needs its own path, got {[str(p) for p in outputs]}")


class StripWriter:
    """A tiled GeoTIFF written top to bottom, strip by strip; a context manager.

    Rows are written whole 256-px block rows at a time. The file is written under a hidden
    temporary name (``.<name>.partial``) and renamed to ``path`` when the ``with`` block ends
    without an error; after an error the partial file is removed.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        height: int,
        width: int,
        count: int,
        dtype,
        nodata,
        crs,
        transform,
        descriptions: Sequence[str] = (),
        block: int = 256,
    ):
        self.path, self.block = Path(path), block
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.profile = dict(
            driver="GTiff",
            height=height,
            width=width,
            count=count,
            dtype=dtype,
            nodata=nodata,
            crs=crs,
            transform=transform,
            compress="deflate",
            tiled=True,
            blockxsize=block,
            blockysize=block,
            BIGTIFF="IF_SAFER",
        )
        self.descriptions = list(descriptions)

    def __enter__(self) -> StripWriter:
        import rasterio

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dst = rasterio.open(self.tmp, "w", **self.profile)
        for i, name in enumerate(self.descriptions, start=1):
            self.dst.set_band_description(i, name)
        self.row, self.parts = 0, []
        return self

    def write(self, rows: np.ndarray | None, final: bool = False) -> None:
        """Append ``rows`` (count, n, width) below the rows written so far."""
        from rasterio.windows import Window

        if rows is not None and rows.shape[1]:
            self.parts.append(rows)
        pending = sum(p.shape[1] for p in self.parts)
        n = pending if final else (self.row + pending) // self.block * self.block - self.row
        if n <= 0:
            return
        data = np.concatenate(self.parts, axis=1)
        self.dst.write(data[:, :n], window=Window(0, self.row, data.shape[2], n))
        self.row += n
        self.parts = [data[:, n:]] if n < data.shape[1] else []

    def __exit__(self, exc_type, *exc) -> None:
        complete = False
        try:
            if exc_type is None:
                self.write(None, final=True)
                complete = True
        finally:
            self.dst.close()
            if complete:
                self.tmp.replace(self.path)
            else:
                self.tmp.unlink(missing_ok=True)
