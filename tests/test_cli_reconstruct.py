"""``mae-nb reconstruct``: checkpoints in Meta's and the course's formats (chapter 03's, the
course's open MAEs), outputs, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_nb.cli import main
from mae_nb.models.mae import create_mae


def small_model(in_chans=3):
    # head counts that config_from_state_dict infers (64 channels per encoder head, 32 per
    # decoder head)
    torch.manual_seed(0)
    return create_mae(
        "mae_vit_tiny_patch8",
        img_size=32,
        in_chans=in_chans,
        embed_dim=64,
        depth=1,
        num_heads=1,
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=1,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from mae_nb.data import synthetic_scene
    from mae_nb.train import save_checkpoint

    d = tmp_path_factory.mktemp("cli")
    synthetic_scene(48, 40, 3, seed=0, collar=True).to_geotiff(d / "rgb.tif")
    synthetic_scene(40, 40, 6, seed=0).to_geotiff(d / "six.tif")
    torch.save({"model": small_model().state_dict()}, d / "meta_format.pth")
    m = small_model()
    save_checkpoint(
        d / "course.pth",
        m,
        config={**m.pretrained_cfg, "mean": [800.0, 700.0, 600.0], "std": [300.0, 300.0, 300.0]},
    )
    (d / "notes.pth").write_text("not a checkpoint")
    return d


def test_help_lists_reconstruct(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "reconstruct" in capsys.readouterr().out


def test_meta_format_checkpoint(files, tmp_path, capsys):
    from mae_nb.data import read_raster

    out = tmp_path / "rec.tif"
    rc = main(
        [
            "reconstruct",
            str(files / "rgb.tif"),
            str(out),
            "--checkpoint",
            str(files / "meta_format.pth"),
            "--mask-ratio",
            "0.5",
            "--iterations",
            "2",
            "--seed",
            "3",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "tiles/s" in text and "PSNR" in text
    src, rec = read_raster(files / "rgb.tif"), read_raster(out)
    assert rec.crs == src.crs and rec.transform == src.transform and rec.nodata == src.nodata
    assert (tmp_path / "rec_error.tif").exists()


def test_course_checkpoint_with_bands_and_covering(files, tmp_path):
    from mae_nb.data import read_raster

    out = tmp_path / "rec.tif"
    err = tmp_path / "maps" / "err.tif"
    rc = main(
        [
            "reconstruct",
            str(files / "six.tif"),
            str(out),
            "--checkpoint",
            str(files / "course.pth"),
            "--bands",
            "3",
            "2",
            "1",
            "--mode",
            "covering",
            "--mask-ratio",
            "0.25",
            "--error-map",
            str(err),
        ]
    )
    assert rc == 0 and read_raster(out).count == 3 and err.exists()
    assert np.isfinite(
        read_raster(err).array
    ).all()  # covering: every pixel predicted, no nodata here


def test_existing_output_needs_overwrite(files, tmp_path, capsys):
    out = tmp_path / "rec.tif"
    out.write_bytes(b"keep me")
    args = [
        "reconstruct",
        str(files / "rgb.tif"),
        str(out),
        "--checkpoint",
        str(files / "meta_format.pth"),
    ]
    assert main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main(args + ["--overwrite"]) == 0 and out.read_bytes() != b"keep me"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mask-ratio", "1.5"], "mask_ratio must be in [0, 1), got 1.5"),
        (["--iterations", "0"], "--iterations must be at least 1"),
        (["--mode", "covering", "--iterations", "9"], "iterations must be at most 4"),
        (["--bands", "9", "2", "1"], "band index 9 is out of range"),
    ],
)
def test_bad_arguments(files, tmp_path, capsys, extra, message):
    rc = main(
        [
            "reconstruct",
            str(files / "rgb.tif"),
            str(tmp_path / "o.tif"),
            "--checkpoint",
            str(files / "meta_format.pth"),
            *extra,
        ]
    )
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()


def test_band_count_mismatch(files, tmp_path, capsys):
    rc = main(
        [
            "reconstruct",
            str(files / "six.tif"),
            str(tmp_path / "o.tif"),
            "--checkpoint",
            str(files / "meta_format.pth"),
        ]
    )
    assert rc == 2 and "in_chans=3" in capsys.readouterr().err


@pytest.mark.parametrize(
    "checkpoint, message",
    [
        ("notes.pth", "not a PyTorch checkpoint"),
        ("no_such_model", "neither a file nor a checkpoint of the registry"),
    ],
)
def test_bad_checkpoints(files, tmp_path, capsys, checkpoint, message):
    ckpt = str(files / checkpoint) if checkpoint.endswith(".pth") else checkpoint
    rc = main(
        ["reconstruct", str(files / "rgb.tif"), str(tmp_path / "o.tif"), "--checkpoint", ckpt]
    )
    assert rc == 2 and message in capsys.readouterr().err


def test_missing_input(tmp_path, capsys):
    rc = main(
        ["reconstruct", str(tmp_path / "nope.tif"), str(tmp_path / "o.tif"), "--checkpoint", "x"]
    )
    assert rc == 2 and "no file at" in capsys.readouterr().err


def test_truncated_geotiff_is_one_line_naming_the_file(files, tmp_path, capsys):
    whole = (files / "rgb.tif").read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole[: len(whole) // 2])
    rc = main(
        [
            "reconstruct",
            str(cut),
            str(tmp_path / "o.tif"),
            "--checkpoint",
            str(files / "meta_format.pth"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and str(cut) in err and "damaged or truncated" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.tif").exists()


def test_not_a_raster_and_a_folder(files, tmp_path, capsys):
    for bad, message in ((files / "notes.pth", "not a raster"), (tmp_path, "is a folder")):
        rc = main(["reconstruct", str(bad), str(tmp_path / "o.tif"), "--checkpoint", "x"])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_non_numeric_seed_is_a_usage_error(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "reconstruct",
                str(files / "rgb.tif"),
                str(tmp_path / "o.tif"),
                "--checkpoint",
                str(files / "meta_format.pth"),
                "--seed",
                "abc",
            ]
        )
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --seed: invalid int value: 'abc'" in err
    assert "Traceback" not in err and err.strip().splitlines()[0].startswith("usage: mae-nb")


def test_chapter03_checkpoint_by_name(files, tmp_path, cache, capsys):
    from mae_nb.pretrained import course_mae_path, load_mae

    args = ["reconstruct", str(files / "rgb.tif"), str(tmp_path / "o.tif")]
    rc = main([*args, "--checkpoint", "chapter03"])
    assert rc == 2 and "run chapter 03 first" in capsys.readouterr().err
    course_mae_path().parent.mkdir(parents=True)
    (course_mae_path()).write_bytes((files / "course.pth").read_bytes())
    assert load_mae("chapter03").pretrained_cfg["mean"] == [800.0, 700.0, 600.0]
    rc = main([*args, "--checkpoint", "chapter03"])
    assert rc == 0 and (tmp_path / "o.tif").exists()
    # the old name is no name any more: it says which names there are
    rc = main([*args, "--checkpoint", "course", "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and "nor 'chapter03' (chapter 03's model)" in err


def _printed_psnr(text: str) -> tuple[float, float]:
    import re

    m = re.search(r"PSNR (-?[\d.]+) dB over valid pixels \(data range ([\d.e+]+)\)", text)
    assert m, text
    return float(m.group(1)), float(m.group(2))


def test_psnr_uses_the_sources_declared_range(files, tmp_path, cache, capsys):
    """The synthetic scene's GeoTIFF is reflectance x 10000: its declared range, as in the
    chapters (Sample.data_range); --data-range overrides; any other file: its own value range."""
    from mae_nb import data, metrics
    from mae_nb.cli.reconstruct import declared_range

    scene, _ = data.synthetic_path(40, 40, 3, seed=0)
    assert declared_range(scene) == 10000.0 == data.load_sample(None, bands=3, size=40).data_range
    assert declared_range(files / "rgb.tif") is None
    args = ["--checkpoint", str(files / "meta_format.pth"), "--mode", "covering"]
    assert main(["reconstruct", str(scene), str(tmp_path / "a.tif"), *args]) == 0
    psnr, span = _printed_psnr(capsys.readouterr().out)
    assert span == 10000.0
    src, rec = data.read_raster(scene), data.read_raster(tmp_path / "a.tif")
    expected = metrics.psnr(rec.array.astype(float), src.array.astype(float), 10000.0)
    assert psnr == pytest.approx(expected, abs=0.01)
    assert (
        main(["reconstruct", str(scene), str(tmp_path / "b.tif"), *args, "--data-range", "1000"])
        == 0
    )
    psnr_b, span_b = _printed_psnr(capsys.readouterr().out)
    assert span_b == 1000.0 and psnr_b == pytest.approx(psnr - 20, abs=0.01)
    assert main(["reconstruct", str(files / "rgb.tif"), str(tmp_path / "c.tif"), *args]) == 0
    own = data.read_raster(files / "rgb.tif")
    assert _printed_psnr(capsys.readouterr().out)[1] == pytest.approx(
        data.value_range(own.array, own.valid), rel=1e-6
    )


def test_a_course_model_by_name_offline(files, tmp_path, cache, no_mirrors, capsys):
    """The course's open MAEs ship inside the package: no download, no cache needed."""
    out = tmp_path / "o.tif"
    args = ["reconstruct", str(files / "rgb.tif"), str(out), "--mask-ratio", "0.5"]
    assert main([*args, "--checkpoint", "mae_tiny_course_rgb"]) == 0
    assert out.exists() and "PSNR" in capsys.readouterr().out
    six = ["reconstruct", str(files / "six.tif"), str(tmp_path / "six.tif")]
    assert main([*six, "--checkpoint", "mae_tiny_course_6band"]) == 0
