"""Peak memory of each notebook's kernel, against Binder's 2 GB.

Prints a table of:

1. the smoke run of every notebook (in order, in one fresh cache, as ``tests/test_notebooks.py``
   runs them);
2. chapter 04's default run with ``-p CHECKPOINT mae_visualize_vit_base``, which is what Binder
   users are told to use. Offline, Meta's file cannot be had and the chapter falls back to chapter
   03's tiny model, so this row measures the fallback;
3. chapter 04's default run with a ViT-B of random weights saved in Meta's format (a file the
   chapter loads like Meta's ``mae_visualize_vit_base.pth``, same shapes and size): what the base
   model really costs in the chapter. ``--large`` adds the same with ViT-L (the chapter's default
   ``CHECKPOINT``; slow on a CPU);
4. a bare process that loads ViT-B / ViT-L from such a file (memory-mapped, as the chapter does) and
   runs one reconstruction of a 224 x 224 crop: the model's own cost without the rest of a kernel.

Peak memory is the kernel's own peak (``VmHWM``) recorded by ``mae_nb.record_metrics`` in the last
cell (rows 1-3), or the process's own (row 4).

    .venv/bin/python benchmarks/notebook_memory.py [--large] [--skip-smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BINDER_MB = 2048
ARCHS = {"base": "mae_vit_base_patch16_dec512d8b", "large": "mae_vit_large_patch16_dec512d8b"}

_BARE = """
import sys, time
import numpy as np, torch
from mae_nb.pretrained import load_mae
from mae_nb.reconstruct import reconstruct
from mae_nb.runner import peak_memory_mb
torch.set_num_threads(max(1, torch.get_num_threads()))
model = load_mae(sys.argv[1])
image = np.random.default_rng(0).random((3, 224, 224), dtype=np.float32)
t = time.perf_counter()
rec = reconstruct(model, image, mask_ratio=0.5, iterations=1, seed=0)
print(peak_memory_mb(), time.perf_counter() - t)
"""


def random_checkpoint(arch: str, path: Path) -> Path:
    """A checkpoint in Meta's format ({"model": state_dict}) holding random weights of ``arch``."""
    import torch

    from mae_nb.models import mae

    if not path.exists():
        torch.manual_seed(0)
        model = mae.create_mae(arch)
        torch.save({"model": model.state_dict()}, path)
        del model
    return path


def bare_model_cost(checkpoint: Path) -> tuple[float, float]:
    """(peak MiB, seconds of the reconstruction) of a fresh process loading ``checkpoint`` and
    reconstructing one 224 x 224 crop."""
    out = subprocess.run(
        [sys.executable, "-c", _BARE, str(checkpoint)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    peak, seconds = out.stdout.split()[-2:]
    return float(peak), float(seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default=None, help="folder for executed notebooks (default: a temporary one)"
    )
    parser.add_argument(
        "--large", action="store_true", help="also run chapter 04 with a ViT-L (slow)"
    )
    parser.add_argument(
        "--skip-smoke", action="store_true", help="only chapter 04 and the bare models"
    )
    args = parser.parse_args(argv)

    out = Path(args.out or tempfile.mkdtemp(prefix="mae-nb-memory-"))
    out.mkdir(parents=True, exist_ok=True)
    # A fresh cache, as on a new Binder: chapter 04 finds chapter 03's model only if 03 ran before.
    os.environ.setdefault("MAE_NB_CACHE", str(out / "cache"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    from mae_nb.runner import resolve_notebooks, run_notebook, run_notebooks

    rows: list[
        tuple[str, str, float | None, float, str]
    ] = []  # what, mode, peak MiB, seconds, status
    if not args.skip_smoke:
        for r in run_notebooks(
            smoke=True, out_dir=out / "smoke", echo=lambda s: print(s, flush=True)
        ):
            rows.append((r.notebook, "smoke", r.peak_memory_mb, r.seconds, r.status))

    ch04 = resolve_notebooks(["04"])[0]
    runs = [("mae_visualize_vit_base (offline: falls back)", "mae_visualize_vit_base")]
    checkpoints = {}
    for size in ["base"] + (["large"] if args.large else []):
        checkpoints[size] = random_checkpoint(
            ARCHS[size], out / f"mae_visualize_vit_{size}_random_weights.pth"
        )
        runs.append((f"ViT-{size[0].upper()} random weights (Meta format)", str(checkpoints[size])))
    if "large" not in checkpoints:
        checkpoints["large"] = random_checkpoint(
            ARCHS["large"], out / "mae_visualize_vit_large_random_weights.pth"
        )
    for label, checkpoint in runs:
        print(f"chapter 04, default run, CHECKPOINT = {label} ...", flush=True)
        r = run_notebook(ch04, out / "default" / label.split()[0], {"CHECKPOINT": checkpoint})
        rows.append((f"{ch04.stem} · {label}", "default", r.peak_memory_mb, r.seconds, r.status))
        if r.error:
            print("   ", r.error, flush=True)
    for size, path in checkpoints.items():
        start = time.perf_counter()
        peak, _ = bare_model_cost(path)
        rows.append(
            (
                f"ViT-{size[0].upper()} alone: load + one 224 px reconstruction",
                "bare process",
                peak,
                time.perf_counter() - start,
                "ok",
            )
        )

    print()
    print(
        f"| notebook / run | mode | kernel peak memory (MiB) | under {BINDER_MB} MiB | time (s) "
        "| status |"
    )
    print("|---|---|---:|---|---:|---|")
    worst = 0.0
    for what, mode, peak, seconds, status in rows:
        fits = "-" if peak is None else ("yes" if peak < BINDER_MB else "**NO**")
        worst = max(worst, peak or 0.0)
        print(
            f"| {what} | {mode} | {peak if peak is not None else '-'} | {fits} "
            f"| {seconds:.0f} | {status} |"
        )
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    print(
        f"\nlargest: {worst:.0f} MiB; load average at the end {load[0]:.1f}; "
        f"executed notebooks in {out}"
    )
    return 0 if all(s == "ok" for *_, s in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
