"""Tests of mae_nb.pretrained and mae_nb.models.checkpoints: loading Meta's, the course's and
chapter 03's checkpoints, chapter 03's training recipe, and the checkpoint-or-fallback chain
(Meta's -> the course's open MAE for the band count -> chapter 03's -> a stand-in)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import tiny_mae
from test_mae import small_model, to_hf_state_dict

from mae_nb import pretrained
from mae_nb.data import registry, synthetic_scene
from mae_nb.data.hsi import synthetic_hsi
from mae_nb.errors import CheckpointError, DataUnavailableError, InputError, MissingFileError
from mae_nb.finetune import pretrain_on_scene, save_sst
from mae_nb.models import checkpoints as C
from mae_nb.models.mae import IMAGENET_MEAN, create_mae
from mae_nb.pretrained import load_mae, mae_or_fallback, save_course_mae, train_course_mae


def _save_meta(path, model_or_sd):
    sd = model_or_sd.state_dict() if isinstance(model_or_sd, torch.nn.Module) else model_or_sd
    torch.save({"model": sd}, path)
    return path


@pytest.fixture
def no_network(monkeypatch, cache, no_mirrors):
    """An empty cache, no mirror folder, and no download: Meta's checkpoints cannot be had;
    what ships inside the package still can."""

    def download(dataset, f, progress):
        raise DataUnavailableError(
            f"dataset {dataset.name!r} is not cached, not in a mirror folder, and could not be "
            f"downloaded from {f.url} (offline)"
        )

    monkeypatch.setattr(registry, "_download", download)
    return cache


def _register_course_models(monkeypatch, folder, files=None):
    """Registry entries for the course's open MAEs whose packaged copies are in ``folder``
    (``files``: name -> file; a name without a file gets an entry no file matches)."""
    monkeypatch.setattr(registry, "PACKAGED_DIR", folder)
    for name in pretrained.COURSE_MODELS.values():
        path = (files or {}).get(name)
        sha, size = (registry.sha256sum(path), path.stat().st_size) if path else ("0" * 64, 1)
        entry = registry._course_mae(name, f"test {name}", sha, size, "a tiny stand-in")
        monkeypatch.setitem(registry.REGISTRY, name, entry)


@pytest.fixture
def offline(monkeypatch, no_network, tmp_path):
    """No network, and a package without the course's weights: nothing to fall back on but
    chapter 03's model or a stand-in."""
    empty = tmp_path / "no-weights"
    empty.mkdir()
    _register_course_models(monkeypatch, empty)
    return no_network


def _course_model_file(folder, name, bands):
    """A tiny model saved as ``mae-nb mae pretrain`` saves one (per-band normalization, the run's
    config), in fp16 like the shipped ones."""
    import copy

    from mae_nb.train import save_checkpoint

    model = tiny_mae(in_chans=bands, img_size=64, seed=bands)
    run = {
        "train": {"batch_size": 64, "mask_ratio": [0.25, 0.75]},
        "data": {"crop_size": 64, "holdout": 0.25},
    }
    config = {
        **model.pretrained_cfg,
        "mean": None,
        "std": None,
        "normalize": "per-band",
        "steps": 6000,
        "trained_on": [{"name": "landsat7-olinda"}, {"name": "synthetic seed 1 (128 px)"}],
        "mae_config": run,
    }
    path = folder / f"{name}.safetensors"
    return save_checkpoint(path, copy.deepcopy(model).half(), config=config), model


@pytest.fixture
def course_models(monkeypatch, no_network, tmp_path):
    """No network; the package holds (tiny stand-ins for) the course's open MAEs."""
    folder = tmp_path / "weights"
    folder.mkdir()
    files, models = {}, {}
    for bands, name in pretrained.COURSE_MODELS.items():
        files[name], models[name] = _course_model_file(folder, name, bands)
    _register_course_models(monkeypatch, folder, files)
    return models


# --------------------------------------------------------------------------- Meta's checkpoints


def test_meta_format_checkpoint_loads_strict(tmp_path):
    torch.manual_seed(0)
    model = create_mae("mae_vit_tiny_patch8").eval()
    path = _save_meta(tmp_path / "mine.pth", model)
    fresh = create_mae("mae_vit_tiny_patch8")
    fresh.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)
    loaded = load_mae(path)
    assert loaded.pretrained_cfg["arch"] == "mae_vit_tiny_patch8" and not loaded.training
    assert loaded.pretrained_cfg["mean"] == list(IMAGENET_MEAN)
    assert loaded.pretrained_cfg["norm_pix"] is False
    assert loaded.pretrained_cfg["source"] == str(path)
    imgs, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 64)
    with torch.no_grad():
        for a, b in zip(model(imgs, 0.75, noise), loaded(imgs, 0.75, noise)):
            assert torch.equal(a, b)
    assert not any(p.is_meta for p in loaded.parameters())
    assert load_mae(str(path)).pretrained_cfg["arch"] == "mae_vit_tiny_patch8"  # a str path too


