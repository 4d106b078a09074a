"""Checkpoints of the MAE: from a state dict or a checkpoint file to a model, or the reason why not.

Meta's files (``{"model": state_dict}``, e.g. ``mae_visualize_vit_large.pth``) carry no
architecture: :func:`config_from_state_dict` reads it from the tensors' shapes and names the
matching preset. Chapter 03's files also carry a ``"config"`` (the model's ``pretrained_cfg``:
architecture, and the per-band mean and std its input was standardized with), which
:func:`build_from_config` rebuilds; the course writes them as safetensors with that config as
JSON metadata. Meta's ``.pth`` files are read with ``torch.load(weights_only=True)`` (no code
runs) and memory-mapped; the model is built on the meta device and given the file's tensors, so
nothing is held twice (a ViT-L loads within 2 GB). When the weights do not fit,
:func:`diagnose_state_dict` names the likely cause: Hugging Face's names, an encoder-only file, a
fine-tuned classifier, another preset. Which checkpoint to get (a registry name, ``"chapter03"``) is
:mod:`mae_nb.pretrained`'s business.
"""

from __future__ import annotations

import argparse
import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from mae_nb.errors import CheckpointError, MissingFileError
from mae_nb.models.mae import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESETS,
    MaskedAutoencoderViT,
    create_mae,
)
from mae_nb.models.prithvi import PRITHVI_CONFIGS, PrithviMAE, from_published, is_prithvi_state_dict

__all__ = [
    "build_for_state_dict",
    "build_from_config",
    "config_from_state_dict",
    "diagnose_state_dict",
    "load_weights",
    "model_from_checkpoint",
    "state_dict_from_file",
]

#: What a state dict's shapes tell about a preset (head counts and image size cannot be read).
_SHAPE_KEYS = (
    "patch_size",
    "embed_dim",
    "depth",
    "decoder_embed_dim",
    "decoder_depth",
    "mlp_ratio",
)


# --------------------------------------------------------------------------- the architecture


def build_from_config(
    config: dict[str, Any], device: str | torch.device | None = None
) -> MaskedAutoencoderViT:
    """A model (random weights) from ``{"arch": ..., "kwargs": {...}}``: a checkpoint's "config"
    or a model's ``pretrained_cfg``. ``device="meta"`` allocates no memory."""
    if not isinstance(config, dict) or not isinstance(config.get("kwargs"), dict):
        raise CheckpointError(
            f"a model config must be a dict with 'arch' and 'kwargs', got {str(config)[:200]}"
        )
    kwargs = dict(config["kwargs"])
    if isinstance(kwargs.get("img_size"), (list, tuple)):
        kwargs["img_size"] = tuple(kwargs["img_size"])
    arch = config.get("arch")
    with torch.device(device if device is not None else "cpu"):
        if config.get("pos_embed") == "3d-sincos":  # Prithvi's position tables
            return PrithviMAE(**kwargs)
        return create_mae(arch, **kwargs) if arch else MaskedAutoencoderViT(**kwargs)


