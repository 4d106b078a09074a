"""Executing the course's notebooks headless with papermill, and recording their metrics.

A notebook records its key numbers with :func:`record_metrics`. Run by the runner, they go
to ``<out>/<notebook>.metrics.json`` next to the executed copy; the runner's summary
(``<out>/summary.md`` and ``summary.json``) lists each notebook's status, run time and
metrics, then the expected-results sheet an instructor reads: per chapter, its recorded numbers
and the verdict lines it printed (:func:`verdict_lines`). ``tests/test_notebooks.py`` compares
the metrics with committed baselines.

The run times of the last runs are recorded in ``docs/run_times.json`` (:func:`record_run_times`,
``mae-nb run --record``), from which each chapter's header states its run time.

Parameters given with ``-p`` must exist in the notebook's ``parameters`` cell: an unknown
name is an error (papermill itself would only warn and the run would silently ignore it).
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from mae_nb.errors import InputError, NotebookError

METRICS_ENV = "MAE_NB_METRICS_FILE"
#: Set for the kernels the runner starts: the course's sliders then also put a static strip of a
#: few slider positions in their output (``mae_nb.widgets.static_strip``), which the website of
#: the course (``mae-nb build book``) shows where no kernel can move a slider.
STATIC_STRIPS_ENV = "MAE_NB_STATIC_STRIPS"
KERNEL_NAME = "mae-nb"
DEFAULT_TIMEOUT = 1800  # seconds any one cell may run


# --------------------------------------------------------------------------- metrics


def peak_memory_mb() -> float:
    """Peak resident memory of this process (for a notebook: its kernel) in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` would also count the
    memory of the process that started this one (Linux carries the parent's peak at fork
    over an exec), so a kernel started by a large process would report that process's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def record_metrics(metrics: Mapping[str, float], *, data: str = "synthetic") -> dict[str, Any]:
    """Record a notebook's key numbers; call it in the notebook's last code cell.

    ``metrics``: name -> finite number. ``data``: which data the numbers come from
    (``"synthetic"`` or ``"real"``), because baselines differ between them. The kernel's
    peak memory is added as ``peak_memory_mb``. Run by the runner, the record is written
    next to the executed notebook; run by hand, it is only printed.
    """
    if data not in ("synthetic", "real"):
        raise InputError(f"data must be 'synthetic' or 'real', got {data!r}")
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"metric {name!r} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise InputError(f"metric {name!r} is {number}; a recorded metric must be finite")
        clean[str(name)] = number
    record = {"data": data, "metrics": clean, "peak_memory_mb": round(peak_memory_mb(), 1)}
    target = os.environ.get(METRICS_ENV)
    if target:
        path = Path(target)
        previous = json.loads(path.read_text()) if path.exists() else {"metrics": {}}
        previous["metrics"].update(clean)
        record = {**record, "metrics": previous["metrics"]}
        path.write_text(json.dumps(record, indent=2, sort_keys=True))
    width = max((len(k) for k in clean), default=0)
    print(f"Recorded metrics ({data} data):")
    for name, value in clean.items():
        print(f"  {name:<{width}}  {value:.4g}")
    return record


# --------------------------------------------------------------------------- notebooks


def notebooks_dir() -> Path:
    """The course's ``notebooks/`` folder: next to the package in a checkout, else ./notebooks."""
    here = Path(__file__).resolve().parents[1] / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def list_notebooks(folder: Path | None = None) -> list[Path]:
    folder = notebooks_dir() if folder is None else folder
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def resolve_notebooks(names: Iterable[str] | None = None, folder: Path | None = None) -> list[Path]:
    """Paths of the notebooks named by path, file name, stem or number prefix (``"04"``)."""
    available = list_notebooks(folder)
    if not names:
        if not available:
            raise NotebookError(
                f"no notebooks (NN_name.ipynb) found in {folder or notebooks_dir()}"
            )
        return available
    found = []
    for name in names:
        p = Path(name)
        if p.suffix == ".ipynb" and p.is_file():
            found.append(p.resolve())
            continue
        matches = [
            a
            for a in available
            if a.name == name or a.stem == name or a.name.startswith(f"{name}_")
        ]
        if len(matches) != 1:
            listing = ", ".join(a.stem for a in available) or "(none)"
            what = "matches several notebooks" if matches else "is not a notebook of the course"
            raise NotebookError(
                f"{name!r} {what}; expected one of: {listing} (or a path to an .ipynb file)"
            )
        found.append(matches[0])
    return found


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Parameter names and defaults of a notebook's ``parameters`` cell."""
    import nbformat
    import papermill

    try:
        meta = nbformat.read(path, as_version=4).metadata
    except Exception as exc:  # whatever nbformat trips on, the file is what is wrong
        raise NotebookError(
            f"{path.name} is not a notebook Jupyter can read ({type(exc).__name__}: {exc})"
        ) from None
    kernelspec = meta.get("kernelspec") or {}
    language = (meta.get("language_info") or {}).get("name") or kernelspec.get("language")
    if not (kernelspec.get("name") and language):  # papermill needs both, or fails obscurely
        raise NotebookError(
            f"{path.name} names no kernel or language in its metadata; open it in Jupyter, "
            "choose the Python kernel and save it"
        )
    return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}


def check_parameters(path: Path, parameters: Mapping[str, Any]) -> None:
    """Fail early when ``parameters`` names something the notebook does not have."""
    known = notebook_parameters(path)
    unknown = [p for p in parameters if p not in known]
    if unknown:
        raise NotebookError(
            f"{path.name} has no parameter {unknown[0]!r}; its parameters are: "
            + (", ".join(known) or "(none)")
        )


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value read as papermill's CLI does: YAML (numbers, lists), else text."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def ensure_kernel() -> str:
    """A Jupyter kernelspec (``mae-nb``) for this Python, so notebooks run in this environment.

    It is (re)installed when missing, made for another Python, or made by another ipykernel
    (whose metadata, e.g. the transport encryption it supports, differs from this one's).
    """
    from ipykernel.kernelspec import get_kernel_dict
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if (
            spec.argv
            and Path(spec.argv[0]).resolve() == Path(sys.executable).resolve()
            and spec.metadata == get_kernel_dict()["metadata"]
        ):
            return KERNEL_NAME
    except NoSuchKernel:
        pass
    try:
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL_NAME, display_name="Python (mae-nb)", prefix=sys.prefix)
        return KERNEL_NAME
    except OSError:  # read-only environment: the native kernel of this Python is the next best
        return "python3"


def _kernel_config():
    """Settings of the kernel manager: encrypt the kernel's traffic when this environment can.

    A kernel talks to the runner over local TCP ports; with CurveZMQ keys (jupyter_client's
    ``transport_encryption``, pyzmq built with curve, a kernelspec that declares it) that
    traffic is encrypted, and the kernel has no reason to print its warning "Kernel is running
    over TCP without encryption" for every notebook.
    """
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    if "transport_encryption" in KernelManager.class_trait_names() and zmq.has("curve"):
        return Config({"KernelManager": {"transport_encryption": "auto"}})
    return Config()


def verdict_lines(executed: str | Path) -> list[str]:
    """The verdict lines an executed notebook showed: each line of its printed or Markdown output
    that states a verdict of :mod:`mae_nb.stats` (``SUPPORTED``, ``CONTRADICTED``,
    ``INCONCLUSIVE``), without Markdown emphasis and list marks, in order, each once."""
    import nbformat

    from mae_nb.stats import VERDICTS

    words = re.compile(r"\b(?:" + "|".join(VERDICTS.values()) + r")\b")
    nb = nbformat.read(executed, as_version=4)
    lines: list[str] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "stream":
                text = out.get("text", "") if out.get("name") == "stdout" else ""
            else:
                data = out.get("data", {})
                text = data.get("text/markdown") or ""
            for line in text.splitlines():
                clean = re.sub(r"^[\s>*+-]*|\*\*", "", line).strip()
                if words.search(clean) and clean not in lines:
                    lines.append(clean)
    return lines


def run_times_path() -> Path:
    """The record of the last runs' times: ``docs/run_times.json`` beside ``notebooks/``."""
    return notebooks_dir().parent / "docs" / "run_times.json"


def load_run_times(path: str | Path | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """The recorded run times: ``{"full"|"smoke": {notebook stem: {"seconds", "cores", "date",
    "source"}}}`` (empty sections when there is no record)."""
    path = run_times_path() if path is None else Path(path)
    record = json.loads(path.read_text()) if path.is_file() else {}
    return {"full": record.get("full", {}), "smoke": record.get("smoke", {})}


def record_run_times(
    results: Iterable[NotebookResult], *, smoke: bool, path: str | Path | None = None
) -> Path:
    """Write each successful run's time into the record (``full`` or ``smoke`` section),
    replacing that chapter's previous entry and keeping the others."""
    path = run_times_path() if path is None else Path(path)
    record = load_run_times(path)
    section = record["smoke" if smoke else "full"]
    for r in results:
        if r.status == "ok":
            section[r.notebook] = {
                "seconds": r.seconds,
                "cores": os.cpu_count(),
                "date": time.strftime("%Y-%m-%d"),
                "source": "mae-nb run --record" + (" --smoke" if smoke else ""),
            }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def recorded_seconds(notebook: str, *, smoke: bool, path: str | Path | None = None) -> float | None:
    """The recorded run time of ``notebook`` (a stem) in smoke or full mode, None if none."""
    entry = load_run_times(path)["smoke" if smoke else "full"].get(notebook)
    return None if entry is None else float(entry["seconds"])


def within_factor(
    seconds: float, recorded: float, factor: float = 2.0, floor: float = 10.0
) -> bool:
    """Whether a run time is within ``factor`` of the recorded one (both taken as at least
    ``floor`` seconds, so that a kernel's start-up jitter does not decide for short runs)."""
    a, b = max(seconds, floor), max(recorded, floor)
    return b / factor <= a <= b * factor


@dataclass
class NotebookResult:
    """What happened to one notebook."""

    notebook: str
    status: str  # "ok" or "failed"
    seconds: float
    output: str
    metrics: dict[str, float] = field(default_factory=dict)
    data: str | None = None
    peak_memory_mb: float | None = None
    error: str = ""
    verdicts: list[str] = field(default_factory=list)


def run_notebook(
    path: Path,
    out_dir: Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    smoke: bool = False,
    timeout: int = DEFAULT_TIMEOUT,
    kernel_name: str | None = None,
) -> NotebookResult:
    """Execute one notebook into ``out_dir`` with its folder as working directory."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path = Path(path).resolve()
    if not path.is_file():
        raise NotebookError(f"no notebook at {path}")
    params = dict(parameters or {})
    if smoke:
        params.setdefault("SMOKE", True)
    check_parameters(path, params)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    metrics_file = out_dir / f"{path.stem}.metrics.json"
    if metrics_file.exists():
        metrics_file.unlink()
    old = os.environ.get(METRICS_ENV)
    old_strips = os.environ.get(STATIC_STRIPS_ENV)
    os.environ[METRICS_ENV] = str(metrics_file.resolve())
    os.environ[STATIC_STRIPS_ENV] = "1"
    # OpenMP threads that spin while idle make small torch/BLAS work many times slower on a
    # shared CPU (Binder, a busy laptop); kernels inherit a passive wait unless told otherwise.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    start = time.perf_counter()
    error, status = "", "ok"
    try:
        papermill.execute_notebook(
            str(path),
            str(output),
            parameters=params,
            cwd=str(path.parent),
            kernel_name=kernel_name or ensure_kernel(),
            execution_timeout=timeout,
            progress_bar=False,
            log_output=False,
            config=_kernel_config(),
        )
    except PapermillExecutionError as exc:
        status = "failed"
        error = (
            f"{path.name}: cell {exc.exec_count} (execution count) failed with "
            f"{exc.ename}: {exc.evalue}. The executed notebook with the traceback is {output}"
        )
    except Exception as exc:  # kernel died, timeout, ...
        status = "failed"
        error = f"{path.name}: {type(exc).__name__}: {exc}. Partial output: {output}"
    finally:
        if old is None:
            os.environ.pop(METRICS_ENV, None)
        else:
            os.environ[METRICS_ENV] = old
        if old_strips is None:
            os.environ.pop(STATIC_STRIPS_ENV, None)
        else:
            os.environ[STATIC_STRIPS_ENV] = old_strips
    seconds = time.perf_counter() - start
    result = NotebookResult(path.stem, status, round(seconds, 1), str(output), error=error)
    if output.is_file():
        result.verdicts = verdict_lines(output)
    if metrics_file.exists():
        record = json.loads(metrics_file.read_text())
        result.metrics = record.get("metrics", {})
        result.data = record.get("data")
        result.peak_memory_mb = record.get("peak_memory_mb")
    elif status == "ok":
        result.status = "failed"
        result.error = (
            f"{path.name} ran but recorded no metrics (it must call mae_nb.record_metrics)"
        )
    return result


def run_notebooks(
    names: Iterable[str] | None = None,
    *,
    smoke: bool = False,
    parameters: Mapping[str, Any] | None = None,
    out_dir: str | Path = "build",
    timeout: int = DEFAULT_TIMEOUT,
    folder: Path | None = None,
    echo=print,
) -> list[NotebookResult]:
    """Execute notebooks in order (all by default) and write ``summary.md``/``summary.json``.

    Every notebook is checked (exists, parameters known) before the first one runs.
    Notebooks after a failure still run, so one broken chapter does not hide another.
    """
    paths = resolve_notebooks(names, folder)
    params = dict(parameters or {})
    if smoke:
        params.setdefault("SMOKE", True)
    for p in paths:
        check_parameters(p, params)
    out = Path(out_dir)
    executed = out / "executed"
    kernel = ensure_kernel()
    results = []
    for i, p in enumerate(paths, 1):
        echo(f"[{i}/{len(paths)}] {p.stem} ...")
        result = run_notebook(p, executed, params, timeout=timeout, kernel_name=kernel)
        results.append(result)
        mem = f", peak {result.peak_memory_mb:.0f} MiB" if result.peak_memory_mb else ""
        echo(f"[{i}/{len(paths)}] {p.stem}: {result.status} in {result.seconds:.1f} s{mem}")
        if result.error:
            echo(f"    {result.error}")
    write_summary(results, out, smoke=smoke, parameters=params)
    return results


def expected_results(results: list[NotebookResult]) -> list[str]:
    """The expected-results sheet (Markdown lines): per notebook, its recorded numbers and the
    verdict lines it printed, so an instructor sees what learners should see."""
    from mae_nb.stats import markdown_table

    lines = [
        "",
        "## Expected results",
        "",
        "What each chapter recorded and concluded in this run (the numbers a learner's run of the",
        "same mode and data should come close to; verdicts may differ where the evidence is thin).",
    ]
    for r in results:
        memory = f", peak {r.peak_memory_mb:.0f} MiB" if r.peak_memory_mb else ""
        lines += [
            "",
            f"### {r.notebook}",
            "",
            f"{r.status}, {r.seconds:.1f} s{memory}, {r.data or 'unknown'} data.",
        ]
        if r.metrics:
            rows = [{"number": k, "value": v} for k, v in r.metrics.items()]
            lines += ["", markdown_table(rows, floatfmt=".4g")]
        lines += [""] + (
            ["Verdicts:", ""] + [f"- {v}" for v in r.verdicts]
            if r.verdicts
            else ["No verdict lines."]
        )
    return lines


def write_summary(
    results: list[NotebookResult], out: Path, *, smoke: bool, parameters: Mapping
) -> Path:
    """``summary.md`` (a table a person reads) and ``summary.json`` (for tools) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(
        json.dumps(
            {
                "smoke": smoke,
                "parameters": dict(parameters),
                "notebooks": [asdict(r) for r in results],
            },
            indent=2,
            default=str,
        )
    )
    total = sum(r.seconds for r in results)
    lines = [
        "# mae-nb notebook run",
        "",
        f"Mode: {'smoke' if smoke else 'full'}; parameters: {dict(parameters) or 'defaults'}; "
        f"total {total:.1f} s; {sum(r.status == 'ok' for r in results)}/{len(results)} ok.",
        "",
        "| notebook | status | time (s) | peak memory (MiB) | data | metrics |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in results:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in r.metrics.items()) or "-"
        link = os.path.relpath(r.output, out)
        lines.append(
            f"| [{r.notebook}]({link}) | {r.status} | {r.seconds:.1f} | "
            f"{r.peak_memory_mb or '-'} | {r.data or '-'} | {metrics} |"
        )
    failed = [r for r in results if r.error]
    if failed:
        lines += ["", "## Failures", ""] + [f"- {r.error}" for r in failed]
    lines += expected_results(results)
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path
