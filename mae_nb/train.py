"""One training loop for every chapter: seeded, on the best device, with progress bars.

``fit`` takes a model, data and a ``loss_fn(model, batch)``; a chapter that needs its own
step (the adversarial autoencoder's alternating updates) passes ``train_step`` instead.
It returns a :class:`History` of per-epoch means for plotting. Checkpoints the course writes
are safetensors files (tensors only, nothing that can run code when loaded) whose metadata
holds the config and history as JSON; :func:`load_checkpoint` also reads older course files
and Meta's ``{"model": state_dict}`` ``.pth`` files with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from mae_nb.errors import (
    InputError,
    InputTypeError,
    MaeNbError,
    MissingFileError,
    OutputExistsError,
)


def default_device() -> torch.device:
    """CUDA if available, then Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def release_memory() -> bool:
    """Give the memory freed by finished training runs back to the operating system.

    Many small runs in one process (chapter 08 trains 60) leave glibc's heap fragmented: the
    freed pages stay in the process, so its resident memory climbs run after run (to over
    Binder's 2 GB) although little is alive. ``malloc_trim`` returns them. Returns whether
    it could (glibc only; elsewhere a no-op that returns False).
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    trim(0)
    return True


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors in (nested) tuples, lists and dicts to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def as_loader(data: Any, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """A DataLoader from a DataLoader, Dataset, tensor or tuple of tensors."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, torch.Tensor):
        data = TensorDataset(data)
    elif (
        isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data)
    ):
        data = TensorDataset(*data)
    if not isinstance(data, Dataset):
        raise InputTypeError(
            f"expected a Dataset, DataLoader, tensor or tuple of tensors, got {type(data).__name__}"
        )
    if len(data) == 0:  # type: ignore[arg-type]
        raise MaeNbError("the training data is empty (were all samples removed as nodata?)")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)


def _unwrap(batch: Any) -> Any:
    """A one-tensor TensorDataset batch is a 1-tuple; hand the tensor itself to loss_fn."""
    return batch[0] if isinstance(batch, (tuple, list)) and len(batch) == 1 else batch


@dataclass
class History:
    """Per-epoch means of every logged quantity (``train["loss"][e]``), and wall time."""

    train: dict[str, list[float]] = field(default_factory=dict)
    val: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def epochs(self) -> int:
        return len(next(iter(self.train.values()), []))

    def to_dict(self) -> dict:
        return asdict(self)


def _as_logs(out: Any) -> tuple[torch.Tensor | None, dict[str, float]]:
    if isinstance(out, dict):
        if "loss" not in out:
            raise MaeNbError(f"loss_fn returned a dict without 'loss' (keys: {sorted(out)})")
        loss = out["loss"]
        logs = {
            k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
            for k, v in out.items()
        }
        return loss if isinstance(loss, torch.Tensor) else None, logs
    if isinstance(out, torch.Tensor):
        return out, {"loss": float(out.detach())}
    raise MaeNbError(
        f"loss_fn must return a tensor or a dict with 'loss', got {type(out).__name__}"
    )


def _check_finite(logs: dict[str, float], epoch: int) -> None:
    bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
    if bad:
        raise MaeNbError(
            f"training diverged in epoch {epoch + 1}: {bad} (the weights were not updated "
            "with it). Check the input for NaN/nodata pixels, or lower the learning rate."
        )


