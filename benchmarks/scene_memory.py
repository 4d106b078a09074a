"""Peak memory of whole-scene reconstruction: an 8192 x 8192 scene vs a 1024 x 1024 one.

``mae_nb.reconstruct.reconstruct_scene`` reads tiles and writes results in windows, one strip of
tiles at a time (``mae_nb.scene``), so its memory should not grow with the scene. Each size runs
in a fresh Python process (so one run's memory cannot hide in the other's), which reports its
peak resident set size (``ru_maxrss``) and its resident size just before the scene starts (model
built, torch loaded). The target is peak(8192) / peak(1024) <= 1.2. Tiles per second are
reported too.

The scenes are uint8 RGB GeoTIFFs (tiled, deflate) made by repeating, mirrored, a 1024 x 1024
synthetic scene, written window by window. The model is a preset with random weights
(default ``mae_vit_tiny_patch16``, 224 x 224 tiles; ``--arch mae_vit_base_patch16`` for ViT-B).

    .venv/bin/python benchmarks/scene_memory.py                 # 1024 and 8192, tiny preset
    .venv/bin/python benchmarks/scene_memory.py --sizes 1024 2048 --arch mae_vit_base_patch16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[5]))
from mae_nb.models.mae import create_mae
from mae_nb.reconstruct import reconstruct_scene

def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")

torch.manual_seed(0)
model = create_mae(sys.argv[3]).eval()
before = rss_mb()
res = reconstruct_scene(model, sys.argv[1], sys.argv[2], mask_ratio=float(sys.argv[4]),
                        overwrite=True, progress=False, batch_size=8)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_mb": peak, "before_mb": before, "tiles": res.tiles, "seconds": res.seconds,
                  "tiles_per_second": res.tiles_per_second, "psnr": res.psnr}))
"""


def make_scene(path: Path, size: int) -> Path:
    """A ``size`` x ``size`` uint8 RGB GeoTIFF built from a mirrored 1024 x 1024 synthetic scene."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from mae_nb.data import synthetic_scene

    if path.exists():
        return path
    base = synthetic_scene(1024, 1024, 3, seed=0)
    block = np.clip(base.image * 255 * 3, 1, 255).astype(
        np.uint8
    )  # reflectance ~0.1 -> visible 8-bit
    profile = dict(
        driver="GTiff",
        height=size,
        width=size,
        count=3,
        dtype="uint8",
        crs=base.crs,
        transform=base.transform,
        nodata=0,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        BIGTIFF="IF_SAFER",
    )
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for r in range(0, size, 1024):
            for c in range(0, size, 1024):
                tile = block[
                    :, :: (-1 if (r // 1024) % 2 else 1), :: (-1 if (c // 1024) % 2 else 1)
                ]
                h, w = min(1024, size - r), min(1024, size - c)
                dst.write(tile[:, :h, :w], window=Window(c, r, w, h))
    tmp.replace(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 8192])
    ap.add_argument("--arch", default="mae_vit_tiny_patch16")
    ap.add_argument("--mask-ratio", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/mae-nb-scene-bench"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for size in args.sizes:
        src = make_scene(args.workdir / f"scene_{size}.tif", size)
        out = args.workdir / f"rec_{size}.tif"
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(src),
                str(out),
                args.arch,
                str(args.mask_ratio),
                str(args.threads),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            sys.exit(f"size {size} failed:\n{proc.stderr[-3000:]}")
        results[size] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[size]
        print(
            f"{size:>5} x {size:<5}: peak {r['peak_mb']:.0f} MB "
            f"(before the scene {r['before_mb']:.0f} MB), "
            f"{r['tiles']} tiles in {r['seconds']:.1f} s = {r['tiles_per_second']:.1f} tiles/s, "
            f"PSNR {r['psnr']:.2f} dB   [load {os.getloadavg()[0]:.1f}]"
        )
    lo, hi = min(results), max(results)
    ratio = results[hi]["peak_mb"] / results[lo]["peak_mb"]
    extra = (
        results[hi]["peak_mb"] - results[hi]["before_mb"],
        results[lo]["peak_mb"] - results[lo]["before_mb"],
    )
    print(
        f"{args.arch}, {args.threads} thread(s): peak memory {hi} / {lo} = {ratio:.3f} "
        "(target <= 1.2); "
        f"memory added by the scene itself: {extra[0]:.0f} MB vs {extra[1]:.0f} MB"
    )


if __name__ == "__main__":
    main()
