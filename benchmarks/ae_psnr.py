"""Held-out PSNR/SSIM of the conv AE vs the MLP AE vs the per-tile mean (chapter 01's claim).

Trains both autoencoders as chapter 01 does (same tiles, same 128-number code, same epochs) on
the training part of a sample and scores them on the spatially held-out strip. Prints one row
per model and seed, then mean and spread over seeds.

    MAE_NB_DATA_MIRRORS=/work/shared/data python benchmarks/ae_psnr.py              # real Landsat sample
    python benchmarks/ae_psnr.py --data synthetic --seeds 0 1 2 --epochs 40
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from mae_nb import data
from mae_nb.models import autoencoders as ae
from mae_nb.train import fit, seed_everything


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="landsat7-olinda", help="registry name, or 'synthetic'")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--tile", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample = data.load_sample(
            None if args.data == "synthetic" else args.data, bands=6, size=352, quiet=True
        )
    split = ae.tile_split(sample.image, sample.valid, size=args.tile, stride=args.tile // 2)
    print(
        f"data: {sample.source} ({sample.name}); {split}; {args.epochs} epochs, lr {args.lr}, "
        f"{args.threads} thread(s)"
    )
    results: dict[str, list[tuple[float, float]]] = {
        "per-tile mean": [],
        "MLP AE": [],
        "conv AE": [],
    }
    base = ae.evaluate_reconstruction(ae.tile_mean_baseline(split.val), split.val)
    print(f"{'model':<14} {'seed':>4} {'code':>5} {'PSNR dB':>8} {'SSIM':>6} {'train s':>8}")
    for seed in args.seeds:
        results["per-tile mean"].append((base["psnr"], base["ssim"]))
        print(
            f"{'per-tile mean':<14} {seed:>4} {6:>5} {base['psnr']:>8.2f} {base['ssim']:>6.3f} {0:>8.1f}"
        )
        for name, make in (
            ("MLP AE", lambda: ae.MLPAutoencoder(6, args.tile, latent_dim=128)),
            ("conv AE", lambda: ae.ConvAutoencoder(6, latent_channels=8)),
        ):
            seed_everything(seed)
            model = make()
            start = time.perf_counter()
            fit(
                model,
                split.train,
                ae.autoencoder_loss,
                epochs=args.epochs,
                lr=args.lr,
                batch_size=32,
                seed=seed,
                progress=False,
            )
            seconds = time.perf_counter() - start
            s = ae.evaluate_reconstruction(ae.reconstruct(model, split.val), split.val)
            results[name].append((s["psnr"], s["ssim"]))
            print(
                f"{name:<14} {seed:>4} {model.latent_size(args.tile):>5} {s['psnr']:>8.2f} {s['ssim']:>6.3f} "
                f"{seconds:>8.1f}",
                flush=True,
            )
    print("\nheld-out tiles, mean (min-max over seeds):")
    for name, rows in results.items():
        psnr = np.array([r[0] for r in rows])
        ssim = np.array([r[1] for r in rows])
        print(
            f"  {name:<14} PSNR {psnr.mean():6.2f} dB ({psnr.min():.2f}-{psnr.max():.2f})   "
            f"SSIM {ssim.mean():.3f} ({ssim.min():.3f}-{ssim.max():.3f})"
        )


if __name__ == "__main__":
    main()
