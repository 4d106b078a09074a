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
    check_bands,
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
    is_path,
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
from mae_nb.errors import DataUnavailableError, InputError, MissingFileError, RasterError

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
    "is_path",
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
    "true_colour_bands",
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

    def bands_for(self, in_chans: int, who: str = "the model") -> list[int]:
        """1-based bands of this sample to feed a model taking ``in_chans`` bands.

        A 3-band model gets the true-colour composite (:attr:`rgb`, three distinct bands); any
        other model gets every band when the counts match. Otherwise an
        :class:`~mae_nb.errors.InputError` says what ``who`` takes and what this sample has.
        """
        count = self.raster.count
        if in_chans == 3 and len(set(self.rgb)) == 3:
            return list(self.rgb)
        if in_chans == count:
            return list(range(1, count + 1))
        what = "true colour: red, green, blue" if in_chans == 3 else "one per training band"
        hint = (
            "give an image with red, green and blue bands (RGB_BANDS=[red, green, blue] when "
            "its band descriptions do not name them)"
            if in_chans == 3
            else f"give an image of {in_chans} bands, or choose a model for {count} band(s)"
        )
        raise InputError(
            f"{who} takes {in_chans} bands ({what}); {self.name} ({self.path.name}) has {count} "
            f"band(s){', with no true-colour composite' if in_chans == 3 else ''}: {hint}"
        )

    def check_fits(self, side: int, in_chans: int | None = None, who: str = "the model") -> None:
        """Refuse, before any long work, a scene that cannot give one ``side`` x ``side`` crop.

        Raises :class:`~mae_nb.errors.InputError` when the scene is smaller than one crop, holds
        fewer valid pixels than one crop, or (``in_chans`` given) has a band count ``who``
        cannot take (see :meth:`bands_for`).
        """
        h, w = self.raster.shape
        if h < side or w < side:
            raise InputError(
                f"{self.name} ({self.path.name}) is {h} x {w} px, smaller than one {side} x {side} "
                f"px crop of {who}: give a scene at least {side} px on each side"
            )
        n_valid = int(self.valid.sum())
        if n_valid < side * side:
            raise InputError(
                f"{self.name} ({self.path.name}) has {n_valid} valid pixel(s) (the rest is "
                f"nodata), fewer than one {side} x {side} px crop of {who} ({side * side}): give "
                "a scene with more data, or check its nodata value"
            )
        if in_chans is not None:
            self.bands_for(in_chans, who)

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


_COLOURS = ("red", "green", "blue")
#: Sentinel-2's names of its red, green and blue bands.
_S2_RGB = ("b04", "b03", "b02")


def _colour_of(description: str) -> str | None:
    words = description.lower().replace("_", " ").replace("-", " ").replace("(", " ").split()
    if {"nir", "infrared", "edge", "rededge"} & set(words):
        return None
    for colour, s2 in zip(_COLOURS, _S2_RGB):
        if colour in words or s2 in words:
            return colour
    return None


def true_colour_bands(raster: Raster, rgb_bands=None) -> tuple[list[int], str]:
    """1-based (red, green, blue) bands of ``raster`` and a notice ("" when sure).

    ``rgb_bands`` (three 1-based indexes) wins; else the band descriptions (``red``, ``Green``,
    ``B04`` ...); else, for 3 bands, the file's colour interpretation or the usual order 1, 2,
    3. Otherwise the first three bands (one band: grey) are shown with a notice that says to
    set ``RGB_BANDS``.
    """
    count = raster.count
    if rgb_bands is not None:
        rgb = check_bands(rgb_bands, count, raster.path or "the raster")
        if len(rgb) != 3:
            raise InputError(
                f"RGB_BANDS must name 3 bands (red, green, blue; 1-based), got {list(rgb_bands)}"
            )
        return rgb, ""
    found: dict[str, int] = {}
    for i, description in enumerate(raster.band_names, start=1):
        colour = _colour_of(description or "")
        if colour is not None:
            found.setdefault(colour, i)
    if len(found) == 3:
        return [found[c] for c in _COLOURS], ""
    if count == 3:
        return [1, 2, 3], ""
    rgb = [1, 2, 3] if count > 3 else [1] * 3
    notice = (
        f"NOTICE: the band descriptions of {raster.path} do not say which bands are red, green "
        f"and blue; showing band(s) {sorted(set(rgb))} as {'colour' if count > 3 else 'grey'}. "
        "Set RGB_BANDS=[red, green, blue] (1-based) to choose them."
    )
    return rgb, notice


def _file_sample(path: str | Path, rgb_bands, quiet: bool) -> Sample:
    """A :class:`Sample` of the user's GeoTIFF at ``path`` (``source="real"``)."""
    path = Path(path).expanduser()
    if not path.is_file() and not path.is_dir():
        raise MissingFileError(
            f"no file at {path}: DATA takes a registry name (`mae-nb data list`: "
            f"{', '.join(n for n, d in REGISTRY.items() if d.kind == 'geotiff')}) or the path of "
            "a GeoTIFF (any band count)"
        )
    raster = read_raster(path)
    if not raster.valid.any():
        raise RasterError(
            f"{path} has no valid pixel: every pixel is nodata ({raster.nodata}) or masked; "
            "expected an image with data (check its nodata value)"
        )
    rgb, notice = true_colour_bands(raster, rgb_bands)
    if notice and not quiet:
        print(notice)
    return Sample(path.stem, "real", path, raster, rgb, notice=notice)


def load_sample(
    name: str | Path | None = "landsat7-olinda",
    *,
    bands: int = 6,
    size: int = 256,
    seed: int = 0,
    download: bool = True,
    collar: bool = False,
    quiet: bool = False,
    rgb_bands: list[int] | None = None,
    min_size: int | None = None,
) -> Sample:
    """A real sample by registry ``name`` or a path to your own GeoTIFF; else the synthetic scene.

    ``name=None`` asks for the synthetic scene directly (``bands`` x ``size`` x ``size``,
    ``seed``). When a registry sample is unavailable (offline, no mirror), a notice is printed
    and the synthetic scene with the same band count is returned instead; ``Sample.source``
    says which one you got. A path (:func:`is_path`) is read as it is, any band count, with no
    fallback: a missing file, a file that is not a raster or one without a valid pixel raise
    :class:`~mae_nb.errors.MaeNbError` s saying so. ``rgb_bands``: the file's (red, green,
    blue) bands when its band descriptions do not name them (:func:`true_colour_bands`).
    ``min_size``: the side of the smallest crop the caller takes; a scene smaller than that,
    or with fewer valid pixels than one crop, is refused (:meth:`Sample.check_fits`).
    """
    if name is not None and is_path(name):
        sample = _file_sample(name, rgb_bands, quiet)
        if min_size is not None:
            sample.check_fits(min_size, who="this chapter")
        return sample
    sample = _registry_sample(name, bands, size, seed, download, collar, quiet)
    if rgb_bands is not None:
        sample.rgb, _ = true_colour_bands(sample.raster, rgb_bands)
    if min_size is not None:
        sample.check_fits(min_size, who="this chapter")
    return sample


def _registry_sample(name, bands, size, seed, download, collar, quiet) -> Sample:
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
