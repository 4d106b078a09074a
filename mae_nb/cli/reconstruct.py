"""``mae-nb reconstruct``: mask and reconstruct a whole GeoTIFF with an MAE, tile by tile."""

from __future__ import annotations

import argparse
from pathlib import Path

from mae_nb.errors import InputError, OutputExistsError
from mae_nb.precision import PRECISIONS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="reconstruct a GeoTIFF with a masked autoencoder (writes the image and an error map)",
        description=(
            "Cut IN.tif into overlapping tiles of the model's size, mask --mask-ratio of each "
            "tile's patches, let the model predict them (--iterations passes, see --mode), blend "
            "the tiles and write OUT.tif (the source's dtype, CRS, transform and nodata) and "
            "OUT_error.tif (per-pixel RMSE over bands). Memory stays bounded by one strip of "
            "tiles, whatever the scene's size."
        ),
    )
    p.add_argument("input", type=Path, metavar="IN.tif")
    p.add_argument("output", type=Path, metavar="OUT.tif")
    p.add_argument(
        "--checkpoint",
        default="auto",
        metavar="NAME_OR_PATH",
        help="a registry name (mae_visualize_vit_large, prithvi_eo_v2_300m, ...), a checkpoint "
        "file (Meta's format, Prithvi's, or one the course wrote), 'chapter03' for chapter 03's "
        "trained model, or 'auto' (the default): Meta's ViT-L, or its ViT-B where less than "
        "about 3 GB of memory is available",
    )
    p.add_argument(
        "--arch",
        default=None,
        help="architecture of a Meta checkpoint file (default: read from its shapes)",
    )
    p.add_argument(
        "--mask-ratio",
        type=float,
        default=0.25,
        help="share of patches masked per pass (default 0.25)",
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="passes (default: 1 for chained, all disjoint groups for covering)",
    )
    p.add_argument(
        "--mode",
        choices=["chained", "covering"],
        default="chained",
        help="chained: each pass masks a fresh random share of the previous output; covering: "
        "disjoint masks so every patch is predicted once (default chained)",
    )
    p.add_argument(
        "--bands",
        type=int,
        nargs="+",
        default=None,
        metavar="B",
        help="1-based bands to use, e.g. --bands 3 2 1 for RGB from a Landsat file; Prithvi takes "
        "six (blue, green, red, narrow NIR, SWIR1, SWIR2): --bands 1 2 3 4 5 7 for Landsat 7",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--overlap", type=int, default=None, help="tile overlap in pixels (default: tile size / 8)"
    )
    p.add_argument("--batch-size", type=int, default=4, help="tiles per model call (default 4)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto (default): the fastest precision this machine runs well (bf16 with bf16 units "
        "or on a GPU, int8 for ViT-B and larger on other CPUs, else fp32); fp32 is exact",
    )
    p.add_argument(
        "--error-map",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the error map (default OUT_error.tif)",
    )
    p.add_argument(
        "--data-range",
        type=float,
        default=None,
        metavar="R",
        help="the source's data range for the PSNR, in its units (default: the range the "
        "registry declares for the course's samples, 10000 for the synthetic scene, else the "
        "file's: 255 for uint8, max - min of its valid values otherwise)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace OUT.tif and the error map if they exist"
    )
    p.set_defaults(func=_reconstruct)