def _block_count(keys: Any, prefix: str) -> int:
    ids = {int(m.group(1)) for k in keys if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", k))}
    return max(ids) + 1 if ids else 0


def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The model a state dict in Meta's format implies, read from its shapes (meta tensors too).

    Returns ``{"arch": matching preset or None, "kwargs": {...}, "has_decoder": bool}``. Head
    counts cannot be read from weights: the preset's are used, else 64 channels per head.
    """
    sd = state_dict
    foreign = _foreign_format(sd)
    if foreign:
        raise CheckpointError(foreign)
    embed_dim, in_chans, p, _ = (int(n) for n in sd["patch_embed.proj.weight"].shape)
    num_patches = int(sd["pos_embed"].shape[1]) - 1
    side = math.isqrt(max(num_patches, 0))
    has_decoder = "decoder_embed.weight" in sd
    kw: dict[str, Any] = dict(
        patch_size=p, in_chans=in_chans, embed_dim=embed_dim, depth=_block_count(sd, "blocks")
    )
    if "blocks.0.mlp.fc1.weight" in sd:
        kw["mlp_ratio"] = float(sd["blocks.0.mlp.fc1.weight"].shape[0]) / embed_dim
    if has_decoder:
        kw["decoder_embed_dim"] = int(sd["decoder_embed.weight"].shape[0])
        kw["decoder_depth"] = _block_count(sd, "decoder_blocks")
    arch = next(
        (
            name
            for name, preset in PRESETS.items()
            if all(kw.get(k, preset[k]) == preset[k] for k in _SHAPE_KEYS)
            and (has_decoder or kw["depth"] == preset["depth"])
        ),
        None,
    )
    kw["num_heads"] = PRESETS[arch]["num_heads"] if arch else max(1, embed_dim // 64)
    if has_decoder:
        kw["decoder_num_heads"] = (
            PRESETS[arch]["decoder_num_heads"] if arch else max(1, kw["decoder_embed_dim"] // 32)
        )
    if side * side == num_patches:
        kw["img_size"] = side * p
    return {"arch": arch, "kwargs": kw, "has_decoder": has_decoder}


def _describe(kw: dict[str, Any]) -> str:
    dec = (
        f", decoder {kw['decoder_embed_dim']}-dim x {kw['decoder_depth']} blocks"
        if "decoder_embed_dim" in kw
        else ", no decoder"
    )
    return (
        f"patch {kw['patch_size']}, encoder {kw['embed_dim']}-dim x {kw['depth']} blocks{dec}, "
        f"in_chans {kw['in_chans']}"
    )


def _foreign_format(keys: Any) -> str | None:
    """Why weights with these keys are not an MAE ViT in Meta's format, or None."""
    keys = set(keys)
    if any(k.startswith(("vit.embeddings.", "vit.encoder.", "vit.layers.")) for k in keys):
        return (
            "the weights use Hugging Face transformers' names (vit.embeddings..., "
            "decoder.decoder_layers...), "
            "not Meta's; load them with transformers' ViTMAEForPreTraining or convert the names"
        )
    if "patch_embed.proj.weight" not in keys or "pos_embed" not in keys:
        return (
            "these are not MAE ViT weights in Meta's format (no patch_embed.proj.weight / "
            "pos_embed; "
            f"first keys: {', '.join(sorted(keys)[:5]) or 'none'})"
        )
    return None


# --------------------------------------------------------------------------- diagnosis


def diagnose_state_dict(
    state_dict: dict[str, torch.Tensor], model: MaskedAutoencoderViT
) -> list[str]:
    """Why ``state_dict`` does not load into ``model`` with strict=True; [] when it does.

    Names the likely cause: Hugging Face names, an encoder-only ``mae_pretrain_*`` file, a
    fine-tuned classifier, another preset (named from the shapes), other keys or shapes.
    """
    expected = model.state_dict()
    keys, want = set(state_dict), set(expected)
    problems: list[str] = []
    foreign = _foreign_format(keys)
    if foreign:
        return [foreign]
    if not any(k.startswith(("decoder_", "mask_token")) for k in keys):
        what = (
            "a fine-tuned classifier (it has head.weight)"
            if "head.weight" in keys
            else "an encoder-only checkpoint such as Meta's mae_pretrain_vit_*.pth"
        )
        problems.append(
            "the file has no decoder weights (no decoder_embed, decoder_blocks, mask_token): "
            f"it is {what}. Reconstruction needs the decoder: use a mae_visualize_vit_* "
            "checkpoint (or a *_full.pth one)"
        )
    mine = model.pretrained_cfg.get("kwargs", {})
    try:
        theirs = config_from_state_dict(state_dict)
    except CheckpointError as exc:
        return problems + [str(exc)]
    mismatched = [k for k in keys & want if tuple(state_dict[k].shape) != tuple(expected[k].shape)]
    body_differs = any(
        theirs["kwargs"].get(k) != mine.get(k)
        for k in _SHAPE_KEYS
        if k in theirs["kwargs"] and not (k.startswith("decoder") and not theirs["has_decoder"])
    )
    if body_differs:
        suggestion = (
            f"the shapes match the preset {theirs['arch']!r}"
            if theirs["arch"]
            else "the shapes match no preset (build MaskedAutoencoderViT with these sizes)"
        )
        problems.append(
            f"wrong preset: the checkpoint has {_describe(theirs['kwargs'])}; the model "
            f"{model.pretrained_cfg.get('arch') or 'given'} has {_describe(mine)}; {suggestion}"
        )
    elif theirs["kwargs"]["in_chans"] != model.in_chans:
        problems.append(
            f"the checkpoint takes in_chans={theirs['kwargs']['in_chans']} bands, "
            f"the model {model.in_chans}"
        )
    elif mismatched:
        problems.append(
            "shapes differ: "
            + "; ".join(
                f"{k} {tuple(state_dict[k].shape)} in the file vs "
                f"{tuple(expected[k].shape)} in the model"
                for k in mismatched[:5]
            )
        )
    missing = sorted(want - keys)
    unexpected = sorted(keys - want)
    if missing and not problems:
        problems.append(
            f"{len(missing)} weights are missing from the file: {', '.join(missing[:6])}"
        )
    if unexpected and (not problems or not body_differs):
        problems.append(
            f"{len(unexpected)} keys of the file are not in the model: {', '.join(unexpected[:6])}"
        )
    return problems


# --------------------------------------------------------------------------- files


def _read(path: Path, map_location: str | torch.device, mmap: bool) -> Any:
    """The tensors in a safetensors file, or the object ``torch.save`` wrote to ``path``, loaded
    safely (no code runs)."""
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: header length, then its JSON
        import json

        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device=str(map_location)) as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
            # the course's files keep their config as JSON in the metadata (see train.py)
            config = json.loads(meta["mae_nb.config"]) if "mae_nb.config" in meta else None
            return state if config is None else {"model": state, "config": config}
        except Exception as exc:
            raise CheckpointError(
                f"{path} is not a safetensors file that can be read ({type(exc).__name__}: {exc})"
            ) from None

    def load(use_mmap: bool) -> Any:
        # Meta's fine-tuning files hold their argparse arguments
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=use_mmap)

    try:
        try:
            return load(mmap)
        except RuntimeError as exc:
            if not (mmap and "mmap" in str(exc)):
                raise
            return load(False)  # an old (non-zip) checkpoint cannot be memory-mapped
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint that can be loaded safely ({type(exc).__name__}: "
            f"{first_line}). Expected a file saved with torch.save holding "
            "{'model': state_dict}, like Meta's mae_visualize_vit_*.pth"
        ) from None


