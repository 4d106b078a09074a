"""The BigEarthNet-S2 example patches the course has: images and their multi-label land cover.

Six Sentinel-2 L2A patches (120 x 120 px at 10 m, bands B02, B03, B04 and B08, surface
reflectance x 10000) with their CORINE land-cover labels (several per patch), from the
registry's ``bigearthnet-s2-examples`` (a mirror folder or the cache). Six patches are a demo
of multi-label classification, not a benchmark: a model can be scored leave-one-patch-out,
and only on labels that occur in at least two patches.

    load_bigearthnet(bands=("B04", "B03", "B02")) -> BigEarthNetPatches
    patches.targets(min_count=2) -> ((N, K) 0/1, class names)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mae_nb.data.geotiff import read_raster
from mae_nb.data.registry import fetch
from mae_nb.errors import InputError

__all__ = [
    "BIGEARTHNET",
    "BIGEARTHNET_20M",
    "BIGEARTHNET_BANDS",
    "BIGEARTHNET_PRITHVI",
    "BigEarthNetPatches",
    "load_bigearthnet",
]

#: The registry name of the example patches.
BIGEARTHNET = "bigearthnet-s2-examples"

#: The bands the registry holds for each patch (10 m): blue, green, red, near-infrared.
BIGEARTHNET_BANDS = ("B02", "B03", "B04", "B08")

#: The 20 m bands it holds too (narrow NIR, SWIR1, SWIR2), brought to the 10 m grid on reading.
BIGEARTHNET_20M = ("B8A", "B11", "B12")

#: Prithvi's six HLS bands (blue, green, red, narrow NIR, SWIR1, SWIR2) among Sentinel-2's.
BIGEARTHNET_PRITHVI = ("B02", "B03", "B04", "B8A", "B11", "B12")


@dataclass
class BigEarthNetPatches:
    """The example patches: ``images`` (N, C, 120, 120) float32 (reflectance x 10000, the
    ``bands`` asked for, in that order), ``labels`` (one list of CORINE class names per patch),
    ``names`` (the patch names), ``crs`` and ``transforms`` (one per patch)."""

    images: np.ndarray
    labels: list
    names: list
    bands: tuple
    crs: list
    transforms: list

    def __len__(self) -> int:
        return len(self.images)

    def targets(self, min_count: int = 2) -> tuple[np.ndarray, list[str]]:
        """``((N, K) 0/1, class names)``: the labels that occur in at least ``min_count``
        patches (a label seen once can be learned or tested, never both), sorted by name."""
        counts: dict[str, int] = {}
        for labels in self.labels:
            for name in set(labels):
                counts[name] = counts.get(name, 0) + 1
        names = sorted(n for n, c in counts.items() if c >= int(min_count))
        if not names:
            raise InputError(f"no label occurs in {min_count} patches or more")
        y = np.array([[int(n in labels) for n in names] for labels in self.labels], np.int64)
        return y, names


def load_bigearthnet(bands=("B04", "B03", "B02"), *, download: bool = True) -> BigEarthNetPatches:
    """The six BigEarthNet-S2 example patches with ``bands`` (default true colour: red,
    green, blue) and their labels, from a mirror folder or the cache
    (:func:`mae_nb.data.registry.fetch`; :class:`~mae_nb.errors.DataUnavailableError` says how
    to get them when they are missing). The 20 m bands (:data:`BIGEARTHNET_20M`) are brought
    to the 10 m grid by repeating each pixel over the 2 x 2 pixels it covers;
    ``bands=BIGEARTHNET_PRITHVI`` gives the six bands Prithvi takes, in its order."""
    bands = tuple(bands)
    bad = [b for b in bands if b not in BIGEARTHNET_BANDS + BIGEARTHNET_20M]
    if bad or not bands:
        raise InputError(
            f"bands must be among {list(BIGEARTHNET_BANDS + BIGEARTHNET_20M)} (the 10 m and "
            f"20 m bands the course has), got {list(bands)}"
        )
    files = fetch(BIGEARTHNET, download=download, progress=False)
    patches = sorted({name.split("/")[0] for name in files})
    images, labels, crs, transforms = [], [], [], []
    for patch in patches:
        stack = []
        for band in bands:
            raster = read_raster(Path(files[f"{patch}/{patch}_{band}.tif"]))
            array = raster.array[0].astype(np.float32)
            if band in BIGEARTHNET_20M:  # 60 x 60 at 20 m -> 120 x 120 at 10 m
                array = np.repeat(np.repeat(array, 2, axis=0), 2, axis=1)
            stack.append(array)
        grid = read_raster(Path(files[f"{patch}/{patch}_B02.tif"]))  # the 10 m grid
        crs.append(grid.crs)
        transforms.append(grid.transform)
        images.append(np.stack(stack))
        meta = json.loads(Path(files[f"{patch}/{patch}_labels_metadata.json"]).read_text())
        labels.append(list(meta["labels"]))
    return BigEarthNetPatches(np.stack(images), labels, patches, bands, crs, transforms)