def test_registry_name_found_in_mirror_and_wrong_preset_reported(tmp_path, monkeypatch, cache):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("MAE_NB_DATA_MIRRORS", str(mirror))
    _save_meta(mirror / "mae_visualize_vit_base.pth", create_mae("mae_vit_tiny_patch16"))
    with pytest.raises(
        CheckpointError, match="wrong preset.*the shapes match the preset 'mae_vit_tiny_patch16'"
    ):
        load_mae("mae_visualize_vit_base")  # the registry says base
    # arch given: it wins over the registry's; the same file as a path is read from its shapes
    loaded = load_mae("mae_visualize_vit_base", arch="mae_vit_tiny_patch16")
    assert loaded.pretrained_cfg["source"] == "mae_visualize_vit_base"
    path = mirror / "mae_visualize_vit_base.pth"
    assert load_mae(path).pretrained_cfg["arch"] == "mae_vit_tiny_patch16"


def test_vit_large_shapes_reported_on_meta_device():
    with torch.device("meta"):
        large_sd = create_mae("mae_vit_large_patch16").state_dict()
        base = create_mae("mae_vit_base_patch16")
    assert all(t.is_meta for t in large_sd.values())
    problems = C.diagnose_state_dict(large_sd, base)
    assert len(problems) == 1
    assert "wrong preset" in problems[0] and "'mae_vit_large_patch16'" in problems[0]
    assert "1024-dim x 24 blocks" in problems[0] and "768-dim x 12 blocks" in problems[0]
    config = C.config_from_state_dict(large_sd)
    assert config["arch"] == "mae_vit_large_patch16" and config["kwargs"]["img_size"] == 224
    built = C.build_for_state_dict(large_sd)
    assert built.pretrained_cfg["arch"] == "mae_vit_large_patch16" and built.pos_embed.is_meta


def test_encoder_only_checkpoint_is_explained(tmp_path):
    sd = {
        k: v
        for k, v in create_mae("mae_vit_tiny_patch8").state_dict().items()
        if not k.startswith(("decoder", "mask_token"))
    }
    path = _save_meta(tmp_path / "encoder.pth", sd)
    with pytest.raises(
        CheckpointError, match="no decoder weights.*mae_pretrain_vit_.*mae_visualize_vit_"
    ):
        load_mae(path)
    sd["head.weight"] = torch.zeros(10, 192)
    with pytest.raises(CheckpointError, match="fine-tuned classifier"):
        load_mae(_save_meta(tmp_path / "finetuned.pth", sd))


def test_full_checkpoint_loads_with_norm_pix_warning(tmp_path):
    path = _save_meta(
        tmp_path / "mae_pretrain_vit_tiny_full.pth", create_mae("mae_vit_tiny_patch8")
    )
    with pytest.warns(UserWarning, match="normalized"):
        model = load_mae(path)
    assert model.norm_pix_loss and model.pretrained_cfg["norm_pix"]


def test_non_checkpoint_files_and_names(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_mae(text)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds no state dict"):
        load_mae(tmp_path / "list.pth")
    torch.save({"model": to_hf_state_dict(small_model())}, tmp_path / "hf.pth")
    with pytest.raises(CheckpointError, match="Hugging Face"):
        load_mae(tmp_path / "hf.pth")
    with pytest.raises(MissingFileError, match="neither a file nor a checkpoint.*vit_large"):
        load_mae("mae_visualize_vit_larg")
    with pytest.raises(CheckpointError, match="not a model checkpoint"):
        load_mae("landsat7-olinda")
    with pytest.raises(MissingFileError, match="no checkpoint at"):
        load_mae(tmp_path)  # a folder


def test_other_shapes_and_extra_keys_are_listed(tmp_path):
    model = create_mae("mae_vit_tiny_patch8")
    sd = dict(model.state_dict())
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="not in the model: extra.weight"):
        load_mae(_save_meta(tmp_path / "extra.pth", sd), arch="mae_vit_tiny_patch8")
    six = create_mae("mae_vit_tiny_patch8", in_chans=6)
    loaded = load_mae(_save_meta(tmp_path / "six.pth", six))
    assert loaded.in_chans == 6 and loaded.pretrained_cfg["mean"] is None
    prefixed = {f"module.{k}": v for k, v in six.state_dict().items()}
    torch.save({"state_dict": prefixed}, tmp_path / "ddp.pth")
    assert set(C.state_dict_from_file(tmp_path / "ddp.pth")) == set(six.state_dict())


