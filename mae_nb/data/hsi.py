"""Hyperspectral scenes: loaders, per-band standardization, leak-free spatial splits, patches.

Public API (chapters 07-08 and ``mae-nb hsi`` build on exactly these names)::

    HSI_DATASETS                      # registry names of the .mat scenes
    HyperspectralScene                # cube (H, W, B) float32, labels (H, W) int64 (0: unlabelled),
                                      # class_names, wavelengths (B,) or None, name, source, notice
    load_hsi(name="salinas-a", ...)   # a registry scene, or the synthetic one (None or offline);
                                      # "synthetic" / "synthetic-hard" by name
    synthetic_hsi(size=96, bands=128, seed=0, preset="default")   # or preset="hard"
    load_mat_scene(cube_path, labels_path, cube_key=None, labels_key=None, ...)
    load_cube_scene(cube_path, labels_path, ...)  # your own cube: .mat, .npy or GeoTIFF
    load_houston2018(hsi_path, labels_path)       # the GRSS DFC 2018 files, when you have them
    remap_labels(labels, class_ids)   # e.g. Salinas-A's {1, 10, 11, 12, 13, 14} -> 1..6
    Standardizer / fit_standardizer(cube, train_mask)   # per-band mean/std of training pixels
    SpatialSplit / spatial_split(labels, patch_size, ...)   # train/val/test regions + buffer
    leaking_pixels(split)             # test/val pixels that a training patch would cover (0: none)
    LABEL_FRACTIONS / subsample_labels(train_mask, labels, fraction, seed=0)
    PatchDataset(cube, labels=None, mask=None, patch_size=7)   # (patch (B, p, p), target)

Conventions. Labels in a :class:`HyperspectralScene` are 1..K with 0 = unlabelled; the
:class:`PatchDataset` hands out ``target = label - 1`` (0..K-1, and -1 for unlabelled
pixels) so ``F.cross_entropy(..., ignore_index=-1)`` can use it directly.

Why spatial splits: a patch classifier sees a ``patch_size`` x ``patch_size`` window around
each pixel. With a random pixel split, the windows of training pixels cover test pixels,
so the test score measures memory, not generalization (the pitfall noted for MaskedSST's
public code). :func:`spatial_split` cuts the scene into blocks, assigns whole blocks to
train/val/test, and removes a ``buffer`` of pixels around the training region so that no
val/test pixel falls inside any training patch (``buffer >= patch_size // 2``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mae_nb.errors import DataUnavailableError, InputError, MissingFileError

__all__ = [
    "HARD_CLASS_NAMES",
    "HSI_DATASETS",
    "HOUSTON2018_CLASS_NAMES",
    "LABEL_FRACTIONS",
    "HyperspectralScene",
    "PatchDataset",
    "SpatialSplit",
    "SYNTHETIC_NAMES",
    "SYNTHETIC_PRESETS",
    "Standardizer",
    "dilate",
    "fit_standardizer",
    "leaking_pixels",
    "load_hsi",
    "load_hsi_labels",
    "load_houston2018",
    "load_cube_scene",
    "load_mat_scene",
    "remap_labels",
    "spatial_split",
    "subsample_labels",
    "synthetic_hsi",
]

#: Registry names of the hyperspectral scenes distributed as .mat files (GIC UPV/EHU).
HSI_DATASETS = ("salinas-a", "indian-pines", "pavia-university", "salinas", "ksc", "botswana")

#: Label fractions of the label-efficiency study (share of the training labels kept per class,
#: at least one pixel per class: 0.1 % is one or a few labelled pixels per class).
LABEL_FRACTIONS = (0.001, 0.005, 0.01, 0.05, 0.10, 1.0)

#: The 20 classes of the 2018 IEEE GRSS Data Fusion Contest (Houston2018), ids 1..20.
HOUSTON2018_CLASS_NAMES = (
    "Healthy grass",
    "Stressed grass",
    "Artificial turf",
    "Evergreen trees",
    "Deciduous trees",
    "Bare earth",
    "Water",
    "Residential buildings",
    "Non-residential buildings",
    "Roads",
    "Sidewalks",
    "Crosswalks",
    "Major thoroughfares",
    "Highways",
    "Railways",
    "Paved parking lots",
    "Unpaved parking lots",
    "Cars",
    "Trains",
    "Stadium seats",
)


def _aviris(n_channels: int, removed: Sequence[tuple[int, int]]) -> np.ndarray:
    """Approximate band centres (nm): ``n_channels`` spread evenly over 400-2500 nm, minus the
    removed (1-based, inclusive) water-absorption ranges."""
    wl = np.linspace(400.0, 2500.0, n_channels)
    keep = np.ones(n_channels, bool)
    for lo, hi in removed:
        keep[lo - 1 : hi] = False
    return wl[keep]


#: Approximate band centres (nm) where the distributor's band removal is documented. They
#: are evenly spaced over the sensor's range, good for plotting, not for radiometry.
_WAVELENGTHS = {
    "salinas-a": lambda: _aviris(224, [(108, 112), (154, 167), (224, 224)]),
    "salinas": lambda: _aviris(224, [(108, 112), (154, 167), (224, 224)]),
    "indian-pines": lambda: _aviris(220, [(104, 108), (150, 163), (220, 220)]),
    "pavia-university": lambda: np.linspace(430.0, 860.0, 103),
}


# --------------------------------------------------------------------------- the scene


@dataclass
class HyperspectralScene:
    """A hyperspectral cube with its label map.

    ``cube``: (H, W, B) float32 (sensor units for real scenes, reflectance for synthetic);
    ``labels``: (H, W) int64, 1..K for ``class_names[0..K-1]``, 0 = unlabelled;
    ``wavelengths``: (B,) band centres in nm, or None when unknown; ``source``: ``"real"``
    or ``"synthetic"``; ``notice``: why a synthetic scene stands in for a real one ("" else).
    """

    cube: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    wavelengths: np.ndarray | None
    name: str
    source: str
    notice: str = ""

    def __post_init__(self) -> None:
        self.cube = np.asarray(self.cube)
        self.labels = np.asarray(self.labels)
        if self.cube.ndim != 3:
            raise InputError(f"cube must be (H, W, B), got shape {self.cube.shape}")
        if self.labels.shape != self.cube.shape[:2]:
            raise InputError(
                f"labels {self.labels.shape} and cube {self.cube.shape[:2]} (H, W) differ in "
                "spatial shape; the label map must cover the cube pixel for pixel"
            )
        if self.wavelengths is not None and len(self.wavelengths) != self.cube.shape[2]:
            raise InputError(
                f"{len(self.wavelengths)} wavelengths for a cube of {self.cube.shape[2]} bands"
            )
        self.class_names = tuple(self.class_names)
        top = int(self.labels.max()) if self.labels.size else 0
        if self.labels.min(initial=0) < 0 or top > len(self.class_names):
            raise InputError(
                f"labels must be 0 (unlabelled) or 1..{len(self.class_names)} (one per class "
                f"name), found values {int(self.labels.min())}..{top}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, B)."""
        return tuple(self.cube.shape)  # type: ignore[return-value]

    @property
    def n_bands(self) -> int:
        return int(self.cube.shape[2])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def labelled(self) -> np.ndarray:
        """(H, W) bool: pixels with a class label."""
        return self.labels > 0

    def class_counts(self) -> dict[str, int]:
        """Labelled pixels per class name."""
        counts = np.bincount(self.labels.ravel(), minlength=self.n_classes + 1)
        return {name: int(counts[i + 1]) for i, name in enumerate(self.class_names)}

    def class_spectra(self) -> dict[str, np.ndarray]:
        """``{class name: (n_pixels, B) spectra}`` of each labelled class (for
        ``viz.plot_spectra``)."""
        return {
            name: self.cube[self.labels == i + 1]
            for i, name in enumerate(self.class_names)
            if (self.labels == i + 1).any()
        }

    def __repr__(self) -> str:
        h, w, b = self.cube.shape
        return (
            f"HyperspectralScene({self.name!r}, {h} x {w} px x {b} bands, {self.n_classes} "
            f"classes, {int(self.labelled.sum())} labelled px, source={self.source!r})"
        )


