"""The dataset registry: what the course can use, where it comes from, and how to get it.

Every file is named by its sha256 where it is known. :func:`fetch` looks for a file in
this order, and never uses a file whose hash does not match:

0. the package itself, for the course's own MAEs (``mae_nb/weights``);
1. the cache, ``$MAE_NB_CACHE`` or ``~/.cache/mae-nb`` (sub-folder ``downloads/<dataset>``);
2. local mirror folders, ``$MAE_NB_DATA_MIRRORS`` (folders separated by ``os.pathsep``),
   searched recursively and matched by sha256, so a workshop USB stick or CI's copy of the
   samples is found whatever its layout;
3. the original source, downloaded with pooch (progress bar, hash check; a truncated or
   corrupt download is never left in the cache).

Offline with no copy, :func:`fetch` raises :class:`~mae_nb.errors.DataUnavailableError`
naming the dataset and how to get it; notebooks then fall back to the synthetic scene.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mae_nb.errors import ChecksumError, DatasetNotFoundError, DataUnavailableError

CACHE_ENV = "MAE_NB_CACHE"
#: Files shipped inside the package (the course's own MAEs); found there first.
PACKAGED_DIR = Path(__file__).resolve().parents[1] / "weights"
MIRRORS_ENV = "MAE_NB_DATA_MIRRORS"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset.

    ``url`` is ``None`` for files that are only distributed inside a larger archive (they can
    be used from a mirror folder, never downloaded on their own). ``sha256`` is ``None`` where
    the source publishes no checksum (Meta's checkpoints); such files are checked by size.
    """

    name: str
    url: str | None
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Dataset:
    """A named dataset of the registry."""

    name: str
    title: str
    kind: str  # "geotiff", "geotiff-bands", "hsi-mat", "checkpoint"
    files: tuple[RemoteFile, ...]
    licence: str
    citation: str
    homepage: str
    description: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]

    def file(self, name: str) -> RemoteFile:
        for f in self.files:
            if f.name == name or Path(f.name).name == name:
                return f
        raise DatasetNotFoundError(
            f"dataset {self.name!r} has no file {name!r}; its files are "
            + ", ".join(f.name for f in self.files)
        )


_EHU = "https://www.ehu.eus/ccwintco/uploads"
_EHU_HOME = "https://www.ehu.eus/ccwintco/index.php/Hyperspectral_Remote_Sensing_Scenes"
_EHU_LICENCE = "no licence stated by the distributor; research use with citation"
_EHU_CITE = (
    "Grupo de Inteligencia Computacional (GIC), UPV/EHU, Hyperspectral Remote Sensing Scenes"
)
_META_MAE = "https://dl.fbaipublicfiles.com/mae/visualize"
_META_MAE_PRETRAIN = "https://dl.fbaipublicfiles.com/mae/pretrain"
_MAE_CITE = "He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022"
_MAE_LICENCE = "CC BY-NC 4.0 (facebookresearch/mae)"

