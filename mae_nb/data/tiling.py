"""Tiling: cut an image into tiles with their positions, put them back, split them for training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mae_nb.data.geotiff import value_range
from mae_nb.errors import InputError


@dataclass
class Tiles:
    """Tiles cut from an image.

    ``tiles``: (N, C, size, size); ``rows``, ``cols``: (N,) top-left pixel of each tile in the
    source image; ``valid``: (N, size, size) bool, the source's valid-pixel mask per tile.
    """

    tiles: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    valid: np.ndarray
    size: int
    image_shape: tuple[int, int]

    def __len__(self) -> int:
        return len(self.tiles)

    def centres_xy(self, transform) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates (x, y) of each tile's centre under an affine ``transform``."""
        from rasterio.transform import xy

        half = self.size / 2 - 0.5
        xs, ys = xy(transform, self.rows + half, self.cols + half, offset="center")
        return np.asarray(xs), np.asarray(ys)

    def blocks(self, size: int) -> np.ndarray:
        """(N,) index of the ``size`` x ``size`` px block of the image each tile's corner is in.

        Blocks are numbered row by row. Overlapping tiles mostly share a block, so a standard
        error clustered by it (:func:`mae_nb.stats.mean_se`) counts blocks, not overlapping
        tiles, as independent samples.
        """
        if int(size) != size or size < 1:
            raise InputError(f"block size must be a positive number of pixels, got {size}")
        per_row = -(-self.image_shape[1] // size)
        return (self.rows // size) * per_row + self.cols // size


def tile_starts(length: int, size: int, stride: int) -> np.ndarray:
    """Start offsets covering ``length`` with tiles of ``size``, the last one flush with the end."""
    if length < size:
        return np.zeros(0, dtype=int)
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return np.asarray(starts, dtype=int)


def tile(
    image: np.ndarray,
    size: int,
    stride: int | None = None,
    valid: np.ndarray | None = None,
    min_valid: float = 1.0,
) -> Tiles:
    """Cut ``image`` (C, H, W) into ``size`` x ``size`` tiles every ``stride`` pixels.

    The tiles cover the whole image (the last row and column of tiles are flush with the
    edges). Tiles whose share of valid pixels is below ``min_valid`` are dropped.
    """
    if image.ndim != 3:
        raise InputError(f"expected an image of shape (C, H, W), got {image.shape}")
    _, h, w = image.shape
    stride = size if stride is None else stride
    if size < 1 or stride < 1:
        raise InputError(f"size and stride must be positive, got size={size}, stride={stride}")
    if size > h or size > w:
        raise InputError(
            f"tile size {size} is larger than the image ({h} x {w} pixels); use a smaller size"
        )
    if not 0 <= min_valid <= 1:
        raise InputError(f"min_valid must be in [0, 1], got {min_valid}")
    valid = np.ones((h, w), bool) if valid is None else np.asarray(valid, bool)
    rs, cs = np.meshgrid(tile_starts(h, size, stride), tile_starts(w, size, stride), indexing="ij")
    rs, cs = rs.ravel(), cs.ravel()
    keep = [
        i
        for i, (r, c) in enumerate(zip(rs, cs))
        if valid[r : r + size, c : c + size].mean() >= min_valid - 1e-9
    ]
    rs, cs = rs[keep], cs[keep]
    tiles = (
        np.stack([image[:, r : r + size, c : c + size] for r, c in zip(rs, cs)])
        if keep
        else np.zeros((0, image.shape[0], size, size), image.dtype)
    )
    masks = (
        np.stack([valid[r : r + size, c : c + size] for r, c in zip(rs, cs)])
        if keep
        else np.zeros((0, size, size), bool)
    )
    return Tiles(tiles, rs, cs, masks, size, (h, w))


def untile(tiles: Tiles, values: np.ndarray | None = None) -> np.ndarray:
    """Put tiles (or per-tile ``values`` (N, C, size, size)) back into an image, averaging overlaps.

    Pixels no tile covers are NaN.
    """
    values = tiles.tiles if values is None else values
    n, c = values.shape[:2]
    h, w = tiles.image_shape
    total = np.zeros((c, h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    s = tiles.size
    for v, r, col in zip(values, tiles.rows, tiles.cols):
        total[:, r : r + s, col : col + s] += v
        count[r : r + s, col : col + s] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    return out.astype(np.float32)


# --------------------------------------------------------------------------- tiles for training


@dataclass
class BandScaler:
    """Per-band linear scaling to [0, 1]: ``(x - low) / (high - low)``, clipped.

    ``low``, ``high``: (C,) percentiles of the training pixels. NaN (nodata) stays NaN.
    """

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> "BandScaler":
        """Percentiles per band of ``image`` (C, H, W) over its finite pixels."""
        a = np.asarray(image, dtype=np.float64)
        low, high = [], []
        for b, band in enumerate(a):
            values = band[np.isfinite(band)]
            if values.size == 0:
                raise InputError(
                    f"band {b + 1} has no valid pixel to scale: every pixel is nodata or NaN"
                )
            lo, hi = np.percentile(values, percentiles)
            low.append(lo)
            high.append(hi if hi > lo else lo + 1.0)
        return cls(np.asarray(low), np.asarray(high))

    def transform(self, array: np.ndarray) -> np.ndarray:
        """``array`` (..., C, H, W) scaled to float32 in [0, 1]."""
        a = np.asarray(array, dtype=np.float64)
        shape = (-1, 1, 1)
        out = (a - self.low.reshape(shape)) / (self.high - self.low).reshape(shape)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def inverse(self, array: np.ndarray) -> np.ndarray:
        """Back from [0, 1] to the image's units (float64)."""
        shape = (-1, 1, 1)
        span = (self.high - self.low).reshape(shape)
        return np.asarray(array, np.float64) * span + self.low.reshape(shape)


@dataclass(frozen=True)
class SourceUnits:
    """Scaled tiles back in the source's units, with the source's data range: how chapters 01-02
    score under the course's convention (:mod:`mae_nb.metrics`).

    ``units(tiles)``: tiles (..., C, H, W) in the scaler's [0, 1] (a model's output is clipped
    to it first, the range the scaling can express) -> float64 tensor in the source's units, NaN
    kept. ``data_range``: the source's (``Sample.data_range``), for PSNR and SSIM.
    """

    scaler: BandScaler
    data_range: float

    def __call__(self, tiles) -> torch.Tensor:
        t = torch.as_tensor(tiles).detach().cpu().double().clamp(0, 1)  # NaN stays NaN
        return torch.from_numpy(self.scaler.inverse(t.numpy()))


@dataclass
class TileSplit:
    """Training and held-out tiles from one image, spatially disjoint.

    ``train``, ``val``: (N, C, size, size) float32 tensors in [0, 1], NaN at nodata.
    ``train_tiles``, ``val_tiles``: their positions (:class:`mae_nb.data.Tiles`, in the
    full image's pixel coordinates). ``train_labels``, ``val_labels``: (N,) majority land-cover
    label per tile when a label map was given, else None. Columns ``>= boundary`` are held out.
    ``data_range``: the source's data range; ``units`` scores scaled tiles in the source's units
    with it (:class:`SourceUnits`).
    """

    train: torch.Tensor
    val: torch.Tensor
    train_tiles: Tiles
    val_tiles: Tiles
    scaler: BandScaler
    boundary: int
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    data_range: float = float("nan")

    @property
    def units(self) -> SourceUnits:
        """How to score this split's tiles under the course's convention (:class:`SourceUnits`)."""
        return SourceUnits(self.scaler, self.data_range)

    def __repr__(self) -> str:
        n, c, h, w = self.train.shape
        return (
            f"TileSplit(train={n} tiles, held out={len(self.val)} tiles, {c} bands x {h} x {w} px, "
            f"held-out strip: columns >= {self.boundary})"
        )


def _majority_labels(labels: np.ndarray, tiles: Tiles) -> np.ndarray:
    s = tiles.size
    out = np.zeros(len(tiles), dtype=np.int64)
    for i, (r, c) in enumerate(zip(tiles.rows, tiles.cols)):
        counts = np.bincount(labels[r : r + s, c : c + s].ravel().astype(np.int64))
        counts[0] = 0  # 0 = unlabelled
        out[i] = int(counts.argmax())
    return out


def tile_split(
    image: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    size: int = 32,
    stride: int | None = None,
    val_fraction: float = 0.25,
    min_valid: float = 0.9,
    labels: np.ndarray | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    data_range: float | None = None,
) -> TileSplit:
    """Tiles of ``image`` (C, H, W) for training and a held-out strip for testing.

    The right ``val_fraction`` of the columns is held out: no training tile overlaps it, so
    held-out scores are not flattered by overlapping pixels. Tiles with less than
    ``min_valid`` valid pixels are dropped; the remaining invalid pixels (``valid`` False,
    or non-finite values) become NaN. Bands are scaled to [0, 1] with the ``percentiles``
    of the training region. ``labels`` (H, W) gives each tile its majority label.
    ``data_range``: the source's data range for scores (pass ``sample.data_range``); default
    :func:`mae_nb.data.value_range` of ``image``, the source's when ``image`` is all of it.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise InputError(f"expected an image of shape (C, H, W), got {image.shape}")
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    c, h, w = image.shape
    a = image.astype(np.float32)
    ok = np.isfinite(a).all(axis=0)
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != (h, w):
            raise InputError(f"valid must have shape (H, W) = {(h, w)}, got {valid.shape}")
        ok &= valid
    a[:, ~ok] = np.nan
    if data_range is None:
        data_range = value_range(image, ok) if ok.any() else 1.0
    if not (np.isfinite(data_range) and data_range > 0):
        raise InputError(f"data_range must be a positive number, got {data_range}")
    boundary = int(round(w * (1 - val_fraction)))
    for name, width in (("training", boundary), ("held-out", w - boundary)):
        if width < size:
            raise InputError(
                f"val_fraction={val_fraction} leaves a {name} strip {width} px wide, narrower "
                f"than one {size} px tile; choose a val_fraction closer to 0.5 or a smaller "
                "tile size"
            )
    train_t = tile(a[:, :, :boundary], size, stride, ok[:, :boundary], min_valid)
    val_t = tile(a[:, :, boundary:], size, stride, ok[:, boundary:], min_valid)
    for name, t in (("training", train_t), ("held-out", val_t)):
        if len(t) == 0:
            raise InputError(
                f"no {name} tiles left after dropping tiles with less than {min_valid:.0%} valid "
                f"pixels (image {h} x {w} px, tile {size} px, {ok.mean():.1%} of the pixels "
                "valid); lower min_valid or the tile size, or check the image's nodata"
            )
    val_t = Tiles(val_t.tiles, val_t.rows, val_t.cols + boundary, val_t.valid, size, (h, w))
    train_t = Tiles(train_t.tiles, train_t.rows, train_t.cols, train_t.valid, size, (h, w))
    scaler = BandScaler.fit(a[:, :, :boundary], percentiles)
    lab_train = lab_val = None
    if labels is not None:
        labels = np.asarray(labels)
        lab_train, lab_val = _majority_labels(labels, train_t), _majority_labels(labels, val_t)
    return TileSplit(
        train=torch.from_numpy(scaler.transform(train_t.tiles)),
        val=torch.from_numpy(scaler.transform(val_t.tiles)),
        train_tiles=train_t,
        val_tiles=val_t,
        scaler=scaler,
        boundary=boundary,
        train_labels=lab_train,
        val_labels=lab_val,
        data_range=float(data_range),
    )
