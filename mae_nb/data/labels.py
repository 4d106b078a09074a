"""Label rasters: land-cover labels for an image GeoTIFF, their class list, and maps written back.

A label raster is a one-band GeoTIFF of whole numbers on the image's grid: each value is a
class, 0 and the file's nodata value mean *unlabelled*. :func:`read_labels` reads one for an
image and checks it before any work: a raster on another grid (CRS, transform or size) is
refused, saying what differs, unless nearest-neighbour resampling onto the image's grid is asked
for; values outside the class list are refused, naming them and the list. Classes are then
numbered 1..K in the order of the class list (:class:`LabelMap`), as every classifier of the
course counts them.

The spatially disjoint split is :func:`mae_nb.data.hsi.spatial_split` (``block_size`` aligns
its blocks with a model's tiles, :func:`tile_regions` says which region each tile lies in);
:func:`sample_labels` keeps a fraction of each class's training pixels, refusing a fraction
that leaves a class without one; :func:`write_class_map` writes a classification map back to
GeoTIFF with the image's georeferencing, the label raster's values, a colour table and the
class names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mae_nb.data.geotiff import Raster, check_bands, open_raster, write_raster
from mae_nb.data.hsi import SpatialSplit, subsample_labels
from mae_nb.errors import InputError, RasterError

__all__ = [
    "LabelMap",
    "check_same_grid",
    "class_colours",
    "parse_classes",
    "read_labels",
    "sample_labels",
    "tile_regions",
    "write_class_map",
]


@dataclass
class LabelMap:
    """Labels on an image's grid: ``labels`` (H, W) int64, 0 = unlabelled, ``k`` = class
    ``k`` (1..K) of the class list, whose value in the label raster is ``class_values[k - 1]``
    and whose name is ``class_names[k - 1]``. ``crs``/``transform``: the image's grid;
    ``resampled``: True when the raster was resampled onto it (nearest neighbour)."""

    labels: np.ndarray
    class_values: list[int]
    class_names: list[str]
    crs: object = None
    transform: object = None
    path: Path | None = None
    resampled: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.class_values)

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape[0], self.labels.shape[1]

    def counts(self, where: np.ndarray | None = None) -> dict[str, int]:
        """Labelled pixels per class name (in ``where`` (H, W) bool, or everywhere)."""
        labels = self.labels if where is None else self.labels[np.asarray(where, bool)]
        n = np.bincount(labels.ravel(), minlength=self.n_classes + 1)[1:]
        return {name: int(c) for name, c in zip(self.class_names, n)}

    def describe(self, k: int) -> str:
        """Class ``k`` (1..K) in words: ``"3 (urban, raster value 7)"``."""
        return f"{k} ({self.class_names[k - 1]}, raster value {self.class_values[k - 1]})"

    def __repr__(self) -> str:
        h, w = self.shape
        return (
            f"LabelMap({h} x {w}, {self.n_classes} classes {self.class_names}, "
            f"labelled {(self.labels > 0).mean():.1%}, resampled={self.resampled}, "
            f"path={self.path})"
        )


def parse_classes(classes: Any) -> tuple[list[int], list[str]]:
    """The class list as ``(values, names)``: from ``[1, 2, 5]`` (names "class 1" ...),
    ``{1: "water", 2: "forest"}`` (value: name), or ``["water", "forest"]`` (values 1, 2, ...).

    Values are whole numbers other than 0 (0 means unlabelled), each given once.
    """
    if isinstance(classes, dict):
        pairs = list(classes.items())
    elif (
        isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes)
    ):
        pairs = list(enumerate(classes, start=1))
    elif isinstance(classes, (list, tuple)) and classes:
        pairs = [(c, None) for c in classes]
    else:
        raise InputError(
            "classes must be a non-empty list of label values like [1, 2, 3], a mapping of "
            "value to name like {1: water, 2: forest}, or a list of names for 1, 2, ...; got "
            f"{classes!r}"
        )
    values, names = [], []
    for value, name in pairs:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, str)):
            raise InputError(f"class value {value!r} is not a whole number (classes: {classes!r})")
        try:
            v = int(value)
        except ValueError:
            raise InputError(
                f"class value {value!r} is not a whole number (classes: {classes!r})"
            ) from None
        if v == 0:
            raise InputError(
                "0 cannot be a class: it means unlabelled in a label raster; number the classes "
                "from 1"
            )
        if v in values:
            raise InputError(f"class value {v} is given twice in the class list {classes!r}")
        values.append(v)
        names.append(str(name) if name is not None else f"class {v}")
    return values, names


def _grid_of(image: Raster | str | Path) -> tuple[object, object, tuple[int, int], object]:
    """``(crs, transform, (H, W), path)`` of an image Raster or file (pixels not read)."""
    if isinstance(image, Raster):
        return image.crs, image.transform, image.shape, image.path
    with open_raster(image) as src:
        return src.crs, src.transform, (src.height, src.width), Path(image)


def _crs_text(crs) -> str:
    if crs is None:
        return "none"
    epsg = crs.to_epsg() if hasattr(crs, "to_epsg") else None
    return f"EPSG:{epsg}" if epsg else str(crs)


def _transform_text(t) -> str:
    return f"(pixel {t.a:.10g} x {t.e:.10g}, origin {t.c:.10g}, {t.f:.10g}" + (
        f", rotation {t.b:g}, {t.d:g})" if t.b or t.d else ")"
    )


def _grid_differences(crs, transform, shape, l_crs, l_transform, l_shape) -> list[str]:
    diffs = []
    if (crs is None) != (l_crs is None) or (crs is not None and crs != l_crs):
        diffs.append(f"CRS {_crs_text(l_crs)} (labels) vs {_crs_text(crs)} (image)")
    if transform is not None and l_transform is not None:
        pixel = max(abs(transform.a), abs(transform.e), 1e-12)
        if not l_transform.almost_equals(transform, precision=1e-6 * pixel):
            diffs.append(
                f"transform {_transform_text(l_transform)} (labels) vs "
                f"{_transform_text(transform)} (image)"
            )
    if tuple(l_shape) != tuple(shape):
        diffs.append(
            f"shape {l_shape[0]} x {l_shape[1]} px (labels) vs {shape[0]} x {shape[1]} px (image)"
        )
    return diffs


def check_same_grid(image: Raster | str | Path, labels: str | Path) -> None:
    """Refuse a label raster that is not on the image's grid: a RasterError that says what
    differs (CRS, transform, shape: the label raster's and the image's) and how to fix it."""
    crs, transform, shape, ipath = _grid_of(image)
    with open_raster(labels) as src:
        diffs = _grid_differences(
            crs, transform, shape, src.crs, src.transform, (src.height, src.width)
        )
    if diffs:
        raise RasterError(
            f"the label raster {labels} is on another grid than the image "
            f"{ipath or '(in memory)'}: " + "; ".join(diffs) + ". Give labels on the image's grid "
            "(same CRS, pixel size, origin and size), or ask for nearest-neighbour resampling "
            "onto it (resample=True; in a config, data.resample_labels: true)"
        )


def _resample(src, band: int, crs, transform, shape) -> np.ndarray:
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    if crs is None or src.crs is None:
        raise RasterError(
            f"cannot resample the label raster {src.name} onto the image's grid: "
            f"{'the image' if crs is None else 'the label raster'} has no CRS; give labels on the "
            "image's grid"
        )
    source = src.read(band)
    if not np.issubdtype(source.dtype, np.integer):
        source = np.where(np.isfinite(source), source, 0)
    nodata = src.nodata if src.nodata is not None and np.isfinite(src.nodata) else 0
    out = np.zeros(shape, dtype=source.dtype)
    reproject(
        source=source,
        destination=out,
        src_transform=src.transform,
        src_crs=src.crs,
        src_nodata=nodata,
        dst_transform=transform,
        dst_crs=crs,
        dst_nodata=0,
        resampling=Resampling.nearest,
    )
    return np.where(out == nodata, 0, out) if nodata != 0 else out


def read_labels(
    path: str | Path,
    image: Raster | str | Path,
    classes: Any = None,
    *,
    band: int = 1,
    resample: bool = False,
) -> LabelMap:
    """The label raster at ``path`` on the grid of ``image`` (a Raster or a GeoTIFF path).

    ``classes``: the class list (see :func:`parse_classes`); ``None`` takes the values
    present. 0, the file's nodata value and masked pixels are unlabelled. A raster on another
    grid is refused (:func:`check_same_grid`) unless ``resample=True``, which resamples it onto
    the image's grid by nearest neighbour. Values that are not whole numbers, or not in the
    class list, raise an :class:`~mae_nb.errors.InputError` naming them (with their pixel
    counts) and the expected list.
    """
    crs, transform, shape, ipath = _grid_of(image)
    resampled = False
    with open_raster(path) as src:
        (band,) = check_bands([band], src.count, path)
        diffs = _grid_differences(
            crs, transform, shape, src.crs, src.transform, (src.height, src.width)
        )
        if diffs and not resample:
            check_same_grid(image, path)  # raises, saying what differs
        if diffs:
            raw, resampled = _resample(src, band, crs, transform, shape), True
            unlabelled = raw == 0
        else:
            raw = src.read(band)
            unlabelled = src.read_masks(band) == 0
            if src.nodata is not None:
                unlabelled |= (raw == src.nodata) if np.isfinite(src.nodata) else np.isnan(raw)
    raw = np.asarray(raw)
    if np.issubdtype(raw.dtype, np.floating):
        unlabelled |= ~np.isfinite(raw)
        filled = np.where(unlabelled, 0, raw)
        fractional = filled != np.round(filled)
        if fractional.any():
            examples = ", ".join(f"{v:g}" for v in np.unique(filled[fractional])[:5])
            raise InputError(
                f"the label raster {path} holds values that are not whole numbers ({examples}); a "
                "label raster holds one whole number per class (0 = unlabelled)"
            )
        raw = filled
    raw = np.where(unlabelled, 0, raw).astype(np.int64)
    present, counts = np.unique(raw[raw != 0], return_counts=True)
    if classes is None:
        if present.size == 0:
            raise InputError(f"the label raster {path} has no labelled pixel (all 0 or nodata)")
        values, names = [int(v) for v in present], [f"class {int(v)}" for v in present]
    else:
        values, names = parse_classes(classes)
    outside = [(int(v), int(n)) for v, n in zip(present, counts) if int(v) not in values]
    if outside:
        listed = ", ".join(f"{v} ({n} px)" for v, n in outside[:10])
        more = f" and {len(outside) - 10} more" if len(outside) > 10 else ""
        expected = ", ".join(f"{v} ({n})" for v, n in zip(values, names))
        raise InputError(
            f"the label raster {path} holds values outside the class list: {listed}{more}; "
            f"expected 0 or nodata (unlabelled) and the classes {expected}. Add them to the "
            "class list, or set those pixels to 0"
        )
    labels = np.zeros(raw.shape, np.int64)
    for k, v in enumerate(values, start=1):
        labels[raw == v] = k
    if not (labels > 0).any():
        raise InputError(f"the label raster {path} has no labelled pixel (all 0 or nodata)")
    return LabelMap(labels, values, names, crs, transform, Path(path), resampled)


def tile_regions(split: SpatialSplit, tile_size: int) -> np.ndarray:
    """The split region of each tile of the aligned tile grid: (H // T, W // T) int8.

    Tile ``(i, j)`` covers rows ``i*T .. (i+1)*T`` and columns ``j*T .. (j+1)*T``; its value is
    0 (train), 1 (val) or 2 (test) when all its pixels lie in that region, -1 when it straddles
    regions or touches the buffer. With ``spatial_split(..., block_size=k * T)`` no tile
    straddles (except through the buffer); the last partial row and column of tiles are left out.
    """
    t = int(tile_size)
    h, w = split.regions.shape
    if t < 1 or t > min(h, w):
        raise InputError(f"tile_size must be in [1, {min(h, w)}] for a {h} x {w} scene, got {t}")
    gh, gw = h // t, w // t
    r = split.regions[: gh * t, : gw * t].reshape(gh, t, gw, t).swapaxes(1, 2).reshape(gh, gw, -1)
    lo, hi = r.min(axis=-1), r.max(axis=-1)
    return np.where(lo == hi, lo, -1).astype(np.int8)


def sample_labels(
    split: SpatialSplit,
    label_map: LabelMap,
    fraction: float,
    *,
    seed: int = 0,
    min_per_class: int = 0,
) -> np.ndarray:
    """``fraction`` of each class's training pixels of ``split``: (H, W) bool.

    Seeded and nested across fractions (:func:`mae_nb.data.hsi.subsample_labels`). Each class
    keeps ``max(min_per_class, round(fraction * n))`` of its ``n`` training pixels; a class
    with no training pixel at that fraction (none in the training blocks, or ``round`` giving
    0 with the default ``min_per_class=0``) raises an InputError naming the class, its raster
    value, how many training pixels it has and the smallest fraction that keeps one.
    """
    labels = label_map.labels
    if split.train.shape != labels.shape:
        raise InputError(
            f"the split ({split.train.shape}) and the label map ({labels.shape}) differ in shape"
        )
    names = [
        f"{n}, raster value {v}" for n, v in zip(label_map.class_names, label_map.class_values)
    ]
    train = np.bincount(labels[split.train], minlength=label_map.n_classes + 1)[1:]
    fraction_ok = isinstance(fraction, (int, float)) and 0 < fraction <= 1
    if fraction_ok and min_per_class < 1:
        for k, n in enumerate(train, start=1):
            if n and round(fraction * n) == 0 and (labels == k).any():
                raise InputError(
                    f"label fraction {fraction:g} leaves class {label_map.describe(k)} with no "
                    f"training pixel: it has {n} in the training blocks and round({fraction:g} x "
                    f"{n}) = 0. Use a fraction of at least {0.5 / n:.3g}, or another split"
                )
    return subsample_labels(
        split.train,
        labels,
        fraction,
        seed=seed,
        min_per_class=max(1, min_per_class),
        class_names=names,
    )


def class_colours(n_classes: int) -> list[tuple[int, int, int]]:
    """``n_classes`` distinct RGB colours (0..255) for classes 1..K (matplotlib's tab20)."""
    import matplotlib

    base = matplotlib.colormaps["tab20" if n_classes > 10 else "tab10"]
    return [tuple(int(round(255 * c)) for c in base(i % base.N)[:3]) for i in range(int(n_classes))]


def write_class_map(
    path: str | Path,
    classes: np.ndarray,
    label_map: LabelMap,
    like: Raster,
    *,
    valid: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a classification map as a GeoTIFF with ``like``'s CRS and transform.

    ``classes``: (H, W) class numbers 0..K of ``label_map`` (0 = no prediction); they are
    written as the label raster's values (``class_values``), nodata 0, uint8 (uint16 for values
    above 255), with a colour table, the band description ``"class"`` and the class names in
    the file's tags (``classes``: JSON value -> name). Where ``valid`` is False: 0.
    """
    classes = np.asarray(classes)
    if classes.shape != like.shape:
        raise InputError(
            f"the class map is {classes.shape} but the image is {like.shape[0]} x "
            f"{like.shape[1]} px; predict every pixel of the image"
        )
    if classes.size and (classes.min() < 0 or classes.max() > label_map.n_classes):
        raise InputError(
            f"class numbers must be in 0..{label_map.n_classes}, got "
            f"{int(classes.min())}..{int(classes.max())}"
        )
    lut = np.array([0, *label_map.class_values], np.int64)
    top, low = max(label_map.class_values), min(label_map.class_values)
    dtype = np.uint8 if 0 < low and top <= 255 else np.uint16 if 0 < low and top <= 65535 else None
    values = lut[classes.astype(np.int64)]
    colormap = None
    if dtype is None:
        values = values.astype(np.int32)
    else:
        values = values.astype(dtype)
        colours = class_colours(label_map.n_classes)
        colormap = {0: (0, 0, 0, 0)}
        colormap.update({v: (*c, 255) for v, c in zip(label_map.class_values, colours)})
    table = {str(v): n for v, n in zip(label_map.class_values, label_map.class_names)}
    return write_raster(
        path,
        values,
        crs=like.crs,
        transform=like.transform,
        nodata=0,
        valid=valid,
        band_names=["class"],
        overwrite=overwrite,
        colormap=colormap,
        tags={"classes": json.dumps(table)},
    )