_BEN_PATCHES = {
    # patch name: sha256 of B02, B03, B04, B08, then labels_metadata.json
    "S2A_MSIL2A_20170613T101031_87_48": (
        "4a8651e11d4d22891f51e5bf119d06f55a47e2ff7af967642426a54ed1180dee",
        "9260b0fb51556d87c6cb5ed6af8d64a4133f76e197b26d0eefb60c4883aea3b0",
        "d2e072e83425a22344250b73c03e3a5741a5b3662ad0e1162cb6e74c247e064e",
        "9948d03ab5237a7b77f647e0dd17082c1b5c56d84600d7f626971ed998541605",
        "15c1ea9da330cedc7fd11ea4a2cb771e18f01a24c9a708fab552b7c18044e337",
    ),
    "S2A_MSIL2A_20170617T113321_36_85": (
        "51d2a30d94a984eeee4996387383515dcfafe69d1862c2248379eac47cce93a7",
        "3dbd189d68f94e38cba74e8fed519a451e1719364c1f1cfb5204c76f55edc466",
        "3c33a483fc867c6ec0af5c83468fa4de84c629b285f6350f6eebc9e3391e9a2e",
        "3d612b808be610ff9401b22691b2654cd10a3d1cb1406916f1761811a7c375d7",
        "e646df06d140a372ab653c8933de0d80b4563ec85ed8a037ca503f714c726534",
    ),
    "S2A_MSIL2A_20170617T113321_4_55": (
        "fc71d6d50b8ca0ee1f041e8f4d5785186c7674f959d90aa2898ba0ddb30374ce",
        "e71b9300f74f1df6e830abdc5d89ba7177f975d4643546d6d7cce7765834fdec",
        "7ffd3b3f6a4691cc3e6defb0be3f68c7afc3d3fa63c853a4e19bc0e55622fdd7",
        "d74860df7c4089c1738c890faf8c261c564b75f68bed308345acabbf9f40a344",
        "7af263d6f6e420da76787894881b35d2097f2a8c1ad145f25bec06c923360aec",
    ),
    "S2A_MSIL2A_20171221T112501_56_35": (
        "b9d129042ec2aa41d5fe3feffa03c4fb0f700e0660d2cea90e53b7bcd109d2fa",
        "e8d8cfe4388019d733e479873c55cfee8de64f97229a6a038b30808202a6e0a1",
        "b1df1797f43ff5aa7a885589b608c825fa3ef7c934c0f1e55400d477e1649f21",
        "4e666adeff6dfebf0086b95202e619809ed466e5d308b22d39b80a36c68a4a1f",
        "3d8c394bf0e93e3980a2cda2f6247d128ce6d3daa1932c2c5074aa1141888de9",
    ),
    "S2B_MSIL2A_20170924T93020_69_24": (
        "1c038fbef2e7d564097dc3d3984151aea560b5a7222bb172b87a0a11274e237b",
        "b67c0c63ddd0b177e7c1658f04bcbb6c8360e5853dde62699909651b4ec7c91e",
        "05b09be3b0d3496b13e2f7b99ee06d7d6776186c93c8872f15cb6c5fb984f6e6",
        "2faf83104df9e26737ed8953b024dacec393a85a514f8cd42fe4cd3f2e3334eb",
        "2eecf8c11cd675e1651cb1cb268ba3b8201932fea4c62cb58a2ef25741f2d0e0",
    ),
    "S2B_MSIL2A_20180204T94161_57_38": (
        "3157faf92e2181f8541543134c244907ca90ca684bee448dfac36a366bd41045",
        "542e8ecf122006c51d39fcaddaa30009210a59820147bb34a053dfbe6960abf5",
        "d4a3dfb3fe0d310a18f7ab1bf0e4c46df0447f554a0ac2aa32eb86f244dbb161",
        "f7dfb8413f05f977dbf9939060ba7abd5aca81020b2e69ac0d0134b08bd2ef9c",
        "437077c26d5f1fac9f3da4dfed2635b8881cc81314f7019057e95b1efd83f409",
    ),
}

_BEN_20M = {
    # patch name: sha256 of B8A, B11, B12 (60 x 60 px at 20 m)
    "S2A_MSIL2A_20170613T101031_87_48": (
        "c24de8364eb991fc450baa285d798bfe3cf3ddc3e5aac7a5b8cd3b3e53f460af",
        "75b7bc4e871e847e3011f82dce79bb69dbb93746ed2c28ddd83834c559fd343b",
        "37ee04bf3d449692a76ebbfd84b5d76073c3f44ebf98665b353cee11d24524c1",
    ),
    "S2A_MSIL2A_20170617T113321_36_85": (
        "895a199719947c2f14fb0fb8d12a5a9ebbf596c079e1a7ce7125c08008392d37",
        "c211690eab27758a9f144ec94bf222fdcf9c5aea15ca68b55aa08d56a1fa6d85",
        "b724a1517132811b0a2a33618dddc66e2af87c362ef1702fb309af3ee9074821",
    ),
    "S2A_MSIL2A_20170617T113321_4_55": (
        "da638e64753e185127ae6acc1bc8ba854c1454d40689193a42de48bc51f4fca2",
        "83a8e04fbf1f7c03c5b3facaf3f76f460c7162983fd4fefe708ee42459a6aff5",
        "0a21c89ff279faaff5ea427e239ea8a48b8d60e023b06822982cbeaee8e1aedc",
    ),
    "S2A_MSIL2A_20171221T112501_56_35": (
        "4df05411b699b02984a46c91a609e2078a411ec835420c43bf3a068e10c3c2c1",
        "85bba9533c8b6a457b6b3e9019892dcb787829b715248cbb4e105a2156b129b4",
        "c0784c1937eaeb8ac9a571f9c7bcc27198ae1838240250aaa30115ee31e097c2",
    ),
    "S2B_MSIL2A_20170924T93020_69_24": (
        "1a73d498c5ca1ac3c23866af08dccc0b1a789976963baf68fc7e1ead211ff43d",
        "cde444eb789cb87cc8ecb65afcdf17324006605b924e4caf1fb030e1d819b807",
        "5d6d995430a52e2614346faa9bc2bcaebbb09dcfd210e48527228f25e0b2f852",
    ),
    "S2B_MSIL2A_20180204T94161_57_38": (
        "ec279366324749430f03009db3c706015652d3de4dcc44d20f6215602a8f56a8",
        "b701eaea79ed0c115051d69752e95a3a88fa8625e6d7d57ada185366adb1aa19",
        "cc58d2404bb307ea3204085559df87a18d38c02aa5aaf1108e7919500cdf5af5",
    ),
}


