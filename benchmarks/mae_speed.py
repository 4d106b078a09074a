"""Speed of mae-nb's reconstruction vs Hugging Face's ViTMAEForPreTraining on the same weights.

The work is the study's "three iterations of 25 %": ViT-L/16 (random weights), one 224 x 224
image, three chained passes, each masking a fresh random 25 % of the previous pass's pasted
output. mae-nb runs ``mae_nb.reconstruct.reconstruct(..., iterations=3)`` (which also computes
PSNR/SSIM and the outputs in image units), in fp32 and with ``precision="bf16"``; Hugging Face
runs the same three passes with ``ViTMAEForPreTraining`` (its default attention), the weights
converted from mae-nb's, the same noise, and the pasting done with torch.

Rounds alternate between the contenders and the median is reported, as wall time and as CPU
time of this process (the CPU is shared, so the CPU time is the steadier figure). The target
is mae-nb bf16 / HF fp32 <= 0.6, with the bf16 reconstruction within 0.1 dB PSNR of fp32.

    .venv/bin/python benchmarks/mae_speed.py             # ViT-L/16, 5 rounds
    .venv/bin/python benchmarks/mae_speed.py --arch mae_vit_base_patch16 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


@torch.inference_mode()
def hf_chained(hf, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Three (len(noise)) chained passes with HF: predict, paste into the masked patches, repeat."""
    p = hf.config.patch_size
    g = x.shape[-1] // p
    for nz in noise:
        out = hf(pixel_values=x, noise=nz[None])
        pred = hf.unpatchify(out.logits, original_image_size=x.shape[-2:])
        m = out.mask.reshape(1, g, 1, g, 1).expand(1, g, p, g, p).reshape(1, 1, g * p, g * p)
        x = torch.where(m > 0, pred, x)
    return x


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mae_vit_large_patch16")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from test_mae import hf_model

    from mae_nb.data import synthetic_scene
    from mae_nb.models.mae import create_mae
    from mae_nb.reconstruct import pass_noise, reconstruct

    torch.manual_seed(0)
    model = create_mae(args.arch).eval()
    hf = hf_model(model, 0.25, attn_implementation=None)  # conversion shared with tests/test_mae.py
    image = (synthetic_scene(224, 224, 3, seed=0).image * 255).astype(np.uint8)
    seed = 0

    fp32 = reconstruct(model, image, 0.25, 3, seed)
    bf16 = reconstruct(model, image, 0.25, 3, seed, precision="bf16")
    # HF on the same normalized input and masks
    x = torch.from_numpy(fp32.normalization.apply(image.astype(np.float32)))[None]
    noise, _ = pass_noise(
        "chained", x.shape[-1] ** 2 // 256, 0.25, 3, torch.Generator().manual_seed(seed)
    )
    noise = noise if args.arch.endswith("16") else noise
    hf_out = hf_chained(hf, x, noise)
    ours = torch.from_numpy(fp32.normalization.apply(np.nan_to_num(fp32.pasted)))[None]
    agree = float((hf_out - ours).abs().max())

    runs = {
        "mae-nb fp32": lambda: reconstruct(model, image, 0.25, 3, seed),
        "mae-nb bf16": lambda: reconstruct(model, image, 0.25, 3, seed, precision="bf16"),
        "HF fp32": lambda: hf_chained(hf, x, noise),
    }
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            _, w, c = timed(fn)
            wall[name].append(w)
            cpu[name].append(c)
    med_w = {k: statistics.median(v) for k, v in wall.items()}
    med_c = {k: statistics.median(v) for k, v in cpu.items()}

    print(
        f"{args.arch}, one 224 x 224 image, 3 chained passes at 25 %, {args.threads} threads, "
        f"{args.rounds} alternating rounds (median)"
    )
    print(f"load average before/after: {os.getloadavg()}")
    for k in runs:
        print(f"  {k:<12} wall {med_w[k]:.3f} s   cpu {med_c[k]:.3f} s")
    for k in ("mae-nb fp32", "mae-nb bf16"):
        print(
            f"  ratio {k} / HF fp32: wall {med_w[k] / med_w['HF fp32']:.2f}, "
            f"cpu {med_c[k] / med_c['HF fp32']:.2f}"
        )
    print(f"  masks, fp32 vs bf16 identical: {bool((fp32.pass_masks == bf16.pass_masks).all())}")
    print(
        f"  masked-patch PSNR fp32 {fp32.psnr_masked:.3f} dB, bf16 {bf16.psnr_masked:.3f} dB, "
        f"difference {abs(fp32.psnr_masked - bf16.psnr_masked):.4f} dB (target <= 0.1)"
    )
    print(
        f"  whole-crop PSNR fp32 {fp32.psnr:.3f} dB, bf16 {bf16.psnr:.3f} dB, "
        f"difference {abs(fp32.psnr - bf16.psnr):.4f} dB"
    )
    print(f"  max |HF - mae-nb fp32| after 3 passes (normalized units): {agree:.2e}")


if __name__ == "__main__":
    main()
