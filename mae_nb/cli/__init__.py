"""The ``mae-nb`` command line: one sub-command per module, each with its ``add_parser``.

Errors that mae-nb raises on purpose are printed as one line (``mae-nb: error: ...``) with
exit status 2; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys

from mae_nb import __version__
from mae_nb.errors import MaeNbError

#: Sub-command modules of ``mae_nb.cli``, in the order ``mae-nb --help`` lists them.
COMMANDS = ["run", "data", "reconstruct", "mae", "hsi", "build"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mae-nb",
        description="mae-nb: a notebook course on masked autoencoders for spatial imagery.",
    )
    parser.add_argument("--version", action="version", version=f"mae-nb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"mae_nb.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MaeNbError as exc:
        print(f"mae-nb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mae-nb: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_gone():
            raise  # a pipe of the command's own (a worker, a socket) broke: a bug, traceback
        # whoever read the output stopped reading (`mae-nb data list | head -3`): nothing to
        # report; stdout goes to /dev/null so that Python's flush at exit stays quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _stdout_gone() -> bool:
    """Whether the reader of standard output has closed it (a pipe with no reader: POLLERR)."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()  # POSIX; elsewhere the error keeps its traceback
    except (AttributeError, OSError, ValueError):
        return False
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