# --------------------------------------------------------------------------- chapter 03's model


def test_course_checkpoint_round_trip(cache):
    assert pretrained.course_mae_path() == cache / "checkpoints" / "mae_tiny_ch03.safetensors"
    with pytest.raises(DataUnavailableError, match="no chapter 03 checkpoint at .*run chapter 03"):
        load_mae("chapter03")
    model = create_mae("mae_vit_tiny_patch8", in_chans=3, img_size=64).eval()
    model.pretrained_cfg.update(mean=[0.1, 0.2, 0.3], std=[1.0, 2.0, 3.0])
    path = save_course_mae(model, bands=[3, 2, 1])
    assert path == pretrained.course_mae_path()
    from mae_nb.train import is_safetensors, load_checkpoint

    assert is_safetensors(path)  # no pickle: loading the course's file cannot run code
    # an older course file (torch.save, read with weights_only=True) still loads
    old = path.with_suffix(".pth")
    torch.save(load_checkpoint(path), old)
    assert load_mae(old).pretrained_cfg["bands"] == [3, 2, 1]
    for loaded in (load_mae(), load_mae("chapter03"), load_mae(path)):
        cfg = loaded.pretrained_cfg
        assert cfg["mean"] == [0.1, 0.2, 0.3] and cfg["bands"] == [3, 2, 1]
        assert cfg["source"] == "course" and cfg["arch"] == "mae_vit_tiny_patch8"
    imgs, noise = torch.randn(1, 3, 64, 64), torch.rand(1, 64)
    with torch.no_grad():
        assert torch.equal(model(imgs, 0.5, noise)[1], load_mae()(imgs, 0.5, noise)[1])
    # the course file is in Meta's format too: its state dict alone rebuilds the model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sd = C.state_dict_from_file(path)
        again = C.load_weights(C.build_for_state_dict(sd), sd)
    assert again.pretrained_cfg["arch"] == "mae_vit_tiny_patch8"


def test_course_checkpoint_that_does_not_fit_its_config(cache):
    model = create_mae("mae_vit_tiny_patch8", img_size=64)
    config = {**model.pretrained_cfg, "kwargs": {**model.pretrained_cfg["kwargs"], "depth": 2}}
    pretrained.course_mae_path().parent.mkdir(parents=True)
    from mae_nb.train import save_checkpoint

    save_checkpoint(pretrained.course_mae_path(), model, config=config)
    with pytest.raises(CheckpointError, match="does not fit mae_vit_tiny_patch8:\n- wrong preset"):
        load_mae()


@pytest.fixture(scope="module")
def scene():
    s = synthetic_scene(256, 128, 3, seed=0)
    return s.image, s.valid


def test_train_course_mae_learns_and_records_its_normalization(scene):
    image, valid = scene
    run = train_course_mae(
        image, valid, epochs=3, batch_size=8, val_fraction=0.25, seed=0, progress=False
    )
    model, history = run.model, run.history
    assert not model.training and model.pretrained_cfg["arch"] == "mae_vit_tiny_patch8"
    assert history.train["loss"][-1] < history.train["loss"][0]  # it learns
    assert len(history.val["loss"]) == 3
    # the per-band statistics over valid pixels, in the image's units
    pixels = image[:, valid].astype(np.float64)
    np.testing.assert_allclose(model.pretrained_cfg["mean"], pixels.mean(1), rtol=1e-5)
    np.testing.assert_allclose(model.pretrained_cfg["std"], pixels.std(1), rtol=1e-5)
    assert model.pretrained_cfg["source"] == "trained here" and model.pretrained_cfg["tile"] == 64
    # tiles every 32 px; training above row 192, validation from row 192 (spatially disjoint)
    assert run.train_tiles.shape == (15, 3, 64, 64) and run.val_tiles.shape == (3, 3, 64, 64)
    assert abs(float(run.train_tiles.mean())) < 0.5  # standardized