def _state_dict_in(payload: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint (``{"model": ...}``, ``{"state_dict": ...}`` or bare),
    without ``module.`` prefixes."""
    sd = payload
    if isinstance(payload, dict):
        for key in ("model", "state_dict", "model_state"):
            if isinstance(payload.get(key), dict):
                sd = payload[key]
                break
    if (
        not isinstance(sd, dict)
        or not sd
        or not all(isinstance(v, torch.Tensor) for v in sd.values())
    ):
        keys = list(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path} holds no state dict (top level: {keys}); expected {{'model': state_dict}}"
        )
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def state_dict_from_file(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = True
) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file (``{"model": ...}``, ``{"state_dict": ...}`` or bare).

    Loaded with ``weights_only=True`` (no code runs) and, where the file allows, memory-mapped
    (``mmap=True``): the tensors stay on disk until used. ``module.`` prefixes are removed.
    """
    path = Path(path)
    return _state_dict_in(_read(path, map_location, mmap), path)


def _predicts_normalized_pixels(path: Path) -> bool:
    """Meta's ``*_full.pth`` and ``mae_pretrain_*`` files were trained with norm_pix_loss."""
    stem = path.stem.lower()
    return stem.endswith("_full") or "pretrain" in stem


def build_for_state_dict(
    state_dict: dict[str, torch.Tensor],
    arch: str | None = None,
    norm_pix_loss: bool = False,
    device: str | torch.device = "meta",
) -> MaskedAutoencoderViT:
    """The model (weights not loaded) a state dict in Meta's format implies: the preset ``arch``
    if given, else the one its shapes match, else a model of its shapes; ``in_chans`` and the
    image size are always the file's. On the meta device by default (no memory)."""
    inferred = config_from_state_dict(state_dict)
    kw = inferred["kwargs"]
    overrides = {"in_chans": kw["in_chans"], "norm_pix_loss": norm_pix_loss}
    if "img_size" in kw:
        overrides["img_size"] = kw["img_size"]
    arch = arch or inferred["arch"]
    with torch.device(device):
        return (
            create_mae(arch, **overrides) if arch else MaskedAutoencoderViT(**{**kw, **overrides})
        )


def load_weights(
    model: MaskedAutoencoderViT, state_dict: dict[str, torch.Tensor], what: str = "the state dict"
) -> MaskedAutoencoderViT:
    """Load ``state_dict`` into ``model`` strictly, taking its tensors (``assign=True``: a model
    built on the meta device gets the file's memory-mapped tensors, nothing is copied). Raises
    :class:`CheckpointError` naming the likely cause when they do not fit. Weights stored in
    fp16/bf16 are converted to fp32."""
    problems = diagnose_state_dict(state_dict, model)
    if problems:
        raise CheckpointError(
            f"{what} does not fit {model.pretrained_cfg['arch'] or 'the model'}:\n- "
            + "\n- ".join(problems)
        )
    model.load_state_dict(state_dict, strict=True, assign=True)
    if any(t.dtype in (torch.float16, torch.bfloat16) for t in state_dict.values()):
        model.float()  # weights stored in half precision (the course models) run in fp32
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    left = [n for n, t in tensors if t.is_meta]
    if left:  # cannot happen after a strict load; guards against silent empty weights
        raise CheckpointError(f"{what}: weights left unset after loading: {left[:5]}")
    return model


def model_from_checkpoint(
    path: str | Path, arch: str | None = None, map_location: str | torch.device = "cpu"
) -> MaskedAutoencoderViT:
    """The MAE in a checkpoint file, in eval mode: Meta's format or chapter 03's.

    Meta's files (``{"model": state_dict}``): the architecture is ``arch`` or read from the
    shapes; ``pretrained_cfg`` gets the ImageNet ``mean``/``std`` the RGB models expect.
    ``*_full.pth`` / ``mae_pretrain_*`` files predict per-patch normalized pixels: they load with
    ``norm_pix_loss=True`` and a warning. Chapter 03's files (``{"model", "config", "history"}``)
    are rebuilt from their config, whose ``mean``/``std`` (the per-band statistics the model was
    trained with) go to ``pretrained_cfg``; their ``source`` is ``"course"``. Prithvi's files
    (a bare state dict with ``encoder.``/``decoder.`` keys or a ``Conv3d`` patch embedding; or
    ``arch`` a :data:`~mae_nb.models.prithvi.PRITHVI_CONFIGS` name) load with
    :func:`mae_nb.models.prithvi.from_published`, used at one time step.
    """
    path = Path(path).expanduser()
    payload = _read(path, map_location, mmap=True)
    state_dict = _state_dict_in(payload, path)
    config = payload.get("config") if isinstance(payload, dict) and "model" in payload else None
    if isinstance(config, dict) and isinstance(config.get("kwargs"), dict):  # chapter 03's file
        model = load_weights(build_from_config(config, device="meta"), state_dict, f"{path}")
        model.pretrained_cfg.update(
            {k: v for k, v in config.items() if k not in ("arch", "kwargs")}
        )
        model.pretrained_cfg.update(source="course", path=str(path))
        return model.eval()
    if arch in PRITHVI_CONFIGS or is_prithvi_state_dict(state_dict):  # NASA/IBM's Prithvi
        model = from_published(state_dict, arch if arch in PRITHVI_CONFIGS else None, f"{path}")
        model.pretrained_cfg.update(source=str(path), path=str(path))
        return model
    norm_pix = _predicts_normalized_pixels(path)
    try:
        model = build_for_state_dict(state_dict, arch, norm_pix_loss=norm_pix)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    load_weights(model, state_dict, f"{path}")
    if norm_pix:
        warnings.warn(
            f"{path.name} was trained with norm_pix_loss: it predicts each patch's pixels "
            "normalized by that patch's own mean and variance, not pixels. It loads "
            "(norm_pix_loss=True), and mae_nb.reconstruct un-normalizes its predictions with the "
            "visible neighbouring patches' statistics (norm_pix='neighbours'); for pictures of "
            "pixel predictions use mae_visualize_vit_*.",
            stacklevel=2,
        )
    rgb = model.in_chans == 3
    model.pretrained_cfg.update(
        source=str(path),
        path=str(path),
        norm_pix=norm_pix,
        mean=list(IMAGENET_MEAN) if rgb else None,
        std=list(IMAGENET_STD) if rgb else None,
    )
    return model.eval()
