"""Latency of one slider update in chapter 04: one pass of ViT-B/16 on a 224 x 224 image.

A slider change runs ``mae_nb.reconstruct.reconstruct`` (one pass, with PSNR/SSIM) and draws
``mae_nb.viz.plot_reconstruction`` (rendered to JPEG by ``mae_nb.widgets.figure_jpeg``, as the
slider displays it). Both are
timed; the median of ``--repeats`` runs after one warm-up (which also makes the model's int8
or bf16 copy, once per session) is reported, with the load average, since the CPU may be
shared, and the CPU it ran on. Targets: under 1 s for the update (compute + figure), and
under 0.3 s with ``--precision auto`` (the default) on a CPU without bf16 units.

    .venv/bin/python benchmarks/slider_latency.py
    .venv/bin/python benchmarks/slider_latency.py --precision fp32 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from mae_nb.precision import PRECISIONS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mae_vit_base_patch16")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto", choices=PRECISIONS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from mae_nb import viz
    from mae_nb.data import synthetic_scene
    from mae_nb.models.mae import create_mae
    from mae_nb.precision import describe
    from mae_nb.reconstruct import reconstruct
    from mae_nb.widgets import figure_jpeg

    torch.manual_seed(0)
    model = create_mae(args.arch).eval()
    image = (synthetic_scene(224, 224, 3, seed=0).image * 255 * 3).clip(0, 255).astype(np.uint8)
    compute, total = [], []
    for i in range(args.repeats + 1):
        t0 = time.perf_counter()
        rec = reconstruct(
            model,
            image,
            mask_ratio=0.05 + 0.9 * i / max(args.repeats, 1),
            iterations=1,
            seed=i,
            precision=args.precision,
        )
        t1 = time.perf_counter()
        fig = viz.plot_reconstruction(rec)
        figure_jpeg(fig)  # what the slider's image widget receives
        t2 = time.perf_counter()
        if i:  # the first run warms up
            compute.append(t1 - t0)
            total.append(t2 - t0)
    print(describe(model, args.precision))
    print(
        f"{args.arch}, 224 x 224, one pass, {rec.precision}, {args.threads} thread(s), "
        f"median of {args.repeats} "
        f"(mask ratios 0.05-0.95): reconstruct {statistics.median(compute):.3f} s, with the figure "
        f"{statistics.median(total):.3f} s (target < 0.3 s with precision auto, < 1 s in fp32); "
        f"max {max(total):.3f} s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
