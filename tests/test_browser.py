"""The course as a person uses it: JupyterLab in a real (headless) browser, sliders included.

Papermill proves the notebooks run; only a browser proves the sliders render and redraw. This
module starts JupyterLab from this environment on 127.0.0.1 (token auth, a temporary root with
smoke-mode copies of the notebooks, the session's ``MAE_NB_CACHE``), drives Debian's Chromium
with Playwright (never a downloaded browser), runs all cells from the Run menu, checks that no
cell failed and no widget failed to display, then moves each chapter's sliders from the keyboard
and checks that the figure next to them changes. Screenshots go to the test's folder and to
``build/screenshots/`` (``04_before.png``, ``04_after_mask_ratio.png``, ...).

Skipped only when Chromium (or Playwright) is missing outside CI; with ``CI=true`` it must run
(``.ci/run`` installs ``chromium`` when it is missing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from mae_nb.runner import list_notebooks, recorded_seconds

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
# Each chapter has its own time to run all its cells in the browser: three times its recorded
# smoke run (docs/run_times.json, the figure its header states) plus a minute for the kernel and
# the page, so that one slow chapter does not eat the next one's time. A machine shared with other
# work may need more (MAE_NB_BROWSER_FACTOR); CI runs with the default.
BROWSER_FACTOR = float(os.environ.get("MAE_NB_BROWSER_FACTOR", "3"))
SLIDERS_S = 120  # moving a chapter's sliders and waiting for each figure to redraw


def run_budget(path: Path) -> float:
    """Seconds chapter ``path`` may take to run all its cells in the browser."""
    recorded = recorded_seconds(path.stem, smoke=True)
    assert recorded is not None, (
        f"{path.stem} has no recorded smoke run time: `mae-nb run --smoke --record` first"
    )
    return 60 + BROWSER_FACTOR * recorded


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Sliders a chapter must have (regex on the slider's description, case-insensitive); a chapter
# with sliders but no entry here must have at least one, and all of its sliders are moved.
REQUIRED_SLIDERS = {
    "02": ("mask.?ratio",),
    "04": ("mask.?ratio", "iteration"),
    "07": ("mask.?ratio",),
}

NOTEBOOKS = list_notebooks(ROOT / "notebooks")


def has_sliders(path: Path) -> bool:
    """Whether a chapter shows the course's sliders (calls ``mae_nb.widgets`` or ipywidgets)."""
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    return bool(re.search(r"\bwidgets\.\w+\(|ipywidgets", code))


# Every chapter with sliders (chapter 00 when there is none yet, so Run All is still checked).
CHAPTERS = [p for p in NOTEBOOKS if has_sliders(p)] or NOTEBOOKS[:1]

# Per test: the slowest chapter's budget, its sliders, and JupyterLab's and Chromium's start.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(int(max(map(run_budget, CHAPTERS)) + SLIDERS_S + 180)),
]


def _missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def missing():
    why = _missing_browser()
    if why and IN_CI:
        pytest.fail(f"the browser test must run in CI, but {why}")
    if why:
        pytest.skip(why)