def test_train_course_mae_is_deterministic_with_a_seed(scene):
    image, valid = scene
    kw = dict(epochs=1, batch_size=4, max_tiles=4, progress=False)
    a = train_course_mae(image, valid, seed=1, **kw).model.state_dict()
    b = train_course_mae(image, valid, seed=1, **kw).model.state_dict()
    c = train_course_mae(image, valid, seed=2, **kw).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_train_course_mae_bands_and_bad_inputs(scene):
    image, valid = scene
    six = np.concatenate([image, image], axis=0)
    run = train_course_mae(six, valid, bands=[3, 2, 1], epochs=1, max_tiles=2, progress=False)
    assert run.model.in_chans == 3 and run.model.pretrained_cfg["bands"] == [3, 2, 1]
    with pytest.raises(InputError, match="band index 7 is out of range"):
        train_course_mae(six, bands=[7], epochs=1, progress=False)
    with pytest.raises(InputError, match=r"shape \(C, H, W\)"):
        train_course_mae(image[0], epochs=1, progress=False)
    holes = valid.copy()
    holes[:, ::40] = False
    with pytest.raises(InputError, match="no fully valid 64 x 64 tile"):
        train_course_mae(image, holes, epochs=1, progress=False)
    with pytest.raises(InputError, match="val_fraction must be in"):
        train_course_mae(image, val_fraction=1.0, epochs=1, progress=False)


# --------------------------------------------------------------------------- with a fallback


def test_fallback_meta_when_it_can_be_had(tmp_path, offline):
    path = _save_meta(tmp_path / "mine.pth", tiny_mae())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no notice
        choice = mae_or_fallback(str(path), quiet=True)
    assert choice.source == "meta" and choice.name == str(path) and choice.notice == ""
    with pytest.raises(MissingFileError):  # a typo is not a reason to fall back
        mae_or_fallback(str(tmp_path / "no_such.pth"), quiet=True)


def test_fallback_trains_chapter_03s_model_with_chapter_03s_recipe(offline, capsys):
    """Offline, no course weights, no chapter 03 checkpoint: chapter 03's model is trained here
    with chapter 03's own recipe (its data, its seeds), saved where chapter 03 saves it, and
    the notice says so; it is the very model chapter 03's recipe makes."""
    from mae_nb.reconstruct import reconstruct

    s = synthetic_scene(64, 64, 3, seed=0)
    with pytest.warns(UserWarning, match="Training it here with chapter 03's own recipe"):
        choice = mae_or_fallback("mae_visualize_vit_large", s.image, s.valid, smoke=True)
    assert choice.source == "trained here" and choice.name == "chapter 03's tiny MAE"
    assert "not available here" in choice.notice and "its smoke run" in choice.notice
    assert "chapter 03's own recipe" in capsys.readouterr().out
    assert pretrained.course_mae_path().is_file()  # saved, as chapter 03 saves it
    saved = load_mae("chapter03")
    assert saved.pretrained_cfg["smoke"] is True and saved.in_chans == 3
    again = pretrained.train_chapter03_mae(smoke=True, save=False, progress=False, quiet=True)
    for k, v in again.model.state_dict().items():  # same recipe, same seeds: the same model
        torch.testing.assert_close(saved.state_dict()[k], v)
    assert not choice.model.training
    r = reconstruct(choice.model, s.image, 0.5)
    assert np.isfinite(r.psnr_masked)
    # the next chapter finds it in the cache
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        later = mae_or_fallback("mae_visualize_vit_large", s.image, s.valid, quiet=True)
    assert later.source == "chapter 03"


def test_without_an_image_chapter_03s_recipe_is_trained_too(offline, monkeypatch):
    calls = []
    monkeypatch.setattr(
        pretrained,
        "train_chapter03_mae",
        lambda smoke, **kw: (
            calls.append(smoke) or pretrained.TrainedMAE(tiny_mae(), None, None, None)
        ),
    )
    with pytest.warns(UserWarning, match="chapter 03's own recipe"):
        choice = mae_or_fallback("chapter03", None, quiet=True)
    assert choice.source == "trained here" and calls == [False]
    assert "Meta" not in choice.notice and choice.notice.startswith("NOTICE: Chapter 03")


