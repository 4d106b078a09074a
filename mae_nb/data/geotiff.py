"""GeoTIFF helpers: read (bands, windows, nodata), display stretch, composites, write back.

Band indexes are 1-based, as in rasterio and GDAL: ``bands=[3, 2, 1]`` is the usual
true-colour order of a blue-green-red(-NIR...) file. Arrays are ``(C, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from mae_nb.errors import InputError, OutputExistsError, RasterError

Window = tuple[int, int, int, int]  # (row_off, col_off, height, width)


@dataclass
class Raster:
    """An image with its georeferencing.

    ``array``: (C, H, W), the file's dtype. ``valid``: (H, W) bool, False where every band is
    nodata (or the dataset mask says so). ``transform`` maps pixel (col, row) to map (x, y).
    """

    array: np.ndarray
    valid: np.ndarray
    crs: object
    transform: object
    nodata: float | None = None
    band_names: list[str] = field(default_factory=list)
    path: Path | None = None

    @property
    def count(self) -> int:
        return self.array.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape[1], self.array.shape[2]

    def __repr__(self) -> str:  # arrays are long; say what matters
        c, h, w = self.array.shape
        return (
            f"Raster({c} bands x {h} x {w}, {self.array.dtype}, crs={self.crs}, "
            f"nodata={self.nodata}, valid={self.valid.mean():.1%}, path={self.path})"
        )

    def xy(self, rows, cols):
        """Map coordinates of pixel centres ``(rows, cols)`` (scalars or arrays)."""
        from rasterio.transform import xy

        return xy(self.transform, rows, cols, offset="center")


def value_range(array: np.ndarray, valid: np.ndarray | None = None, dtype=None) -> float:
    """The data range of a source whose range nobody declared: the one PSNR and SSIM use.

    ``uint8`` data: 255; floats all within 0..1 (already scaled): 1.0. Otherwise the span
    (max - min) of the finite ``valid`` values of the *whole source* (a file, a scene; never a
    crop being scored), or 1.0 for a constant image.
    array: (C, H, W); valid: (H, W) or None; ``dtype``: the source's dtype if ``array`` was
    converted (e.g. to float32) after reading.
    """
    array = np.asarray(array)
    if np.dtype(array.dtype if dtype is None else dtype) == np.uint8:
        return 255.0
    values = array[:, valid] if valid is not None else array.reshape(array.shape[0], -1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError("no valid pixel: the data range of an all-nodata image is undefined")
    lo, hi = float(values.min()), float(values.max())
    if np.issubdtype(values.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return 1.0
    return hi - lo or 1.0


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


def _damaged(path: object) -> RasterError:
    return RasterError(
        f"{path} is damaged or truncated: GDAL cannot read its pixels; copy or download the file "
        "again (`mae-nb data fetch NAME` for the course's samples)"
    )


def open_raster(path: str | Path):
    """Open a raster file for reading: a rasterio dataset, to use as a context manager.

    Checks what can be checked cheaply before any work: that ``path`` exists, is a file, is a
    raster GDAL can read, and that its last block of pixels can be read (a file cut short
    fails there). Raises :class:`~mae_nb.errors.RasterError` naming the file otherwise. Read
    its pixels with :func:`read_window`, which reports a block damaged further in the same way.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    path = Path(path)
    if not path.exists():
        raise RasterError(
            f"no file at {path}: expected a GeoTIFF (or another raster GDAL can read)"
        )
    if path.is_dir():
        raise RasterError(f"{path} is a folder, not a raster file")
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        with open(path, "rb") as fh:
            if fh.read(4) in _TIFF_MAGIC:
                raise _damaged(path) from None
        raise RasterError(
            f"{path} is not a raster GDAL can read ({exc}); expected a GeoTIFF such as the "
            "course's samples (`mae-nb data list`)"
        ) from None
    try:
        block_h, block_w = src.block_shapes[-1]
        last = (-(-src.height // block_h) - 1, -(-src.width // block_w) - 1)
        src.read(src.count, window=src.block_window(src.count, *last))
    except RasterioIOError:
        src.close()
        raise _damaged(path) from None
    return src


def check_bands(bands: Sequence[int] | None, count: int, path: object = "the raster") -> list[int]:
    """1-based band indexes, checked against ``count``."""
    if bands is None:
        return list(range(1, count + 1))
    bands = [int(b) for b in bands]
    bad = [b for b in bands if not 1 <= b <= count]
    if bad or not bands:
        raise RasterError(
            f"band index {bad[0] if bad else '(none)'} is out of range for {path}, which has "
            f"{count} band(s): use 1-based indexes 1..{count}"
        )
    return bands


def check_window(
    window: Window | None, height: int, width: int, path: object = "the raster"
) -> Window:
    """A ``(row_off, col_off, height, width)`` window that lies inside the image."""
    if window is None:
        return (0, 0, height, width)
    r, c, h, w = (int(v) for v in window)
    if h <= 0 or w <= 0 or r < 0 or c < 0 or r + h > height or c + w > width:
        raise RasterError(
            f"window (row_off={r}, col_off={c}, height={h}, width={w}) is outside {path}, which is "
            f"{height} rows x {width} cols; expected 0 <= row_off, row_off + height <= {height}, "
            f"0 <= col_off, col_off + width <= {width}"
        )
    return (r, c, h, w)


def read_window(
    src,
    bands: Sequence[int],
    window: Window | None = None,
    *,
    boundless: bool = False,
    fill_value: float | None = None,
    out_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and validity of ``bands`` (1-based) in a ``window`` of an open raster ``src``.

    ``src`` comes from :func:`open_raster`; ``window`` is ``(row_off, col_off, height, width)``
    (default: the whole image), and may reach outside the image when ``boundless`` (the outside
    is ``fill_value`` and invalid). ``out_shape=(h, w)`` reads a decimated copy (nearest pixel).
    Returns ``(array (C, h, w) in the file's dtype, valid (h, w) bool)``; a pixel is valid where
    any band's mask is set. A block the file cannot deliver raises
    :class:`~mae_nb.errors.RasterError` naming the file.
    """
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window as RioWindow

    r, c, h, w = (0, 0, src.height, src.width) if window is None else window
    kwargs: dict = dict(window=RioWindow(c, r, w, h), boundless=boundless)
    if out_shape is not None:
        kwargs.update(out_shape=(len(bands), *out_shape), resampling=Resampling.nearest)
    try:
        array = src.read(list(bands), fill_value=fill_value, **kwargs)
        valid = (src.read_masks(list(bands), **kwargs) > 0).any(axis=0)
    except RasterioIOError:
        raise _damaged(src.name) from None
    return array, valid


def read_raster(
    path: str | Path,
    bands: Sequence[int] | None = None,
    window: Window | None = None,
) -> Raster:
    """Read a GeoTIFF: all bands or ``bands`` (1-based), the whole image or a ``window``.

    ``window`` is ``(row_off, col_off, height, width)``. Pixels are invalid where every band
    equals the nodata value (or the file's internal mask is 0).
    """
    from rasterio.windows import Window as RioWindow
    from rasterio.windows import transform as window_transform

    with open_raster(path) as src:
        idx = check_bands(bands, src.count, path)
        r, c, h, w = check_window(window, src.height, src.width, path)
        array, valid = read_window(src, idx, (r, c, h, w))
        names = [src.descriptions[i - 1] or f"band {i}" for i in idx]
        return Raster(
            array=array,
            valid=valid,
            crs=src.crs,
            transform=window_transform(RioWindow(c, r, w, h), src.transform),
            nodata=src.nodata,
            band_names=names,
            path=Path(path),
        )


def write_raster(
    path: str | Path,
    array: np.ndarray,
    *,
    like: Raster | None = None,
    crs: object = None,
    transform: object = None,
    nodata: float | None = None,
    valid: np.ndarray | None = None,
    band_names: Sequence[str] | None = None,
    overwrite: bool = False,
    colormap: dict[int, Sequence[int]] | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write ``array`` (C, H, W) or (H, W) as a tiled, compressed GeoTIFF.

    Georeferencing comes from ``like`` unless given. Where ``valid`` is False, pixels are set
    to ``nodata``. An existing file is never replaced unless ``overwrite=True``.
    ``colormap``: ``{value: (r, g, b[, a])}`` (0..255), the first band's colour table (uint8
    or uint16 arrays only, as GeoTIFF allows); ``tags``: metadata written to the file.
    """
    import rasterio

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} already exists; pass overwrite=True (or --overwrite) to replace it"
        )
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise RasterError(f"expected an array of shape (C, H, W) or (H, W), got {array.shape}")
    if like is not None:
        crs = like.crs if crs is None else crs
        transform = like.transform if transform is None else transform
        nodata = like.nodata if nodata is None else nodata
    if valid is not None:
        if nodata is None:
            nodata = 0 if np.issubdtype(array.dtype, np.integer) else float("nan")
        array = np.where(valid[None], array, np.asarray(nodata, dtype=array.dtype))
    c, h, w = array.shape
    profile = dict(
        driver="GTiff",
        height=h,
        width=w,
        count=c,
        dtype=array.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        compress="deflate",
    )
    if h >= 256 and w >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if colormap and array.dtype not in (np.uint8, np.uint16):
        raise RasterError(
            f"a colour table needs uint8 or uint16 values, the array is {array.dtype}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        for i, name in enumerate(band_names or [], start=1):
            dst.set_band_description(i, name)
        if colormap:
            dst.write_colormap(1, {int(k): tuple(int(c) for c in v) for k, v in colormap.items()})
        if tags:
            dst.update_tags(**{str(k): str(v) for k, v in tags.items()})
    return path


def stretch(
    array: np.ndarray,
    low: float = 2.0,
    high: float = 98.0,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Per-band percentile stretch to float32 in [0, 1] for display.

    ``array``: (C, H, W) or (H, W). Percentiles are taken over ``valid`` pixels only (nodata
    would otherwise pull the low end down); invalid pixels come out as 0.
    """
    if not 0 <= low < high <= 100:
        raise InputError(
            f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}"
        )
    a = np.asarray(array, dtype=np.float32)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[None]
    mask = np.ones(a.shape[1:], bool) if valid is None else np.asarray(valid, bool)
    mask = mask & np.isfinite(a).all(axis=0)
    out = np.zeros_like(a)
    if mask.any():
        for i, band in enumerate(a):
            lo, hi = np.percentile(band[mask], [low, high])
            out[i] = np.clip((band - lo) / max(hi - lo, 1e-12), 0, 1)
    out[:, ~mask] = 0
    return out[0] if squeeze else out


def composite(
    array: np.ndarray,
    bands: Sequence[int] = (1, 2, 3),
    valid: np.ndarray | None = None,
    low: float = 2.0,
    high: float = 98.0,
) -> np.ndarray:
    """An (H, W, 3) display image from three 1-based ``bands`` of ``array`` (C, H, W), stretched."""
    bands = check_bands(bands, array.shape[0], "the array")
    if len(bands) != 3:
        raise InputError(f"a composite needs exactly 3 bands (red, green, blue), got {len(bands)}")
    rgb = stretch(array[[b - 1 for b in bands]], low, high, valid)
    return np.moveaxis(rgb, 0, -1)


def with_array(raster: Raster, array: np.ndarray) -> Raster:
    """The same georeferencing with another array of the same height and width."""
    if array.shape[-2:] != raster.array.shape[-2:]:
        raise RasterError(f"expected an array of {raster.shape} pixels, got {array.shape[-2:]}")
    return replace(raster, array=array if array.ndim == 3 else array[None])