def smoke_copy(src: Path, dst: Path) -> Path:
    """Copy a notebook with ``SMOKE = True`` in its parameters cell (as ``-p SMOKE True`` does)."""
    nb = nbformat.read(src, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source, n = re.subn(r"^SMOKE\s*=.*$", "SMOKE = True", cell.source, count=1, flags=re.M)
    assert n == 1, f"{src.name}: the parameters cell does not assign SMOKE"
    nbformat.write(nb, dst)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(lab: dict, path: str, method: str = "GET"):
    req = urllib.request.Request(
        f"{lab['url']}{path}", method=method, headers={"Authorization": f"token {lab['token']}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


@pytest.fixture(scope="module")
def lab(missing, tmp_path_factory):
    """A JupyterLab server of this environment with smoke copies of the chapters; its settings,
    workspaces and runtime files live in a temporary folder, never the user's."""
    start = time.monotonic()
    home = tmp_path_factory.mktemp("lab")
    root = home / "root"
    (root / "notebooks").mkdir(parents=True)
    for p in NOTEBOOKS:
        smoke_copy(p, root / "notebooks" / p.name)
    settings = home / "settings"
    # Every cell in the DOM (so sliders below the fold are there), and no news toast over the page.
    for rel, value in {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    token = os.urandom(16).hex()
    port = free_port()
    env = dict(os.environ)  # MAE_NB_CACHE (tests/conftest.py) and MAE_NB_DATA_MIRRORS carry over
    env.pop("MAE_NB_METRICS_FILE", None)
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI runners run as root
    log_path = home / "jupyterlab.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    info = {
        "url": f"http://127.0.0.1:{port}",
        "token": token,
        "root": root,
        "start": start,
        "log": log_path,
    }
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"JupyterLab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            try:
                api(info, "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"JupyterLab did not answer within 90 s:\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(0.5)
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def browser(lab, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(60_000)
        try:
            yield context
        finally:
            context.close()


# --------------------------------------------------------------------------- page helpers

CELL_OF = (
    "xpath=ancestor::div[contains(concat(' ', @class, ' '), ' jp-CodeCell ')][1]"  # a widget's cell
)
_PROMPTS = (
    "() => Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) "
    ".jp-CodeCell .jp-InputPrompt')).map(e => e.textContent.trim())"
)


def wait_idle(page, timeout_s: float) -> None:
    """Until every code cell has run (``[n]:``, none queued ``[*]:``) and the kernel is idle,
    twice in a row one second apart (the kernel is idle for a moment between cells)."""
    deadline = time.monotonic() + timeout_s
    calm = 0
    while calm < 2:
        prompts = page.evaluate(_PROMPTS)
        status = page.locator(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator"
        )
        idle = status.count() > 0 and status.first.get_attribute("data-status") == "idle"
        done = prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts)
        calm = calm + 1 if (idle and done) else 0
        if time.monotonic() > deadline:
            queued = sum(p == "[*]:" for p in prompts)
            pytest.fail(
                f"the notebook was still running after {timeout_s:.0f} s ({queued} cells queued; "
                f"prompts {prompts})"
            )
        time.sleep(1)


def shot(target, name: str, out: Path) -> Path:
    path = out / name
    target.screenshot(path=str(path))
    shutil.copy(path, _keep_dir() / name)
    return path


def _keep_dir() -> Path:
    """``build/screenshots/``: copies of the screenshots for people to look at."""
    keep = ROOT / "build" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    return keep


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def cell_state(cell) -> tuple[tuple[str, ...], str]:
    """What a person sees change: the bytes (SHA-256) of the images in a cell's output, and the
    text beside them (the sliders' own readouts excluded). Bytes, not ``src``: an image widget
    gets a new blob URL on every update, even when the picture is the same."""
    return cell.evaluate(
        """async c => {
            const digests = [];
            for (const img of c.querySelectorAll('.jp-OutputArea img')) {
                try {
                    const bytes = await (await fetch(img.src)).arrayBuffer();
                    const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
                    digests.push(Array.from(hash, b => b.toString(16).padStart(2, '0')).join(''));
                } catch (e) {
                    digests.push('unreadable');  // replaced while being read: read again
                }
            }
            const texts = Array.from(
                c.querySelectorAll('.widget-html-content, .jp-OutputArea-output pre')
            ).map(e => e.textContent);
            return [digests, texts.join('\\n')];
        }"""
    )


def distorted_images(cell) -> list[str]:
    """Images in a cell shown at another aspect ratio than drawn (squeezed by the layout)."""
    return cell.evaluate(
        """c => Array.from(c.querySelectorAll('.jp-OutputArea img'))
            .filter(i => i.naturalWidth && i.clientWidth && i.clientHeight)
            .map(i => [i.naturalWidth / i.naturalHeight, i.clientWidth / i.clientHeight,
                       i.naturalWidth, i.naturalHeight, i.clientWidth, i.clientHeight])
            .filter(([drawn, shown]) => Math.abs(shown / drawn - 1) > 0.05)
            .map(([, , nw, nh, cw, ch]) => `drawn ${nw}x${nh} px, shown ${cw}x${ch} px`)"""
    )


def open_and_run(page, lab: dict, name: str, timeout_s: float) -> None:
    """Open a notebook in a workspace of its own, wait for its kernel, then Run > Run All Cells."""
    workspace = re.sub(r"\W", "-", Path(name).stem)
    page.goto(f"{lab['url']}/lab/workspaces/{workspace}/tree/notebooks/{name}?token={lab['token']}")
    page.wait_for_selector(
        ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000
    )
    page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(
        timeout=90_000
    )  # the status bar: kernel ready
    for attempt in range(3):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if any(p != "[ ]:" for p in page.evaluate(_PROMPTS)):
                wait_idle(page, timeout_s)
                return
            time.sleep(0.5)
    pytest.fail(f"Run > Run All Cells did not start {name} (three tries)")


def save_and_read(page, path: Path):
    """Save from the browser (Ctrl+S) and read what was saved: the outputs people saw."""
    before = path.stat().st_mtime_ns
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.click(
        position={"x": 5, "y": 5}
    )
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before:
        assert time.monotonic() < deadline, (
            f"saving {path.name} from the browser did not write the file"
        )
        time.sleep(0.3)
    time.sleep(0.5)
    return nbformat.read(path, as_version=4)


def shutdown_kernels(lab: dict) -> None:
    for session in api(lab, "/api/sessions"):
        api(lab, f"/api/sessions/{session['id']}", method="DELETE")


# --------------------------------------------------------------------------- the test


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem[:2] for p in CHAPTERS])
def test_chapter_runs_in_jupyterlab_and_its_sliders_redraw(path, lab, browser, tmp_path):
    nn = path.stem[:2]
    budget = run_budget(path)
    for old in _keep_dir().glob(f"{nn}_*.png"):  # an earlier run's pictures of this chapter
        old.unlink()
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    t0 = time.monotonic()
    try:
        open_and_run(page, lab, path.name, budget)
        ran = time.monotonic() - t0

        # No cell failed: the saved notebook has every code cell executed and no error output.
        nb = save_and_read(page, lab["root"] / "notebooks" / path.name)
        code = [c for c in nb.cells if c.cell_type == "code"]
        failed = [
            (i, o.get("ename"), o.get("evalue"))
            for i, c in enumerate(code)
            for o in c.outputs
            if o.output_type == "error"
        ]
        assert failed == [], f"cells failed in the browser: {failed}"
        assert all(c.execution_count for c in code), "Run All Cells stopped before the end"
        text = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").inner_text()
        assert "Error displaying widget" not in text

        sliders = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .widget-slider")
        if not has_sliders(path):
            shot(page, f"{nn}_run_all.png", tmp_path)
            print(f"chapter {nn}: run all cells {ran:.0f} s (no sliders)")
            return
        assert sliders.count() > 0, f"chapter {nn} calls widgets but no slider rendered"
        labels = [
            sliders.nth(i).locator(".widget-label").first.inner_text().strip()
            for i in range(sliders.count())
        ]
        wanted = REQUIRED_SLIDERS.get(nn)
        if wanted:
            chosen = []
            for pattern in wanted:
                hits = [i for i, label in enumerate(labels) if re.search(pattern, label, re.I)]
                assert hits, f"chapter {nn} has no slider matching {pattern!r}; sliders: {labels}"
                chosen.append(hits[0])
        else:
            chosen = list(range(len(labels)))

        first_cell = sliders.nth(chosen[0]).locator(CELL_OF)
        first_cell.scroll_into_view_if_needed()
        shot(first_cell, f"{nn}_before.png", tmp_path)
        bad = distorted_images(first_cell)
        assert not bad, (
            f"chapter {nn}: the figure next to the sliders is shown squeezed ({bad}; see "
            f"{nn}_before.png)"
        )
        for i in chosen:
            slider = sliders.nth(i)
            cell = slider.locator(CELL_OF)
            cell.scroll_into_view_if_needed()
            before = cell_state(cell)
            assert before[0], f"chapter {nn}: no figure next to the {labels[i]!r} slider"
            readout = slider.locator(".widget-readout").first
            value = readout.inner_text()
            handle = slider.locator(".noUi-handle").first
            at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
            handle.focus()
            page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")
            page.wait_for_function(
                "([el, v]) => el.textContent !== v",
                arg=[readout.element_handle(), value],
                timeout=10_000,
            )
            deadline = time.monotonic() + SLIDERS_S
            while (now := cell_state(cell)[0]) == before[0] or "unreadable" in now:
                assert time.monotonic() < deadline, (
                    f"chapter {nn}: moving {labels[i]!r} from {value} to {readout.inner_text()} "
                    "did not change the figure"
                )
                time.sleep(0.5)
            wait_idle(page, 120)
            after = cell_state(cell)
            assert "cannot run" not in after[1], after[1]
            shot(cell, f"{nn}_after_{slug(labels[i])}.png", tmp_path)
            bad = distorted_images(cell)
            assert not bad, (
                f"chapter {nn}: after moving {labels[i]!r} the figure is shown squeezed: {bad}"
            )
            assert "Error displaying widget" not in cell.inner_text()
        assert errors == [], f"JavaScript errors on the page: {errors}"
        print(
            f"chapter {nn}: run all cells {ran:.0f} s, {len(chosen)} slider(s) moved and redrawn "
            f"in {time.monotonic() - t0 - ran:.0f} s; "
            f"{time.monotonic() - lab['start']:.0f} s since JupyterLab started"
        )
    except BaseException:
        page.screenshot(path=str(tmp_path / f"{nn}_failure.png"))
        shutil.copy(tmp_path / f"{nn}_failure.png", _keep_dir() / f"{nn}_failure.png")
        raise
    finally:
        page.close()
        shutdown_kernels(lab)


# --------------------------------------------------------------------------- the course's website

_LOCAL_IMAGES = (
    "() => Array.from(document.images).filter(i => i.src.startsWith(location.origin))"
    ".map(i => [i.src, i.complete, i.naturalWidth])"
)


@pytest.fixture(scope="module")
def book_server(smoke_book):
    """The website built from the session's smoke run (``smoke_book``), served over HTTP on
    127.0.0.1 as a static host would serve it."""
    import functools
    import http.server
    import threading

    report, _ = smoke_book

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no line per request in the test's output
            pass

    handler = functools.partial(Quiet, directory=str(report.out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", report
    finally:
        server.shutdown()
        server.server_close()


def test_the_course_website_shows_its_images_in_a_browser(book_server, browser, tmp_path):
    """The landing page and a slider chapter of the site (built from the smoke run) in Chromium:
    every image of the site itself is decoded (naturalWidth > 0; launch badges from other hosts
    are not part of the site), the chapter shows at least the images its run produced, and its
    slider shows as the run's strip with a line to launch it. Screenshots: ``book_index.png``,
    ``book_<NN>.png`` and ``book_<NN>_slider.png``."""
    url, report = book_server
    chapter = CHAPTERS[0]
    nn = chapter.stem[:2]
    for old in _keep_dir().glob("book_*.png"):
        old.unlink()
    page = browser.new_page()
    try:
        for name, path, wanted in (
            ("book_index.png", "/index.html", 1),
            (f"book_{nn}.png", f"/notebooks/{chapter.stem}.html", report.images[chapter.stem]),
        ):
            page.goto(url + path, wait_until="domcontentloaded")
            page.wait_for_function(
                "() => Array.from(document.images).filter(i => i.src.startsWith(location.origin))"
                ".every(i => i.complete)",
                timeout=30_000,
            )
            images = page.evaluate(_LOCAL_IMAGES)
            broken = [src for src, _, width in images if width == 0]
            assert broken == [], f"{path}: images that did not decode: {broken}"
            assert len(images) >= wanted, f"{path}: {len(images)} images, expected {wanted}"
            assert "VBox(children" not in page.inner_text("body")
            shot(page, name, tmp_path)
        if has_sliders(chapter):
            launch = page.locator(".mae-nb-launch").first
            strip = launch.locator("xpath=ancestor::div[contains(@class, 'cell_output')][1]")
            # the theme's sticky bars would cover the top of a tall element's screenshot
            page.add_style_tag(content=".bd-header-article, .skip-link { visibility: hidden; }")
            strip.scroll_into_view_if_needed()
            assert strip.locator("img").count() >= 1, "the slider shows no strip on the site"
            shot(strip, f"book_{nn}_slider.png", tmp_path)
        print(f"website: index and chapter {nn} decoded ({len(images)} images on the chapter page)")
    finally:
        page.close()
