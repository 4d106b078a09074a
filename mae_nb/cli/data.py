"""``mae-nb data``: list, fetch and locate the course's datasets; write a synthetic scene."""

from __future__ import annotations

import argparse
from pathlib import Path

from mae_nb.data import registry
from mae_nb.errors import OutputExistsError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "data",
        help="list, fetch or generate datasets",
        description="The course's datasets: what is known, cached, and under which licence.",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    ls = dsub.add_parser("list", help="known datasets, whether they are here, and their licences")
    ls.set_defaults(func=_list)

    fe = dsub.add_parser("fetch", help="download datasets into the cache (or find them in mirrors)")
    fe.add_argument("names", nargs="+", metavar="NAME")
    fe.set_defaults(func=_fetch)

    sy = dsub.add_parser("synth", help="write the synthetic scene (and its labels) as GeoTIFF")
    sy.add_argument("out", type=Path, metavar="OUT.tif")
    sy.add_argument(
        "--size", type=int, default=256, help="height and width in pixels (default 256)"
    )
    sy.add_argument(
        "--bands", type=int, default=6, help="band count (default 6; 100+ for hyperspectral)"
    )
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--collar", action="store_true", help="add a nodata collar")
    sy.add_argument("--overwrite", action="store_true", help="replace OUT.tif if it exists")
    sy.set_defaults(func=_synth)


def _list(args: argparse.Namespace) -> int:
    rows = [("name", "kind", "size", "here", "licence")]
    for d in registry.REGISTRY.values():
        rows.append(
            (d.name, d.kind, registry.size_text(d.size), registry.status(d.name), d.licence)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    mirrors = registry.mirror_dirs()
    print(f"\ncache: {registry.cache_dir()}")
    print(f"mirrors (${registry.MIRRORS_ENV}): {', '.join(map(str, mirrors)) or '(none)'}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    for name in args.names:
        registry.get(name)  # every name checked before any download starts
    for name in args.names:
        paths = registry.fetch(name)
        for fname, path in paths.items():
            print(f"{name}: {fname} -> {path}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from mae_nb.data.synthetic import synthetic_scene

    if args.out.exists() and not args.overwrite:
        raise OutputExistsError(f"{args.out} already exists; pass --overwrite to replace it")
    labels = args.out.with_name(args.out.stem + "_labels.tif")
    scene = synthetic_scene(args.size, args.size, args.bands, args.seed, collar=args.collar)
    scene.to_geotiff(args.out, labels, overwrite=args.overwrite)
    print(f"wrote {args.out} ({args.bands} bands, {args.size} x {args.size}) and {labels}")
    return 0