def _bigearthnet_files() -> tuple[RemoteFile, ...]:
    files = []
    for patch, hashes in _BEN_PATCHES.items():
        for band, digest in zip(("B02", "B03", "B04", "B08"), hashes[:4]):
            files.append(RemoteFile(f"{patch}/{patch}_{band}.tif", None, digest, 29192))
        for band, digest in zip(("B8A", "B11", "B12"), _BEN_20M[patch]):
            files.append(RemoteFile(f"{patch}/{patch}_{band}.tif", None, digest, 7560))
        files.append(RemoteFile(f"{patch}/{patch}_labels_metadata.json", None, hashes[4]))
    return tuple(files)


def _hsi(name, title, cube, cube_url, cube_key, gt, gt_url, gt_key, classes, shape, **kw):
    return Dataset(
        name=name,
        title=title,
        kind="hsi-mat",
        files=(
            RemoteFile(
                cube, f"{_EHU}/{cube_url}", kw.pop("cube_sha256", None), kw.pop("cube_size", None)
            ),
            RemoteFile(gt, f"{_EHU}/{gt_url}", kw.pop("gt_sha256", None), kw.pop("gt_size", None)),
        ),
        licence=_EHU_LICENCE,
        citation=_EHU_CITE,
        homepage=_EHU_HOME,
        description=kw.pop("description", ""),
        meta={"cube_key": cube_key, "gt_key": gt_key, "class_names": classes, "shape": shape, **kw},
    )


def _meta_mae(name: str, arch: str, title: str, *, norm_pix_loss: bool = False) -> Dataset:
    """One of Meta's MAE checkpoints with its decoder: a ``mae_visualize_vit_*`` demo file (pixel
    targets) or, with ``norm_pix_loss``, a ``mae_pretrain_vit_*_full`` pretraining file trained
    with normalized-pixel targets. Meta publishes neither size nor checksum, so the size is left
    unknown, a mirror's copy is matched by name and a download records its sha256
    (:func:`recorded_sha256_path`)."""
    about = (
        "Meta's MAE pretraining checkpoint with its decoder (encoder and decoder), trained with "
        "normalized-pixel targets (norm_pix_loss): it predicts each masked patch standardized by "
        "that patch's own mean and variance, so its predictions are un-normalized before they are "
        "shown (mae_nb.reconstruct.unnormalize_patches)."
        if norm_pix_loss
        else "Meta's MAE demo checkpoint (encoder and decoder, pixel targets not normalized)."
    )
    folder = _META_MAE_PRETRAIN if norm_pix_loss else _META_MAE
    return Dataset(
        name=name,
        title=title,
        kind="checkpoint",
        files=(RemoteFile(f"{name}.pth", f"{folder}/{name}.pth"),),
        licence=_MAE_LICENCE,
        citation=_MAE_CITE,
        homepage="https://github.com/facebookresearch/mae",
        description=about,
        meta={"arch": arch, **({"norm_pix_loss": True} if norm_pix_loss else {})},
    )


_HF = "https://huggingface.co/ibm-nasa-geospatial"


def _prithvi_checkpoint(name: str, repo: str, file: str, title: str, citation: str, about: str):
    """One of NASA/IBM's Prithvi MAEs (encoder and decoder), a ``torch.save``'d state dict on
    Hugging Face; no checksum is published beside the file, so, as for Meta's, a mirror's copy
    is matched by name and a download records its sha256 (:func:`recorded_sha256_path`)."""
    return Dataset(
        name=name,
        title=title,
        kind="checkpoint",
        files=(RemoteFile(file, f"{_HF}/{repo}/resolve/main/{file}"),),
        licence="Apache-2.0 (ibm-nasa-geospatial on Hugging Face)",
        citation=citation,
        homepage=f"{_HF}/{repo}",
        description=(
            "NASA/IBM's Prithvi: an MAE ViT pretrained on Harmonized Landsat Sentinel-2 (HLS) "
            "surface reflectance x 10000 in six bands (blue, green, red, narrow NIR, SWIR1, "
            f"SWIR2), with its decoder. {about} The course uses it with one time step "
            "(mae_nb.models.prithvi)."
        ),
        meta={"arch": name, "band_names": ["blue", "green", "red", "nir", "swir1", "swir2"]},
    )


#: Licence of the course's own MAEs: the project's, on training data free of restrictions.
_COURSE_LICENCE = (
    "MIT (mae-nb); trained on USGS Landsat 7 (public domain, CC0 / Apache-2.0 samples) and "
    "synthetic scenes"
)