def remap_labels(labels: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    """Map original class ids to 1..K: ``class_ids[i]`` becomes ``i + 1``, 0 stays 0.

    labels: (H, W) integers. Any other id is an error (it names the ids found).
    """
    labels = np.asarray(labels)
    lut_size = max(int(labels.max(initial=0)), max(class_ids)) + 1
    lut = np.full(lut_size, -1, np.int64)
    lut[0] = 0
    for i, cid in enumerate(class_ids):
        lut[int(cid)] = i + 1
    out = lut[labels.astype(np.int64)]
    if (out < 0).any():
        unknown = sorted(set(np.unique(labels[out < 0]).tolist()))
        raise InputError(
            f"label ids {unknown} are not among the expected class ids {list(class_ids)}"
        )
    return out


def _check_finite(
    cube: np.ndarray, labels: np.ndarray, name: str, nan: str
) -> tuple[np.ndarray, np.ndarray]:
    """NaN/inf in the cube: raise (``nan="raise"``) or fill with the band mean and unlabel those
    pixels."""
    if nan not in ("raise", "fill"):
        raise InputError(f"nan must be 'raise' or 'fill', got {nan!r}")
    bad = ~np.isfinite(cube)
    if not bad.any():
        return cube, labels
    bad_px = bad.any(axis=2)
    if nan == "raise":
        r, c = np.argwhere(bad_px)[0]
        raise InputError(
            f"the cube of {name!r} has {int(bad.sum())} NaN/inf values in {int(bad_px.sum())} "
            f"pixels (first at row {r}, col {c}); pass nan='fill' to replace them with the band "
            "mean and mark those pixels unlabelled"
        )
    cube = cube.copy()
    for b in np.nonzero(bad.any(axis=(0, 1)))[0]:
        band = cube[..., b]
        finite = np.isfinite(band)
        band[~finite] = band[finite].mean() if finite.any() else 0.0
    labels = np.where(bad_px, 0, labels)
    return cube, labels


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    """Variables of a .mat file (MATLAB v4-v7.2 with scipy; v7.3 with h5py where installed)."""
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
        return {k: v for k, v in data.items() if not k.startswith("__")}
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        try:
            import h5py
        except ImportError:
            raise InputError(
                f"{path} is a MATLAB v7.3 (HDF5) file; install h5py to read it, or re-save it as v7"
            ) from None
        with h5py.File(path, "r") as fh:
            # h5py sees MATLAB arrays transposed (column-major)
            return {k: np.asarray(fh[k]).T for k in fh.keys() if hasattr(fh[k], "shape")}
    except (ValueError, scipy.io.matlab.MatReadError) as exc:
        raise InputError(f"{path} is not a readable .mat file ({exc})") from None


def _pick(variables: dict[str, np.ndarray], key: str | None, path: Path, what: str) -> np.ndarray:
    if key is None:
        if len(variables) == 1:
            return next(iter(variables.values()))
        raise InputError(
            f"{path} holds several variables {sorted(variables)}; name the {what} with its key"
        )
    if key not in variables:
        found = sorted(variables) or "none"
        raise InputError(f"{path} has no variable {key!r} (the {what}); the keys found are {found}")
    return variables[key]


def load_mat_scene(
    cube_path: str | Path,
    labels_path: str | Path,
    *,
    cube_key: str | None = None,
    labels_key: str | None = None,
    class_names: Sequence[str] | None = None,
    class_ids: Sequence[int] | None = None,
    wavelengths: np.ndarray | None = None,
    name: str | None = None,
    nan: str = "raise",
) -> HyperspectralScene:
    """A scene from a cube .mat (H, W, B) and a label .mat (H, W).

    ``cube_key``/``labels_key`` name the variables (optional when a file holds one); a
    missing key raises ``ValueError`` naming the keys found. ``class_ids`` remaps original ids
    to 1..K (Salinas-A). ``nan="raise"`` (default) refuses NaN/inf in the cube; ``"fill"``
    replaces them with the band mean and marks those pixels unlabelled.
    """
    cube_path, labels_path = Path(cube_path), Path(labels_path)
    for p in (cube_path, labels_path):
        if not p.is_file():
            raise MissingFileError(f"no file at {p}")
    cube = _pick(_read_mat(cube_path), cube_key, cube_path, "cube")
    labels = _pick(_read_mat(labels_path), labels_key, labels_path, "label map")
    if cube.ndim != 3:
        raise InputError(f"the cube in {cube_path} must be (H, W, B), got shape {cube.shape}")
    if labels.ndim != 2:
        raise InputError(f"the label map in {labels_path} must be (H, W), got shape {labels.shape}")
    if labels.shape != cube.shape[:2]:
        raise InputError(
            f"label map {labels.shape} ({labels_path.name}) and cube {cube.shape[:2]} "
            f"({cube_path.name}) differ in spatial shape (H, W); are they from the same scene?"
        )
    labels = labels.astype(np.int64)
    if class_ids is not None:
        labels = remap_labels(labels, class_ids)
    if class_names is None:
        class_names = [f"class {i}" for i in range(1, int(labels.max()) + 1)]
    cube = cube.astype(np.float32)
    label = name or cube_path.stem
    cube, labels = _check_finite(cube, labels, label, nan)
    return HyperspectralScene(cube, labels, tuple(class_names), wavelengths, label, "real")


def _read_array(path: Path, key: str | None, what: str, ndim: int) -> np.ndarray:
    """The ``what`` (a cube: ``ndim=3``, a label map: 2) in ``path``: .mat (``key``, or the only
    variable of that many dimensions), .npy, or a raster GDAL reads ((B, H, W) -> (H, W, B))."""
    suffix = path.suffix.lower()
    if suffix == ".mat":
        variables = _read_mat(path)
        if key is None:
            shaped = {k: v for k, v in variables.items() if np.ndim(v) == ndim}
            if len(shaped) == 1:
                variables = shaped
        return np.asarray(_pick(variables, key, path, what))
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"{path} is not a readable .npy array ({exc})") from None
    from mae_nb.data.geotiff import read_raster

    array = read_raster(path).array  # RasterError names a file that is not a raster
    return array[0] if ndim == 2 and array.shape[0] == 1 else np.moveaxis(array, 0, -1)


