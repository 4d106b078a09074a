"""mae_nb.precision: what "auto" picks on which machine, the bf16 warning, the int8 and bf16
copies of a model, and the precision recorded by reconstruction, features and the command."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from helpers import tiny_mae

from mae_nb import precision as P
from mae_nb.errors import InputError
from mae_nb.reconstruct import reconstruct, reconstruct_scene


@pytest.fixture
def model():
    return tiny_mae()


@pytest.fixture(scope="module")
def image():
    from mae_nb.data import synthetic_scene

    return (synthetic_scene(32, 32, 3, seed=1).image * 255).astype(np.uint8)


def cpu(native_bf16, engine="x86"):
    return P.CpuInfo("Test CPU", "AVX2", native_bf16, engine)


@pytest.fixture
def machine(monkeypatch):
    """Pretend to run on a CPU of our choosing; the bf16 warning not yet given."""

    def use(native_bf16, engine="x86", slowdown=40.0):
        monkeypatch.setattr(P, "cpu_info", lambda: cpu(native_bf16, engine))
        monkeypatch.setattr(P, "bf16_slowdown", lambda: slowdown)
        monkeypatch.setattr(P, "_warned_bf16", False)

    return use


# --------------------------------------------------------------------------- choosing


def test_this_cpu_is_described_as_torch_sees_it():
    info = P.cpu_info()
    assert info.capability == torch.backends.cpu.get_cpu_capability()
    assert info.name and info.int8_engine in (None, "x86", "fbgemm")
    assert P.cpu_info() is info  # read once per process


def test_auto_picks_bf16_only_with_bf16_units(machine, model, monkeypatch):
    machine(native_bf16=True)
    assert P.choose("auto", model) == "bf16"
    machine(native_bf16=False)
    assert P.choose("auto", model) == "fp32"  # a tiny model: int8 does not pay
    monkeypatch.setattr(P, "INT8_MIN_LINEAR_PARAMS", 1)
    assert P.choose("auto", model) == "int8"  # a model large enough, a CPU without bf16 units
    machine(native_bf16=False, engine=None)
    assert P.choose("auto", model) == "fp32"  # no int8 engine in this PyTorch


def test_unclear_flags_are_settled_by_the_timed_probe(monkeypatch):
    monkeypatch.setattr(P, "cpu_info", lambda: cpu(None))
    monkeypatch.setattr(P, "bf16_slowdown", lambda: 0.5)
    assert P.native_bf16()
    monkeypatch.setattr(P, "bf16_slowdown", lambda: 30.0)
    assert not P.native_bf16()


def test_bf16_on_a_cpu_that_emulates_it_warns_once_with_the_slowdown(machine, model):
    machine(native_bf16=False, slowdown=37.0)
    with pytest.warns(UserWarning, match=r"Test CPU, AVX2.*ran 37 x slower than fp32"):
        assert P.choose("bf16", model) == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P.choose("bf16", model)  # once per process
        machine(native_bf16=True)
        P.choose("bf16", model)  # never where bf16 is native


def test_names_and_devices_that_cannot_run_are_refused(machine, model):
    machine(native_bf16=False)
    with pytest.raises(InputError, match=r"precision must be one of 'auto', 'fp32'.*got 'half'"):
        P.choose("half", model)
    with pytest.raises(InputError, match="fp16' runs on a CUDA GPU only"):
        P.choose("fp16", model)
    machine(native_bf16=False, engine=None)
    with pytest.raises(InputError, match="int8' needs the CPU and PyTorch's x86 or fbgemm"):
        P.choose("int8", model)


def test_on_a_gpu_auto_is_bf16_or_fp16_and_int8_is_refused(model, monkeypatch):
    monkeypatch.setattr(P, "model_device", lambda m: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert P.choose("auto", model) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert P.choose("auto", model) == "fp16"
    assert P.choose("fp32", model) == "fp32"
    with pytest.raises(InputError, match="int8' runs on the CPU only"):
        P.choose("int8", model)


def test_describe_says_what_runs_and_where(machine, model):
    machine(native_bf16=False)
    line = P.describe(model)
    assert "precision fp32 (asked 'auto') on Test CPU (AVX2, without bf16 units" in line
    assert f"{P.linear_params(model) / 1e6:.1f} M linear weights" in line


# --------------------------------------------------------------------------- copies


def test_int8_copy_quantizes_linear_layers_and_leaves_the_model_alone(model):
    q = P.model_for(model, "int8")
    kinds = {type(m).__name__ for m in q.modules()}
    assert "Linear" in kinds and any(
        isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in q.modules()
    )
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
    assert q.patch_embed.proj.weight is model.patch_embed.proj.weight  # shared, not copied
    assert q.norm.weight is model.norm.weight
    assert P.model_for(model, "int8") is q  # made once
    with torch.no_grad():
        model.norm.weight.add_(0.1)  # a parameter changed: the copy is remade
    assert P.model_for(model, "int8") is not q


def test_bf16_copy_casts_only_linear_and_conv_weights(model):
    h = P.model_for(model, "bf16")
    assert h.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert h.patch_embed.proj.weight.dtype == torch.bfloat16
    assert h.norm.weight is model.norm.weight and h.norm.weight.dtype == torch.float32
    assert model.blocks[0].attn.qkv.weight.dtype == torch.float32
    assert P.model_for(model, "fp32") is model


def test_at_most_two_copies_are_kept():
    models = [tiny_mae(seed=s) for s in range(3)]
    for m in models:
        P.model_for(m, "int8")
    assert len(P._COPIES) == 2
    assert (id(models[0]), "int8") not in P._COPIES


# --------------------------------------------------------------------------- where it is used


def test_reconstruct_records_the_precision_that_ran(model, image, machine, monkeypatch):
    machine(native_bf16=False)
    exact = reconstruct(model, image, 0.5, iterations=3, seed=1, precision="fp32")
    auto = reconstruct(model, image, 0.5, iterations=3, seed=1)
    assert exact.precision == auto.precision == "fp32"  # a tiny model on a CPU without bf16
    np.testing.assert_array_equal(auto.pasted, exact.pasted)
    monkeypatch.setattr(P, "INT8_MIN_LINEAR_PARAMS", 1)
    q = reconstruct(model, image, 0.5, iterations=3, seed=1)
    assert q.precision == "int8"
    np.testing.assert_array_equal(q.pass_masks, exact.pass_masks)
    assert not np.array_equal(q.pasted, exact.pasted)
    assert abs(q.psnr_masked - exact.psnr_masked) < 0.1


def test_int8_stays_within_a_tenth_of_a_db_on_a_course_model():
    from mae_nb.data import load_sample
    from mae_nb.pretrained import load_mae

    model = load_mae("mae_tiny_course_rgb")
    sample = load_sample(None, bands=3, size=64, seed=3)
    kw = dict(mask_ratio=0.25, iterations=3, seed=0, data_range=sample.data_range)
    exact = reconstruct(model, sample.image, precision="fp32", **kw)
    q = reconstruct(model, sample.image, precision="int8", **kw)
    assert q.precision == "int8" and abs(q.psnr_masked - exact.psnr_masked) < 0.1


def test_features_record_their_precision(model, image, monkeypatch):
    from mae_nb.features import embed_image, error_map, scene_embeddings

    exact = embed_image(model, image, precision="fp32")
    q = embed_image(model, image, precision="int8")
    cos = (exact * q).sum(-1) / (np.linalg.norm(exact, axis=-1) * np.linalg.norm(q, axis=-1))
    assert cos.min() > 0.99
    assert scene_embeddings(model, image, precision="int8").meta["precision"] == "int8"
    assert error_map(model, image, precision="fp32").meta["precision"] == "fp32"
    with pytest.raises(InputError, match="fp16' runs on a CUDA GPU only"):
        embed_image(model, image, precision="fp16")


def test_scene_refuses_a_precision_before_writing_anything(model, tmp_path):
    from mae_nb.data import synthetic_scene

    synthetic_scene(40, 40, 3, seed=0).to_geotiff(tmp_path / "in.tif")
    with pytest.raises(InputError, match="fp16' runs on a CUDA GPU only"):
        reconstruct_scene(model, tmp_path / "in.tif", tmp_path / "out.tif", precision="fp16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]
    r = reconstruct_scene(
        model, tmp_path / "in.tif", tmp_path / "out.tif", precision="int8", progress=False
    )
    assert r.precision == "int8"


def test_command_says_which_precision_ran(tmp_path, capsys):
    from mae_nb.cli import main
    from mae_nb.data import synthetic_scene

    synthetic_scene(40, 40, 3, seed=0).to_geotiff(tmp_path / "in.tif")
    args = ["reconstruct", str(tmp_path / "in.tif"), str(tmp_path / "out.tif")]
    assert main([*args, "--checkpoint", "mae_tiny_course_rgb", "--precision", "int8"]) == 0
    assert re.search(r"tiles .* in [\d.]+ s in int8", capsys.readouterr().out)
    code = main(
        [*args, "--checkpoint", "mae_tiny_course_rgb", "--precision", "fp16", "--overwrite"]
    )
    assert code != 0 and "fp16' runs on a CUDA GPU only" in capsys.readouterr().err


def test_training_in_bf16_warns_on_a_cpu_that_emulates_it(machine, model):
    from mae_nb.pretraining import pretrain

    machine(native_bf16=False)
    with pytest.warns(UserWarning, match="bf16 matrix products are emulated"):
        pretrain(model, [], lr=1e-3, warmup_steps=0, precision="bf16", progress=False)
