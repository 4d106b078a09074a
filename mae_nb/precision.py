"""Numeric precision of inference: which one pays on this machine, and the model copies it needs.

A model runs in one of these precisions (``precision=`` of reconstruction, features, sliders
and the ``mae-nb`` commands):

- ``"fp32"``: exact, the reference every other precision is measured against.
- ``"bf16"``: bfloat16 autocast. Fast on a GPU and on CPUs with bf16 units (AVX512-BF16, AMX);
  on other CPUs (AVX2 only, many laptops and cloud machines) bf16 matrix products are
  *emulated* and run many times slower than fp32, so asking for it there warns once, with the
  slowdown measured on this CPU.
- ``"fp16"``: float16 autocast, on a CUDA GPU only.
- ``"int8"``: dynamic int8 quantization of the linear layers (PyTorch's x86/fbgemm engine,
  weights per output channel, activations per batch), on the CPU only; the convolution of the
  patch embedding, the norms and the attention products stay in fp32.
- ``"auto"`` (the default everywhere): bf16 on a CPU with native bf16 units; on a CUDA GPU bf16
  (fp16 where the GPU has no bf16); elsewhere int8 for a model large enough for it to pay
  (:data:`INT8_MIN_LINEAR_PARAMS`) when the CPU has the x86/fbgemm engine, and fp32 otherwise.
  Whether the CPU has native bf16 is read from its capability flags once per process; where
  they do not say (not an x86 CPU), a short timed probe decides.

:func:`choose` resolves a precision for a model (and raises :class:`~mae_nb.errors.InputError`
for one its device cannot run); :func:`running` runs a model in a resolved precision. The bf16,
fp16 and int8 copies of a model are made once and kept (for the last two models asked) until a
parameter of the model changes, so a slider session pays for them once. The module imports
torch only when a function runs, so the command line's ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import itertools
import platform
import time
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from mae_nb.errors import InputError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")

# int8 pays where the linear layers dominate the work: measured with benchmarks/mae_speed.py on a
# 2-core AVX2 CPU, ViT-B (85 M linear weights) ran 1.7 x faster than fp32 and ViT-L 2.1 x, the
# course's tiny MAEs (5 M) 1.05 x, not worth their 0.01 dB.
INT8_MIN_LINEAR_PARAMS = 20_000_000

_HALF = {"bf16": "bfloat16", "fp16": "float16"}  # autocast dtypes, named: torch loads lazily


@dataclass(frozen=True)
class CpuInfo:
    """What this process's CPU offers for inference.

    ``name``: the CPU model; ``capability``: PyTorch's vector capability (``"AVX2"``,
    ``"AVX512"``, ...); ``native_bf16``: bf16 matrix units (AVX512-BF16 or AMX), True/False from
    the CPU flags or None where they do not say; ``int8_engine``: PyTorch's quantized engine for
    int8 (``"x86"`` or ``"fbgemm"``), None without one.
    """

    name: str
    capability: str
    native_bf16: bool | None
    int8_engine: str | None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


@functools.cache
def cpu_info() -> CpuInfo:
    """This CPU's name, capability, bf16 units and int8 engine (read once per process)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    native = None
    if bf16 is not None and x86:
        native = bool(bf16() or (amx is not None and amx()))
    engines = torch.backends.quantized.supported_engines
    engine = next((e for e in ("x86", "fbgemm") if e in engines), None)
    if importlib.util.find_spec("torch.ao.quantization") is None:  # moved out of torch one day
        engine = None
    return CpuInfo(_cpu_name(), capability, native, engine)


def matmul_gflops(dtype: str = "float32", size: int = 512, repeats: int = 3) -> float:
    """The speed of one ``size`` x ``size`` matrix product in ``dtype`` (a torch dtype's name) on
    the CPU, GFLOP/s (best of ``repeats``, after one warm-up)."""
    import torch

    a = torch.randn(size, size).to(getattr(torch, dtype))
    b = torch.randn(size, size).to(getattr(torch, dtype))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / max(best, 1e-9) / 1e9


@functools.cache
def bf16_slowdown() -> float:
    """How many times slower a bf16 matrix product ran than an fp32 one on this CPU (a short
    probe, once per process; below 1 means bf16 is faster)."""
    import torch

    with torch.inference_mode():
        return matmul_gflops("float32", 256) / matmul_gflops("bfloat16", 256)