def _course_mae(name: str, title: str, sha256: str, size: int, description: str) -> Dataset:
    """One of the course's own MAEs, shipped inside the package (``mae_nb/weights``) with the
    config that trained it (``NAME.yaml``) and its training log (``NAME_log.csv``)."""
    return Dataset(
        name=name,
        title=title,
        kind="checkpoint",
        files=(RemoteFile(f"{name}.safetensors", None, sha256, size),),
        licence=_COURSE_LICENCE,
        citation=f"mae-nb course model; reproduce: mae-nb mae pretrain --config "
        f"mae_nb/weights/{name}.yaml (make course-models)",
        homepage="https://github.com/mae-nb/mae-nb",
        description=description,
        meta={"arch": "mae_vit_tiny_patch8", "packaged": True},
    )


_DATASETS = [
    Dataset(
        name="landsat7-rgb",
        title="Landsat 7 ETM+ RGB subset (rasterio test image)",
        kind="geotiff",
        files=(
            RemoteFile(
                "RGB.byte.tif",
                "https://github.com/rasterio/rasterio/raw/main/tests/data/RGB.byte.tif",
                "d7cbe932c7ed74a627706a9e9df99f706df3e5abc7d45a49e9d00677a6b09eb4",
                1745956,
            ),
        ),
        licence="CC0 1.0 (rasterio tests/data); Landsat data USGS public domain",
        citation="rasterio project, tests/data/RGB.byte.tif; USGS Landsat 7 ETM+",
        homepage="https://github.com/rasterio/rasterio",
        description=(
            "3 bands (RGB), uint8, ~300 m pixels, nodata 0 collar, EPSG:32618, 791 x 718 px."
        ),
        meta={"value_range": [0, 255]},
    ),
    Dataset(
        name="landsat7-olinda",
        title="Landsat 7 ETM+ 6-band subset around Olinda, Brazil (R package stars)",
        kind="geotiff",
        files=(
            RemoteFile(
                "L7_ETMs.tif",
                "https://github.com/r-spatial/stars/raw/main/inst/tif/L7_ETMs.tif",
                "3b722bf4470144b6691bf720bac08f47c99464acff4dd258252891c06312678e",
                798453,
            ),
        ),
        licence="Apache-2.0 (stars package); USGS Landsat public domain",
        citation="Pebesma, stars: Spatiotemporal Arrays, inst/tif/L7_ETMs.tif; USGS Landsat 7 ETM+",
        homepage="https://github.com/r-spatial/stars",
        description=(
            "6 bands (ETM+ 1,2,3,4,5,7: blue, green, red, NIR, SWIR1, SWIR2), uint8, 28.5 m, "
            "EPSG:31985, 349 x 352 px."
        ),
        meta={
            "band_names": ["blue", "green", "red", "nir", "swir1", "swir2"],
            "rgb": [3, 2, 1],
            "value_range": [0, 255],
        },
    ),
    Dataset(
        name="bigearthnet-s2-examples",
        title="BigEarthNet-S2 v1.0 example patches (10 m bands and labels)",
        kind="geotiff-bands",
        files=_bigearthnet_files(),
        licence="CDLA-Permissive-1.0; contains modified Copernicus Sentinel data 2017-2018",
        citation=(
            "Sumbul et al., BigEarthNet: A Large-Scale Benchmark Archive for Remote Sensing "
            "Image Understanding, IGARSS 2019"
        ),
        homepage="https://bigearth.net",
        description=(
            "6 Sentinel-2 L2A patches, 120 x 120 px at 10 m, bands B02/B03/B04/B08 (uint16 "
            "reflectance x 10000) and B8A/B11/B12 at 20 m (60 x 60 px; with B02-B04 the six "
            "bands Prithvi takes), CORINE labels. Distributed only inside the BigEarthNet "
            "archive: use a mirror folder."
        ),
        meta={
            "band_names": ["B02", "B03", "B04", "B08"],
            "bands_20m": ["B8A", "B11", "B12"],
            "rgb": [3, 2, 1],
            "patches": list(_BEN_PATCHES),
            "value_range": [0, 10000],  # surface reflectance x 10000
        },
    ),
    _hsi(
        "salinas-a",
        "Salinas-A (AVIRIS sub-scene)",
        "SalinasA_corrected.mat",
        "1/1a/SalinasA_corrected.mat",
        "salinasA_corrected",
        "SalinasA_gt.mat",
        "a/aa/SalinasA_gt.mat",
        "salinasA_gt",
        [
            "Brocoli_green_weeds_1",
            "Corn_senesced_green_weeds",
            "Lettuce_romaine_4wk",
            "Lettuce_romaine_5wk",
            "Lettuce_romaine_6wk",
            "Lettuce_romaine_7wk",
        ],
        (83, 86, 204),
        cube_sha256="d75684ed3ab71a1024cee0f9db9061f50a3523a92ff5edfbbb1eed976b9f1721",
        cube_size=1539086,
        gt_sha256="17814c1d3296c0e29b27f320f2c4174d2a68adb87e376abe78f02923e2c2e454",
        gt_size=587,
        class_ids=[1, 10, 11, 12, 13, 14],
        description=(
            "83 x 86 px, 204 bands, 3.7 m, 6 classes (original Salinas ids 1,10-14, remapped "
            "to 1-6)."
        ),
    ),
    _hsi(
        "indian-pines",
        "Indian Pines (AVIRIS)",
        "Indian_pines_corrected.mat",
        "6/67/Indian_pines_corrected.mat",
        "indian_pines_corrected",
        "Indian_pines_gt.mat",
        "c/c4/Indian_pines_gt.mat",
        "indian_pines_gt",
        [
            "Alfalfa",
            "Corn-notill",
            "Corn-mintill",
            "Corn",
            "Grass-pasture",
            "Grass-trees",
            "Grass-pasture-mowed",
            "Hay-windrowed",
            "Oats",
            "Soybean-notill",
            "Soybean-mintill",
            "Soybean-clean",
            "Wheat",
            "Woods",
            "Buildings-Grass-Trees-Drives",
            "Stone-Steel-Towers",
        ],
        (145, 145, 200),
        gt_sha256="65c4687a8ab04f6da4789799bc3bc4f6e88bccac3ed6a2e6ae367e5e6b9e429c",
        gt_size=1125,
        description="145 x 145 px, 200 bands, 20 m, 16 classes.",
    ),
    _hsi(
        "pavia-university",
        "Pavia University (ROSIS)",
        "PaviaU.mat",
        "e/ee/PaviaU.mat",
        "paviaU",
        "PaviaU_gt.mat",
        "5/50/PaviaU_gt.mat",
        "paviaU_gt",
        [
            "Asphalt",
            "Meadows",
            "Gravel",
            "Trees",
            "Painted metal sheets",
            "Bare Soil",
            "Bitumen",
            "Self-Blocking Bricks",
            "Shadows",
        ],
        (610, 340, 103),
        gt_sha256="23f6a426928f9b32984adffe659e29f554f9fb6c93b5a107528d308d5087a829",
        gt_size=11005,
        description="610 x 340 px, 103 bands, 1.3 m, 9 classes.",
    ),
    _hsi(
        "salinas",
        "Salinas (AVIRIS)",
        "Salinas_corrected.mat",
        "a/a3/Salinas_corrected.mat",
        "salinas_corrected",
        "Salinas_gt.mat",
        "f/fa/Salinas_gt.mat",
        "salinas_gt",
        [
            "Brocoli_green_weeds_1",
            "Brocoli_green_weeds_2",
            "Fallow",
            "Fallow_rough_plow",
            "Fallow_smooth",
            "Stubble",
            "Celery",
            "Grapes_untrained",
            "Soil_vinyard_develop",
            "Corn_senesced_green_weeds",
            "Lettuce_romaine_4wk",
            "Lettuce_romaine_5wk",
            "Lettuce_romaine_6wk",
            "Lettuce_romaine_7wk",
            "Vinyard_untrained",
            "Vinyard_vertical_trellis",
        ],
        (512, 217, 204),
        gt_sha256="ecfab4d31ef5553f097943235d8ea502038eb4a2067b2ad10b33e37c949955e2",
        gt_size=4277,
        description="512 x 217 px, 204 bands, 3.7 m, 16 classes.",
    ),
    _hsi(
        "ksc",
        "Kennedy Space Center (AVIRIS)",
        "KSC.mat",
        "2/26/KSC.mat",
        "KSC",
        "KSC_gt.mat",
        "a/a6/KSC_gt.mat",
        "KSC_gt",
        [
            "Scrub",
            "Willow swamp",
            "Cabbage palm hammock",
            "Cabbage palm/oak hammock",
            "Slash pine",
            "Oak/broadleaf hammock",
            "Hardwood swamp",
            "Graminoid marsh",
            "Spartina marsh",
            "Cattail marsh",
            "Salt marsh",
            "Mud flats",
            "Water",
        ],
        (512, 614, 176),
        description="512 x 614 px, 176 bands, 18 m, 13 classes.",
    ),
    _hsi(
        "botswana",
        "Botswana (Hyperion)",
        "Botswana.mat",
        "7/72/Botswana.mat",
        "Botswana",
        "Botswana_gt.mat",
        "5/58/Botswana_gt.mat",
        "Botswana_gt",
        [
            "Water",
            "Hippo grass",
            "Floodplain grasses 1",
            "Floodplain grasses 2",
            "Reeds",
            "Riparian",
            "Firescar",
            "Island interior",
            "Acacia woodlands",
            "Acacia shrublands",
            "Acacia grasslands",
            "Short mopane",
            "Mixed mopane",
            "Exposed soils",
        ],
        (1476, 256, 145),
        description="1476 x 256 px, 145 bands, 30 m, 14 classes.",
    ),
    _meta_mae("mae_visualize_vit_base", "mae_vit_base_patch16", "Meta MAE ViT-Base/16 (visualize)"),
    _meta_mae(
        "mae_visualize_vit_large", "mae_vit_large_patch16", "Meta MAE ViT-Large/16 (visualize)"
    ),
    _meta_mae(
        "mae_visualize_vit_large_ganloss",
        "mae_vit_large_patch16",
        "Meta MAE ViT-Large/16 with GAN loss (visualize)",
    ),
    _meta_mae("mae_visualize_vit_huge", "mae_vit_huge_patch14", "Meta MAE ViT-Huge/14 (visualize)"),
    _meta_mae(
        "mae_pretrain_vit_base_full",
        "mae_vit_base_patch16",
        "Meta MAE ViT-Base/16 pretraining checkpoint with decoder (normalized-pixel targets)",
        norm_pix_loss=True,
    ),
    _meta_mae(
        "mae_pretrain_vit_large_full",
        "mae_vit_large_patch16",
        "Meta MAE ViT-Large/16 pretraining checkpoint with decoder (normalized-pixel targets)",
        norm_pix_loss=True,
    ),
    _meta_mae(
        "mae_pretrain_vit_huge_full",
        "mae_vit_huge_patch14",
        "Meta MAE ViT-Huge/14 pretraining checkpoint with decoder (normalized-pixel targets)",
        norm_pix_loss=True,
    ),
    # NASA/IBM's Prithvi (six HLS bands; mae_nb.models.prithvi maps its files)
    _prithvi_checkpoint(
        "prithvi_eo_v1_100m",
        "Prithvi-EO-1.0-100M",
        "Prithvi_EO_V1_100M.pt",
        "Prithvi-EO-1.0-100M (NASA/IBM, HLS over the contiguous US)",
        "Jakubik et al., Foundation Models for Generalist Geospatial Artificial Intelligence, "
        "arXiv:2310.18660, 2023",
        "ViT-B/16 (768-dim x 12 blocks, decoder 512-dim x 8), 3 time steps, 224 px; about 0.45 GB.",
    ),
    _prithvi_checkpoint(
        "prithvi_eo_v2_300m",
        "Prithvi-EO-2.0-300M",
        "Prithvi_EO_V2_300M.pt",
        "Prithvi-EO-2.0-300M (NASA/IBM, global HLS)",
        "Szwarcman et al., Prithvi-EO-2.0: A Versatile Multi-Temporal Foundation Model for "
        "Earth Observation Applications, arXiv:2412.02732, 2024",
        "ViT-L/16 (1024-dim x 24 blocks, decoder 512-dim x 8), 4 time steps, 224 px; about 1.3 GB.",
    ),
    # the course's own MAEs (mae_nb/weights; make course-models retrains them)
    _course_mae(
        "mae_tiny_course_rgb",
        "mae-nb course MAE, true colour (red, green, blue)",
        "b7b95555783479c90854a7946f1c753fa044f0314c37aaa41706f12bc58c6af3",
        4580776,
        "The course's open RGB MAE: tiny ViT MAE (patch 8, 64 px input, 2.3 M parameters, "
        "fp16), trained by mae-nb mae pretrain on landsat7-rgb and landsat7-olinda (true "
        "colour; the right 25 % of each held out) and 8 synthetic scenes, masking 25-75 %. Each"
        " image is standardized by its own per-band statistics.",
    ),
    _course_mae(
        "mae_tiny_course_6band",
        "mae-nb course MAE, 6 Landsat-like bands (blue, green, red, NIR, SWIR1, SWIR2)",
        "6b92589ffafa5baa948ca99d885380807ddf2fcad69bd188cd563b4b72b04075",
        4704888,
        "The course's open 6-band MAE: tiny ViT MAE (patch 8, 64 px input, fp16), trained by "
        "mae-nb mae pretrain on landsat7-olinda (ETM+ bands 1-5, 7; the right 25 % held out) "
        "and 8 synthetic 6-band scenes, masking 25-75 %. Each image is standardized by its own "
        "per-band statistics.",
    ),
    # end of the course's own MAEs
]

