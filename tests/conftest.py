"""Shared test set-up: a private cache per test session, and the real samples when mirrored.

The real samples (../shared/data in CI) are found through ``MAE_NB_DATA_MIRRORS``; tests
that need them are marked ``realdata`` and are skipped only when no mirror is configured.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A private cache (synthetic scenes, course checkpoints) for the whole session, set before any
# notebook kernel starts so kernels inherit it. Never the user's ~/.cache/mae-nb.
_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="mae-nb-test-cache-"))
os.environ["MAE_NB_CACHE"] = str(_SESSION_CACHE)
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spinning threads on a shared CPU


def real_data_dir() -> Path | None:
    from mae_nb.data import mirror_dirs

    dirs = mirror_dirs()
    return dirs[0] if dirs else None


def pytest_collection_modifyitems(config, items):
    # the browser test last: its chapters then find the checkpoints chapters 03 and 07 left in
    # the session cache when test_notebooks ran them, as a person working in order would
    # and the course's website after the smoke runs it is built from (the smoke_book fixture)
    items.sort(
        key=lambda item: 2 if "browser" in item.keywords else "smoke_book" in item.fixturenames
    )
    if real_data_dir() is None:
        skip = pytest.mark.skip(
            reason="real samples not mirrored (set MAE_NB_DATA_MIRRORS, as CI does)"
        )
        for item in items:
            if "realdata" in item.keywords:
                item.add_marker(skip)


# The smoke run of the session: tests/test_notebooks.py executes each chapter into
# SMOKE_RUN/executed, and the course's website is built from those copies (no second execution).
# MAE_NB_SMOKE_RUN names an existing run to reuse (e.g. `build` after `make run SMOKE=1`).
SMOKE_RUN = Path(os.environ.get("MAE_NB_SMOKE_RUN") or tempfile.mkdtemp(prefix="mae-nb-smoke-run-"))


@pytest.fixture(scope="session")
def smoke_run() -> Path:
    """The session's smoke run folder (``executed/`` holds the chapters run so far)."""
    return SMOKE_RUN


@pytest.fixture(scope="session")
def smoke_book(smoke_run):
    """The course's website built from the session's smoke run: (BookReport, executed folder).

    Chapters test_notebooks did not run in this session (a selection of tests) are run here
    first, in smoke mode, so the site always has every chapter."""
    from mae_nb.book import build_book
    from mae_nb.runner import list_notebooks, run_notebook

    executed = smoke_run / "executed"
    for path in list_notebooks(ROOT / "notebooks"):
        if not (executed / path.name).is_file():
            result = run_notebook(path, executed, smoke=True, timeout=600)
            assert result.status == "ok", result.error
    return build_book(executed, smoke_run / "book", folder=ROOT / "notebooks"), executed


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder for one test."""
    monkeypatch.setenv("MAE_NB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def no_mirrors(monkeypatch):
    monkeypatch.delenv("MAE_NB_DATA_MIRRORS", raising=False)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: on a shared 2-core machine, tiny models train faster
    on one thread than on two. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
