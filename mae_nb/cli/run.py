"""``mae-nb run``: execute notebooks headless with papermill."""

from __future__ import annotations

import argparse
from pathlib import Path

from mae_nb.errors import InputError
from mae_nb.notebook import set_run_time_line, set_track_run_times
from mae_nb.runner import (
    DEFAULT_TIMEOUT,
    load_run_times,
    parse_value,
    record_run_times,
    resolve_notebooks,
    run_notebooks,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="execute notebooks headless with papermill",
        description=(
            "Execute the course's notebooks in order (or the ones named: a number like 04, a "
            "name, or a path), writing executed copies, metrics and summary.md under --out. "
            "Exit status 1 when any notebook fails."
        ),
    )
    p.add_argument(
        "notebooks", nargs="*", metavar="NOTEBOOK", help="notebooks to run (default: all)"
    )
    p.add_argument(
        "--smoke", action="store_true", help="fast mode for CI: sets the SMOKE parameter"
    )
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a parameter of the notebooks' parameters cell (an unknown name is an error)",
    )
    p.add_argument("--out", type=Path, default=Path("build"), help="output folder (default: build)")
    p.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_TIMEOUT,
        help=f"seconds any one cell may run (default: {DEFAULT_TIMEOUT})",
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="record each chapter's run time (full or smoke) in docs/run_times.json and rewrite "
        "the run-time line of its header and the track table of docs/instructors.md from it "
        "(default parameters only)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    params = {name: parse_value(value) for name, value in args.parameter}
    if args.record and set(params) - {"SMOKE"}:
        raise InputError(
            "--record records the run times of the chapters' default runs; drop the -p "
            f"parameter(s) {sorted(set(params) - {'SMOKE'})} or --record"
        )
    results = run_notebooks(
        args.notebooks or None,
        smoke=args.smoke,
        parameters=params,
        out_dir=args.out,
        timeout=args.timeout,
    )
    if args.record:
        smoke = bool(args.smoke or params.get("SMOKE"))
        where = record_run_times(results, smoke=smoke)
        run_times = load_run_times(where)
        changed = [
            p.stem
            for p in resolve_notebooks(args.notebooks or None)
            if set_run_time_line(p, run_times)
        ]
        guide = where.parent / "instructors.md"
        if guide.is_file() and set_track_run_times(guide, run_times):
            changed.append(str(guide))
        print(f"Recorded run times in {where}; rewritten: {', '.join(changed) or 'nothing'}")
    failed = [r for r in results if r.status != "ok"]
    print(f"Summary: {args.out / 'summary.md'} ({len(results) - len(failed)}/{len(results)} ok)")
    return 1 if failed else 0
