"""``mae-nb build``: write the course's generated editions (the learner notebooks, the website)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "build",
        help="build the learner edition of the notebooks, or the course's website",
        description="Write editions generated from the committed notebooks (the instructor's).",
    )
    bsub = p.add_subparsers(dest="build_command", metavar="EDITION", required=True)
    le = bsub.add_parser(
        "learners",
        help="the learner edition: every exercise's solution replaced by a stub to fill in",
        description=(
            "Write the learner edition of every chapter: each cell tagged `solution` becomes a "
            "stub (`name = ...` under its hint, or '**Your answer:** ...'), the checks stay, "
            "outputs are cleared. Refuses a folder that already holds files unless --overwrite."
        ),
    )
    le.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: notebooks/learners next to the chapters)",
    )
    le.add_argument(
        "--src", type=Path, default=None, help="the chapters' folder (default: the course's)"
    )
    le.add_argument(
        "--overwrite", action="store_true", help="replace the chapters already in --out"
    )
    le.set_defaults(func=_learners)
    bk = bsub.add_parser(
        "book",
        help="the course as a static website, from the executed chapters of the last run",
        description=(
            "Render the executed chapters of the last `mae-nb run` (every figure, table and "
            "verdict; sliders as a strip of a few positions) with the README as landing page, "
            "docs/instructors.md, the data registry and the API reference, into a static "
            "website. Executes nothing; refuses a run with a chapter missing or failed, and "
            "replaces --out only once the new site is built and checked."
        ),
    )
    bk.add_argument(
        "--executed",
        type=Path,
        default=Path("build/executed"),
        help="the executed chapters (default: build/executed, where `mae-nb run` writes them)",
    )
    bk.add_argument(
        "--out", type=Path, default=Path("build/book"), help="the site (default: build/book)"
    )
    bk.set_defaults(func=_book)


def _learners(args: argparse.Namespace) -> int:
    from mae_nb.editions import LEARNERS_SUBDIR, build_learners
    from mae_nb.runner import notebooks_dir

    src = args.src or notebooks_dir()
    out = args.out or src / LEARNERS_SUBDIR
    written = build_learners(src, out, overwrite=args.overwrite)
    print(f"wrote the learner edition of {len(written)} chapters to {out}")
    return 0


def _book(args: argparse.Namespace) -> int:
    from mae_nb.book import build_book

    report = build_book(args.executed, args.out)
    mb = report.bytes / 1e6
    print(
        f"built the course's website from the {report.run} ({len(report.chapters)} chapters) "
        f"in {report.seconds:.1f} s: {args.out}/ ({mb:.1f} MB); open {args.out}/index.html"
    )
    print("images per chapter page: " + ", ".join(f"{k[:2]} {v}" for k, v in report.images.items()))
    if report.warnings:
        print(f"{len(report.warnings)} Sphinx warning(s), the first: {report.warnings[0]}")
    if report.stale:
        print(f"stale executed copies (older than their chapter): {', '.join(report.stale)}")
    return 0