def load_cube_scene(
    cube_path: str | Path,
    labels_path: str | Path | None,
    *,
    cube_key: str | None = None,
    labels_key: str | None = None,
    name: str | None = None,
    nan: str = "raise",
) -> HyperspectralScene:
    """Your own hyperspectral scene: a cube and its label map, each .mat, .npy or GeoTIFF.

    The cube is (H, W, B) (a .npy of (B, H, W) is accepted when the label map fixes which
    axes are spatial; a GeoTIFF's bands are its B); the label map (H, W) integers, 0 =
    unlabelled, with any class ids (they become 1..K, named ``"class <id>"``). ``cube_key`` /
    ``labels_key`` name a .mat file's variables (optional when only one variable has the right
    number of dimensions). Raises :class:`~mae_nb.errors.MissingFileError` for a missing file
    and :class:`~mae_nb.errors.InputError` for a label map of another spatial shape, before the
    cube is converted or anything trained.
    """
    cube_path = Path(cube_path).expanduser()
    if labels_path is None or str(labels_path) == "":
        raise InputError(
            f"the cube {cube_path.name} needs its label map (H, W; 0 = unlabelled): set LABELS "
            "(labels=...) to a .mat, .npy or GeoTIFF of the same height and width"
        )
    labels_path = Path(labels_path).expanduser()
    for path, what in ((cube_path, "cube"), (labels_path, "label map")):
        if not path.is_file():
            raise MissingFileError(
                f"no file at {path}: expected the {what} as .mat, .npy or GeoTIFF"
                + (" (or a registry scene name)" if what == "cube" else "")
            )
    cube = _read_array(cube_path, cube_key, "cube", 3)
    labels = _read_array(labels_path, labels_key, "label map", 2)
    if cube.ndim != 3:
        raise InputError(f"the cube in {cube_path} must be (H, W, B), got shape {cube.shape}")
    if labels.ndim != 2:
        raise InputError(f"the label map in {labels_path} must be (H, W), got shape {labels.shape}")
    if labels.shape != cube.shape[:2] and labels.shape == cube.shape[1:]:
        cube = np.moveaxis(cube, 0, -1)  # a (B, H, W) array
    if labels.shape != cube.shape[:2]:
        raise InputError(
            f"label map {labels.shape} ({labels_path.name}) and cube {cube.shape[:2]} "
            f"({cube_path.name}) differ in spatial shape (H, W); expected a label map covering "
            "the cube pixel for pixel: are they from the same scene?"
        )
    if not np.issubdtype(labels.dtype, np.integer) and not np.all(np.mod(labels, 1) == 0):
        raise InputError(
            f"the label map in {labels_path} holds non-integer values; expected class ids "
            "(integers, 0 = unlabelled)"
        )
    labels = labels.astype(np.int64)
    if labels.min(initial=0) < 0:
        raise InputError(f"the label map in {labels_path} has negative ids; 0 means unlabelled")
    ids = [int(c) for c in np.unique(labels) if c > 0]
    if not ids:
        raise InputError(f"the label map in {labels_path} has no labelled pixel (all 0)")
    labels = remap_labels(labels, ids)
    label = name or cube_path.stem
    cube, labels = _check_finite(cube.astype(np.float32), labels, label, nan)
    names = tuple(f"class {c}" for c in ids)
    return HyperspectralScene(cube, labels, names, None, label, "real")


