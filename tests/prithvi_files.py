"""Random-weight checkpoints written exactly as NASA/IBM publish Prithvi's (for the tests).

Written from Prithvi's public model code (``prithvi_mae.py``: ``PrithviMAE`` with an
``encoder`` (``PrithviViT``) and a ``decoder`` (``MAEDecoder``); ``Prithvi.py`` of the first
release: Meta's names), independently of :mod:`mae_nb.models.prithvi`: the key names, the
``Conv3d`` patch embedding ``(D, C, tubelet, p, p)``, the 3-D sin-cos tables over
``num_frames`` time steps (numpy, as the published ``get_3d_sincos_pos_embed``), and
``torch.save`` of a bare state dict.
"""

from __future__ import annotations

import numpy as np
import torch


def sincos_1d(dim, pos):
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", np.asarray(pos, np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_3d(dim, grid, cls_token=True):
    """Prithvi's get_3d_sincos_pos_embed, written out with numpy as published."""
    t, h, w = grid
    wd, hd, td = dim // 16 * 6, dim // 16 * 6, dim // 16 * 4
    we = np.tile(sincos_1d(wd, np.arange(w)), (t * h, 1))
    he = np.tile(np.repeat(sincos_1d(hd, np.arange(h)), w, axis=0), (t, 1))
    te = np.repeat(sincos_1d(td, np.arange(t)), h * w, axis=0)
    emb = np.concatenate([we, he, te], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, dim]), emb], axis=0)
    return emb


def _block(prefix, d, hidden):
    return {
        f"{prefix}.norm1.weight": (d,), f"{prefix}.norm1.bias": (d,),
        f"{prefix}.attn.qkv.weight": (3 * d, d), f"{prefix}.attn.qkv.bias": (3 * d,),
        f"{prefix}.attn.proj.weight": (d, d), f"{prefix}.attn.proj.bias": (d,),
        f"{prefix}.norm2.weight": (d,), f"{prefix}.norm2.bias": (d,),
        f"{prefix}.mlp.fc1.weight": (hidden, d), f"{prefix}.mlp.fc1.bias": (hidden,),
        f"{prefix}.mlp.fc2.weight": (d, hidden), f"{prefix}.mlp.fc2.bias": (d,),
    }  # fmt: skip


def prithvi_state_dict(
    *,
    img=32,
    patch=8,
    frames=2,
    tubelet=1,
    chans=6,
    dim=64,
    depth=2,
    ddim=32,
    ddepth=1,
    prefixed=True,
    seed=0,
) -> dict[str, torch.Tensor]:
    """A random-weight Prithvi MAE state dict in the published layout (fixed sin-cos tables)."""
    g = img // patch
    grid = (frames // tubelet, g, g)
    enc, dec = ("encoder.", "decoder.") if prefixed else ("", "")
    shapes = {
        f"{enc}patch_embed.proj.weight": (dim, chans, tubelet, patch, patch),
        f"{enc}patch_embed.proj.bias": (dim,),
        f"{enc}cls_token": (1, 1, dim),
    }
    for i in range(depth):
        shapes |= _block(f"{enc}blocks.{i}", dim, 4 * dim)
    shapes |= {f"{enc}norm.weight": (dim,), f"{enc}norm.bias": (dim,)}
    shapes |= {f"{dec}decoder_embed.weight": (ddim, dim), f"{dec}decoder_embed.bias": (ddim,),
               f"{dec}mask_token": (1, 1, ddim)}  # fmt: skip
    for i in range(ddepth):
        shapes |= _block(f"{dec}decoder_blocks.{i}", ddim, 4 * ddim)
    shapes |= {
        f"{dec}decoder_norm.weight": (ddim,), f"{dec}decoder_norm.bias": (ddim,),
        f"{dec}decoder_pred.weight": (tubelet * patch * patch * chans, ddim),
        f"{dec}decoder_pred.bias": (tubelet * patch * patch * chans,),
    }  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=gen) * 0.05 for k, s in shapes.items()}
    for k in sd:
        if k.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            sd[k] = 1 + sd[k]
    sd[f"{enc}pos_embed"] = torch.from_numpy(sincos_3d(dim, grid)).float()[None]
    sd[f"{dec}decoder_pos_embed"] = torch.from_numpy(sincos_3d(ddim, grid)).float()[None]
    return sd


def write_prithvi(path, **kw):
    """torch.save a random-weight Prithvi state dict to ``path`` (as the published .pt files)."""
    torch.save(prithvi_state_dict(**kw), path)
    return path