REGISTRY: dict[str, Dataset] = {d.name: d for d in _DATASETS}


# --------------------------------------------------------------------------- look-ups


def get(name: str) -> Dataset:
    """The registry entry called ``name``; an unknown name lists the close ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise DatasetNotFoundError(
            f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(sorted(REGISTRY))} "
            "(`mae-nb data list` shows them)."
        ) from None


def is_path(value: str | Path) -> bool:
    """Whether ``value`` names a file of the user's rather than a registry entry.

    A :class:`~pathlib.Path`, or a string that is not a registry name and has a folder
    separator, a leading ``~``, a file suffix (``scene.tif``, ``cube.mat``) or names an existing
    file. Registry names have none of these, so a mistyped name still gets the registry's
    "did you mean" error rather than "no such file".
    """
    if isinstance(value, Path):
        return True
    text = str(value)
    if text in REGISTRY:
        return False
    return (
        "/" in text
        or "\\" in text
        or text.startswith("~")
        or Path(text).suffix != ""
        or Path(text).is_file()
    )


def cache_dir() -> Path:
    """Root of mae-nb's cache: ``$MAE_NB_CACHE`` or ``~/.cache/mae-nb``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "mae-nb"


def mirror_dirs() -> list[Path]:
    """Folders named by ``$MAE_NB_DATA_MIRRORS`` that exist."""
    raw = os.environ.get(MIRRORS_ENV, "")
    return [
        Path(p).expanduser() for p in raw.split(os.pathsep) if p and Path(p).expanduser().is_dir()
    ]