def _notebook_parameters(stem, smoke):
    """The values of a chapter's parameters cell and derived-values cell, run as Python."""
    import nbformat

    from mae_nb.runner import notebooks_dir

    nb = nbformat.read(notebooks_dir() / f"{stem}.ipynb", as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    values: dict = {}
    exec(nb.cells[i].source, values)
    values["SMOKE"] = smoke
    exec(nb.cells[i + 1].source, values)
    return values


def _code(stem):
    import nbformat

    from mae_nb.runner import notebooks_dir

    nb = nbformat.read(notebooks_dir() / f"{stem}.ipynb", as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("smoke", [False, True])
def test_chapter_03s_recipe_is_what_chapter_03_runs(smoke):
    v = _notebook_parameters("03_mae_from_scratch", smoke)
    assert pretrained.chapter03_recipe(smoke) == dict(
        data=v["DATA"],
        size=352,
        seed=v["SEED"],
        tile_size=v["TILE"],
        stride=v["STRIDE"],
        epochs=v["EPOCHS"],
        mask_ratio=v["MASK_RATIO"],
        lr=v["LR"],
        batch_size=v["BATCH_SIZE"],
        val_fraction=0.25,
        max_tiles=v["TRAIN_TILES"],
    )
    assert "size=352, seed=SEED" in _code("03_mae_from_scratch")  # what it loads
    assert "val_fraction=0.25" in _code("03_mae_from_scratch")


@pytest.mark.parametrize("smoke", [False, True])
def test_chapter_07s_recipe_is_what_chapter_07_runs(smoke):
    v = _notebook_parameters("07_hyperspectral_masked_pretraining", smoke)
    assert pretrained.chapter07_recipe(smoke) == dict(
        patch_size=v["PATCH"],
        seed=v["SEED"],
        model_kwargs=dict(
            band_block_size=v["BAND_BLOCK"], embed_dim=v["EMBED_DIM"], depth=v["DEPTH"], num_heads=4
        ),
        mask_ratio=v["MASK_RATIO"],
        epochs=v["EPOCHS"],
        batch_size=v["BATCH_SIZE"],
        lr=v["LR"],
        max_pixels=v["MAX_PIXELS"],
    )
    assert "depth=DEPTH, num_heads=4" in _code("07_hyperspectral_masked_pretraining")


def test_chapter_08_without_chapter_07s_model_pretrains_with_chapter_07s_recipe(cache, capsys):
    """The same function and seeds as chapter 07 (built by hand there): the same weights; saved
    where chapter 07 saves it, so the next run uses it."""
    from mae_nb.data.hsi import spatial_split
    from mae_nb.finetune import course_sst_path, load_sst
    from mae_nb.models.spectral import SpectralTransformer
    from mae_nb.train import seed_everything

    scene = synthetic_hsi(size=24, bands=16, seed=0)
    split = spatial_split(scene.labels, 5, seed=0)
    pre = pretrained.sst_or_fallback(scene, split=split, smoke=True, progress=False)
    assert pre.source == "chapter 07's recipe" and pre.leak_free
    assert "with chapter 07's recipe (its smoke run)" in pre.notice
    assert "the model a run of chapter 07 saves" in capsys.readouterr().out
    # chapter 07, section by section: seed, build the model, pretrain it (smoke parameters)
    r = pretrained.chapter07_recipe(smoke=True)
    seed_everything(r["seed"])
    model = SpectralTransformer(
        scene.n_bands, image_size=5, mask_ratio=r["mask_ratio"], **r["model_kwargs"]
    )
    by_hand = pretrain_on_scene(
        scene,
        split=split,
        model=model,
        image_size=5,
        epochs=r["epochs"],
        batch_size=r["batch_size"],
        lr=r["lr"],
        mask_ratio=r["mask_ratio"],
        max_pixels=r["max_pixels"],
        seed=r["seed"],
        progress=False,
    )
    for k, v in by_hand.model.state_dict().items():
        torch.testing.assert_close(pre.model.state_dict()[k], v)
    saved = load_sst(course_sst_path(), with_config=True)[1]
    assert saved["smoke"] is True and saved["test_pixels_seen"] == 0
    again = pretrained.sst_or_fallback(scene, split=split, smoke=True, quiet=True)
    assert again.source == "chapter 07" and again.notice == ""
    with pytest.raises(InputError, match="unknown recipe key"):
        pretrained.sst_or_fallback(scene, split=split, epoch=1)


def test_fallback_to_course_checkpoint_adapts_units(offline):
    m = tiny_mae()
    m.pretrained_cfg.update(mean=[800.0] * 3, std=[400.0] * 3)
    save_course_mae(m)
    img = np.random.default_rng(0).integers(0, 255, (3, 32, 32)).astype(np.uint8)
    with pytest.warns(UserWarning, match="chapter 03's tiny MAE"):
        choice = mae_or_fallback("mae_visualize_vit_large", img, quiet=True)
    assert choice.source == "chapter 03" and "its own per-band statistics" in choice.notice
    assert "Using chapter 03's tiny MAE instead" in choice.notice
    np.testing.assert_allclose(
        choice.model.pretrained_cfg["mean"], img.reshape(3, -1).mean(1), rtol=1e-5
    )
    # asked for chapter 03's model: no notice unless the units differ
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = mae_or_fallback("chapter03", quiet=True)
    assert plain.source == "chapter 03" and plain.notice == ""
    with pytest.warns(UserWarning, match="other units"):
        notice = mae_or_fallback("chapter03", img, quiet=True).notice
    assert notice.startswith("NOTICE: Chapter 03")


def _image(bands, size=64, seed=0):
    s = synthetic_scene(size, size, bands, seed=seed)
    return s.image * 10000, s.valid


def test_offline_an_rgb_image_gets_the_course_rgb_model(course_models, capsys):
    image, valid = _image(3)
    with pytest.warns(UserWarning, match="Using the course's open MAE 'mae_tiny_course_rgb'"):
        choice = mae_or_fallback("mae_visualize_vit_large", image, valid)
    assert choice.source == "course model" and choice.name == "mae_tiny_course_rgb"
    notice = choice.notice
    assert "'mae_visualize_vit_large' is not available here" in notice
    assert "trained by `mae-nb mae pretrain` for 6000 steps of 64 crops of 64 px" in notice
    assert "masking 25%-75%, on landsat7-olinda, 1 synthetic scenes" in notice
    assert "(the right 25% of each real scene held out)" in notice
    assert notice in capsys.readouterr().out  # printed, not only warned
    model = choice.model
    assert model.in_chans == 3 and not model.training
    assert model.pretrained_cfg["source"] == "mae_tiny_course_rgb"
    assert next(model.parameters()).dtype == torch.float32  # shipped in fp16, runs in fp32
    # the weights are the shipped ones (fp16-rounded)
    shipped = course_models["mae_tiny_course_rgb"].state_dict()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, shipped[k].half().float(), rtol=0, atol=0)
    # it standardizes each image by its own per-band statistics
    from mae_nb.reconstruct import reconstruct

    rec = reconstruct(model, image, 0.5, valid=valid, data_range=10000.0)
    assert rec.normalization.kind == "per-band" and np.isfinite(rec.psnr_masked)
    # without an image: the RGB model too
    with pytest.warns(UserWarning, match="mae_tiny_course_rgb"):
        assert mae_or_fallback("mae_visualize_vit_base", quiet=True).name == "mae_tiny_course_rgb"


def test_offline_a_six_band_image_gets_the_course_6band_model(course_models):
    image, valid = _image(6)
    with pytest.warns(UserWarning, match="mae_tiny_course_6band"):
        choice = mae_or_fallback("mae_visualize_vit_large", image, valid, quiet=True)
    assert choice.source == "course model" and choice.name == "mae_tiny_course_6band"
    assert choice.model.in_chans == 6 and "6 bands" in choice.notice


def test_a_course_model_asked_for_by_name(course_models):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no notice: it is the one asked for
        choice = mae_or_fallback("mae_tiny_course_6band", quiet=True)
    assert choice.source == "course model" and choice.notice == ""
    assert choice.model.in_chans == 6
    assert load_mae("mae_tiny_course_rgb").pretrained_cfg["normalize"] == "per-band"
    assert registry.status("mae_tiny_course_rgb") == "packaged"


def test_a_band_count_without_a_course_model_gets_chapter_03s(course_models):
    image, valid = _image(4)
    with pytest.warns(UserWarning, match="Training the tiny MAE"):
        choice = mae_or_fallback("mae_visualize_vit_large", image, valid, epochs=1, quiet=True)
    assert choice.source == "trained here" and choice.model.in_chans == 4
    four = tiny_mae(in_chans=4)
    four.pretrained_cfg.update(mean=[1000.0] * 4, std=[300.0] * 4)
    save_course_mae(four)
    with pytest.warns(UserWarning, match="Using chapter 03's tiny MAE instead"):
        choice = mae_or_fallback("mae_visualize_vit_large", image, valid, quiet=True)
    assert choice.source == "chapter 03" and choice.model.in_chans == 4
    assert "course's open MAE" not in choice.notice


def test_course_weights_missing_from_the_package_fall_back_to_chapter_03(offline):
    m = tiny_mae()
    m.pretrained_cfg.update(mean=[1000.0] * 3, std=[300.0] * 3)
    save_course_mae(m)
    image, valid = _image(3)
    with pytest.warns(UserWarning, match="chapter 03's tiny MAE"):
        choice = mae_or_fallback("mae_visualize_vit_large", image, valid, quiet=True)
    assert choice.source == "chapter 03" and choice.name == "chapter 03's tiny MAE"
    assert "'mae_visualize_vit_large' is not available here" in choice.notice
    with pytest.raises(DataUnavailableError, match="ships inside mae-nb"):
        load_mae("mae_tiny_course_rgb")
    assert registry.status("mae_tiny_course_rgb") == "missing"
    # asked for by name, the missing course model falls back the same way
    with pytest.warns(UserWarning, match="chapter 03's tiny MAE"):
        choice = mae_or_fallback("mae_tiny_course_rgb", image, valid, quiet=True)
    assert choice.source == "chapter 03"
    assert "'mae_tiny_course_rgb' is not available here" in choice.notice


# ---------------------------------------------------------------------- the spectral transformer


def test_sst_or_fallback_uses_chapter_07_or_pretrains_briefly(cache, capsys):
    torch.manual_seed(0)
    scene = synthetic_hsi(size=32, bands=16, seed=0)
    tiny_kw = dict(band_block_size=8, embed_dim=16, depth=1, num_heads=2, decoder_dim=16)
    with pytest.warns(UserWarning, match="transductive"):
        pre = pretrained.sst_or_fallback(
            scene, epochs=1, max_pixels=64, model_kwargs=tiny_kw, progress=False
        )
    assert pre.source == "brief pretraining" and "there is no checkpoint at" in pre.notice
    assert "NOTICE: chapter 07's pretrained model is not usable here" in capsys.readouterr().out
    assert pre.model.config["embed_dim"] == 16 and pre.config["pixels"] == 64
    assert not pre.leak_free
    with pytest.warns(UserWarning, match="transductive"):
        result = pretrain_on_scene(
            scene, image_size=5, epochs=1, max_pixels=64, model_kwargs=tiny_kw, progress=False
        )
    save_sst(None, result)
    again = pretrained.sst_or_fallback(
        scene, epochs=1, max_pixels=64, model_kwargs=tiny_kw, progress=False
    )
    assert again.source == "chapter 07" and again.notice == ""
    for k, v in result.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v)
    other = synthetic_hsi(size=24, bands=12, seed=1)
    with pytest.warns(UserWarning, match="transductive"):
        elsewhere = pretrained.sst_or_fallback(
            other,
            epochs=1,
            max_pixels=32,
            quiet=True,
            progress=False,
            model_kwargs={**tiny_kw, "band_block_size": 4},
        )
    assert (
        elsewhere.source == "brief pretraining"
        and "(synthetic, 16 bands), not on" in elsewhere.notice
    )