def native_bf16() -> bool:
    """True when this CPU runs bf16 matrix products natively (from its flags, else the probe)."""
    native = cpu_info().native_bf16
    return native if native is not None else bf16_slowdown() < 1.0


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a clear error."""
    if precision not in PRECISIONS:
        raise InputError(
            f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r} "
            "('auto' picks the fastest one this machine runs well)"
        )
    return precision


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s parameters (the CPU for a model without any)."""
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def linear_params(model: torch.nn.Module) -> int:
    """Number of weights in ``model``'s linear layers (the work int8 speeds up)."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


_warned_bf16 = False


def _warn_emulated_bf16() -> None:
    global _warned_bf16
    if _warned_bf16:
        return
    _warned_bf16 = True
    info = cpu_info()
    warnings.warn(
        f"this CPU ({info.name}, {info.capability}) has no bf16 units: bf16 matrix products are "
        f"emulated here and ran {bf16_slowdown():.0f} x slower than fp32 in a short test, so "
        "precision='bf16' makes the model slower, not faster. precision='auto' picks the "
        "fastest precision this CPU runs well (int8 or fp32).",
        UserWarning,
        stacklevel=3,
    )


def choose(precision: str, model: torch.nn.Module) -> str:
    """The precision ``model`` will run in when ``precision`` is asked for, on its device.

    Resolves ``"auto"`` (see the module docstring); refuses a precision the device cannot run
    (fp16 on a CPU, int8 on a GPU or without the x86/fbgemm engine); warns once when bf16 is
    asked for on a CPU that emulates it.
    """
    import torch

    check_precision(precision)
    device = model_device(model)
    if device.type == "cuda":
        if precision == "int8":
            raise InputError(
                "precision='int8' runs on the CPU only; on a GPU use 'auto' (bf16 or fp16), "
                "'bf16', 'fp16' or 'fp32'"
            )
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if precision == "fp16" and device.type == "cpu":
        raise InputError(
            "precision='fp16' runs on a CUDA GPU only; on the CPU use 'auto', 'fp32', 'bf16' "
            "(fast only with bf16 units) or 'int8'"
        )
    if precision == "int8":
        if device.type != "cpu" or cpu_info().int8_engine is None:
            raise InputError(
                "precision='int8' needs the CPU and PyTorch's x86 or fbgemm quantized engine "
                f"(this PyTorch has: {', '.join(torch.backends.quantized.supported_engines)}); "
                "use 'auto' or 'fp32'"
            )
        return "int8"
    if precision == "auto":
        if device.type != "cpu":
            return "fp32"
        if native_bf16():
            return "bf16"
        if cpu_info().int8_engine and linear_params(model) >= INT8_MIN_LINEAR_PARAMS:
            return "int8"
        return "fp32"
    if precision == "bf16" and device.type == "cpu" and not native_bf16():
        _warn_emulated_bf16()
    return precision


# --------------------------------------------------------------------------- model copies

_COPIES: OrderedDict[tuple[int, str], tuple[weakref.ref, tuple, torch.nn.Module]] = OrderedDict()
_KEEP = 2  # copies kept: a comparison alternates two models


def _shared_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model``'s modules that shares every parameter and buffer with it (no memory);
    replacing a module or parameter of the copy leaves ``model`` as it was."""
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def _half_copy(model: torch.nn.Module, dtype: str) -> torch.nn.Module:
    """``model`` with the weights of its linear and convolution layers in ``dtype`` (autocast would
    cast them again on every call); norms and embeddings stay in float32, as autocast wants."""
    import torch

    clone = _shared_copy(model)
    for mod in clone.modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv3d)):
            for name, p in list(mod.named_parameters(recurse=False)):
                half = p.detach().to(getattr(torch, dtype))
                setattr(mod, name, torch.nn.Parameter(half, requires_grad=False))
    return clone


def _int8_copy(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with dynamically quantized int8 linear layers (per-channel weights)."""
    import torch
    from torch.ao import quantization as tq

    engine = cpu_info().int8_engine
    clone = _shared_copy(model)
    before = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.filterwarnings("ignore", ".*deprecated", DeprecationWarning)
            warnings.filterwarnings("ignore", ".*deprecated", UserWarning)
            tq.quantize_dynamic(
                clone, {torch.nn.Linear: tq.per_channel_dynamic_qconfig}, torch.qint8, inplace=True
            )
    finally:
        torch.backends.quantized.engine = before
    return clone


def model_for(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The module to call for a resolved ``precision``: ``model`` itself for fp32, else its bf16,
    fp16 or int8 copy, made once and remade when any parameter of ``model`` changes."""
    import torch

    if precision == "fp32":
        return model
    key = (id(model), precision)
    versions = tuple((id(t), t._version) for t in model.parameters())
    hit = _COPIES.get(key)
    if hit is not None and hit[0]() is model and hit[1] == versions:
        _COPIES.move_to_end(key)
        return hit[2]
    with torch.inference_mode():
        clone = _int8_copy(model) if precision == "int8" else _half_copy(model, _HALF[precision])
    clone.eval()
    _COPIES[key] = (weakref.ref(model), versions, clone)
    while len(_COPIES) > _KEEP:
        _COPIES.popitem(last=False)
    return clone


@contextlib.contextmanager
def running(model: torch.nn.Module, precision: str) -> Iterator[torch.nn.Module]:
    """Run ``model`` in ``precision`` (resolved by :func:`choose`): yields the module to call,
    inside the autocast context that precision needs (none for fp32 and int8)."""
    import torch

    precision = choose(precision, model)
    runner = model_for(model, precision)
    device_type = model_device(model).type
    if precision in _HALF:
        ctx = torch.autocast(device_type=device_type, dtype=getattr(torch, _HALF[precision]))
    else:
        ctx = torch.autocast(device_type=device_type, enabled=False)
    with ctx:
        yield runner


def describe(model: torch.nn.Module, precision: str = "auto") -> str:
    """Which precision runs ``model`` here when ``precision`` is asked, and on what device."""
    import torch

    ran = choose(precision, model)
    device = model_device(model)
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        info = cpu_info()
        units = "with bf16 units" if native_bf16() else "without bf16 units"
        where = (
            f"{info.name} ({info.capability}, {units}, int8 engine {info.int8_engine or 'none'})"
        )
    size = f"{linear_params(model) / 1e6:.1f} M linear weights"
    return f"precision {ran} (asked {precision!r}) on {where}; the model has {size}"
