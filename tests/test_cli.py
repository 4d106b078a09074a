"""The mae-nb command: data list/fetch/synth and run, with user-level errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mae_nb.cli import main
from mae_nb.data import read_raster


def test_data_list_shows_every_dataset_its_state_and_licence(cache, capsys, no_mirrors):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("landsat7-rgb", "salinas-a", "mae_visualize_vit_large"):
        assert name in out
    assert "missing" in out and "CC0" in out and str(cache) in out


@pytest.mark.realdata
def test_data_list_sees_the_mirror(cache, capsys):
    main(["data", "list"])
    out = capsys.readouterr().out
    assert any(line.startswith("landsat7-rgb") and " mirror " in line for line in out.splitlines())


def test_output_piped_into_a_reader_that_stops_early_is_no_traceback(cache, no_mirrors):
    """``mae-nb data list | head -1``: the reader has gone before the listing is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mae_nb", "data", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # closed long before the command has imported torch and printed
    err = proc.stderr.read()
    assert proc.wait(60) == 1
    assert err == ""


def test_fetch_of_an_unknown_dataset_is_one_clear_line(capsys):
    assert main(["data", "fetch", "landsat9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mae-nb: error: unknown dataset 'landsat9'") and "Traceback" not in err


def test_synth_writes_a_scene_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "scene.tif"
    assert main(["data", "synth", str(out), "--size", "32", "--bands", "5"]) == 0
    assert read_raster(out).array.shape == (5, 32, 32)
    assert read_raster(tmp_path / "scene_labels.tif").array.shape == (1, 32, 32)
    assert main(["data", "synth", str(out), "--size", "32"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["data", "synth", str(out), "--size", "32", "--bands", "3", "--overwrite"]) == 0
    assert main(["data", "synth", str(tmp_path / "z.tif"), "--bands", "0"]) == 2


def test_run_of_a_missing_notebook_fails_with_the_list(capsys):
    assert main(["run", "99_nothing"]) == 2
    err = capsys.readouterr().err
    assert "'99_nothing' is not a notebook of the course" in err and "00_spatial_data_tour" in err


def test_the_console_script_is_installed():
    done = subprocess.run(
        [sys.executable, "-m", "mae_nb", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "run" in done.stdout and "data" in done.stdout