def declared_range(path: Path) -> float | None:
    """The data range a course source declares for the file at ``path``, or None.

    A file of a registry dataset with a declared ``value_range`` (recognised by its name and
    size) gets that range, what ``Sample.data_range`` gives a chapter; the synthetic scene's
    GeoTIFF (``synthetic_*.tif`` in the cache) is reflectance x 10000. Anything else: None
    (``reconstruct_scene`` then uses :func:`mae_nb.data.value_range` of the file).
    """
    from mae_nb.data import REGISTRY, SYNTHETIC_VALUE_RANGE, cache_dir

    path = Path(path)
    size = path.stat().st_size if path.is_file() else None
    for dataset in REGISTRY.values():
        declared = dataset.meta.get("value_range")
        if declared is None or not str(dataset.kind).startswith("geotiff"):
            continue
        for f in dataset.files:
            if Path(f.name).name == path.name and f.size in (None, size):
                return float(declared[1] - declared[0])
    synthetic = cache_dir() / "synthetic"
    if path.name.startswith("synthetic_") and not path.name.endswith("_labels.tif"):
        if path.resolve().parent == synthetic.resolve():
            lo, hi = SYNTHETIC_VALUE_RANGE
            return float(hi - lo)
    return None


def _normalize_for(model, path: Path, bands) -> str:
    """``"per-band"`` when ``model``'s normalization constants are in stated units (Prithvi's:
    HLS reflectance x 10000) that the file at ``path`` is not in (e.g. 8-bit Landsat counts):
    the file is then standardized by its own per-band statistics, with a notice. Else
    ``"auto"`` (the model's own normalization)."""
    from mae_nb.data.geotiff import read_raster
    from mae_nb.pretrained import in_training_units
    from mae_nb.reconstruct import model_normalization, normalization

    units = model.pretrained_cfg.get("units")
    _, mean, _ = model_normalization(model)
    if not units or mean is None:
        return "auto"
    raster = read_raster(path, bands=bands)
    own = normalization(raster.array, "per-band", raster.valid)
    if in_training_units(model, own.mean, own.std):
        return "auto"
    print(
        f"NOTICE: {path.name} is not in the units of the model's normalization constants "
        f"({units}: band means {[round(m) for m in mean]}, the file's "
        f"{[round(float(m), 1) for m in own.mean]}); each band is standardized by the file's "
        "own statistics instead."
    )
    return "per-band"


def _reconstruct(args: argparse.Namespace) -> int:
    from mae_nb.data.geotiff import open_raster
    from mae_nb.masking import check_mask_ratio
    from mae_nb.pretrained import load_mae
    from mae_nb.reconstruct import check_model_bands, reconstruct_scene

    # cheap checks first, so a typo or a damaged file does not wait for a large checkpoint
    with open_raster(args.input) as src:
        count = src.count
    if args.iterations is not None and args.iterations < 1:
        raise InputError(f"--iterations must be at least 1, got {args.iterations}")
    check_mask_ratio(args.mask_ratio)
    if args.data_range is not None and not args.data_range > 0:
        raise InputError(f"--data-range must be positive, got {args.data_range}")
    data_range = args.data_range if args.data_range is not None else declared_range(args.input)
    error = args.error_map or args.output.with_name(args.output.stem + "_error.tif")
    for path in (args.output, error):
        if path.exists() and not args.overwrite:
            raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
    model = load_mae(args.checkpoint, arch=args.arch)
    check_model_bands(model, count, args.bands, str(args.input))
    normalize = _normalize_for(model, args.input, args.bands)
    result = reconstruct_scene(
        model,
        args.input,
        args.output,
        mask_ratio=args.mask_ratio,
        iterations=args.iterations,
        mode=args.mode,
        seed=args.seed,
        bands=args.bands,
        overlap=args.overlap,
        batch_size=args.batch_size,
        precision=args.precision,
        error_path=args.error_map,
        overwrite=args.overwrite,
        progress=True,
        data_range=data_range,
        normalize=normalize,
    )
    h, w = result.shape
    print(f"wrote {result.out_path} ({len(result.bands)} bands, {h} x {w}) and {result.error_path}")
    print(
        f"{result.tiles} tiles ({result.skipped} without valid pixels skipped) in "
        f"{result.seconds:.1f} s in {result.precision} "
        f"({result.tiles_per_second:.2f} tiles/s); PSNR {result.psnr:.2f} dB over valid pixels "
        f"(data range {result.data_range:g})"
    )
    return 0
