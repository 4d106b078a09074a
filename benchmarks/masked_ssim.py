"""Masked-patch SSIM before and after the fix: zero-filled context vs the map on the full images.

Chapter 04 scores "SSIM on the masked patches". The old ``metrics.ssim(valid=region)`` set every
pixel outside the masked patches to 0 in *both* images before filtering, so each 11 x 11 window
next to a masked patch saw invented zeros, identical in both images, which raise the score; the
more isolated the patches (25 %), the larger the lift. The fix computes the SSIM map on the full
pasted and original images and averages it over the masked valid pixels (``region=``).

For each data source this runs chapter 04's chained scenarios 25 %, 50 % and 3 x 25 % with the
course model (chapter 03's tiny MAE: ``load_mae("chapter03")``, or trained here for ``--epochs``
as ``mae_nb.pretrained.mae_or_fallback`` does when chapter 03 has not been run) on disjoint crops
and several seeds, and prints the mean masked SSIM per scenario under both formulas (the old one
implemented inline below as the reference), then the paired differences 50 - 25 and 3x25 - 25
with standard errors clustered by crop (``mae_nb.stats``) and the verdict word each gives.
Scores use the source's data range (``sample.data_range``).

    python benchmarks/masked_ssim.py --data synthetic
    MAE_NB_DATA_MIRRORS=/work/shared/data python benchmarks/masked_ssim.py --data landsat7-olinda
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from mae_nb import data, stats
from mae_nb.pretrained import mae_or_fallback
from mae_nb.reconstruct import reconstruct

SCENARIOS = {"25%": (0.25, 1), "50%": (0.50, 1), "3x25%": (0.25, 3)}  # chained, as chapter 04


def zero_fill_ssim(pred: np.ndarray, target: np.ndarray, data_range: float, keep: np.ndarray):
    """The formula before the fix: pixels outside ``keep`` set to 0 in both images, then the
    SSIM map (Gaussian window, sigma 1.5) averaged over ``keep``, band by band."""
    from skimage.metrics import structural_similarity

    t = np.where(keep, np.nan_to_num(target), 0.0).astype(np.float64)
    p = np.where(keep, np.nan_to_num(pred), 0.0).astype(np.float64)
    vals = []
    for b in range(t.shape[0]):
        _, smap = structural_similarity(
            t[b], p[b], data_range=data_range, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, full=True,
        )  # fmt: skip
        vals.append(smap[keep].mean())
    return float(np.mean(vals))


def disjoint_crops(valid: np.ndarray, size: int, n: int, seed: int) -> list[tuple[int, int]]:
    """Up to ``n`` non-overlapping ``size`` px crops on a grid, fully valid, chosen at random."""
    h, w = valid.shape
    cells = [
        (r, c)
        for r in range(0, h - size + 1, size)
        for c in range(0, w - size + 1, size)
        if valid[r : r + size, c : c + size].all()
    ]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(cells), size=min(n, len(cells)), replace=False)
    return [cells[i] for i in sorted(picks)]


def run(name: str | None, args) -> None:
    sample = data.load_sample(name, bands=6, size=args.size, seed=0, quiet=True)
    rgb = sample.image[[b - 1 for b in sample.rgb]].astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        choice = mae_or_fallback("chapter03", rgb, sample.valid, epochs=args.epochs, quiet=True)
    model = choice.model
    crops = disjoint_crops(sample.valid, args.crop, args.crops, seed=0)
    print(
        f"\n## {sample.source} ({sample.name}, {rgb.shape[1]} x {rgb.shape[2]} px, data range "
        f"{sample.data_range:g}); model: {choice.name}; {len(crops)} disjoint {args.crop} px "
        f"crops x {len(args.seeds)} seeds"
    )
    rows = {s: {"old": [], "new": [], "crop": []} for s in SCENARIOS}
    start = time.perf_counter()
    for ci, (r0, c0) in enumerate(crops):
        crop = rgb[:, r0 : r0 + args.crop, c0 : c0 + args.crop]
        ok = sample.valid[r0 : r0 + args.crop, c0 : c0 + args.crop]
        for seed in args.seeds:
            run_seed = 1000 * ci + seed
            for s, (ratio, its) in SCENARIOS.items():
                r = reconstruct(
                    model, crop, ratio, its, run_seed, "chained", valid=ok,
                    data_range=sample.data_range,
                )  # fmt: skip
                keep = r.pixel_mask & r.valid
                rows[s]["old"].append(zero_fill_ssim(r.pasted, r.original, r.data_range, keep))
                rows[s]["new"].append(r.ssim_masked)
                rows[s]["crop"].append(ci)
    print(f"({time.perf_counter() - start:.0f} s)\n")
    print(
        "| scenario | masked SSIM, old (zero-filled) | masked SSIM, new (full images) | old - new |"
    )
    print("|---|---|---|---|")
    for s, v in rows.items():
        old, new = np.array(v["old"]), np.array(v["new"])
        lift = stats.mean_se(old - new, v["crop"])
        print(f"| {s} | {old.mean():.4f} | {new.mean():.4f} | {lift.describe('', '.4f')} |")
    print("\n| paired difference | old formula | verdict | new formula | verdict |")
    print("|---|---|---|---|---|")
    for a, b in (("50%", "25%"), ("3x25%", "25%")):
        cells = []
        for f in ("old", "new"):
            est = stats.paired_difference(rows[a][f], rows[b][f], clusters=rows[a]["crop"])
            cells += [est.describe("", ".4f"), stats.VERDICTS[stats.judge(est)]]
        print(f"| SSIM {a} - {b} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", nargs="+", default=["synthetic", "landsat7-olinda"],
        help="registry names, or 'synthetic'",
    )  # fmt: skip
    p.add_argument("--crops", type=int, default=6, help="disjoint crops per source")
    p.add_argument("--crop", type=int, default=64, help="crop size in px (a multiple of 8)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--size", type=int, default=352, help="synthetic scene size in px")
    p.add_argument("--epochs", type=int, default=20, help="epochs if the model is trained here")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.data:
        run(None if name == "synthetic" else name, args)


if __name__ == "__main__":
    main()
