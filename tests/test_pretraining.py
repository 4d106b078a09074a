"""Tests of mae_nb.pretraining: sources, statistics, crops drawn on the fly, the masked loss,
the schedule and the training state (small synthetic scenes and GeoTIFFs written here)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import tiny_mae

from mae_nb import pretraining as P
from mae_nb.data import write_raster
from mae_nb.errors import CheckpointError, InputError, MaeNbError, RasterError
from mae_nb.train import is_safetensors, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def geotiff(path, array, valid=None, nodata=None):
    """``array`` (C, H, W) as a GeoTIFF at ``path`` (10 m pixels, UTM)."""
    from rasterio import Affine

    return write_raster(
        path,
        np.asarray(array),
        valid=valid,
        nodata=nodata,
        crs="EPSG:32633",
        transform=Affine(10, 0, 500000, 0, -10, 4000000),
    )


def noisy(bands, height, width, seed=0, base=100.0):
    """Band k (1-based) around k * base, with some texture."""
    rng = np.random.default_rng(seed)
    levels = base * np.arange(1, bands + 1, dtype=np.float32)[:, None, None]
    return (levels + rng.uniform(0, 10, (bands, height, width))).astype(np.float32)


def synthetic(seeds=(1, 2), size=64, bands=3):
    return {"synthetic": {"seeds": list(seeds), "sizes": [size], "bands": bands}}


def batches_of(sources, **kw):
    options = dict(crop_size=32, batch_size=4, steps=6, patch_size=8, seed=0)
    return P.CropBatches(sources, **{**options, **kw})


# --------------------------------------------------------------------------- sources


def test_sources_of_files_folders_and_synthetic_scenes(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    geotiff(folder / "a.tif", noisy(3, 48, 64))
    geotiff(folder / "b.tiff", noisy(3, 40, 80, seed=1))
    (folder / "notes.txt").write_text("not a raster")
    sources = P.open_sources([folder, synthetic(seeds=[4], size=48)], holdout=0.25, crop_size=32)
    assert [s.name for s in sources] == ["a.tif", "b.tiff", "synthetic seed 4 (48 px)"]
    a, b, s = sources
    assert a.kind == b.kind == "file" and s.kind == "synthetic"
    # the right quarter of every real scene's columns is held out; synthetic scenes by seed
    assert (a.train_cols, b.train_cols, s.train_cols) == (48, 60, 48)
    assert a.train_window == (0, 0, 48, 48) and a.heldout_window == (0, 48, 48, 16)
    assert s.heldout_window is None and s.data_range == 10000.0
    assert all(x.bands == [1, 2, 3] and x.valid_share == 1.0 for x in sources)
    # float files without a declared range: the value range of their training region
    assert 205 < a.data_range < 210
    with pytest.raises(InputError, match="holds no GeoTIFF"):
        P.open_sources([tmp_path / "scenes" / ".."], crop_size=32)  # tmp_path: no *.tif


def test_file_sources_read_by_windows(tmp_path, monkeypatch):
    """Crops are windowed reads of the crop alone, never the whole file."""
    geotiff(tmp_path / "big.tif", noisy(3, 96, 128))
    sources = P.open_sources([tmp_path / "big.tif"], crop_size=32)
    P.band_statistics(sources)
    windows = []

    def recording(src, bands, window=None, **kw):
        windows.append(window)
        return read_window(src, bands, window, **kw)

    read_window = P.read_window
    monkeypatch.setattr(P, "read_window", recording)
    batches = batches_of(sources, batch_size=3)
    for k in range(len(batches)):
        batches[k]
    assert len(windows) == 3 * 6
    assert all(w is not None and w[2:] == (32, 32) for w in windows)
    assert all(c + 32 <= sources[0].train_cols for _, c, _, _ in windows)


def test_crops_come_only_from_the_training_region(tmp_path):
    image = noisy(3, 64, 128)
    image[:, :, 96:] = 9999.0  # the held-out quarter holds a marker
    geotiff(tmp_path / "marked.tif", image)
    sources = P.open_sources([tmp_path / "marked.tif"], holdout=0.25, crop_size=32)
    (s,) = sources
    assert s.train_cols == 96
    stats = P.band_statistics(sources)
    assert max(stats["mean"]) < 400  # statistics never saw the marker either
    batches = batches_of(sources, steps=25, batch_size=8)
    for k in range(len(batches)):
        x = batches[k]["x"].numpy().astype(np.float64)
        pixels = x * s.std[None, :, None, None] + s.mean[None, :, None, None]
        assert pixels.max() < 1000, f"batch {k} reached the held-out columns"


def test_batches_are_a_function_of_seed_rank_and_step(tmp_path):
    geotiff(tmp_path / "a.tif", noisy(3, 64, 96))
    sources = P.open_sources([tmp_path / "a.tif", synthetic()], crop_size=32)
    P.band_statistics(sources, "scene")
    one = batches_of(sources, mask_ratio=(0.25, 0.75))
    again = batches_of(sources, mask_ratio=(0.25, 0.75))
    other_rank = batches_of(sources, mask_ratio=(0.25, 0.75), rank=1)
    for k in (0, 3, 5):
        a, b = one[k], again[k]
        assert all(torch.equal(a[n], b[n]) for n in ("x", "valid", "noise"))
        assert a["ratio"] == b["ratio"] and 0.25 <= a["ratio"] <= 0.75
        assert not torch.equal(a["x"], other_rank[k]["x"])
        assert not torch.equal(a["noise"], other_rank[k]["noise"])
    assert torch.equal(one[4]["x"], one[4]["x"])  # drawn again, the same
    assert not torch.equal(one[1]["x"], one[2]["x"])
    assert one[0]["x"].shape == (4, 3, 32, 32) and one[0]["noise"].shape == (4, 16)
    assert one[0]["x"].dtype == torch.float32 and one[0]["valid"].dtype == torch.bool
    assert len(one) == 6
    with pytest.raises(InputError, match="step 6 is outside the run's 6 steps"):
        one[6]
    fixed = batches_of(sources, mask_ratio=0.6)
    assert all(fixed[k]["ratio"] == 0.6 for k in range(3))


def test_crops_respect_min_valid_on_a_nodata_collar(tmp_path):
    image = noisy(3, 64, 64).round().astype(np.uint16)
    valid = np.ones((64, 64), bool)
    valid[:, :24] = False  # a nodata collar on the left
    geotiff(tmp_path / "collar.tif", image, valid=valid, nodata=0)
    sources = P.open_sources([tmp_path / "collar.tif"], holdout=0.0, crop_size=32)
    assert sources[0].valid_share == pytest.approx(40 / 64)
    P.band_statistics(sources)
    for min_valid in (1.0, 0.5):
        batches = batches_of(sources, min_valid=min_valid, steps=8, augment=False)
        for k in range(len(batches)):
            b = batches[k]
            share = b["valid"].float().mean(dim=(1, 2))
            assert bool((share >= min_valid).all()), (min_valid, share)
            assert bool((b["x"].permute(1, 0, 2, 3)[:, ~b["valid"]] == 0).all())  # 0 at nodata
    some = batches_of(sources, min_valid=0.5, steps=8, augment=False)
    assert any(not bool(some[k]["valid"].all()) for k in range(8))
    wide = np.ones((64, 64), bool)
    wide[:, :40] = False  # no 32 px crop is fully valid
    geotiff(tmp_path / "wide.tif", image, valid=wide, nodata=0)
    sources = P.open_sources([tmp_path / "wide.tif"], holdout=0.0, crop_size=32)
    P.band_statistics(sources)
    with pytest.raises(MaeNbError, match="found no 32 px crop with at least 100% valid"):
        batches_of(sources)[0]


def test_band_selection(tmp_path):
    geotiff(tmp_path / "four.tif", noisy(4, 48, 64))
    sources = P.open_sources([tmp_path / "four.tif"], bands=[3, 1], holdout=0.0, crop_size=32)
    (s,) = sources
    assert s.bands == [3, 1] and s.n_bands == 2
    P.band_statistics(sources)
    np.testing.assert_allclose(s.mean, [305, 105], atol=1.0)
    x = batches_of(sources)[0]["x"].numpy()
    assert x.shape == (4, 2, 32, 32)
    pixels = x * s.std[None, :, None, None] + s.mean[None, :, None, None]
    assert 300 <= pixels[:, 0].min() and pixels[:, 0].max() <= 310
    assert 100 <= pixels[:, 1].min() and pixels[:, 1].max() <= 110
    # an input's own bands win over the common selection
    own = P.open_sources(
        [{"path": tmp_path / "four.tif", "bands": [4]}], bands=[1, 2], crop_size=32
    )
    assert own[0].bands == [4]
    with pytest.raises(RasterError, match="band index 5 is out of range .* 4 band"):
        P.open_sources([tmp_path / "four.tif"], bands=[5, 1])
    six = {"synthetic": {"bands": 6, "select": [3, 2, 1], "sizes": [48]}}
    synth = P.open_sources([six], crop_size=32)
    assert synth[0].bands == [3, 2, 1] and synth[0].array.shape == (3, 48, 48)


def test_bad_sources_are_refused_before_any_work(tmp_path, capsys):
    geotiff(tmp_path / "three.tif", noisy(3, 48, 64))
    geotiff(tmp_path / "four.tif", noisy(4, 48, 64))
    with pytest.raises(InputError, match="no input to pretrain on"):
        P.open_sources([])
    with pytest.raises(InputError, match="different band counts .*three.tif: 3, four.tif: 4"):
        P.open_sources([tmp_path / "three.tif", tmp_path / "four.tif"], crop_size=32)
    with pytest.raises(InputError, match="crops of 64 px do not fit in three.tif .*48 x 48 px"):
        P.open_sources([tmp_path / "three.tif"], crop_size=64)
    with pytest.raises(InputError, match="crops of 64 px do not fit in three.tif .*48 x 64 px"):
        P.open_sources([tmp_path / "three.tif"], crop_size=64, holdout=0.0)
    with pytest.raises(InputError, match="holdout must be a share"):
        P.open_sources([tmp_path / "three.tif"], holdout=1.0)
    # a scene with no valid pixel in its training region is skipped, and counted
    empty = np.zeros((3, 48, 64), np.uint16)
    geotiff(tmp_path / "empty.tif", empty, valid=np.zeros((48, 64), bool), nodata=0)
    kept = P.open_sources([tmp_path / "empty.tif", tmp_path / "three.tif"], crop_size=32)
    assert [s.name for s in kept] == ["three.tif"]
    assert "skipped 1 source(s) with no valid pixel in the training region: empty.tif" in (
        capsys.readouterr().out
    )
    with pytest.raises(InputError, match=r"every source \(1\) is nodata"):
        P.open_sources([tmp_path / "empty.tif"], crop_size=32)


# --------------------------------------------------------------------------- statistics


def test_band_statistics_pool_or_keep_per_scene(tmp_path):
    a = noisy(2, 40, 64, seed=0)
    b = noisy(2, 48, 48, seed=1, base=1000.0)
    valid = np.ones((40, 64), bool)
    valid[:8, :8] = False
    geotiff(tmp_path / "a.tif", a, valid=valid, nodata=-1.0)
    geotiff(tmp_path / "b.tif", b)
    sources = P.open_sources([tmp_path / "a.tif", tmp_path / "b.tif"], crop_size=32)
    train_a = a[:, :, :48][:, valid[:, :48]].astype(np.float64)  # 64 - 16 held-out columns
    train_b = b[:, :, :36].reshape(2, -1).astype(np.float64)
    both = np.concatenate([train_a, train_b], axis=1)

    pooled = P.band_statistics(sources, "dataset")
    assert pooled["mode"] == "dataset"
    np.testing.assert_allclose(pooled["mean"], both.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(pooled["std"], both.std(axis=1), rtol=1e-6)
    for s in sources:
        np.testing.assert_allclose(s.mean, both.mean(axis=1), rtol=1e-6)
        np.testing.assert_allclose(s.std, both.std(axis=1), rtol=1e-6)

    per = P.band_statistics(sources, "scene")
    assert per["mode"] == "scene" and per["mean"] is None and per["std"] is None
    for s, px in zip(sources, (train_a, train_b)):
        np.testing.assert_allclose(s.mean, px.mean(axis=1), rtol=1e-6)
        np.testing.assert_allclose(s.std, px.std(axis=1), rtol=1e-6)
    assert [r["name"] for r in per["per_source"]] == ["a.tif", "b.tif"]
    np.testing.assert_allclose(per["per_source"][1]["mean"], train_b.mean(axis=1), rtol=1e-6)
    with pytest.raises(InputError, match="normalization must be one of dataset, scene"):
        P.band_statistics(sources, "global")
    with pytest.raises(InputError, match="compute the sources' statistics first"):
        fresh = P.open_sources([tmp_path / "b.tif"], crop_size=32)
        batches_of(fresh)


# --------------------------------------------------------------------------- the loss


def _batch(valid=None, ratio=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 32, 32, generator=g)
    valid = torch.ones(2, 32, 32, dtype=torch.bool) if valid is None else valid
    noise = torch.rand(2, 16, generator=g)
    return {"x": x, "valid": valid, "noise": noise, "ratio": ratio}


def test_masked_pixel_loss_is_the_models_loss_when_all_is_valid():
    model = tiny_mae(img_size=32)
    batch = _batch()
    with torch.no_grad():
        expected = model(batch["x"], 0.5, batch["noise"])[0]
        assert torch.equal(P.masked_pixel_loss(model, batch), expected)
        # nodata only in visible patches: the weighted loss is still the model's own
        _, _, mask = model(batch["x"], 0.5, batch["noise"])
        valid = torch.ones(2, 32, 32, dtype=torch.bool)
        first_visible = int((mask[0] == 0).nonzero()[0])
        r, c = divmod(first_visible, 4)
        valid[0, r * 8 + 3, c * 8 + 5] = False
        loss = P.masked_pixel_loss(model, {**batch, "valid": valid})
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)


def test_masked_pixel_loss_ignores_nodata_pixels():
    model = tiny_mae(img_size=32)
    batch = _batch()
    with torch.no_grad():
        _, _, mask = model(batch["x"], 0.5, batch["noise"])
    masked = (mask[1] == 1).nonzero().flatten()[:2].tolist()
    valid = torch.ones(2, 32, 32, dtype=torch.bool)
    spots = [(1, (p // 4) * 8 + 2, (p % 4) * 8 + 6) for p in masked]
    for n, r, c in spots:
        valid[n, r, c] = False
    with torch.no_grad():
        base = P.masked_pixel_loss(model, {**batch, "valid": valid})
        for value in (1e3, -50.0):
            x = batch["x"].clone()
            for n, r, c in spots:
                x[n, :, r, c] = value
            changed = P.masked_pixel_loss(model, {**batch, "x": x, "valid": valid})
            torch.testing.assert_close(changed, base, rtol=1e-6, atol=1e-7)
            # counted, the same change would move the loss a lot
            assert float(P.masked_pixel_loss(model, {**batch, "x": x})) > float(base) + 1
    # the loss is differentiable and bf16 autocast runs
    model.train()
    loss = P.masked_pixel_loss(model, {**batch, "valid": valid}, precision="bf16")
    loss.backward()
    assert math.isfinite(loss.item()) and model.decoder_pred.weight.grad is not None


# --------------------------------------------------------------------------- schedule and state


def test_lr_warms_up_then_decays_on_a_half_cosine():
    lr, steps, warmup, low = 1e-3, 100, 10, 1e-5
    assert P.lr_at(0, steps, lr, warmup, low) == pytest.approx(lr / warmup)
    assert P.lr_at(4, steps, lr, warmup, low) == pytest.approx(lr * 5 / warmup)
    assert P.lr_at(warmup - 1, steps, lr, warmup, low) == pytest.approx(lr)
    assert P.lr_at(warmup, steps, lr, warmup, low) == pytest.approx(lr)  # the peak
    assert P.lr_at(55, steps, lr, warmup, low) == pytest.approx((lr + low) / 2)
    assert P.lr_at(steps, steps, lr, warmup, low) == pytest.approx(low)
    assert P.lr_at(steps + 50, steps, lr, warmup, low) == pytest.approx(low)
    rates = [P.lr_at(s, steps, lr, warmup, low) for s in range(steps)]
    assert all(a < b for a, b in zip(rates[:warmup], rates[1:warmup]))
    assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1 :]))
    assert P.lr_at(0, steps, lr, 0) == pytest.approx(lr)  # no warm-up


def test_pretrain_log_rows_are_means_since_the_last_row(tmp_path):
    import csv
    import json

    log = P.PretrainLog(every=2)
    assert log.add(0, 1.0, 0.1, 0.5) is None
    assert log.add(1, 3.0, 0.2, 1.0) == {"step": 2, "loss": 2.0, "lr": 0.2, "seconds": 1.0}
    log.add(2, 5.0, 0.3, 1.5)
    log.add(3, 7.0, 0.4, 2.0)
    assert [r["loss"] for r in log.rows] == [2.0, 6.0]
    log.write(tmp_path / "log.csv", tmp_path / "log.json", {"world_size": 1})
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [(int(r["step"]), float(r["loss"])) for r in rows] == [(2, 2.0), (4, 6.0)]
    saved = json.loads((tmp_path / "log.json").read_text())
    assert saved["world_size"] == 1 and saved["log"] == log.rows


def _trained(seed=0, steps=2):
    model = tiny_mae(img_size=32, seed=seed).train()
    opt = P.optimizer_for(model, 1e-3, 0.05)
    for k in range(steps):
        loss = P.masked_pixel_loss(model, _batch(seed=k))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def test_training_state_round_trip_in_safetensors(tmp_path):
    from safetensors import safe_open

    model, opt = _trained()
    path = P.save_training_state(tmp_path / "state.safetensors", model, opt, 2, {"arch": "x"})
    assert is_safetensors(path) and not path.with_suffix(".safetensors.tmp").exists()
    with safe_open(str(path), framework="pt") as f:  # tensors and JSON: nothing to unpickle
        assert f.metadata()["format"] == "mae_nb.training_state"
        assert any(k.startswith("optim.") for k in f.keys())
    state = P.load_training_state(path)
    assert state["step"] == 2 and state["config"] == {"arch": "x"}
    fresh = tiny_mae(img_size=32, seed=5).train()
    fresh.load_state_dict(state["model"])
    fresh_opt = P.optimizer_for(fresh, 1e-3, 0.05)
    fresh_opt.load_state_dict(state["optimizer"])
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    mine, theirs = opt.state_dict(), fresh_opt.state_dict()
    assert mine["state"].keys() == theirs["state"].keys()
    for idx, s in mine["state"].items():
        for name, value in s.items():
            assert torch.equal(torch.as_tensor(theirs["state"][idx][name]), torch.as_tensor(value))
    assert [g["weight_decay"] for g in theirs["param_groups"]] == [
        g["weight_decay"] for g in mine["param_groups"]
    ]
    # one more step of each: the same weights (the AdamW moments were restored)
    for m, o in ((model, opt), (fresh, fresh_opt)):
        loss = P.masked_pixel_loss(m, _batch(seed=9))
        o.zero_grad()
        loss.backward()
        o.step()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, rtol=0, atol=0)


def test_other_files_are_not_training_states(tmp_path):
    (tmp_path / "notes.safetensors").write_text("not a safetensors file")
    with pytest.raises(MaeNbError, match="notes.safetensors is not a safetensors"):
        P.load_training_state(tmp_path / "notes.safetensors")
    save_checkpoint(tmp_path / "model.safetensors", tiny_mae())
    with pytest.raises(CheckpointError, match="not a training state written by mae-nb mae"):
        P.load_training_state(tmp_path / "model.safetensors")


def test_pretrain_resumes_exactly(tmp_path):
    """Steps 0..8 in one go equal 0..4 then 4..8 from the saved state."""
    sources = P.open_sources([synthetic(seeds=[3], size=64)], crop_size=32)
    P.band_statistics(sources, "scene")
    batches = batches_of(sources, steps=8, batch_size=4, mask_ratio=0.5)
    kw = dict(lr=2e-3, warmup_steps=2, progress=False, seed=0)
    whole = tiny_mae(img_size=32, seed=1)
    _, history, log = P.pretrain(whole, batches, log=P.PretrainLog(every=4), **kw)
    assert [r["step"] for r in log.rows] == [4, 8]
    assert len(history.train["loss"]) == 1 and math.isfinite(history.train["loss"][0])
    saved = {}

    def keep(step, opt):
        if step + 1 == 4:
            P.save_training_state(tmp_path / "s.safetensors", first, opt, 4, {})
            saved["done"] = True

    first = tiny_mae(img_size=32, seed=1)
    P.pretrain(first, batches, on_step=keep, log=P.PretrainLog(every=4), **kw)
    assert saved
    state = P.load_training_state(tmp_path / "s.safetensors")
    second = tiny_mae(img_size=32, seed=7)
    second.load_state_dict(state["model"])
    opt = P.optimizer_for(second, kw["lr"], 0.05)
    opt.load_state_dict(state["optimizer"])
    _, _, tail = P.pretrain(
        second, batches, start_step=4, optimizer=opt, log=P.PretrainLog(every=4), **kw
    )
    assert [r["step"] for r in tail.rows] == [8]
    assert tail.rows[0]["loss"] == pytest.approx(log.rows[1]["loss"], rel=1e-5)
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(second.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    assert tail.rows[0]["lr"] == pytest.approx(P.lr_at(7, 8, 2e-3, 2, 0.0))
    with pytest.raises(InputError, match="precision must be fp32 or bf16"):
        P.pretrain(whole, batches, precision="fp16", **kw)
