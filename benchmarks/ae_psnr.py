"""Held-out PSNR/SSIM of the conv AE vs the MLP AE vs the per-tile mean (chapter 01's claim).

Trains both autoencoders as chapter 01 does (same tiles, same 128-number code, same epochs) on
the training part of a sample and scores them on the spatially held-out strip. Prints one row
per model and seed, then the mean and spread over seeds, and the claim "the conv AE beats the
MLP AE (and the per-tile mean)" judged on the paired differences over seeds (mae_nb.stats: one
seed gives no spread, so an INCONCLUSIVE verdict).

    MAE_NB_DATA_MIRRORS=/work/shared/data python benchmarks/ae_psnr.py   # real Landsat sample
    python benchmarks/ae_psnr.py --data synthetic --seeds 0 1 2 --epochs 40
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from mae_nb import data, stats
from mae_nb.data.tiling import tile_split
from mae_nb.models import autoencoders as ae
from mae_nb.studies.autoencoders import evaluate_reconstruction, tile_mean_baseline
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
    split = tile_split(
        sample.image,
        sample.valid,
        size=args.tile,
        stride=args.tile // 2,
        data_range=sample.data_range,
    )
    print(
        f"data: {sample.source} ({sample.name}); {split}; {args.epochs} epochs, lr {args.lr}, "
        f"{args.threads} thread(s)"
    )
    base = evaluate_reconstruction(tile_mean_baseline(split.val), split.val, units=split.units)
    models = {
        "MLP AE": lambda: ae.MLPAutoencoder(6, args.tile, latent_dim=128),
        "conv AE": lambda: ae.ConvAutoencoder(6, latent_channels=8),
    }
    rows = []
    print(f"{'model':<14} {'seed':>4} {'code':>5} {'PSNR dB':>8} {'SSIM':>6} {'train s':>8}")
    for seed in args.seeds:
        rows.append(
            dict(
                model="per-tile mean",
                seed=seed,
                code=6,
                psnr=base["psnr"],
                ssim=base["ssim"],
                seconds=0.0,
            )
        )
        for name, make in models.items():
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
            s = evaluate_reconstruction(
                ae.reconstruct_tiles(model, split.val), split.val, units=split.units
            )
            rows.append(
                dict(
                    model=name,
                    seed=seed,
                    code=model.latent_size(args.tile),
                    psnr=s["psnr"],
                    ssim=s["ssim"],
                    seconds=seconds,
                )
            )
        for r in rows[-3:]:
            print(
                f"{r['model']:<14} {seed:>4} {r['code']:>5} {r['psnr']:>8.2f} {r['ssim']:>6.3f} "
                f"{r['seconds']:>8.1f}",
                flush=True,
            )
    print("\nheld-out tiles, mean and standard deviation over seeds:\n")
    summary = stats.summarize(rows, by=["model"], metrics=["psnr", "ssim"])
    print(stats.markdown_table(summary, ".3f", ["model", "n", "psnr", "psnr_std", "ssim"]))
    print("\nclaims, on the paired PSNR differences over seeds (± two standard errors):")
    for other in ("MLP AE", "per-tile mean"):
        conv, them = ([r["psnr"] for r in rows if r["model"] == m] for m in ("conv AE", other))
        gain = stats.paired_difference(conv, them)
        verdict = stats.VERDICTS[stats.judge(gain)]
        print(f"  the conv AE beats the {other}: {verdict} ({gain.describe(' dB')})")


if __name__ == "__main__":
    main()
