"""Tests of mae_nb.distributed in one process (the two-process run is in tests/test_cli_hsi.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mae_nb.distributed import Distributed, EpochDistributedSampler, LossModule, loss_of_module
from mae_nb.errors import InputError
from mae_nb.train import fit


@pytest.fixture
def single(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return Distributed("cpu")


def test_one_process_is_rank_0_of_1_without_a_group(single):
    assert (single.world, single.rank, single.main, single.distributed) == (1, 0, True, False)
    assert single.backend is None and single.device == torch.device("cpu")
    model = nn.Linear(3, 2)
    assert single.wrap(model) is model
    single.barrier()  # a no-op
    data = TensorDataset(torch.arange(10.0))
    first = [b[0].tolist() for b in single.loader(data, 4, seed=1)]
    again = [b[0].tolist() for b in single.loader(data, 4, seed=1)]
    assert first == again and sorted(sum(first, [])) == list(range(10))
    assert [b[0].tolist() for b in single.loader(data, 4, shuffle=False)][0] == [0, 1, 2, 3]


def test_device_must_be_known_and_there():
    with pytest.raises(InputError, match="device must be auto, cpu or cuda"):
        Distributed("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device is available"):
            Distributed("cuda")


def test_epoch_sampler_shares_the_data_and_reshuffles_each_pass():
    data = list(range(10))
    shares = [EpochDistributedSampler(data, num_replicas=2, rank=r, seed=0) for r in (0, 1)]
    epoch0 = [list(s) for s in shares]
    assert sorted(epoch0[0] + epoch0[1]) == data  # disjoint halves covering the data
    epoch1 = [list(s) for s in shares]
    assert epoch1 != epoch0 and sorted(epoch1[0] + epoch1[1]) == data
    assert shares[0].epoch == shares[1].epoch == 2  # both processes advance together


def test_loss_module_trains_the_wrapped_model_through_forward():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    x = torch.linspace(-1, 1, 32)[:, None]

    def mse(m, batch):
        inputs, targets = batch
        return {"loss": ((m(inputs) - targets) ** 2).mean()}

    net = LossModule(model, mse)
    assert torch.equal(loss_of_module(net, (x, 3 * x))["loss"], mse(model, (x, 3 * x))["loss"])
    history = fit(net, (x, 3 * x), loss_of_module, epochs=30, lr=0.1, progress=False)
    assert history.train["loss"][-1] < 0.05 * history.train["loss"][0]
    assert model.weight.item() > 2  # the wrapped model itself learned (it started near 0)
