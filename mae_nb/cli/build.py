"""``mae-nb build``: write the course's generated editions (the learner notebooks)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "build",
        help="build the learner edition of the notebooks",
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


def _learners(args: argparse.Namespace) -> int:
    from mae_nb.editions import LEARNERS_SUBDIR, build_learners
    from mae_nb.runner import notebooks_dir

    src = args.src or notebooks_dir()
    out = args.out or src / LEARNERS_SUBDIR
    written = build_learners(src, out, overwrite=args.overwrite)
    print(f"wrote the learner edition of {len(written)} chapters to {out}")
    return 0
