"""The label-efficiency table of chapter 08, on Salinas-A and on the hard synthetic scene.

Leak-free masked pretraining of the spatial-spectral transformer (SST): only on the training
and validation blocks of the spatial split, no patch reaching its test region
(:func:`mae_nb.finetune.pretraining_region`); then fine-tuning of four networks (SST
pretrained, SST random init, standard ViT, 3D-CNN) and fitting of two classical baselines on
single-pixel spectra (RBF SVM, random forest) with each label fraction (0.1 % to 100 %) over
several seeds, scored on the spatially disjoint test split; an ablation of blockwise embedding
and factorized attention at one fraction; the verdict on the paper's claims, fraction by
fraction.

    MAE_NB_DATA_MIRRORS=/work/shared/data python benchmarks/hsi_label_efficiency.py
    python benchmarks/hsi_label_efficiency.py --data synthetic-hard --threads 1

Prints the tables (all runs, and OA by model and fraction), the verdicts, the wall time of each
part and the machine's load average (the CPU may be shared: read timings with the load next to
them).
"""

from __future__ import annotations

import argparse
import os
import time


def load_scene(name: str, size: int, bands: int):
    from mae_nb.data.hsi import SYNTHETIC_NAMES, load_hsi

    if name in SYNTHETIC_NAMES:
        return load_hsi(name, size=size, bands=bands)
    scene = load_hsi(name, quiet=True)
    if scene.source != "real":
        raise SystemExit(f"{name} is not available here; set MAE_NB_DATA_MIRRORS=/work/shared/data")
    return scene


def oa_by_fraction(rows) -> str:
    """A markdown table: one line per model, one column per fraction, OA mean ± std (%)."""
    from mae_nb import stats
    from mae_nb.studies import label_efficiency as study

    summary = study.summarize_runs(rows, ["oa"])
    fractions = sorted({s["fraction"] for s in summary})
    order = list(dict.fromkeys(r["model"] for r in rows))
    cells = {(s["model"], s["fraction"]): s for s in summary}
    lines = []
    for model in order:
        line = {"model": model}
        for f in fractions:
            s = cells.get((model, f))
            line[f"{f:.1%}"] = "" if s is None else f"{100 * s['oa']:.1f} ± {100 * s['oa_std']:.1f}"
        lines.append(line)
    return stats.markdown_table(lines)