def test_sst_or_fallback_never_uses_a_pretraining_that_saw_the_test_split(cache):
    from mae_nb.data.hsi import spatial_split
    from mae_nb.finetune import pretraining_region, regions_sha256

    torch.manual_seed(0)
    scene = synthetic_hsi(size=40, bands=16, seed=0)
    split = spatial_split(scene.labels, 5, seed=0)
    tiny_kw = dict(band_block_size=8, embed_dim=16, depth=1, num_heads=2, decoder_dim=16)
    quick = dict(epochs=1, max_pixels=48, model_kwargs=tiny_kw, progress=False, quiet=True)
    # no checkpoint: pretrained here, on the split's training and validation blocks only
    pre = pretrained.sst_or_fallback(scene, split=split, **quick)
    assert pre.source == "brief pretraining" and pre.leak_free
    assert "training and validation blocks" in pre.notice
    assert pre.config["split"]["regions_sha256"] == regions_sha256(split)
    assert pre.config["region_pixels"] == int(pretraining_region(split).sum())
    # chapter 07 pretrained on every pixel: transductive, so not used for this split
    with pytest.warns(UserWarning, match="transductive"):
        everything = pretrain_on_scene(
            scene, image_size=5, epochs=1, max_pixels=48, model_kwargs=tiny_kw, progress=False
        )
    save_sst(None, everything)
    refused = pretrained.sst_or_fallback(scene, split=split, **quick)
    assert refused.source == "brief pretraining" and refused.leak_free
    assert "test region included (transductive" in refused.notice
    # chapter 07 pretrained clear of this split's test region: used
    clear = pretrain_on_scene(
        scene,
        split=split,
        image_size=5,
        epochs=1,
        max_pixels=48,
        model_kwargs=tiny_kw,
        progress=False,
    )
    save_sst(None, clear, overwrite=True)
    used = pretrained.sst_or_fallback(scene, split=split, **quick)
    assert used.source == "chapter 07" and used.notice == "" and used.leak_free
    # ... but not for another split of the same scene (its test region may have been seen)
    other = spatial_split(scene.labels, 5, seed=3)
    assert regions_sha256(other) != regions_sha256(split)
    moved = pretrained.sst_or_fallback(scene, split=other, **quick)
    assert moved.source == "brief pretraining" and "of another split" in moved.notice
    assert moved.config["split"]["regions_sha256"] == regions_sha256(other)
    with pytest.raises(InputError, match="differs from the split's 5 px"):
        pretrained.sst_or_fallback(scene, split=split, patch_size=7, **quick)


