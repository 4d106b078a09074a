"""What a ViT-MAE's encoder attends to: the attention weights of one block, as maps.

timm's ``Attention`` computes ``softmax(q k^T * scale) v`` in one fused call
(``F.scaled_dot_product_attention``) and never keeps the weights. :func:`attention_maps`
recomputes them for one encoder block from what the block itself sees: the tokens entering the
block (``forward_encoder``'s steps up to that block: patch embedding, positions, masking,
class token, the earlier blocks), then the block's ``norm1``, its ``qkv`` projection,
``q_norm``/``k_norm``, the scale and the softmax.
The result is the attention of one query token (the class token, or a patch) over the patch
grid, one map per head: :class:`AttentionMaps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from mae_nb.errors import InputError, InputTypeError
from mae_nb.masking import check_mask_ratio
from mae_nb.models.mae import MaskedAutoencoderViT

__all__ = ["AttentionMaps", "attention_maps", "mean_attention_distance"]


@dataclass
class AttentionMaps:
    """The attention one query token pays to every token of one encoder block, per head.

    ``maps``: (heads, gh, gw) float32, the softmax weight on each patch token (NaN on a patch
    hidden by the mask: it is not a token). ``to_cls``: (heads,), the weight on the class token;
    ``maps`` (without NaN) plus ``to_cls`` sum to 1 per head. ``heads``: the heads' indices.
    ``query``: ``"cls"`` or the query patch's (row, col). ``mask``: (gh, gw) bool, True = hidden.
    ``q``, ``k``: (heads, T, head_dim) the queries and keys of the T tokens that entered the
    block (class token first, then the visible patches in the order ``token_patches`` gives:
    each token's patch index, -1 for the class token); ``scale``: the block's
    ``head_dim ** -0.5``; ``query_token``: the query's row in ``q``.
    """

    maps: np.ndarray
    to_cls: np.ndarray
    heads: tuple[int, ...]
    block: int
    query: str | tuple[int, int]
    mask: np.ndarray
    patch_size: int
    q: np.ndarray
    k: np.ndarray
    scale: float
    token_patches: np.ndarray
    query_token: int

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid (gh, gw)."""
        return self.mask.shape

    def describe_query(self) -> str:
        """``"the class token"`` or ``"patch (row r, column c)"``."""
        if self.query == "cls":
            return "the class token"
        return f"patch (row {self.query[0]}, column {self.query[1]})"


def _check_model(model) -> None:
    if not isinstance(model, MaskedAutoencoderViT):
        raise InputTypeError(
            "attention maps need a ViT-MAE (mae_nb.models.mae.MaskedAutoencoderViT, e.g. from "
            f"mae_nb.pretrained.load_mae or create_mae), got {type(model).__name__}"
        )
    for i, blk in enumerate(model.blocks):
        attn = getattr(blk, "attn", None)
        if not all(hasattr(attn, a) for a in ("qkv", "num_heads", "head_dim", "scale")):
            raise InputTypeError(
                f"encoder block {i} has no timm Attention (qkv, num_heads, head_dim, scale): "
                "its attention weights cannot be recomputed"
            )


def _index(name: str, value, size: int, what: str) -> int:
    """A 0-based index in [-size, size - 1] (negative counts from the end) or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an integer, got {value!r}")
    if not -size <= int(value) < size:
        raise InputError(
            f"{name} must be in [0, {size - 1}] (or [-{size}, -1] from the end; {what}), "
            f"got {int(value)}"
        )
    return int(value) % size


def _as_batch(model: MaskedAutoencoderViT, image) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    if not isinstance(image, torch.Tensor):
        raise InputTypeError(
            "image must be an array or tensor (C, H, W) or (1, C, H, W), "
            f"got {type(image).__name__}"
        )
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != 1:
        raise InputError(
            f"image must have shape (C, H, W) or (1, C, H, W), got {tuple(image.shape)}"
        )
    param = next(model.parameters())
    return image.to(device=param.device, dtype=param.dtype)


def _query_patch(query, grid: tuple[int, int]) -> int | None:
    """None for the class token, else the query patch's row-major index (checked)."""
    gh, gw = grid
    if isinstance(query, str):
        if query != "cls":
            raise InputError(f"query must be 'cls', a patch index or (row, col), got {query!r}")
        return None
    if isinstance(query, (tuple, list)) and len(query) == 2:
        row, col = (int(v) for v in query)
        if not (0 <= row < gh and 0 <= col < gw):
            raise InputError(
                f"query patch (row {row}, col {col}) is outside the {gh} x {gw} patch grid: row "
                f"must be in [0, {gh - 1}] and col in [0, {gw - 1}]"
            )
        return row * gw + col
    if isinstance(query, bool) or not isinstance(query, (int, np.integer)):
        raise InputTypeError(f"query must be 'cls', a patch index or (row, col), got {query!r}")
    if not 0 <= int(query) < gh * gw:
        raise InputError(
            f"query patch {int(query)} is outside the {gh} x {gw} patch grid: a patch index is "
            f"in [0, {gh * gw - 1}] (row-major), or give (row, col)"
        )
    return int(query)


def _weights(model, image, block, mask_ratio: float, seed: int) -> dict:
    """One encoder block's attention weights (heads, T, T), recomputed, and what places them."""
    _check_model(model)
    depth = len(model.blocks)
    block = _index("block", block, depth, f"the encoder has {depth} blocks")
    imgs = _as_batch(model, image)
    gh, gw = model.check_imgs(imgs)
    n_patches = gh * gw
    check_mask_ratio(mask_ratio, n_patches)
    if mask_ratio == 0:
        noise = torch.arange(n_patches, dtype=torch.float32)[None]  # every patch, in order
    else:
        noise = torch.rand(1, n_patches, generator=torch.Generator().manual_seed(int(seed)))
    noise = noise.to(imgs.device)
    blk = model.blocks[block]
    attn = blk.attn
    with torch.no_grad():  # forward_encoder's steps, stopping where the block starts
        pos = model.position_embeddings((gh, gw))
        x = model.patch_embed(imgs) + pos[:, 1:, :]
        x, mask, _ = model.random_masking(x, mask_ratio, noise)
        x = torch.cat([(model.cls_token + pos[:, :1, :]).expand(len(x), -1, -1), x], dim=1)
        for earlier in model.blocks[:block]:
            x = earlier(x)
        x = blk.norm1(x)  # (1, T, D): what the block's attention reads
        n, t, _ = x.shape
        qkv = attn.qkv(x).reshape(n, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, _ = qkv.unbind(0)  # (1, heads, T, head_dim)
        q, k = attn.q_norm(q), attn.k_norm(k)
        weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (1, heads, T, T)
    ids_keep = torch.argsort(noise, dim=1)[0, : t - 1]  # the visible patches, in token order
    return dict(
        block=block,
        grid=(gh, gw),
        weights=weights[0].float().cpu().numpy(),
        q=q[0].float().cpu().numpy(),
        k=k[0].float().cpu().numpy(),
        scale=float(attn.scale),
        token_patches=np.concatenate([[-1], ids_keep.cpu().numpy()]),
        mask=mask[0].cpu().numpy().astype(bool).reshape(gh, gw),
    )


def attention_maps(
    model: MaskedAutoencoderViT,
    image,
    block: int = -1,
    *,
    heads: int | Sequence[int] | None = None,
    query: str | int | tuple[int, int] = "cls",
    mask_ratio: float = 0.0,
    seed: int = 0,
) -> AttentionMaps:
    """The attention of ``query`` over the patch grid in encoder ``block``, one map per head.

    ``image``: (C, H, W) or (1, C, H, W), array or tensor, normalized as the model expects (the
    model's input). ``block``: 0-based, negative counts from the end (-1: the last block).
    ``heads``: None (all), one index or a list. ``query``: ``"cls"`` (the class token), a patch
    index (row-major) or (row, col). ``mask_ratio`` > 0: the encoder sees only the visible
    patches, as in training (mask drawn with ``seed``); hidden patches get NaN and a hidden
    query patch is an error. Works with fused attention: the weights are recomputed from the
    tokens entering the block (its ``norm1``, ``qkv``, ``q_norm``/``k_norm``, ``scale``,
    softmax), exactly what the block's attention computes.
    """
    _check_model(model)
    depth = len(model.blocks)
    block = _index("block", block, depth, f"the encoder has {depth} blocks")
    n_heads = int(model.blocks[block].attn.num_heads)
    wanted = (
        range(n_heads)
        if heads is None
        else [heads]
        if not isinstance(heads, (list, tuple, range, np.ndarray))
        else heads
    )
    head_ids = tuple(
        _index("head", h, n_heads, f"block {block} has {n_heads} heads") for h in wanted
    )
    if not head_ids:
        raise InputError(f"heads must name at least one head in [0, {n_heads - 1}], got none")
    gh, gw = model.check_imgs(_as_batch(model, image))
    query_patch = _query_patch(query, (gh, gw))
    w = _weights(model, image, block, mask_ratio, seed)
    token_patches = w["token_patches"]
    if query_patch is None:
        query_token = 0
    else:
        where = np.flatnonzero(token_patches == query_patch)
        if not where.size:
            r, c = divmod(query_patch, gw)
            raise InputError(
                f"query patch (row {r}, col {c}) is hidden by the mask (mask_ratio={mask_ratio}, "
                f"seed={seed}): it is not a token; choose a visible patch or mask_ratio=0"
            )
        query_token = int(where[0])
    idx = list(head_ids)
    row = w["weights"][idx, query_token]  # (h, T)
    maps = np.full((len(idx), gh * gw), np.nan, np.float32)
    maps[:, token_patches[1:]] = row[:, 1:]
    return AttentionMaps(
        maps=maps.reshape(len(idx), gh, gw),
        to_cls=row[:, 0].astype(np.float32),
        heads=head_ids,
        block=block,
        query="cls" if query_patch is None else divmod(query_patch, gw),
        mask=w["mask"],
        patch_size=int(model.patch_size),
        q=w["q"][idx],
        k=w["k"][idx],
        scale=w["scale"],
        token_patches=token_patches,
        query_token=query_token,
    )


def mean_attention_distance(
    model: MaskedAutoencoderViT,
    image,
    block: int = -1,
    *,
    mask_ratio: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """How far each head of encoder ``block`` looks: the mean distance, in patches, from a query
    patch to the patches it attends to, weighted by attention and averaged over query patches.

    The ViT paper's "mean attention distance" (Dosovitskiy et al. 2021, there in pixels: multiply
    by the patch size). The class token is left out as query and as key (each row's weights
    over the patches are renormalized to sum to 1). Returns (heads,) distances and the distance
    uniform attention over the same patches would give, the yardstick: a head below it looks
    nearby, a head at it looks everywhere alike.
    """
    w = _weights(model, image, block, mask_ratio, seed)
    gw = w["grid"][1]
    rows, cols = np.divmod(w["token_patches"][1:], gw)
    dist = np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])  # (P, P) visible
    patches = w["weights"][:, 1:, 1:].astype(np.float64)  # (heads, P, P): patch to patch
    patches /= patches.sum(axis=-1, keepdims=True)
    per_head = (patches * dist).sum(axis=-1).mean(axis=-1)
    return per_head.astype(np.float32), float(dist.mean())
