"""Data for the course: registry, GeoTIFF helpers, synthetic scenes, tiling.

The one call notebooks need is :func:`load_sample`: a real sample when one is cached,
mirrored or downloadable, otherwise the synthetic scene, with a visible notice saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mae_nb.data.geotiff import (
    Raster,
    composite,
    open_raster,
    read_raster,
    read_window,
    stretch,
    value_range,
    with_array,
    write_raster,
)
from mae_nb.data.registry import (
    REGISTRY,
    Dataset,
    RemoteFile,
    announce_fallback,
    cache_dir,
    fetch,
    get,
    locate,
    mirror_dirs,
    status,
)
from mae_nb.data.synthetic import (
    CLASS_NAMES,
    SYNTHETIC_VALUE_RANGE,
    SyntheticScene,
    synthetic_scene,
)
from mae_nb.data.tiling import Tiles, tile, untile
from mae_nb.errors import DataUnavailableError, InputError

__all__ = [
    "CLASS_NAMES",
    "REGISTRY",
    "Dataset",
    "Raster",
    "RemoteFile",
    "Sample",
    "SyntheticScene",
    "Tiles",
    "cache_dir",
    "composite",
    "fetch",
    "get",
    "load_sample",
    "locate",
    "mirror_dirs",
    "open_raster",
    "read_raster",
    "read_window",
    "status",
    "stretch",
    "synthetic_path",
    "synthetic_scene",
    "tile",
    "untile",
    "value_range",
    "with_array",
    "write_raster",
]


@dataclass
class Sample:
    """An image for a chapter: where it came from, its pixels and (when known) its labels.

    ``source`` is ``"real"`` or ``"synthetic"``; ``rgb`` gives the 1-based bands of a true-colour
    composite; ``labels`` is an (H, W) land-cover map (synthetic scenes) or None.
    ``data_range`` is the span PSNR and SSIM use for this source in every chapter (see
    :attr:`data_range`); ``None`` until first asked.
    """

    name: str
    source: str
    path: Path
    raster: Raster
    rgb: list[int]
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    notice: str = ""
    declared_range: tuple[float, float] | None = None

    @property
    def data_range(self) -> float:
        """The course's one data range for this source, used by every PSNR and SSIM of it.

        The range the source declares (registry ``value_range``; the synthetic scene is
        reflectance x 10000, so 0..10000), else :func:`~mae_nb.data.geotiff.value_range` of the
        whole raster (uint8: 255). Never the range of a crop: the same error on the same pixels
        scores the same in every chapter.
        """
        if self.declared_range is not None:
            lo, hi = self.declared_range
            return float(hi - lo)
        return value_range(self.raster.array, self.raster.valid)

    @property
    def image(self) -> np.ndarray:
        return self.raster.array

    @property
    def valid(self) -> np.ndarray:
        return self.raster.valid


def synthetic_path(
    height: int = 256, width: int | None = None, bands: int = 6, seed: int = 0, collar: bool = False
) -> tuple[Path, Path]:
    """GeoTIFFs (image, labels) of a synthetic scene in the cache, written on first use."""
    width = height if width is None else width
    stem = f"synthetic_{height}x{width}_{bands}b_seed{seed}{'_collar' if collar else ''}"
    folder = cache_dir() / "synthetic"
    image, labels = folder / f"{stem}.tif", folder / f"{stem}_labels.tif"
    if not (image.exists() and labels.exists()):
        scene = synthetic_scene(height, width, bands, seed, collar=collar)
        folder.mkdir(parents=True, exist_ok=True)
        tmp_image, tmp_labels = image.with_suffix(".tmp.tif"), labels.with_suffix(".tmp.tif")
        scene.to_geotiff(tmp_image, tmp_labels, overwrite=True)
        tmp_image.replace(image)
        tmp_labels.replace(labels)
    return image, labels


def _real_path(name: str, download: bool) -> Path:
    dataset = get(name)
    if dataset.kind != "geotiff":
        raise InputError(
            f"load_sample reads single GeoTIFF samples; {name!r} is a {dataset.kind} dataset "
            "(use mae_nb.data.fetch for its files)"
        )
    return fetch(name, download=download)[dataset.files[0].name]


def load_sample(
    name: str | None = "landsat7-olinda",
    *,
    bands: int = 6,
    size: int = 256,
    seed: int = 0,
    download: bool = True,
    collar: bool = False,
    quiet: bool = False,
) -> Sample:
    """A real sample by registry ``name``, or the synthetic scene when it cannot be had.

    ``name=None`` asks for the synthetic scene directly (``bands`` x ``size`` x ``size``,
    ``seed``). When a real sample is unavailable (offline, no mirror), a notice is printed
    and the synthetic scene with the same band count is returned instead; ``Sample.source``
    says which one you got.
    """
    notice = ""
    if name is not None:
        try:
            path = _real_path(name, download)
            dataset = get(name)
            raster = read_raster(path)
            if dataset.meta.get("band_names"):
                raster.band_names = list(dataset.meta["band_names"])[: raster.count]
            rgb = dataset.meta.get("rgb", [1, 2, 3] if raster.count >= 3 else [1, 1, 1])
            declared = dataset.meta.get("value_range")
            return Sample(
                name, "real", path, raster, list(rgb),
                declared_range=None if declared is None else tuple(declared),
            )
        except DataUnavailableError as exc:
            notice = announce_fallback("real sample", name, exc, bands, size, quiet)
    image_path, labels_path = synthetic_path(size, size, bands, seed, collar=collar)
    raster = read_raster(image_path)
    labels = read_raster(labels_path).array[0]
    from mae_nb.data.synthetic import band_centres, rgb_bands_for

    rgb = rgb_bands_for(band_centres(bands)[0]) if bands >= 3 else [1] * 3
    return Sample(
        "synthetic", "synthetic", image_path, raster, rgb, labels, CLASS_NAMES, notice,
        declared_range=SYNTHETIC_VALUE_RANGE,
    )
