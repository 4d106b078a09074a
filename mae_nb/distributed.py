"""Data-parallel training across processes: rank, device, wrapped model, sharded loaders, barrier.

A command launched as ``torchrun --nproc_per_node=N -m mae_nb ...`` runs in N processes; each
builds one :class:`Distributed` from torchrun's environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``)::

    dist = Distributed("auto")            # gloo on CPU, nccl on GPU; one process: no group
    net = dist.wrap(model)                # DistributedDataParallel (or the model itself)
    loader = dist.loader(dataset, 64)     # each process its share (EpochDistributedSampler)
    if dist.main: ...                     # rank 0 alone writes checkpoints and logs
    dist.barrier()

DistributedDataParallel synchronizes the gradients of ``forward`` only: a training step that
runs another method (masked pretraining's ``forward_pretrain``) goes through
:class:`LossModule`, whose ``forward`` is the loss.
"""

from __future__ import annotations

import atexit
import os
from typing import Any, Callable

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mae_nb.errors import InputError

__all__ = ["Distributed", "EpochDistributedSampler", "LossModule", "loss_of_module"]


class EpochDistributedSampler(DistributedSampler):
    """A DistributedSampler that advances its epoch at each pass, so every epoch shuffles
    differently, the same way on every process (``mae_nb.train.fit`` does not call
    ``set_epoch``)."""

    def __iter__(self):
        indices = super().__iter__()
        self.set_epoch(self.epoch + 1)
        return indices


class Distributed:
    """Rank, world size and device of this process; the process group set up when launched by
    torchrun (``WORLD_SIZE`` > 1).

    ``device``: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"`` or ``"cuda"``
    (``cuda:LOCAL_RANK``). The process group, once made, is kept for later commands in this
    process (it cannot be re-created reliably under torchrun) and torn down when it ends.
    """

    def __init__(self, device: str = "auto"):
        if device not in ("auto", "cpu", "cuda"):
            raise InputError(f"device must be auto, cpu or cuda, got {device!r}")
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
        if use_cuda and not torch.cuda.is_available():
            raise InputError("device: cuda was asked for but no CUDA device is available")
        self.device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        self.distributed = self.world > 1
        if self.distributed and not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if use_cuda else "gloo")
            atexit.register(self.close)
        self.backend = torch_dist.get_backend() if self.distributed else None

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that writes and reports."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` on this process's device, in DistributedDataParallel when distributed."""
        from torch.nn.parallel import DistributedDataParallel

        model.to(self.device)
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def loader(
        self, dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0
    ) -> DataLoader:
        """A DataLoader of ``dataset``: seeded shuffling in one process; under DDP each process
        gets its share through an :class:`EpochDistributedSampler`."""
        if not self.distributed:
            gen = torch.Generator().manual_seed(seed)
            return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen)
        sampler = EpochDistributedSampler(
            dataset, num_replicas=self.world, rank=self.rank, shuffle=shuffle, seed=seed
        )
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler)

    def barrier(self) -> None:
        """Wait for every process (a no-op in one process)."""
        if self.distributed:
            torch_dist.barrier()

    def close(self) -> None:
        """Tear the process group down (registered to run when the process ends)."""
        if self.distributed and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


class LossModule(nn.Module):
    """``model`` wrapped so that ``forward(batch)`` is ``loss_fn(model, batch)["loss"]``.

    Wrap this in DistributedDataParallel when the loss is not the model's ``forward`` (e.g.
    :func:`mae_nb.models.spectral.pretrain_loss`), and train it with
    :func:`loss_of_module` as the ``loss_fn`` of :func:`mae_nb.train.fit`.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Any], dict]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> torch.Tensor:
        return self.loss_fn(self.model, batch)["loss"]


def loss_of_module(net: nn.Module, batch: Any) -> dict:
    """The ``loss_fn`` for a (DDP-wrapped) :class:`LossModule`: ``{"loss": net(batch)}``."""
    return {"loss": net(batch)}