def fit(
    model: torch.nn.Module,
    data: Any,
    loss_fn: Callable[[torch.nn.Module, Any], Any] | None = None,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    val_data: Any = None,
    weight_decay: float = 0.0,
    optimizer: Any = None,
    train_step: Callable[[torch.nn.Module, Any, Any], dict[str, float]] | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = True,
    desc: str | None = None,
    grad_clip: float | None = None,
    shuffle: bool = True,
    before_step: Callable[[Any], None] | None = None,
    after_step: Callable[[dict[str, float]], None] | None = None,
) -> History:
    """Train ``model`` for ``epochs`` and return its :class:`History`.

    Either ``loss_fn(model, batch) -> loss or {"loss": ..., other logs}`` (the default step:
    zero_grad, backward, optional grad clipping, step with AdamW unless ``optimizer`` is
    given), or ``train_step(model, batch, optimizer) -> {name: float}`` that does its own
    updates. A non-finite loss stops training with a clear error before any update.
    ``before_step(batch)`` and ``after_step(logs)`` run around each step (a learning-rate
    schedule, a step log, periodic checkpoints: :func:`mae_nb.pretraining.pretrain`).
    """
    from tqdm.auto import tqdm

    if loss_fn is None and train_step is None:
        raise InputError(
            "fit needs a loss_fn(model, batch) or a train_step(model, batch, optimizer)"
        )
    if int(epochs) != epochs or epochs < 1:
        raise InputError(f"epochs must be a positive integer, got {epochs}")
    seed_everything(seed)
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    loader = as_loader(data, batch_size, shuffle, seed)
    val_loader = as_loader(val_data, batch_size, False, seed) if val_data is not None else None
    if optimizer is None and train_step is None:
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
        )
    history = History()
    start = time.perf_counter()
    bar = tqdm(
        total=epochs * len(loader),
        desc=desc or type(model).__name__,
        disable=not progress,
        unit="batch",
        leave=True,
    )
    try:
        for epoch in range(epochs):
            model.train()
            sums: dict[str, float] = {}
            count = 0
            for batch in loader:
                batch = _unwrap(to_device(batch, device))
                if before_step is not None:
                    before_step(batch)
                if train_step is not None:
                    logs = {k: float(v) for k, v in train_step(model, batch, optimizer).items()}
                    _check_finite(logs, epoch)
                else:
                    loss, logs = _as_logs(loss_fn(model, batch))  # type: ignore[misc]
                    _check_finite(logs, epoch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    optimizer.step()
                if after_step is not None:
                    after_step(logs)
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
            for k, v in sums.items():
                history.train.setdefault(k, []).append(v / count)
            if val_loader is not None and loss_fn is not None:
                for k, v in evaluate_loss(model, val_loader, loss_fn, device).items():
                    history.val.setdefault(k, []).append(v)
    finally:
        bar.close()
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module, data: Any, loss_fn: Callable, device=None, batch_size: int = 64
) -> dict[str, float]:
    """Mean of ``loss_fn``'s logs over ``data`` with the model in eval mode."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loader = as_loader(data, batch_size, False, 0)
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    for batch in loader:
        _, logs = _as_logs(loss_fn(model, _unwrap(to_device(batch, device))))
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    *,
    config: dict | None = None,
    history: History | None = None,
    overwrite: bool = False,
) -> Path:
    """Save the model's weights, ``config`` and ``history`` as one safetensors file.

    Tensors go in the safetensors body, ``config`` and ``history`` as JSON in its metadata
    (``mae_nb.config``, ``mae_nb.history``): no pickle, so loading it can never run code.
    ``path`` should end in ``.safetensors``.
    """
    import json

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass overwrite=True to replace it")
    metadata = {
        "format": "mae_nb",
        "mae_nb.config": json.dumps(config or {}),
        "mae_nb.history": json.dumps(history.to_dict() if history else None),
    }
    return write_safetensors(path, model.state_dict(), metadata)


def write_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str]) -> Path:
    """``tensors`` (copied to the CPU) and text ``metadata`` as a safetensors file at ``path``,
    written under a temporary name first: never a half-written file under the real name."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # clones: safetensors refuses tensors that share memory (tied or viewed weights)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def is_safetensors(path: str | Path) -> bool:
    """Whether ``path`` is a safetensors file (an 8-byte header length, then a JSON header)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_safetensors(path: str | Path, map_location="cpu") -> tuple[dict, dict[str, str]]:
    """The tensors and the text metadata of a safetensors file (a clear error if it is not one)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise MaeNbError(
            f"{path} is not a safetensors checkpoint mae-nb can read ({type(exc).__name__}: {exc})"
        ) from None
    return state, meta


def _read_safetensors(path: Path, map_location) -> dict:
    import json

    state, meta = read_safetensors(path, map_location)
    return {
        "model": state,
        "config": json.loads(meta.get("mae_nb.config", "{}")),
        "history": json.loads(meta.get("mae_nb.history", "null")),
    }


def load_checkpoint(
    path: str | Path, model: torch.nn.Module | None = None, map_location: str | torch.device = "cpu"
) -> dict:
    """Load a checkpoint saved by :func:`save_checkpoint` (or Meta's ``{"model": ...}`` files).

    Returns ``{"model": state_dict, "config": ..., "history": ...}``. With ``model``, its
    weights are loaded (strictly) into it. Safetensors files are read as such; older ``.pth``
    files with ``weights_only=True`` (only tensors and plain containers are unpickled).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path}")
    if is_safetensors(path):
        payload = _read_safetensors(path, map_location)
        if model is not None:
            model.load_state_dict(payload["model"])
        return payload
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise MaeNbError(
            f"{path} is not a PyTorch checkpoint mae-nb can read ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise MaeNbError(
            f"{path} is not a checkpoint in the expected format {{'model': state_dict, ...}}"
        )
    if model is not None:
        model.load_state_dict(payload["model"])
    return payload