def run(name: str, args) -> None:
    import torch

    from mae_nb import finetune as ft
    from mae_nb.data.hsi import leaking_pixels, spatial_split
    from mae_nb.models.baselines import build_classifier
    from mae_nb.studies import label_efficiency as study

    load = os.getloadavg()[0]
    t0, cpu0 = time.perf_counter(), time.process_time()
    scene = load_scene(name, args.size, args.bands)
    split = spatial_split(scene.labels, args.patch, seed=0)
    print(f"\n## {scene!r}")
    print(
        f"split: {split.train.sum()} train / {split.val.sum()} val / {split.test.sum()} test "
        f"labelled px; {split.describe_missing(scene.class_names)}; test px inside a training "
        f"patch: {leaking_pixels(split)}; majority-class rate of the test split "
        f"{study.majority_rate(scene, split):.1%}"
    )
    arch = dict(
        band_block_size=args.block, embed_dim=args.dim, depth=args.depth, num_heads=args.heads
    )
    pre = ft.pretrain_on_scene(
        scene,
        split=split,
        image_size=args.patch,
        epochs=args.pretrain_epochs,
        max_pixels=args.pretrain_pixels,
        model_kwargs=arch,
        seed=0,
        progress=False,
    )
    loss = pre.history.train["loss"]
    print(
        f"pretraining (leak-free: the split's training/validation blocks, no patch reaching the "
        f"test region): {pre.config['pixels']} px x {args.pretrain_epochs} epochs in "
        f"{pre.history.seconds:.0f} s, masked MSE {loss[0]:.3f} -> {loss[-1]:.3f}; "
        f"test pixels seen in pretraining: {pre.config['test_pixels_seen']}"
    )
    k, b = scene.n_classes, scene.n_bands
    models = {
        "SST pretrained": lambda: ft.classifier_from_pretrained(pre.model, k),
        "SST random init": lambda: ft.sst_like(pre.model, k),
        "ViT": lambda: build_classifier(
            "vit", b, k, args.patch, embed_dim=args.dim, depth=args.depth, num_heads=args.heads
        ),
        "3D-CNN": lambda: build_classifier("cnn3d", b, k, args.patch),
    }
    kw = dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, progress=args.progress)
    t1 = time.perf_counter()
    rows = study.run_label_efficiency(
        models, scene, split, args.fractions, args.seeds, classical=study.CLASSICAL, **kw
    )
    t2 = time.perf_counter()
    variants = {
        "SST shared embedding": lambda: ft.sst_like(pre.model, k, blockwise_embed=False),
        "SST joint attention": lambda: ft.sst_like(pre.model, k, factorized_attention=False),
    }
    ablation = (
        study.run_label_efficiency(
            variants, scene, split, [args.ablation_fraction], args.seeds, **kw
        )
        if args.ablation_fraction
        else []
    )
    t3 = time.perf_counter()
    print(
        f"\nlabel efficiency ({len(args.seeds)} seeds, {args.steps} steps per network run, "
        f"lr {args.lr}):\n"
    )
    print(study.label_efficiency_table(rows))
    print(f"\nOA (%) by model and label fraction, mean ± std over {len(args.seeds)} seeds:\n")
    print(oa_by_fraction(rows))
    if ablation:
        same = [
            r
            for r in rows
            if r["model"] == "SST random init" and r["fraction"] == args.ablation_fraction
        ]
        print(f"\nablation at {args.ablation_fraction:.0%} of the labels:\n")
        print(study.label_efficiency_table(same + ablation))
    print("\nseconds per run (mean over fractions and seeds):")
    for m in dict.fromkeys(r["model"] for r in rows + ablation):
        secs = [r["seconds"] for r in rows + ablation if r["model"] == m]
        print(f"  {m:<22} {sum(secs) / len(secs):6.2f} s")
    claims = study.check_paper_claims(
        rows + ablation,
        pretrained="SST pretrained",
        random_init="SST random init",
        vit="ViT",
        cnn="3D-CNN",
        classical=study.CLASSICAL,
        ablations={
            "blockwise embedding": "SST shared embedding",
            "factorized attention": "SST joint attention",
        },
    )
    print()
    print(study.format_claims(claims, f"{scene.name}, {scene.source}"))
    low = min(args.fractions)
    best = max(
        (s for s in study.summarize_runs(rows) if s["fraction"] == low), key=lambda s: s["oa"]
    )
    print(
        f"Headroom: with {low:.1%} of the labels the best model ({best['model']}) reaches OA "
        f"{best['oa']:.1%}, so no model can beat it by more than {100 * (1 - best['oa']):.1f} "
        "points."
    )
    print(
        f"\ntimes: pretraining + data {t1 - t0:.0f} s, grid {t2 - t1:.0f} s ({len(rows)} runs), "
        f"ablation {t3 - t2:.0f} s ({len(ablation)} runs), total {t3 - t0:.0f} s wall, "
        f"{time.process_time() - cpu0:.0f} s CPU; "
        f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads"
    )


def main() -> None:
    from mae_nb.studies.label_efficiency import DEFAULT_FRACTIONS, DEFAULT_SEEDS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        nargs="+",
        default=["salinas-a", "synthetic-hard"],
        help="scenes: registry names, 'synthetic' and/or 'synthetic-hard' "
        "(default: salinas-a synthetic-hard)",
    )
    p.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS))
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    p.add_argument(
        "--steps",
        type=int,
        default=30,
        help="fine-tuning steps per network run (default 30, as chapter 08)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--ablation-fraction", type=float, default=0.05, help="0 skips the ablation")
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument(
        "--pretrain-pixels",
        type=int,
        default=2000,
        help="pixels used for pretraining (default 2000, from the leak-free region)",
    )
    p.add_argument("--patch", type=int, default=5)
    p.add_argument("--block", type=int, default=16, help="bands per spectral block (default 16)")
    p.add_argument("--dim", type=int, default=48)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument(
        "--size", type=int, default=96, help="synthetic scenes: height and width (default 96)"
    )
    p.add_argument("--bands", type=int, default=64, help="synthetic scenes: bands (default 64)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    p.add_argument("--progress", action="store_true", help="show a progress bar per grid")
    args = p.parse_args()
    if args.ablation_fraction and args.ablation_fraction not in args.fractions:
        p.error(f"--ablation-fraction {args.ablation_fraction} is not among --fractions")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for name in args.data:
        run(name, args)


if __name__ == "__main__":
    main()