def test_offline_the_shipped_course_models_are_the_fallback(no_network):
    """With the weights that ship in the package: offline, an RGB image gets
    mae_tiny_course_rgb and a 6-band one mae_tiny_course_6band, with a notice of how it was
    trained (from the config stored in the model)."""
    for bands, name in pretrained.COURSE_MODELS.items():
        image, valid = _image(bands)
        with pytest.warns(UserWarning, match=f"Using the course's open MAE '{name}'"):
            choice = mae_or_fallback("mae_visualize_vit_large", image, valid, quiet=True)
        assert choice.source == "course model" and choice.name == name
        model = choice.model
        assert model.in_chans == bands and model.pretrained_cfg["normalize"] == "per-band"
        assert model.pretrained_cfg["path"] == str(registry.PACKAGED_DIR / f"{name}.safetensors")
        steps = model.pretrained_cfg["steps"]
        assert f"trained by `mae-nb mae pretrain` for {steps} steps" in choice.notice


# ------------------------------------------------------------------ memory-aware checkpoint


@pytest.mark.parametrize(
    "gib, expected",
    [
        (1.5, "mae_visualize_vit_base"),
        (2.9, "mae_visualize_vit_base"),
        (3.0, "mae_visualize_vit_large"),
        (16, "mae_visualize_vit_large"),
    ],
)
def test_auto_takes_meta_vit_l_only_where_it_fits(monkeypatch, capsys, gib, expected):
    monkeypatch.setattr(pretrained, "available_memory", lambda: int(gib * 1024**3))
    assert pretrained.resolve_checkpoint("auto") == expected
    said = capsys.readouterr().out
    assert f"checkpoint 'auto': {expected}" in said and f"{gib:.1f} GB available" in said
    if expected.endswith("base"):
        assert "below the 3 GB Meta's ViT-L needs" in said
    assert pretrained.resolve_checkpoint("mae_tiny_course_rgb") == "mae_tiny_course_rgb"


