"""Cutting images into tiles (patches) with their positions, and putting them back together."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def tile_starts(length: int, size: int, stride: int) -> np.ndarray:
    """Start offsets that cover ``length`` with tiles of ``size``; the last tile is flush with the end."""
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
