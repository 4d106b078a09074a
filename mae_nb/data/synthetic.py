"""A deterministic synthetic scene: georeferenced multi- or hyperspectral image with land cover.

It is what every chapter runs on when no real data is present, so it is built to behave
like a real scene: smooth terrain decides where water and forest go, fields are Voronoi
parcels with their own crop, growth stage and row texture, a river and straight roads cut
across, a town has blocks of roofs and shadows. Each class has a plausible reflectance
spectrum over 400-2500 nm (vegetation's red edge, water's low NIR, soil's rising SWIR,
atmospheric water absorption at 1400 and 1900 nm), sampled at the scene's band centres.
A small blur (the sensor's point spread) and Gaussian noise finish it.

The same ``seed`` and arguments always give the same scene, on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from mae_nb.errors import InputError

#: Land-cover classes of the synthetic scene: label ``i + 1`` is ``CLASS_NAMES[i]``; 0 is none.
CLASS_NAMES = (
    "water",
    "forest",
    "young crop",
    "mature crop",
    "grassland",
    "bare soil",
    "urban",
    "road",
)

#: Band centres (nm) for the multispectral band counts that match real sensors.
SENSOR_BANDS = {
    3: ((660, 560, 485), ("red", "green", "blue")),  # like an RGB GeoTIFF
    4: ((490, 560, 665, 842), ("blue", "green", "red", "nir")),  # Sentinel-2 10 m bands
    6: (
        (485, 560, 660, 835, 1650, 2220),
        ("blue", "green", "red", "nir", "swir1", "swir2"),
    ),  # Landsat ETM+
}


#: The value range of the scene's GeoTIFF: reflectance x 10000 as uint16 (see
#: :meth:`SyntheticScene.to_geotiff`), the data range PSNR and SSIM use for it in every chapter.
SYNTHETIC_VALUE_RANGE = (0.0, 10000.0)


def _g(wl: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((wl - centre) / width) ** 2)


def _s(wl: np.ndarray, centre: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(wl - centre) / width))


def _vegetation(wl, green, red, nir, edge=715.0, swir=0.22):
    """Green peak, chlorophyll red well, red edge at ``edge`` nm, NIR plateau, SWIR leaf water."""
    visible = red + (green - red) * _g(wl, 555, 40)
    plateau = visible + (nir - visible) * _s(wl, edge, 14)
    shortwave = swir * _g(wl, 1650, 200) + 0.55 * swir * _g(wl, 2200, 150)
    to_swir = _s(wl, 1350, 60)
    return plateau * (1 - to_swir) + shortwave * to_swir


def signatures(wavelengths: np.ndarray) -> np.ndarray:
    """Reflectance spectra (n_classes, n_bands) of :data:`CLASS_NAMES` at ``wavelengths`` (nm)."""
    wl = np.asarray(wavelengths, dtype=np.float64)
    water = 0.012 + 0.055 * np.exp(-(wl - 400) / 160) + 0.01 * _g(wl, 560, 40)
    water = np.where(wl > 900, 0.004, water)
    forest = _vegetation(wl, green=0.075, red=0.028, nir=0.34, edge=720, swir=0.15)
    young = 0.5 * _vegetation(wl, green=0.11, red=0.05, nir=0.36, edge=705, swir=0.26) + 0.5 * (
        0.08 + 0.2 * _s(wl, 900, 400)
    )
    mature = _vegetation(wl, green=0.12, red=0.035, nir=0.52, edge=725, swir=0.24)
    grass = _vegetation(wl, green=0.10, red=0.06, nir=0.30, edge=712, swir=0.30)
    soil = 0.07 + 0.26 * _s(wl, 900, 450) - 0.05 * _g(wl, 2200, 60)
    urban = 0.16 + 0.06 * _s(wl, 700, 300) - 0.02 * _g(wl, 2300, 80) + 0.03 * _g(wl, 450, 60)
    road = 0.07 + 0.04 * _s(wl, 1000, 500)
    sig = np.stack([water, forest, young, mature, grass, soil, urban, road])
    # atmospheric water-vapour absorption seen by every land pixel
    atmosphere = 1 - 0.75 * _g(wl, 1400, 35) - 0.85 * _g(wl, 1900, 45) - 0.15 * _g(wl, 940, 20)
    return np.clip(sig * atmosphere, 0.001, 1.0).astype(np.float32)


def band_centres(bands: int) -> tuple[np.ndarray, list[str]]:
    """Band centres (nm) and names for a scene of ``bands`` bands."""
    if bands in SENSOR_BANDS:
        wl, names = SENSOR_BANDS[bands]
        return np.asarray(wl, dtype=np.float64), list(names)
    wl = np.linspace(400, 2500, bands) if bands > 1 else np.asarray([560.0])
    return wl, [f"{w:.0f} nm" for w in wl]


def rgb_bands_for(wavelengths: np.ndarray) -> list[int]:
    """1-based indexes of the bands closest to red (660), green (560) and blue (485 nm)."""
    wl = np.asarray(wavelengths)
    return [int(np.argmin(np.abs(wl - t))) + 1 for t in (660, 560, 485)]


@dataclass
class SyntheticScene:
    """A synthetic scene with its land-cover labels and georeferencing.

    ``image``: (C, H, W) float32 reflectance in [0, 1]; ``labels``: (H, W) uint8.
    ``labels`` hold ``1..len(class_names)`` (0 only under the nodata collar); ``valid`` is False
    under the collar. ``transform`` and ``crs`` place it in UTM zone 33N at ``pixel_size`` metres.
    """

    image: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    wavelengths: np.ndarray
    band_names: list[str]
    class_names: tuple[str, ...]
    transform: object
    crs: object
    seed: int

    @property
    def rgb_bands(self) -> list[int]:
        return rgb_bands_for(self.wavelengths)

    def __repr__(self) -> str:
        c, h, w = self.image.shape
        return (
            f"SyntheticScene({c} bands x {h} x {w}, {len(self.class_names)} classes, "
            f"seed={self.seed})"
        )

    def to_geotiff(
        self,
        path: str | Path,
        labels_path: str | Path | None = None,
        *,
        dtype: str = "uint16",
        overwrite: bool = False,
    ) -> Path:
        """Write the image as GeoTIFF, and the labels too when ``labels_path`` is given.

        The image is reflectance x 10000 as uint16 with nodata 0, or float32.
        """
        from mae_nb.data.geotiff import write_raster

        if dtype == "uint16":
            data = np.clip(np.round(self.image * 10000), 1, 65535).astype(np.uint16)
            nodata: float | None = 0
        elif dtype == "float32":
            data, nodata = self.image.astype(np.float32), float("nan")
        else:
            raise InputError(f"dtype must be 'uint16' or 'float32', got {dtype!r}")
        write_raster(
            path,
            data,
            crs=self.crs,
            transform=self.transform,
            nodata=nodata,
            valid=self.valid,
            band_names=self.band_names,
            overwrite=overwrite,
        )
        if labels_path is not None:
            write_raster(
                labels_path,
                self.labels,
                crs=self.crs,
                transform=self.transform,
                nodata=0,
                band_names=["land cover"],
                overwrite=overwrite,
            )
        return Path(path)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(scale, 0.5), mode="wrap")
    field -= field.mean()
    return field / (field.std() + 1e-12)


def _draw_line(mask: np.ndarray, p0, p1, width: float) -> None:
    h, w = mask.shape
    rr, cc = np.mgrid[0:h, 0:w]
    (r0, c0), (r1, c1) = p0, p1
    dr, dc = r1 - r0, c1 - c0
    length2 = dr * dr + dc * dc + 1e-12
    t = np.clip(((rr - r0) * dr + (cc - c0) * dc) / length2, 0, 1)
    dist = np.hypot(rr - (r0 + t * dr), cc - (c0 + t * dc))
    mask |= dist <= width / 2


def synthetic_scene(
    height: int = 256,
    width: int | None = None,
    bands: int = 6,
    seed: int = 0,
    *,
    pixel_size: float = 10.0,
    noise: float = 0.004,
    collar: bool = False,
    wavelengths: np.ndarray | None = None,
) -> SyntheticScene:
    """Generate a synthetic scene of ``height`` x ``width`` pixels and ``bands`` bands.

    3, 4 and 6 bands follow RGB, Sentinel-2 10 m and Landsat ETM+ band centres; other counts
    are spread evenly over 400-2500 nm (a hyperspectral cube). ``collar=True`` adds a nodata
    collar at two corners, like a Landsat scene's rotated footprint.
    """
    width = height if width is None else width
    for label, value in (("height", height), ("width", width)):
        if int(value) != value or value < 1:
            raise InputError(f"{label} must be a positive number of pixels, got {value}")
    if wavelengths is not None:
        wavelengths = np.asarray(wavelengths, dtype=np.float64)
        bands = len(wavelengths)
        names = [f"{w:.0f} nm" for w in wavelengths]
    if int(bands) != bands or bands < 1:
        raise InputError(
            f"bands must be at least 1 (3-6 for multispectral, 100+ for hyperspectral), got {bands}"
        )
    if wavelengths is None:
        wavelengths, names = band_centres(int(bands))
    h, w = int(height), int(width)
    rng = np.random.default_rng(np.random.PCG64(seed))
    scale = max(min(h, w), 16)

    # terrain: where water collects and where forest grows
    terrain = _smooth_noise(rng, (h, w), scale / 6)
    moisture = _smooth_noise(rng, (h, w), scale / 10)

    # parcels: Voronoi cells, about one per 28 x 28 pixels
    n_parcels = max(4, int(h * w / 28**2))
    seeds = np.column_stack([rng.uniform(0, h, n_parcels), rng.uniform(0, w, n_parcels)])
    rr, cc = np.mgrid[0:h, 0:w]
    from scipy.spatial import cKDTree

    _, parcel = cKDTree(seeds).query(np.column_stack([rr.ravel(), cc.ravel()]))
    parcel = parcel.reshape(h, w)

    # a town around one centre
    town = np.array([rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w])
    town_radius = 0.18 * scale
    seed_r, seed_c = seeds[:, 0].astype(int).clip(0, h - 1), seeds[:, 1].astype(int).clip(0, w - 1)
    parcel_terrain = terrain[seed_r, seed_c]
    parcel_moist = moisture[seed_r, seed_c]
    parcel_town = np.hypot(seeds[:, 0] - town[0], seeds[:, 1] - town[1]) < town_radius
    u = rng.uniform(size=n_parcels)
    parcel_class = np.where(
        parcel_terrain > 0.7,
        2,  # forest on the hills
        np.where(u < 0.35, 3, np.where(u < 0.7, 4, np.where(u < 0.87, 5, 6))),
    )
    parcel_class = np.where((parcel_moist > 0.9) & (parcel_class != 2), 5, parcel_class)
    parcel_class[parcel_town] = 7
    labels = parcel_class[parcel].astype(np.uint8)

    # lakes in the lowest ground and a river across the scene
    water = terrain < np.quantile(terrain, 0.06)
    t = np.linspace(0, 1, 200)
    river_c = w * (0.15 + 0.7 * t)
    river_r = h * (0.5 + 0.3 * np.sin(2 * np.pi * (t * 1.3 + rng.uniform())) * rng.uniform(0.4, 1))
    river = np.zeros((h, w), bool)
    rw = max(2.0, scale / 60)
    for i in range(len(t) - 1):
        lo_r, hi_r = sorted((river_r[i], river_r[i + 1]))
        lo_c, hi_c = sorted((river_c[i], river_c[i + 1]))
        r0, r1 = int(max(lo_r - rw, 0)), int(min(hi_r + rw + 1, h))
        c0, c1 = int(max(lo_c - rw, 0)), int(min(hi_c + rw + 1, w))
        if r0 < r1 and c0 < c1:
            sub = river[r0:r1, c0:c1]
            _draw_line(
                sub,
                (river_r[i] - r0, river_c[i] - c0),
                (river_r[i + 1] - r0, river_c[i + 1] - c0),
                rw,
            )
    labels[water | river] = 1

    # roads: two straight roads through the scene and a grid in town
    roads = np.zeros((h, w), bool)
    road_w = max(1.0, scale / 120)
    for _ in range(2):
        a = rng.uniform(0, np.pi)
        centre = town + rng.normal(0, scale * 0.05, 2)
        d = np.array([np.sin(a), np.cos(a)]) * 2 * scale
        _draw_line(roads, centre - d, centre + d, road_w)
    in_town = np.hypot(rr - town[0], cc - town[1]) < town_radius
    block = max(6, int(scale / 20))
    grid = ((rr - int(town[0])) % block == 0) | ((cc - int(town[1])) % block == 0)
    roads |= grid & in_town
    labels[roads & ~river] = 8

    # spectra and within-class variation
    sig = signatures(wavelengths)  # (K, C)
    soil = sig[5]
    cube = sig[labels - 1]  # (H, W, C)
    brightness = rng.uniform(0.85, 1.15, n_parcels)[parcel]
    growth = rng.uniform(0.0, 0.35, n_parcels)[parcel]  # share of bare soil showing through crops
    crops = (labels == 3) | (labels == 4)
    angle = rng.uniform(0, np.pi, n_parcels)[parcel]
    period = rng.uniform(3, 7, n_parcels)[parcel]
    rows = 0.5 + 0.5 * np.sin(2 * np.pi * (rr * np.cos(angle) + cc * np.sin(angle)) / period)
    soil_share = np.where(crops, growth * (0.6 + 0.8 * rows), 0.0)
    cube = cube * (1 - soil_share[..., None]) + soil[None, None, :] * soil_share[..., None]
    canopy = 1 + 0.12 * _smooth_noise(rng, (h, w), 1.2)
    grass_tex = 1 + 0.06 * _smooth_noise(rng, (h, w), 3)
    texture = np.where(labels == 2, canopy, np.where(labels == 5, grass_tex, 1.0))
    land = labels != 1
    cube *= np.where(land, brightness * texture, 1.0)[..., None]
    # town: roofs (bright), shadows (dark) and gardens (grass) in small blocks
    town_px = labels == 7
    if town_px.any():
        roof_id = (rr // max(2, block // 3)) * 7919 + (cc // max(2, block // 3))
        roof_rng = np.random.default_rng(seed + 1)
        kind = roof_rng.uniform(size=int(roof_id.max()) + 1)[roof_id]
        roof = np.where(kind < 0.25, 0.55, np.where(kind < 0.6, 1.45, 1.0))
        garden = (kind > 0.9) & town_px
        cube[town_px] *= roof[town_px][:, None]
        cube[garden] = sig[4] * 0.9
    # water: depth darkens it, sediment in the river brightens the visible
    sediment = 0.012 * np.exp(-((wavelengths - 500) ** 2) / (2 * 120**2))
    cube[river & (labels == 1)] += sediment.astype(np.float32)

    image = np.moveaxis(cube, -1, 0).astype(np.float32)
    image = ndimage.gaussian_filter(image, sigma=(0, 0.6, 0.6), mode="nearest")
    image += rng.normal(0, noise, image.shape).astype(np.float32)
    image = np.clip(image, 0.0005, 1.0)

    valid = np.ones((h, w), bool)
    if collar:
        valid &= (rr / h + cc / w) > 0.18
        valid &= (rr / h + cc / w) < 1.82
        image[:, ~valid] = 0
        labels = np.where(valid, labels, 0).astype(np.uint8)

    from affine import Affine
    from rasterio.crs import CRS

    transform = Affine(pixel_size, 0, 500_000.0, 0, -pixel_size, 5_300_000.0)
    return SyntheticScene(
        image=image,
        labels=labels,
        valid=valid,
        wavelengths=np.asarray(wavelengths, dtype=np.float64),
        band_names=list(names),
        class_names=CLASS_NAMES,
        transform=transform,
        crs=CRS.from_epsg(32633),
        seed=seed,
    )
