"""Quality bar of the course's open MAEs: held-out masked-patch PSNR against the blur and the
mean fill, and against chapter 03's few-minutes model (issue "models worth looking at").

For each course model (``mae_tiny_course_rgb``, ``mae_tiny_course_6band``) and each of its real
training scenes, crops of the scene's held-out right quarter (never read in training), plus
synthetic scenes with seeds no training used; masks at 25 %, 50 % and 75 % (one per crop and
ratio, the same for every model). PSNR on the masked pixels, in the source's units with its
data range (the course-wide convention, mae_nb.metrics). Chapter 03's model is trained here
with chapter 03's recipe (train_course_mae on landsat7-olinda's true-colour bands, the top 75 %
of the rows; so Olinda's held-out columns above that were seen by it, landsat7-rgb and the
synthetic scenes were not) unless --chapter03 cache uses the one chapter 03 saved.

Prints a table per model, the paired gains (± 2 standard errors, crops as units) and whether
the bar is met: beats the blur at 25 % and 50 %, beats the mean fill by >= 3 dB at every ratio.
Writes one figure (original, masked, blur, chapter 03's model, course model on a held-out crop).

    MAE_NB_DATA_MIRRORS=/work/shared/data python benchmarks/course_model_quality.py
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch

from mae_nb import data, viz
from mae_nb.pretrained import COURSE_MODELS, describe_course_model, load_mae, train_course_mae
from mae_nb.pretraining import band_statistics, open_sources
from mae_nb.studies.heldout import crop_fills, heldout_crops, score_heldout

RATIOS = (0.25, 0.5, 0.75)


def chapter03_model(how: str, quiet: bool):
    """Chapter 03's model: trained here with the chapter's recipe and defaults, or its saved
    one."""
    if how == "cache":
        return load_mae("chapter03")
    sample = data.load_sample("landsat7-olinda", bands=6, size=352, quiet=True)
    start = time.perf_counter()
    run = train_course_mae(
        sample.image, sample.valid, bands=sample.rgb, tile_size=64, stride=32, epochs=60,
        mask_ratio=0.75, lr=5e-4, batch_size=8, seed=0, val_fraction=0.25, progress=not quiet,
    )  # fmt: skip
    print(
        f"chapter 03's model trained here in {time.perf_counter() - start:.0f} s "
        f"({sample.source} sample)"
    )
    return run.model


def inputs_of(model) -> list:
    """The model's real training inputs, plus unseen synthetic scenes of its band count."""
    run = model.pretrained_cfg["mae_config"]
    real = [i for i in run["data"]["inputs"] if not (isinstance(i, dict) and "synthetic" in i)]
    synth = next(
        i["synthetic"] for i in run["data"]["inputs"] if isinstance(i, dict) and "synthetic" in i
    )
    seeds = run["evaluate"]["synthetic_seeds"]
    spec = {**synth, "seeds": seeds, "sizes": [run["evaluate"]["synthetic_size"]]}
    return real + [{"synthetic": spec}]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crops", type=int, default=8, help="held-out crops per scene (default 8)")
    p.add_argument("--chapter03", choices=("train", "cache", "skip"), default="train")
    p.add_argument("--figure", type=Path, default=Path("docs/images/course_model_rgb.png"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    ch03 = None if args.chapter03 == "skip" else chapter03_model(args.chapter03, quiet=True)
    verdicts = []
    for bands, name in COURSE_MODELS.items():
        model = load_mae(name)
        print(f"\n## {name}: {describe_course_model(model)}")
        run = model.pretrained_cfg["mae_config"]["data"]
        sources = open_sources(inputs_of(model), holdout=run["holdout"], crop_size=64, quiet=True)
        band_statistics(sources, "scene")
        models = {name: model}
        if ch03 is not None and bands == 3:
            models["chapter 03"] = ch03
        start = time.perf_counter()
        scores = score_heldout(models, sources, ratios=RATIOS, crop_size=64, crops=args.crops)
        print(f"scored in {time.perf_counter() - start:.0f} s\n")
        print(scores.markdown())
        print()
        ok = True
        for r in RATIOS:
            blur, fill = scores.gain(name, "blur", r), scores.gain(name, "mean_fill", r)
            line = (
                f"{r:.0%}: {name} - blur {blur.describe(' dB')}, - mean fill "
                f"{fill.describe(' dB')} ({blur.n} crops)"
            )
            if "chapter 03" in models:
                line += (
                    f", - chapter 03's model {scores.gain(name, 'chapter 03', r).describe(' dB')}"
                )
            print(line)
            ok &= fill.mean >= 3.0 and (r > 0.5 or blur.mean > 0)
            for scene in sorted({row["scene"] for row in scores.rows}):
                b = scores.gain(name, "blur", r, scene)
                f = scores.gain(name, "mean_fill", r, scene)
                print(f"    {scene}: - blur {b.mean:+.2f} dB, - mean fill {f.mean:+.2f} dB")
        verdicts.append(f"{name}: quality bar {'MET' if ok else 'NOT MET'} (mean over crops)")
        if bands == 3 and args.figure:
            figure(model, ch03, sources[0], args.figure)
    print("\n" + "\n".join(verdicts))


def figure(model, ch03, source, path: Path) -> None:
    """Original, masked, blur, chapter 03's model and the course model on one held-out crop."""
    windows = heldout_crops(source, 64, 8)
    window = windows[min(3, len(windows) - 1)]
    models = {"course RGB model": model}
    if ch03 is not None:
        models = {"chapter 03's model": ch03, **models}
    one = crop_fills(models, source, window, 0.5, seed=3)
    shown = ("blur", *models)
    fig = viz.plot_fills(
        one.original,
        one.pixel_mask,
        {f"{name}\n{one.psnr[name]:.1f} dB": one.fills[name] for name in shown},
        title=f"{source.name}, held-out crop at row {window[0]}, col {window[1]}: 50 % masked, "
        "masked-patch PSNR",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