def load_houston2018(
    hsi_path: str | Path, labels_path: str | Path, *, nan: str = "raise", name: str = "houston2018"
) -> HyperspectralScene:
    """The 2018 IEEE GRSS DFC hyperspectral scene from the files a user downloaded.

    ``hsi_path``: the 48-band CASI cube (any format GDAL reads: the ENVI ``.hdr``/``.pix``
    pair as distributed, or a GeoTIFF); ``labels_path``: the training ground truth raster
    (``2018_IEEE_GRSS_DFC_GT_TR.tif``, 20 classes, 0 = unlabelled). The ground truth is at
    0.5 m and the cube at 1 m: when both are georeferenced, the cube is cropped to the label
    map's extent; labels at an integer multiple of the cube's resolution are subsampled
    (nearest) onto the cube's grid. Wavelengths: 48 bands evenly over 380-1050 nm.
    """
    import rasterio
    from rasterio.windows import from_bounds

    hsi_path, labels_path = Path(hsi_path), Path(labels_path)
    for p in (hsi_path, labels_path):
        if not p.is_file():
            raise MissingFileError(f"no file at {p}")
    with rasterio.open(labels_path) as src:
        labels = src.read(1).astype(np.int64)
        lab_bounds, lab_res, lab_crs = src.bounds, src.res, src.crs
    with rasterio.open(hsi_path) as src:
        window = None
        if (
            src.crs is not None
            and lab_crs is not None
            and src.transform != rasterio.Affine.identity()
        ):
            window = (
                from_bounds(*lab_bounds, transform=src.transform).round_offsets().round_lengths()
            )
        cube = src.read(window=window).astype(np.float32)  # (B, H, W)
        res = src.res
    cube = np.moveaxis(cube, 0, -1)
    factor = round(res[0] / lab_res[0]) if lab_res[0] else 1
    if factor > 1 and labels.shape[0] >= factor * cube.shape[0] - factor:
        labels = labels[factor // 2 :: factor, factor // 2 :: factor]
    h, w = min(labels.shape[0], cube.shape[0]), min(labels.shape[1], cube.shape[1])
    if abs(labels.shape[0] - cube.shape[0]) > 1 or abs(labels.shape[1] - cube.shape[1]) > 1:
        raise InputError(
            f"label map {labels.shape} and cube {cube.shape[:2]} differ in spatial shape even "
            f"after matching resolutions ({lab_res[0]} m vs {res[0]} m); check the two files "
            "belong together"
        )
    cube, labels = cube[:h, :w], labels[:h, :w]
    if labels.max(initial=0) > len(HOUSTON2018_CLASS_NAMES):
        raise InputError(f"Houston2018 labels go to 20, found {int(labels.max())} in {labels_path}")
    cube, labels = _check_finite(cube, labels, name, nan)
    wl = np.linspace(380.0, 1050.0, cube.shape[2]) if cube.shape[2] == 48 else None
    return HyperspectralScene(cube, labels, HOUSTON2018_CLASS_NAMES, wl, name, "real")


#: Presets of :func:`synthetic_hsi` (``load_hsi("synthetic")``, ``load_hsi("synthetic-hard")``).
SYNTHETIC_PRESETS = ("default", "hard")

#: The classes of the ``"hard"`` synthetic preset: sub-classes with close spectra (a crop at
#: four growth stages, like Salinas's lettuce at 4-7 weeks; forest and orchard; two grasses; dry
#: and wet soil), plus water and roofs.
HARD_CLASS_NAMES = (
    "water",
    "forest",
    "orchard",
    "lettuce 4 weeks",
    "lettuce 5 weeks",
    "lettuce 6 weeks",
    "lettuce 7 weeks",
    "grass",
    "stressed grass",
    "bare soil",
    "wet soil",
    "roofs",
)


def _hard_signatures(wavelengths: np.ndarray) -> np.ndarray:
    """Reflectance spectra (12, B) of :data:`HARD_CLASS_NAMES`: blends of the default scene's
    spectra (:func:`mae_nb.data.synthetic.signatures`), so that sub-classes differ by a few
    hundredths of reflectance."""
    from mae_nb.data.synthetic import signatures

    water, forest, young, mature, grass, soil, urban, _road = signatures(wavelengths)
    # a crop at four growth stages: canopy cover 40 %, 52 %, 64 %, 76 % over bare soil
    lettuce = [c * mature + (1 - c) * soil for c in (0.40, 0.52, 0.64, 0.76)]
    return np.stack(
        [
            water,
            forest,
            0.75 * forest + 0.25 * grass,  # orchard: trees with grass between the rows
            *lettuce,
            grass,
            0.8 * grass + 0.2 * soil,  # stressed grass: sparser, drier
            soil,
            0.8 * soil + 0.2 * water,  # wet soil: darker, water absorption
            urban,
        ]
    ).astype(np.float32)


def _synthetic_hard(size: int, width: int, bands: int, seed: int) -> tuple[np.ndarray, ...]:
    """Cube (H, W, B) float32, labels (H, W) 1..12 and wavelengths of the ``"hard"`` preset.

    Voronoi parcels about 10 px across, each of one class (every class gets an equal share of
    the parcels); per parcel a brightness and (for the crop) a canopy cover that vary; mixed
    pixels twice over: the sensor's point spread (a Gaussian of 1 px) blends the spectra of
    neighbouring parcels at every boundary, and each pixel holds a random sub-pixel share
    (0-25 %) of bare soil or shadow; then sensor noise.
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    h, w = int(size), int(width)
    rng = np.random.default_rng(np.random.PCG64([seed, 12]))
    wl = np.linspace(400.0, 2500.0, int(bands))
    sig = _hard_signatures(wl)
    k = len(sig)
    n_parcels = max(2 * k, round(h * w / 10**2))
    centres = np.column_stack([rng.uniform(0, h, n_parcels), rng.uniform(0, w, n_parcels)])
    rr, cc = np.mgrid[0:h, 0:w]
    _, parcel = cKDTree(centres).query(np.column_stack([rr.ravel(), cc.ravel()]))
    parcel = parcel.reshape(h, w)
    parcel_class = rng.permutation(np.arange(n_parcels) % k)  # balanced: every class, often
    labels = (parcel_class[parcel] + 1).astype(np.int64)
    # within-class variation: brightness per parcel, canopy cover of the crop per parcel
    spectra = sig[parcel_class]  # (n_parcels, B)
    crop = (parcel_class >= 3) & (parcel_class <= 6)
    cover = rng.uniform(-0.05, 0.05, n_parcels)  # +-5 points of canopy cover
    soil = sig[9]
    per_cover = (sig[6] - sig[3]) / 0.36  # d spectrum / d cover = mature crop - soil
    spectra = np.where(crop[:, None], spectra + cover[:, None] * per_cover, spectra)
    spectra = spectra * rng.uniform(0.9, 1.1, n_parcels)[:, None]
    cube = spectra[parcel].astype(np.float32)  # (H, W, B)
    # sub-pixel mixing: a share of bare soil (gaps) or shadow in every pixel
    share = rng.uniform(0.0, 0.25, (h, w, 1)).astype(np.float32)
    other = np.where(rng.uniform(size=(h, w, 1)) < 0.5, soil[None, None, :], 0.3 * cube)
    cube = (1 - share) * cube + share * other
    # texture and the sensor: point spread (mixes neighbouring parcels at boundaries), noise
    cube *= (1 + 0.04 * rng.standard_normal((h, w, 1))).astype(np.float32)
    cube = ndimage.gaussian_filter(cube, sigma=(1.0, 1.0, 0), mode="nearest")
    cube += rng.normal(0, 0.008, cube.shape).astype(np.float32)
    return np.clip(cube, 0.0005, 1.0).astype(np.float32), labels, wl


def synthetic_hsi(
    size: int = 96,
    bands: int = 128,
    seed: int = 0,
    *,
    width: int | None = None,
    notice: str = "",
    preset: str = "default",
) -> HyperspectralScene:
    """A synthetic hyperspectral scene, deterministic for a ``seed``.

    ``preset="default"``: the synthetic scene (:func:`mae_nb.data.synthetic_scene`) as a
    hyperspectral cube; labels are its land-cover classes (every pixel labelled), renumbered
    1..K over the classes present (a small scene may lack some of the 8). Its classes are far
    apart in spectrum: a 3D-CNN is near 100 % with 1 % of the labels.
    ``preset="hard"``: 12 classes with close spectra (:data:`HARD_CLASS_NAMES`: a crop at
    four growth stages, forest and orchard, two grasses, dry and wet soil) in parcels about
    10 px across, with mixed pixels (the point spread blends neighbouring parcels at every
    boundary; each pixel holds a random share of soil or shadow) and more noise: few labels
    leave room for a gain. ``bands`` spread evenly over 400-2500 nm (64-200 typical).
    """
    if int(bands) != bands or bands < 8:
        raise InputError(
            f"a synthetic hyperspectral scene needs at least 8 bands (64-200 typical), got {bands}"
        )
    if preset not in SYNTHETIC_PRESETS:
        raise InputError(f"preset must be one of {SYNTHETIC_PRESETS}, got {preset!r}")
    if preset == "hard":
        for label, value in (("size", size), ("width", size if width is None else width)):
            if int(value) != value or value < 16:
                raise InputError(f"the hard preset needs a {label} of at least 16 px, got {value}")
        cube, labels, wl = _synthetic_hard(size, size if width is None else width, bands, seed)
        return HyperspectralScene(
            cube, labels, HARD_CLASS_NAMES, wl, "synthetic-hard", "synthetic", notice
        )
    from mae_nb.data.synthetic import synthetic_scene

    scene = synthetic_scene(size, width, int(bands), seed)
    cube = np.ascontiguousarray(np.moveaxis(scene.image, 0, -1), dtype=np.float32)
    present = [int(c) for c in np.unique(scene.labels) if c > 0]
    labels = remap_labels(scene.labels, present)  # only the classes this scene holds, as 1..K
    names = tuple(scene.class_names[c - 1] for c in present)
    return HyperspectralScene(
        cube, labels, names, scene.wavelengths.copy(), "synthetic", "synthetic", notice
    )


def load_hsi_labels(name: str, *, download: bool = True) -> tuple[np.ndarray, tuple[str, ...]]:
    """Only the label map of a registry scene: ``(labels (H, W) int64, class_names)``.

    The label maps are small; this lets splits be studied without the cube.
    """
    from mae_nb.data.registry import fetch_file, get

    dataset = get(name)
    if dataset.kind != "hsi-mat":
        raise InputError(
            f"{name!r} is not a hyperspectral scene; choose one of {', '.join(HSI_DATASETS)}"
        )
    meta = dataset.meta
    path = fetch_file(dataset, dataset.files[1], download=download)
    labels = _pick(_read_mat(path), meta["gt_key"], path, "label map").astype(np.int64)
    if meta.get("class_ids"):
        labels = remap_labels(labels, meta["class_ids"])
    return labels, tuple(meta["class_names"])


#: Names :func:`load_hsi` serves without the registry: the synthetic presets.
SYNTHETIC_NAMES = {"synthetic": "default", "synthetic-hard": "hard"}


def load_hsi(
    name: str | None = "salinas-a",
    *,
    download: bool = True,
    size: int = 96,
    bands: int = 128,
    seed: int = 0,
    nan: str = "raise",
    quiet: bool = False,
    labels: str | Path | None = None,
    cube_key: str | None = None,
    labels_key: str | None = None,
) -> HyperspectralScene:
    """A registry hyperspectral scene by ``name``, your own cube by its path, or the synthetic one.

    ``name=None`` or ``"synthetic"`` asks for the synthetic scene directly (``size`` x ``size``
    px, ``bands`` bands, ``seed``); ``"synthetic-hard"`` for its harder preset (12 classes with
    close spectra and mixed pixels, :func:`synthetic_hsi`). When the real scene cannot be had
    (offline, no mirror), a notice is printed and the synthetic scene is returned instead;
    ``.source`` says which you got. Salinas-A's class ids {1, 10, 11, 12, 13, 14} are remapped
    to 1..6. A path (``.mat``, ``.npy`` or GeoTIFF) is your own cube, with its label map
    ``labels`` (and ``cube_key``/``labels_key`` for .mat files): :func:`load_cube_scene`.
    """
    from mae_nb.data.registry import is_path

    notice = ""
    if name is not None and is_path(name):
        return load_cube_scene(name, labels, cube_key=cube_key, labels_key=labels_key, nan=nan)
    if name in SYNTHETIC_NAMES:
        return synthetic_hsi(size, bands, seed, preset=SYNTHETIC_NAMES[name])
    if name is not None:
        from mae_nb.data.registry import announce_fallback, fetch_file, get

        dataset = get(name)
        if dataset.kind != "hsi-mat":
            raise InputError(
                f"{name!r} is not a hyperspectral scene; choose one of {', '.join(HSI_DATASETS)} "
                "(Houston2018: load_houston2018(paths))"
            )
        try:
            cube_path = fetch_file(dataset, dataset.files[0], download=download)
            labels_path = fetch_file(dataset, dataset.files[1], download=download)
        except DataUnavailableError as exc:
            notice = announce_fallback("hyperspectral scene", name, exc, bands, size, quiet)
        else:
            meta = dataset.meta
            wl = _WAVELENGTHS.get(name)
            return load_mat_scene(
                cube_path,
                labels_path,
                cube_key=meta["cube_key"],
                labels_key=meta["gt_key"],
                class_names=meta["class_names"],
                class_ids=meta.get("class_ids"),
                wavelengths=wl() if wl else None,
                name=name,
                nan=nan,
            )
    return synthetic_hsi(size, bands, seed, notice=notice)


# --------------------------------------------------------------------------- standardization


@dataclass
class Standardizer:
    """Per-band standardization ``(x - mean) / std``; ``mean``, ``std``: (B,) float32."""

    mean: np.ndarray
    std: np.ndarray

    def apply(self, cube: np.ndarray) -> np.ndarray:
        """cube: (..., B) -> standardized float32 of the same shape."""
        cube = np.asarray(cube)
        if cube.shape[-1] != self.mean.shape[0]:
            raise InputError(
                f"the standardizer has {self.mean.shape[0]} bands, the cube {cube.shape[-1]}"
            )
        return ((cube - self.mean) / self.std).astype(np.float32)

    __call__ = apply

    def inverse(self, cube: np.ndarray) -> np.ndarray:
        """Back to the cube's units: (..., B)."""
        return (np.asarray(cube) * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Standardizer":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def fit_standardizer(cube: np.ndarray, train_mask: np.ndarray | None = None) -> Standardizer:
    """Per-band mean and std over the pixels of ``train_mask`` (H, W) bool (all pixels if None).

    Fit on training pixels only, so nothing about val/test pixels leaks into the inputs.
    A constant band gets std 1 (it becomes 0 everywhere instead of dividing by zero).
    """
    cube = np.asarray(cube)
    if cube.ndim != 3:
        raise InputError(f"cube must be (H, W, B), got shape {cube.shape}")
    if train_mask is None:
        pixels = cube.reshape(-1, cube.shape[2])
    else:
        train_mask = np.asarray(train_mask, bool)
        if train_mask.shape != cube.shape[:2]:
            raise InputError(
                f"train_mask {train_mask.shape} must match the cube's (H, W) {cube.shape[:2]}"
            )
        if not train_mask.any():
            raise InputError("train_mask selects no pixel; cannot fit a standardizer on nothing")
        pixels = cube[train_mask]
    pixels = pixels.astype(np.float64)
    mean = pixels.mean(axis=0)
    std = pixels.std(axis=0)
    std = np.where(std > 1e-8 * max(1.0, float(np.abs(mean).max(initial=0))), std, 1.0)
    return Standardizer(mean.astype(np.float32), std.astype(np.float32))


# --------------------------------------------------------------------------- spatial splits

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class SpatialSplit:
    """Spatially disjoint train/val/test masks of a label map.

    ``regions``: (H, W) int8, 0 = train, 1 = val, 2 = test, -1 = buffer (in no split);
    ``train``/``val``/``test``: (H, W) bool, the *labelled* pixels of each region.
    ``blocks``: (H, W) int block id of each pixel. Every val/test pixel is more than
    ``buffer`` pixels (Chebyshev distance) from every training-region pixel, so with
    ``buffer >= patch_size // 2`` no val/test pixel lies inside a training patch.
    ``fractions`` (train, val, test) and ``grid`` (rows, cols of blocks): what it was cut with.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    regions: np.ndarray
    blocks: np.ndarray
    patch_size: int
    buffer: int
    seed: int
    n_classes: int
    missing: dict[str, list[int]] = field(default_factory=dict)
    fractions: tuple[float, float, float] | None = None
    grid: tuple[int, int] | None = None

    def mask(self, split: str) -> np.ndarray:
        if split not in SPLIT_NAMES:
            raise InputError(f"split must be one of {SPLIT_NAMES}, got {split!r}")
        return getattr(self, split)

    def describe_missing(self, class_names: Sequence[str] | None = None) -> str:
        """Which classes (ids, and names if given) are missing from which split, in one line:
        ``"every class is in train, val and test"`` when none is."""
        if not any(self.missing.values()):
            return "every class is in train, val and test"

        def name(c: int) -> str:
            return f"{c} ({class_names[c - 1]})" if class_names is not None else str(c)

        parts = [
            f"{s} lacks class{'es' * (len(self.missing[s]) != 1)} "
            + ", ".join(name(c) for c in self.missing[s])
            for s in SPLIT_NAMES
            if self.missing.get(s)
        ]
        return "; ".join(parts)

    def class_counts(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Labelled pixels per class (index 0 = class 1) in each split: ``{split: (K,) int}``."""
        return {
            s: np.bincount(labels[self.mask(s)], minlength=self.n_classes + 1)[1:]
            for s in SPLIT_NAMES
        }


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within Chebyshev distance ``radius`` of ``mask`` (H, W): the union of the
    (2 radius + 1)-wide windows around its pixels, e.g. what patches around them read."""
    if radius <= 0:
        return mask.copy()
    from scipy.ndimage import maximum_filter

    return maximum_filter(
        mask.astype(np.uint8), size=2 * radius + 1, mode="constant", cval=0
    ).astype(bool)


def _block_ids(h: int, w: int, grid: tuple[int, int], block_size: int | None = None) -> np.ndarray:
    gr, gc = grid
    if block_size is not None:  # blocks of block_size px from the top-left corner
        rows, cols = np.arange(h) // block_size, np.arange(w) // block_size
    else:
        rows = np.minimum(np.arange(h) * gr // h, gr - 1)
        cols = np.minimum(np.arange(w) * gc // w, gc - 1)
    return rows[:, None] * gc + cols[None, :]


def _apply_buffer(assign: np.ndarray, blocks: np.ndarray, buffer: int) -> np.ndarray:
    regions = assign[blocks].astype(np.int8)
    near_train = dilate(regions == 0, buffer)
    regions[near_train & (regions != 0)] = -1
    near_val = dilate(regions == 1, buffer)
    regions[near_val & (regions == 2)] = -1
    return regions


def _best_assignment(labels, grid, fr, buffer, seed, attempts, present, n_classes, block_size=None):
    """Seeded random block assignments: (key, regions, missing, blocks, grid) of the best."""
    h, w = labels.shape
    blocks = _block_ids(h, w, grid, block_size)
    n_blocks = grid[0] * grid[1]
    counts = np.zeros((n_blocks, n_classes + 1), np.int64)  # labelled pixels per (block, class)
    np.add.at(counts, (blocks.ravel(), labels.ravel().astype(np.int64)), 1)
    counts = counts[:, 1:]
    class_tot = counts.sum(0).clip(min=1)
    rng = np.random.default_rng(seed)
    candidates = {}
    for _ in range(max(1, attempts)):
        order = rng.permutation(n_blocks)
        share = np.cumsum(counts[order].sum(1)) / max(counts.sum(), 1)
        before = np.concatenate([[0.0], share[:-1]])
        assign = np.zeros(n_blocks, np.int8)  # first blocks to test, then val, the rest to train
        assign[order[before < fr[2]]] = 2
        assign[order[(before >= fr[2]) & (before < fr[2] + fr[1])]] = 1
        per = np.stack([counts[assign == s].sum(0) / class_tot for s in range(3)])
        score = float(np.abs(per - fr[:, None])[:, present - 1].sum())
        candidates.setdefault(assign.tobytes(), (score, assign))
    best = None
    for score, assign in sorted(candidates.values(), key=lambda t: t[0])[:40]:
        regions = _apply_buffer(assign, blocks, buffer)
        missing = {
            s: [int(c) for c in present if not ((regions == i) & (labels == c)).any()]
            for i, s in enumerate(SPLIT_NAMES)
        }
        missing = {k: v for k, v in missing.items() if v}
        key = (
            len(missing.get("train", [])) + len(missing.get("test", [])),
            len(missing.get("val", [])),
            score,
        )
        if best is None or key < best[0]:
            best = (key, regions, missing, blocks, grid)
    return best


def spatial_split(
    labels: np.ndarray,
    patch_size: int,
    *,
    fractions: Sequence[float] = (0.6, 0.1, 0.3),
    grid: tuple[int, int] | str = "auto",
    buffer: int | None = None,
    seed: int = 0,
    attempts: int = 200,
    require_all_classes: bool = True,
    block_size: int | None = None,
) -> SpatialSplit:
    """Cut the scene into a ``grid`` of blocks and assign whole blocks to train/val/test.

    labels: (H, W), 0 = unlabelled, 1..K. ``fractions``: target shares of the labelled
    pixels (train, val, test). ``grid``: (rows, cols) of blocks, e.g. ``(6, 6)`` blocks or
    ``(8, 1)`` horizontal stripes; ``"auto"`` picks blocks about
    ``max(3 * patch_size, min(H, W) / 6)`` px wide. ``buffer`` (default ``patch_size // 2``):
    pixels removed around the training region (and between val and test), so that no val/test
    pixel falls inside a training patch; ``buffer = patch_size - 1`` makes even the input
    windows disjoint. ``block_size`` (px, instead of ``grid``): square blocks aligned at the
    top-left pixel (the last row and column of blocks may be narrower); with a multiple of a
    model's tile size, every tile of the aligned tile grid lies in one block, so a model that
    reads whole tiles never mixes regions (use ``patch_size=1`` for a buffer of 0 px).

    Among ``attempts`` seeded random assignments, the one whose per-class shares are closest
    to ``fractions`` and that puts every class in train and test is kept. If none does, a
    ``ValueError`` names the classes that never reach the test (or train) split and what to
    change; ``require_all_classes=False`` returns the best split anyway (with a warning) and
    records them in ``.missing``. Classes missing from val are warned about and recorded too
    (val serves model selection; its scores then cover fewer classes): no class is ever dropped
    from a split silently (``.missing``, :meth:`SpatialSplit.describe_missing`).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"labels must be (H, W), got shape {labels.shape}")
    if int(patch_size) != patch_size or patch_size < 1 or patch_size % 2 == 0:
        raise InputError(
            f"patch_size must be an odd positive integer (a centre pixel), got {patch_size}"
        )
    fr = np.asarray(fractions, float)
    if fr.shape != (3,) or (fr < 0).any() or fr[0] <= 0 or fr[2] <= 0 or abs(fr.sum() - 1) > 1e-6:
        raise InputError(
            "fractions must be (train, val, test) >= 0 summing to 1 with train, test > 0, got "
            f"{tuple(fractions)}"
        )
    buffer = patch_size // 2 if buffer is None else int(buffer)
    if buffer < 0:
        raise InputError(f"buffer must be >= 0, got {buffer}")
    h, w = labels.shape
    if block_size is not None:
        if int(block_size) != block_size or block_size < 1:
            raise InputError(f"block_size must be a whole number of pixels >= 1, got {block_size}")
        block_size = int(block_size)
        grids = [(-(-h // block_size), -(-w // block_size))]
        if grids[0][0] * grids[0][1] < 2:
            raise InputError(
                f"block_size {block_size} px makes one block of the {h} x {w} scene; a spatial "
                "split needs at least 2 blocks: give a smaller block_size"
            )
    elif isinstance(grid, str):
        if grid != "auto":
            raise InputError(f"grid must be 'auto' or (rows, cols), got {grid!r}")
        # from coarse to fine blocks (never narrower than two patches): the first that works
        smallest = 2 * patch_size + 1
        sides = sorted({max(smallest, min(h, w) / k) for k in (6, 8, 10, 12, 16)}, reverse=True)
        grids = [(max(2, round(h / s)), max(2, round(w / s))) for s in sides]
    else:
        grids = [(int(grid[0]), int(grid[1]))]
        if grids[0][0] * grids[0][1] < 2 or min(grids[0]) < 1 or grids[0][0] > h or grids[0][1] > w:
            raise InputError(
                f"grid must have at least 2 blocks and fit the {h} x {w} scene, got {grid}"
            )
    n_classes = int(labels.max())
    if n_classes < 1:
        raise InputError("the label map has no labelled pixel (all 0)")
    present = np.unique(labels[labels > 0])
    best = None
    for g in dict.fromkeys(grids):
        found = _best_assignment(
            labels, g, fr, buffer, seed, attempts, present, n_classes, block_size
        )
        if best is None or found[0] < best[0]:
            best = found
        if found[0][0] == 0:
            break
    (_, regions, missing, blocks, grid) = best[0], *best[1:]  # type: ignore[index]
    if (missing.get("train") or missing.get("test")) and require_all_classes:
        parts = [f"classes {v} never reach the {k} split" for k, v in missing.items() if k != "val"]
        raise InputError(
            "no spatial split of this label map puts every class in both train and test ("
            + "; ".join(parts)
            + f"; grid {grid}, buffer {buffer} px). Try a finer grid (more, smaller "
            "blocks), a smaller patch_size/buffer, another seed, or require_all_classes=False."
        )
    if missing:
        warnings.warn(
            f"spatial split: classes missing per split: {missing} (grid {grid}, buffer "
            f"{buffer} px)",
            stacklevel=2,
        )
    lab = labels > 0
    return SpatialSplit(
        train=lab & (regions == 0),
        val=lab & (regions == 1),
        test=lab & (regions == 2),
        regions=regions,
        blocks=blocks,
        patch_size=int(patch_size),
        buffer=buffer,
        seed=seed,
        n_classes=n_classes,
        missing=missing,
        fractions=tuple(float(f) for f in fr),
        grid=(int(grid[0]), int(grid[1])),
    )


def leaking_pixels(
    split: SpatialSplit, patch_size: int | None = None, train_mask: np.ndarray | None = None
) -> int:
    """How many val/test pixels fall inside a training patch (``patch_size`` window around a
    training pixel). 0 for a leak-free split. ``train_mask`` defaults to ``split.train``."""
    p = split.patch_size if patch_size is None else int(patch_size)
    train = split.train if train_mask is None else train_mask
    covered = dilate(train, p // 2)
    return int((covered & (split.val | split.test)).sum())


def subsample_labels(
    train_mask: np.ndarray,
    labels: np.ndarray,
    fraction: float,
    *,
    seed: int = 0,
    min_per_class: int = 1,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Keep ``fraction`` of the training labels of each class: (H, W) bool.

    ``train_mask`` and ``labels`` may have any shape, the same for both (e.g. (N, gh, gw) for
    the patches of N tiles); the result has that shape.

    Per class ``max(min_per_class, round(fraction * n_c))`` pixels are drawn (seeded). The
    subsets are nested: for one seed, a smaller fraction's pixels are a subset of a larger
    one's. A class with no training pixel, or a fraction that would leave a class with none
    (``min_per_class=0``), raises a ``ValueError`` naming the class (and its name from
    ``class_names``, where ``class_names[k - 1]`` names label ``k``).
    """

    def name(c: int) -> str:
        if class_names is not None and 1 <= c <= len(class_names):
            return f"class {c} ({class_names[c - 1]})"
        return f"class {c}"

    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise InputError(
            f"fraction must be in (0, 1] (e.g. 0.01 for 1 % of the labels), got {fraction}"
        )
    train_mask = np.asarray(train_mask, bool)
    labels = np.asarray(labels)
    if train_mask.shape != labels.shape:
        raise InputError(f"train_mask {train_mask.shape} and labels {labels.shape} differ in shape")
    out = np.zeros_like(train_mask)
    classes = np.unique(labels[labels > 0])
    for c in classes:
        rc = np.argwhere(train_mask & (labels == c))
        if len(rc) == 0:
            raise InputError(
                f"{name(int(c))} has no training pixel, so no label fraction (here {fraction:g}) "
                "can include it; choose another split (seed, grid or block size) or drop the class"
            )
        k = max(int(min_per_class), int(round(fraction * len(rc))))
        if k == 0:
            raise InputError(
                f"fraction {fraction} leaves {name(int(c))} with no pixel (it has {len(rc)} "
                "training pixels); use a larger fraction or min_per_class=1"
            )
        # one permutation per (seed, class) so subsets are nested across fractions
        perm = np.random.default_rng([seed, int(c)]).permutation(len(rc))
        pick = rc[perm[: min(k, len(rc))]]
        out[tuple(pick.T)] = True
    return out


# --------------------------------------------------------------------------- patches

try:  # torch is a dependency, but keep the data module importable for label-only work
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    _TorchDataset = object  # type: ignore[misc,assignment]


class PatchDataset(_TorchDataset):
    """Patches around pixels of a cube, for per-pixel classification or masked pretraining.

    cube: (H, W, B), already standardized; labels: (H, W) 0..K or None; mask: (H, W) bool,
    the centre pixels to serve (default: every pixel). Item ``i`` is ``(patch, target)``:
    patch (B, patch_size, patch_size) float32 around ``coords[i]``, borders reflect-padded;
    target int64 = ``label - 1`` (0..K-1), or -1 for unlabelled pixels or without labels.
    """

    def __init__(
        self,
        cube: np.ndarray,
        labels: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        patch_size: int = 7,
    ):
        import torch

        cube = np.asarray(cube)
        if cube.ndim != 3:
            raise InputError(f"cube must be (H, W, B), got shape {cube.shape}")
        h, w, _ = cube.shape
        if int(patch_size) != patch_size or patch_size < 1 or patch_size % 2 == 0:
            raise InputError(
                f"patch_size must be an odd positive integer (a centre pixel), got {patch_size}"
            )
        r = patch_size // 2
        if r >= min(h, w):
            raise InputError(
                f"patch_size {patch_size} is too large for a {h} x {w} scene (reflect padding)"
            )
        if not np.isfinite(cube).all():
            raise InputError(
                "the cube has NaN/inf values; load it with nan='fill' or clean it first"
            )
        if labels is not None and np.asarray(labels).shape != (h, w):
            raise InputError(
                f"labels {np.asarray(labels).shape} and cube {(h, w)} differ in spatial shape"
            )
        if mask is not None:
            mask = np.asarray(mask, bool)
            if mask.shape != (h, w):
                raise InputError(f"mask {mask.shape} and cube {(h, w)} differ in spatial shape")
        self.patch_size = int(patch_size)
        self.coords = np.argwhere(mask) if mask is not None else np.argwhere(np.ones((h, w), bool))
        padded = np.pad(cube, ((r, r), (r, r), (0, 0)), mode="reflect")
        # (B, H + 2r, W + 2r), contiguous: a patch is a strided view, stacked by the DataLoader
        self.padded = torch.from_numpy(
            np.ascontiguousarray(np.moveaxis(padded, -1, 0), dtype=np.float32)
        )
        targets = np.full(len(self.coords), -1, np.int64)
        if labels is not None:
            targets = np.asarray(labels, np.int64)[self.coords[:, 0], self.coords[:, 1]] - 1
        self.targets = torch.from_numpy(targets)

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, i: int):
        r, c = self.coords[i]
        p = self.patch_size
        return self.padded[:, r : r + p, c : c + p], self.targets[i]

    def patches(self, index=None):
        """All (or ``index``-selected) patches at once: (N, B, p, p) tensor (no DataLoader)."""
        import torch

        idx = np.arange(len(self)) if index is None else np.asarray(index)
        p = self.patch_size
        windows = self.padded.unfold(1, p, 1).unfold(2, p, 1)  # (B, H, W, p, p) view
        rc = torch.from_numpy(self.coords[idx])
        return windows[:, rc[:, 0], rc[:, 1]].permute(1, 0, 2, 3).contiguous()