def sha256sum(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def recorded_sha256_path(path: str | Path) -> Path:
    """Where the sha256 of a downloaded file without a published checksum is recorded.

    Meta's and Prithvi's checkpoints publish no checksum: their first download records its
    sha256 in ``<file>.sha256`` beside it, and every later use checks the file against it, so a
    cached copy damaged after the download is noticed (and fetched again) instead of loaded.
    """
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _recorded_sha256(path: Path) -> str | None:
    record = recorded_sha256_path(path)
    if not record.is_file():
        return None
    words = record.read_text().split()
    return words[0] if words else None


def _matches(path: Path, f: RemoteFile) -> bool:
    if f.size is not None and path.stat().st_size != f.size:
        return False
    expected = f.sha256 or _recorded_sha256(path)
    return expected is None or sha256sum(path) == expected


def packaged_path(f: RemoteFile) -> Path | None:
    """The copy of ``f`` shipped inside the package (:data:`PACKAGED_DIR`), if it matches."""
    p = PACKAGED_DIR / Path(f.name).name
    return p if p.is_file() and _matches(p, f) else None


def cached_path(dataset: Dataset, f: RemoteFile) -> Path:
    return cache_dir() / "downloads" / dataset.name / f.name


def find_in_mirrors(f: RemoteFile) -> Path | None:
    """A file in a mirror folder with ``f``'s sha256 (same name first, then same size).

    A file with the right name but the wrong hash is never used: it is skipped with a warning.
    Without a known sha256 only a file of the same name (and size, if known) is accepted.
    """
    basename = Path(f.name).name
    for root in mirror_dirs():
        by_name = sorted(root.rglob(basename))
        for cand in by_name:
            if cand.is_file() and _matches(cand, f):
                return cand
            if cand.is_file():
                warnings.warn(
                    f"ignoring {cand}: its checksum does not match the registry's for {f.name}",
                    stacklevel=3,
                )
        if f.sha256 is None or f.size is None:
            continue
        for cand in root.rglob("*"):
            if cand.is_file() and cand.name != basename and cand.stat().st_size == f.size:
                if sha256sum(cand) == f.sha256:
                    return cand
    return None


def locate(name: str) -> dict[str, Path] | None:
    """Local paths of every file of dataset ``name`` (cache or mirror), or None if any is missing.

    Never downloads. A cached file with a wrong checksum is ignored (``fetch`` replaces it).
    """
    dataset = get(name)
    paths = {}
    for f in dataset.files:
        if packaged_path(f) is not None:
            paths[f.name] = packaged_path(f)
            continue
        p = cached_path(dataset, f)
        if p.is_file() and _matches(p, f):
            paths[f.name] = p
            continue
        m = find_in_mirrors(f)
        if m is None:
            return None
        paths[f.name] = m
    return paths


def size_text(size: int | None) -> str:
    """A file size as people read it (``"1.2 MB"``, decimal units), ``"unknown"`` when the
    source publishes none."""
    if size is None:
        return "unknown"
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def status(name: str) -> str:
    """``"packaged"`` (shipped with mae-nb), ``"cached"`` (all files in the cache), ``"mirror"``
    (some from a mirror) or ``"missing"``."""
    dataset = get(name)
    where = locate(name)
    if where is None:
        return "missing"
    if all(packaged_path(f) is not None for f in dataset.files):
        return "packaged"
    if all(where[f.name] == cached_path(dataset, f) for f in dataset.files):
        return "cached"
    return "mirror"


def _how_to_get(dataset: Dataset) -> str:
    if dataset.meta.get("packaged"):
        return (
            f"It ships inside mae-nb ({PACKAGED_DIR}); reinstall mae-nb, or retrain it with "
            "`make course-models`."
        )
    return (
        f"Get it from {dataset.homepage} and either put the files ("
        + ", ".join(Path(f.name).name for f in dataset.files)
        + f") in a folder named by ${MIRRORS_ENV}, or run `mae-nb data fetch {dataset.name}` "
        "on a machine with internet access."
    )


def _download(dataset: Dataset, f: RemoteFile, progress: bool) -> Path:
    import pooch

    target = cached_path(dataset, f)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not _matches(target, f):
        warnings.warn(
            f"cached {target} does not match the registry's checksum; downloading it again",
            stacklevel=3,
        )
        target.unlink()
    known_hash = f"sha256:{f.sha256}" if f.sha256 else None
    try:
        path = pooch.retrieve(
            url=f.url,
            known_hash=known_hash,
            fname=Path(f.name).name,
            path=target.parent,
            progressbar=progress,
        )
    except ValueError as exc:  # pooch's hash mismatch; the partial file is already removed
        raise ChecksumError(
            f"the download of {f.name} for dataset {dataset.name!r} from {f.url} is corrupt or "
            f"truncated ({exc}); nothing was kept in the cache. Try again, or "
            + _how_to_get(dataset)
        ) from None
    except Exception as exc:  # network errors: requests, urllib3, socket
        raise DataUnavailableError(
            f"dataset {dataset.name!r} is not cached, not in a mirror folder, and could not be "
            f"downloaded from {f.url} ({type(exc).__name__}: {exc}). {_how_to_get(dataset)}"
        ) from None
    path = Path(path)
    size = path.stat().st_size
    if f.size is not None and size != f.size:
        path.unlink()
        raise ChecksumError(
            f"the download of {f.name} from {f.url} has {size} bytes, expected {f.size}; "
            "it was removed from the cache. Try again."
        )
    if f.sha256 is None:  # none published: record this download's, checked at every later use
        digest = sha256sum(path)
        recorded_sha256_path(path).write_text(f"{digest}  {f.url}\n")
        print(
            f"{f.name}: no checksum is published; recorded this download's sha256 {digest} in "
            f"{recorded_sha256_path(path)} (later uses of the cached file are checked against it)."
        )
    return path


def fetch_file(
    dataset: Dataset, f: RemoteFile, *, progress: bool = True, download: bool = True
) -> Path:
    """The local path of one file ``f`` of ``dataset``: cache, then mirrors, then download.

    Raises :class:`DataUnavailableError`, saying how to get the file, when it can be neither
    found nor downloaded (``download=False`` forbids downloading). Files shipped inside the
    package (:data:`PACKAGED_DIR`) come first.
    """
    packaged = packaged_path(f)
    if packaged is not None:
        return packaged
    cached = cached_path(dataset, f)
    if cached.is_file() and _matches(cached, f):
        return cached
    mirrored = find_in_mirrors(f)
    if mirrored is not None:
        return mirrored
    if f.url is None or not download:
        reason = (
            "is distributed only inside a larger archive"
            if f.url is None
            else "is not cached and downloads are off"
        )
        raise DataUnavailableError(
            f"dataset {dataset.name!r}: file {f.name} {reason} and no mirror folder holds it. "
            + _how_to_get(dataset)
        )
    return _download(dataset, f, progress)


def fetch(name: str, *, progress: bool = True, download: bool = True) -> dict[str, Path]:
    """Local paths of every file of dataset ``name``: cache, then mirrors, then download.

    Returns ``{file name: path}``. Raises :class:`DatasetNotFoundError` for an unknown name
    and :class:`DataUnavailableError` when a file can be neither found nor downloaded.
    """
    dataset = get(name)
    return {
        f.name: fetch_file(dataset, f, progress=progress, download=download) for f in dataset.files
    }


def announce_fallback(
    what: str, name: str, exc: Exception, bands: int, size: int, quiet: bool = False
) -> str:
    """Print (unless ``quiet``) and warn that ``what`` ``name`` is unavailable.

    The synthetic scene stands in; the notice says so. Returns the notice.
    """
    notice = (
        f"NOTICE: the {what} {name!r} is not available here ({exc}). "
        f"Falling back to the synthetic scene ({bands} bands, {size} x {size} px)."
    )
    if not quiet:
        print(notice)
    warnings.warn(notice, stacklevel=3)
    return notice


def remove_from_cache(name: str) -> list[Path]:
    """Delete the cached files of dataset ``name``; returns what was removed.

    Mirror folders are never touched.
    """
    dataset = get(name)
    removed = []
    for f in dataset.files:
        p = cached_path(dataset, f)
        if p.exists():
            p.unlink()
            removed.append(p)
        record = recorded_sha256_path(p)
        if record.exists():
            record.unlink()
    folder = cache_dir() / "downloads" / dataset.name
    if folder.is_dir() and not any(folder.iterdir()):
        shutil.rmtree(folder)
    return removed
