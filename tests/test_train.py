"""The shared training loop and checkpoints."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mae_nb.errors import MaeNbError
from mae_nb.train import default_device, fit, load_checkpoint, save_checkpoint


def _problem():
    torch.manual_seed(0)
    x = torch.randn(128, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return x, y


def _mse(model, batch):
    x, y = batch
    return {"loss": torch.nn.functional.mse_loss(model(x), y), "mae": (model(x) - y).abs().mean()}


def test_fit_learns_and_logs_per_epoch():
    x, y = _problem()
    model = torch.nn.Linear(4, 1)
    h = fit(model, (x, y), _mse, epochs=30, lr=0.05, val_data=(x, y), progress=False, device="cpu")
    assert h.epochs == 30 and set(h.train) == {"loss", "mae"} and len(h.val["loss"]) == 30
    assert h.train["loss"][-1] < 0.01 * h.train["loss"][0]
    assert not model.training


def test_fit_is_reproducible_with_a_seed():
    x, y = _problem()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = torch.nn.Linear(4, 1)
        runs.append(
            fit(model, (x, y), _mse, epochs=2, seed=7, progress=False, device="cpu").train["loss"]
        )
    assert runs[0] == runs[1]


def test_nan_input_stops_training_before_it_reaches_the_weights():
    x, y = _problem()
    x[5, 2] = float("nan")
    model = torch.nn.Linear(4, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(MaeNbError, match="diverged in epoch 1.*NaN"):
        fit(model, (x, y), _mse, epochs=1, batch_size=256, progress=False, device="cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_custom_train_step_and_bad_arguments():
    x, y = _problem()
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(m, batch, optimizer):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(m(batch[0]), batch[1])
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    h = fit(model, (x, y), epochs=5, train_step=step, optimizer=opt, progress=False, device="cpu")
    assert h.train["loss"][-1] < h.train["loss"][0]
    with pytest.raises(ValueError, match="loss_fn"):
        fit(model, (x, y), epochs=1)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        fit(model, (x, y), _mse, epochs=0)
    with pytest.raises(MaeNbError, match="empty"):
        fit(model, (x[:0], y[:0]), _mse, epochs=1, progress=False)


def test_checkpoint_round_trip_and_no_silent_overwrite(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "m.pth", model, config={"arch": "linear"})
    other = torch.nn.Linear(3, 2)
    payload = load_checkpoint(path, other)
    assert payload["config"] == {"arch": "linear"}
    assert torch.equal(other.weight, model.weight)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_checkpoint(path, model)
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(MaeNbError, match="not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pth")


def test_default_device_is_usable():
    assert torch.zeros(1, device=default_device()).numel() == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_release_memory_gives_fragmented_heap_back():
    # many small allocations, most freed, every 50th kept: the freed pages stay resident
    # until release_memory() (chapter 08's 60 runs climbed past 2 GB this way)
    script = (
        "from mae_nb.train import release_memory\n"
        "def rss():\n"
        "    status = open('/proc/self/status').read().splitlines()\n"
        "    return next(int(l.split()[1]) for l in status if l.startswith('VmRSS')) / 1024\n"
        "blocks = [bytearray(20000) for _ in range(30000)]\n"
        "kept = blocks[::50]\n"
        "del blocks\n"
        "before = rss()\n"
        "assert release_memory()\n"
        "print(before, rss())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = map(float, out.stdout.split())
    assert before - after > 300, (before, after)  # of ~580 MiB allocated, ~570 freed