def test_auto_on_a_small_machine_loads_vit_b_or_falls_back_from_it(monkeypatch, course_models):
    """Binder (2 GB): chapter 04's default asks for the ViT-B; offline, the course model."""
    monkeypatch.setattr(pretrained, "available_memory", lambda: 2 * 1024**3)
    with pytest.warns(UserWarning, match="'mae_visualize_vit_base' is not available here"):
        choice = mae_or_fallback("auto", quiet=True)
    assert choice.source == "course model" and choice.name == "mae_tiny_course_rgb"
    with pytest.raises(DataUnavailableError, match="mae_visualize_vit_base"):
        load_mae("auto")


def test_available_memory_is_the_smaller_of_host_and_cgroup(monkeypatch):
    import psutil

    class Mem:
        available = 8 * 1024**3

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Mem)
    monkeypatch.setattr(pretrained, "_cgroup_room", lambda: None)
    assert pretrained.available_memory() == 8 * 1024**3
    monkeypatch.setattr(pretrained, "_cgroup_room", lambda: 2 * 1024**3)  # Binder's pod
    assert pretrained.available_memory() == 2 * 1024**3


def test_reconstruct_command_defaults_to_auto():
    import argparse

    from mae_nb.cli import reconstruct

    parser = argparse.ArgumentParser()
    reconstruct.add_parser(parser.add_subparsers())
    args = parser.parse_args(["reconstruct", "in.tif", "out.tif"])
    assert args.checkpoint == "auto"
