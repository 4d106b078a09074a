"""Random masking of tokens, as in He et al. (2022): shuffle by noise, keep the first ones.

The whole method is six lines in :func:`random_masking` (noise, argsort, keep the first
``len_keep``, ``ids_restore``, a binary mask), so it can be checked against the paper's
figure. Passing ``noise`` makes a mask reproducible or chosen: the patches with the
smallest noise are kept.
"""

from __future__ import annotations

import math

import torch

from mae_nb.errors import InputError


def check_mask_ratio(mask_ratio: float, num_tokens: int | None = None) -> float:
    """``mask_ratio`` as a float in [0, 1).

    With ``num_tokens``, at least one of that many tokens must stay visible.
    """
    try:
        ratio = float(mask_ratio)
    except (TypeError, ValueError):
        raise InputError(f"mask_ratio must be a number in [0, 1), got {mask_ratio!r}") from None
    if not 0.0 <= ratio < 1.0 or math.isnan(ratio):
        raise InputError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if num_tokens is not None and int(num_tokens * (1 - ratio)) < 1:
        raise InputError(
            f"mask_ratio={mask_ratio} leaves no visible patch out of {num_tokens}; "
            f"use a mask_ratio below {1 - 1 / num_tokens:.3f}"
        )
    return ratio


def random_masking(
    x: torch.Tensor,
    mask_ratio: float,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random ``1 - mask_ratio`` share of the tokens of each sample.

    x: (N, L, D). noise: (N, L) in any range, optional (uniform random by default, drawn
    with ``generator``). Returns ``x_visible`` (N, L_keep, D), ``mask`` (N, L) with 1 =
    masked (removed) and 0 = kept, in the original token order, ``ids_restore`` (N, L) that
    un-shuffles, and ``ids_keep`` (N, L_keep) the indices of the kept tokens.
    """
    if x.ndim != 3:
        raise InputError(f"expected tokens of shape (N, L, D), got {tuple(x.shape)}")
    n, length, dim = x.shape
    check_mask_ratio(mask_ratio, length)
    len_keep = int(length * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(n, length, device=x.device, generator=generator)
    elif noise.shape != (n, length):
        raise InputError(f"noise must have shape (N, L) = {(n, length)}, got {tuple(noise.shape)}")
    noise = noise.to(x.device)

    ids_shuffle = torch.argsort(noise, dim=1)  # ascend: small is keep, large is remove
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_visible = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).expand(-1, -1, dim))
    mask = torch.ones(n, length, device=x.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)
    return x_visible, mask, ids_restore, ids_keep


def patch_mask_to_pixels(
    mask: torch.Tensor, grid_hw: tuple[int, int], patch_size: int
) -> torch.Tensor:
    """A per-patch mask (N, L) as a per-pixel mask (N, H, W), H = grid_h * patch_size."""
    gh, gw = grid_hw
    if mask.ndim != 2 or mask.shape[1] != gh * gw:
        raise InputError(
            f"mask must have shape (N, {gh * gw}) for a {gh} x {gw} grid, got {tuple(mask.shape)}"
        )
    m = mask.reshape(mask.shape[0], gh, 1, gw, 1)
    m = m.expand(-1, gh, patch_size, gw, patch_size)
    return m.reshape(mask.shape[0], gh * patch_size, gw * patch_size)


def block_mask(
    n: int, grid_hw: tuple[int, int], mask_ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random per-patch mask (N, L), 1 = masked, exactly ``int(L * mask_ratio)`` patches each."""
    length = grid_hw[0] * grid_hw[1]
    dummy = torch.zeros(n, length, 1)
    return random_masking(dummy, mask_ratio, generator=generator)[1]
