"""The masked autoencoder ViT of He et al. (2022), with the parameter names of Meta's code.

The class reads top to bottom like the paper and like facebookresearch/mae's
``models_mae.py``: :meth:`~MaskedAutoencoderViT.patchify`,
:meth:`~MaskedAutoencoderViT.random_masking`, :meth:`~MaskedAutoencoderViT.forward_encoder`
(the encoder sees only the visible patches), :meth:`~MaskedAutoencoderViT.forward_decoder`
(mask tokens fill the gaps), :meth:`~MaskedAutoencoderViT.forward_loss` (mean squared error
on the masked patches only). Its parameters have exactly Meta's names (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.N``, ``norm``, ``decoder_embed``, ``mask_token``,
``decoder_pos_embed``, ``decoder_blocks.N``, ``decoder_norm``, ``decoder_pred``), so Meta's
checkpoints load with ``strict=True``; the blocks are timm's ``PatchEmbed`` and ``Block``.

Beyond Meta's file: any ``in_chans``; non-square images, and images of another size than
the model was built for (the fixed sin-cos position embeddings are recomputed for the new
patch grid); a ``noise`` (or ``generator``) argument so a mask is reproducible or chosen;
errors that say what is wrong before torch does; a loader for Meta's checkpoints that maps
them into memory (ViT-L within 2 GB) and explains a mismatch.
"""

from __future__ import annotations

import argparse
import math
import re
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from mae_nb.errors import CheckpointError, InputError, InputTypeError, MissingFileError
from mae_nb.masking import check_mask_ratio
from mae_nb.masking import random_masking as _random_masking

__all__ = [
    "ARCHS",
    "CheckpointError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MaskedAutoencoderViT",
    "PRESETS",
    "build_from_config",
    "config_from_state_dict",
    "course_checkpoint_path",
    "create_mae",
    "diagnose_state_dict",
    "get_2d_sincos_pos_embed",
    "load_course_checkpoint",
    "load_meta_checkpoint",
    "mae_vit_base_patch16",
    "mae_vit_base_patch16_dec512d8b",
    "mae_vit_huge_patch14",
    "mae_vit_huge_patch14_dec512d8b",
    "mae_vit_large_patch16",
    "mae_vit_large_patch16_dec512d8b",
    "mae_vit_tiny_patch8",
    "mae_vit_tiny_patch8_dec128d2b",
    "mae_vit_tiny_patch16",
    "mae_vit_tiny_patch16_dec128d2b",
    "state_dict_from_file",
]

#: Pixel statistics Meta's RGB checkpoints were trained with (images in [0, 1], then standardized).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- position embeddings


def get_2d_sincos_pos_embed(
    embed_dim: int, grid_hw: int | tuple[int, int], cls_token: bool = False
) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings, laid out as in Meta's ``util/pos_embed.py``.

    Returns (gh * gw [+ 1], embed_dim) float32, patches in row-major order. The first half
    of the channels encodes the patch's column, the second half its row (Meta builds its grid
    with ``np.meshgrid(grid_w, grid_h)``, "w goes first"); each half is [sin | cos] of the
    position times ``1 / 10000 ** (k / (embed_dim / 4))``. With ``cls_token`` a zero row comes first.
    """
    gh, gw = (grid_hw, grid_hw) if isinstance(grid_hw, int) else grid_hw
    if embed_dim % 4:
        raise InputError(
            f"embed_dim must be a multiple of 4 for 2-D sin-cos embeddings, got {embed_dim}"
        )
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (D/4,)
    rows, cols = torch.meshgrid(
        torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij"
    )
    out_w = cols.reshape(-1, 1) * omega  # (L, D/4)
    out_h = rows.reshape(-1, 1) * omega
    emb = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)  # (L, D)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=torch.float64), emb], dim=0)
    return emb.float()


def _pair(x: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(x, int):
        return (x, x)
    h, w = x
    return (int(h), int(w))


# --------------------------------------------------------------------------- the model


class MaskedAutoencoderViT(nn.Module):
    """Masked autoencoder with a ViT encoder and a light ViT decoder (He et al., 2022).

    ``img_size`` (int or (H, W)) is the size the model is built for; other sizes that are
    multiples of ``patch_size`` work too (the fixed position embeddings are recomputed for the
    new patch grid). ``in_chans``: any number of bands. ``norm_pix_loss``: the target of each
    patch is standardized by its own mean and variance (Meta's ``_full`` checkpoints were
    trained so; their predictions are normalized pixels).

    Shapes: imgs (N, C, H, W); patches (N, L, p*p*C) with L = (H/p) * (W/p); mask (N, L)
    with 1 = masked (removed), 0 = visible.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        norm_pix_loss: bool = False,
    ) -> None:
        super().__init__()
        from timm.layers import PatchEmbed
        from timm.models.vision_transformer import Block

        img_hw = _pair(img_size)
        for name, value in (
            ("patch_size", patch_size),
            ("in_chans", in_chans),
            ("embed_dim", embed_dim),
            ("depth", depth),
            ("num_heads", num_heads),
            ("decoder_embed_dim", decoder_embed_dim),
            ("decoder_depth", decoder_depth),
            ("decoder_num_heads", decoder_num_heads),
        ):
            if int(value) != value or value < (0 if "depth" in name else 1):
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if img_hw[0] % patch_size or img_hw[1] % patch_size or min(img_hw) < patch_size:
            raise InputError(f"img_size {img_hw} must be a multiple of patch_size={patch_size}")
        for dim, heads, what in (
            (embed_dim, num_heads, ""),
            (decoder_embed_dim, decoder_num_heads, "decoder_"),
        ):
            if dim % heads:
                raise InputError(
                    f"{what}embed_dim={dim} must be divisible by {what}num_heads={heads}"
                )
            if dim % 4:
                raise InputError(
                    f"{what}embed_dim must be a multiple of 4 (sin-cos position embeddings), got {dim}"
                )

        self.img_size = img_hw
        self.patch_size = int(patch_size)
        self.in_chans = int(in_chans)
        self.grid_size = (img_hw[0] // patch_size, img_hw[1] // patch_size)
        self.norm_pix_loss = bool(norm_pix_loss)
        #: What the model is and how to rebuild it; loaders add "mean", "std", "source" (like timm's).
        self.pretrained_cfg: dict[str, Any] = {
            "arch": None,
            "kwargs": dict(
                img_size=list(img_hw),
                patch_size=int(patch_size),
                in_chans=int(in_chans),
                embed_dim=embed_dim,
                depth=depth,
                num_heads=num_heads,
                decoder_embed_dim=decoder_embed_dim,
                decoder_depth=decoder_depth,
                decoder_num_heads=decoder_num_heads,
                mlp_ratio=mlp_ratio,
                norm_pix_loss=bool(norm_pix_loss),
            ),
        }

        # MAE encoder
        self.patch_embed = PatchEmbed(
            img_hw, patch_size, in_chans, embed_dim, strict_img_size=False
        )
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False
        )  # fixed sin-cos
        self.blocks = nn.ModuleList(
            [
                Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                for _ in range(depth)
            ]
        )
        self.norm = norm_layer(embed_dim)

        # MAE decoder
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False
        )  # fixed sin-cos
        self.decoder_blocks = nn.ModuleList(
            [
                Block(
                    decoder_embed_dim,
                    decoder_num_heads,
                    mlp_ratio,
                    qkv_bias=True,
                    norm_layer=norm_layer,
                )
                for _ in range(decoder_depth)
            ]
        )
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(
            decoder_embed_dim, patch_size**2 * in_chans, bias=True
        )  # decoder to patch

        self.initialize_weights()

    # ----------------------------------------------------------------------- initialization

    def initialize_weights(self) -> None:
        """Meta's initialization: sin-cos position embeddings, xavier linears, normal(0.02) tokens."""
        with torch.no_grad():
            self.pos_embed.copy_(
                get_2d_sincos_pos_embed(self.pos_embed.shape[-1], self.grid_size, True)[None]
            )
            self.decoder_pos_embed.copy_(
                get_2d_sincos_pos_embed(self.decoder_pos_embed.shape[-1], self.grid_size, True)[
                    None
                ]
            )
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))  # like nn.Linear, not nn.Conv2d
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    # ----------------------------------------------------------------------- checks and grids

    @property
    def num_patches(self) -> int:
        """Number of patches L for the size the model was built for."""
        return self.grid_size[0] * self.grid_size[1]

    def check_imgs(self, imgs: torch.Tensor) -> tuple[int, int]:
        """Raise a clear ValueError for images the model cannot take; return the patch grid (gh, gw)."""
        if not isinstance(imgs, torch.Tensor):
            raise InputTypeError(
                f"imgs must be a torch.Tensor of shape (N, C, H, W), got {type(imgs).__name__}"
            )
        if imgs.ndim != 4:
            hint = " (add a batch dimension: imgs[None])" if imgs.ndim == 3 else ""
            raise InputError(f"imgs must have shape (N, C, H, W), got {tuple(imgs.shape)}{hint}")
        if not imgs.is_floating_point():
            raise InputError(
                f"imgs must be a floating-point tensor (normalized pixels), got {imgs.dtype}"
            )
        _, c, h, w = imgs.shape
        if c != self.in_chans:
            raise InputError(
                f"the model takes in_chans={self.in_chans} bands, the images have {c}; select "
                f"{self.in_chans} bands (e.g. an RGB composite) or build a model with in_chans={c}"
            )
        p = self.patch_size
        if h < p or w < p:
            raise InputError(f"the image ({h} x {w} px) is smaller than one patch ({p} x {p} px)")
        if h % p or w % p:
            raise InputError(
                f"image height and width must be multiples of patch_size={p}, got {h} x {w}; "
                f"crop to {h // p * p} x {w // p * p} or pad to {math.ceil(h / p) * p} x {math.ceil(w / p) * p}"
            )
        return h // p, w // p

    def _grid_for(self, num_patches: int, grid_hw: tuple[int, int] | None) -> tuple[int, int]:
        if grid_hw is not None:
            gh, gw = _pair(grid_hw)
            if gh * gw != num_patches:
                raise InputError(
                    f"grid_hw={grid_hw} has {gh * gw} patches, the tokens have {num_patches}"
                )
            return gh, gw
        if num_patches == self.num_patches:
            return self.grid_size
        side = math.isqrt(num_patches)
        if side * side == num_patches:
            return side, side
        raise InputError(
            f"{num_patches} patches do not form the model's grid nor a square one; pass grid_hw=(gh, gw)"
        )

    def position_embeddings(self, grid_hw: tuple[int, int], decoder: bool = False) -> torch.Tensor:
        """The fixed position embeddings (1, 1 + gh*gw, D) of a patch grid, cls position first.

        The stored ones for the built grid; recomputed sin-cos ones for any other grid (they are
        not learned, so this is exact, not an approximation).
        """
        stored = self.decoder_pos_embed if decoder else self.pos_embed
        if tuple(grid_hw) == self.grid_size:
            return stored
        pos = get_2d_sincos_pos_embed(stored.shape[-1], tuple(grid_hw), cls_token=True)
        return pos[None].to(device=stored.device, dtype=stored.dtype)

    # ----------------------------------------------------------------------- the method

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs: (N, C, H, W) -> x: (N, L, p*p*C), patches in row-major order, pixels (p, q, c)."""
        gh, gw = self.check_imgs(imgs)
        p, c = self.patch_size, self.in_chans
        x = imgs.reshape(imgs.shape[0], c, gh, p, gw, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(imgs.shape[0], gh * gw, p * p * c)

    def unpatchify(self, x: torch.Tensor, grid_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """x: (N, L, p*p*C) -> imgs: (N, C, H, W). ``grid_hw`` = (H/p, W/p); by default the
        model's grid when L matches it, else a square grid."""
        p, c = self.patch_size, self.in_chans
        if x.ndim != 3 or x.shape[2] != p * p * c:
            raise InputError(
                f"x must have shape (N, L, {p * p * c}) (patch_size={p}, in_chans={c}), got {tuple(x.shape)}"
            )
        gh, gw = self._grid_for(x.shape[1], grid_hw)
        x = x.reshape(x.shape[0], gh, gw, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, gh * p, gw * p)

    def random_masking(
        self,
        x: torch.Tensor,
        mask_ratio: float,
        noise: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample random masking by argsort of noise (see :func:`mae_nb.masking.random_masking`).

        x: (N, L, D); noise: (N, L), the patches with the smallest noise stay visible. Returns
        x_visible (N, L_keep, D), mask (N, L) with 1 = masked, ids_restore (N, L).
        """
        x_visible, mask, ids_restore, _ = _random_masking(
            x, mask_ratio, noise=noise, generator=generator
        )
        return x_visible, mask, ids_restore

    def forward_encoder(
        self,
        imgs: torch.Tensor,
        mask_ratio: float,
        noise: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed patches, add positions, drop the masked ones, run the encoder on the rest.

        imgs: (N, C, H, W) -> latent (N, 1 + L_keep, D) (cls token first), mask (N, L), ids_restore (N, L).
        """
        grid = self.check_imgs(imgs)
        check_mask_ratio(mask_ratio, grid[0] * grid[1])
        pos = self.position_embeddings(grid)
        x = self.patch_embed(imgs)  # (N, L, D)
        x = x + pos[:, 1:, :]  # add pos embed w/o cls token
        x, mask, ids_restore = self.random_masking(x, mask_ratio, noise, generator=generator)
        cls_token = self.cls_token + pos[:, :1, :]
        x = torch.cat([cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(
        self,
        latent: torch.Tensor,
        ids_restore: torch.Tensor,
        grid_hw: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Fill the masked places with the mask token, unshuffle, decode every patch.

        latent: (N, 1 + L_keep, D), ids_restore: (N, L) -> pred (N, L, p*p*C). ``grid_hw`` is
        needed only for a non-square image of another size than the model's.
        """
        grid = self._grid_for(ids_restore.shape[1], grid_hw)
        x = self.decoder_embed(latent)  # (N, 1 + L_keep, Dd)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)  # no cls token
        x_ = torch.gather(
            x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2])
        )  # unshuffle
        x = torch.cat([x[:, :1, :], x_], dim=1)  # append cls token
        x = x + self.position_embeddings(grid, decoder=True)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:, :]  # remove cls token

    def forward_loss(
        self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean squared error per patch, averaged over the masked patches.

        imgs: (N, C, H, W); pred: (N, L, p*p*C); mask: (N, L), 1 = masked. With
        ``norm_pix_loss`` the target patches are standardized first. With no patch masked
        (mask_ratio 0) the mean over all patches is returned instead of Meta's 0/0.
        """
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = (pred - target) ** 2
        loss = loss.mean(dim=-1)  # (N, L), mean loss per patch
        if not bool(mask.any()):
            return loss.mean()
        return (loss * mask).sum() / mask.sum()  # mean loss on removed patches

    def forward(
        self,
        imgs: torch.Tensor,
        mask_ratio: float = 0.75,
        noise: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """imgs: (N, C, H, W) -> loss (scalar), pred (N, L, p*p*C), mask (N, L) with 1 = masked.

        ``noise`` (N, L) chooses the mask (smallest noise = visible); ``generator`` draws it
        reproducibly. Without either, the mask is random, as in training.
        """
        latent, mask, ids_restore = self.forward_encoder(
            imgs, mask_ratio, noise, generator=generator
        )
        grid = (imgs.shape[2] // self.patch_size, imgs.shape[3] // self.patch_size)
        pred = self.forward_decoder(latent, ids_restore, grid)
        loss = self.forward_loss(imgs, pred, mask)
        return loss, pred, mask

    def forward_features(self, imgs: torch.Tensor, block: int | None = None) -> torch.Tensor:
        """The encoder's tokens with no patch masked, in patch order (timm's ``forward_features``).

        imgs: (N, C, H, W) -> (N, 1 + L, D), the cls token first, patches row-major. ``block``:
        stop after this encoder block (0-based, negative counts from the end; default the last);
        the encoder's final norm follows either way. For the last block this equals
        ``forward_encoder(imgs, 0.0, noise=arange(L))[0]``.
        """
        grid = self.check_imgs(imgs)
        depth = len(self.blocks)
        if block is not None and (
            isinstance(block, bool) or int(block) != block or not -depth <= block < depth
        ):
            raise InputError(
                f"block must be an encoder block index in [{-depth}, {depth - 1}] "
                f"(the encoder has {depth} blocks), got {block!r}"
            )
        stop = depth if block is None else int(block) % depth + 1
        pos = self.position_embeddings(grid)
        x = self.patch_embed(imgs) + pos[:, 1:, :]
        cls_token = (self.cls_token + pos[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls_token, x], dim=1)
        for blk in self.blocks[:stop]:
            x = blk(x)
        return self.norm(x)

    def extra_repr(self) -> str:
        return (
            f"img_size={self.img_size}, patch_size={self.patch_size}, in_chans={self.in_chans}, "
            f"norm_pix_loss={self.norm_pix_loss}"
        )


# --------------------------------------------------------------------------- presets

#: Each preset's architecture (short name -> constructor arguments besides img_size / in_chans).
PRESETS: dict[str, dict[str, Any]] = {
    "mae_vit_tiny_patch8": dict(
        img_size=64,
        patch_size=8,
        embed_dim=192,
        depth=4,
        num_heads=3,
        decoder_embed_dim=128,
        decoder_depth=2,
        decoder_num_heads=4,
        mlp_ratio=4.0,
    ),
    "mae_vit_tiny_patch16": dict(
        img_size=224,
        patch_size=16,
        embed_dim=192,
        depth=4,
        num_heads=3,
        decoder_embed_dim=128,
        decoder_depth=2,
        decoder_num_heads=4,
        mlp_ratio=4.0,
    ),
    "mae_vit_base_patch16": dict(
        img_size=224,
        patch_size=16,
        embed_dim=768,
        depth=12,
        num_heads=12,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.0,
    ),
    "mae_vit_large_patch16": dict(
        img_size=224,
        patch_size=16,
        embed_dim=1024,
        depth=24,
        num_heads=16,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.0,
    ),
    "mae_vit_huge_patch14": dict(
        img_size=224,
        patch_size=14,
        embed_dim=1280,
        depth=32,
        num_heads=16,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.0,
    ),
}

#: What a state dict's shapes tell about a preset (head counts and image size cannot be read from weights).
_SHAPE_KEYS = (
    "patch_size",
    "embed_dim",
    "depth",
    "decoder_embed_dim",
    "decoder_depth",
    "mlp_ratio",
)


def _build(arch: str, overrides: dict[str, Any]) -> MaskedAutoencoderViT:
    model = MaskedAutoencoderViT(**{**PRESETS[arch], **overrides})
    model.pretrained_cfg["arch"] = arch
    return model


def mae_vit_tiny_patch8_dec128d2b(**kwargs: Any) -> MaskedAutoencoderViT:
    """The course's CPU model: 8 x 8 patches, encoder 192-dim x 4 blocks, decoder 128-dim x 2
    blocks (about 2.2 M parameters), built for 64 x 64 tiles; trains on a laptop CPU in minutes."""
    return _build("mae_vit_tiny_patch8", kwargs)


def mae_vit_tiny_patch16_dec128d2b(**kwargs: Any) -> MaskedAutoencoderViT:
    """The tiny model with 16 x 16 patches, built for 224 x 224 images."""
    return _build("mae_vit_tiny_patch16", kwargs)


def mae_vit_base_patch16_dec512d8b(**kwargs: Any) -> MaskedAutoencoderViT:
    """Meta's ViT-Base/16 MAE: encoder 768-dim x 12 blocks, decoder 512-dim x 8 blocks."""
    return _build("mae_vit_base_patch16", kwargs)


def mae_vit_large_patch16_dec512d8b(**kwargs: Any) -> MaskedAutoencoderViT:
    """Meta's ViT-Large/16 MAE: encoder 1024-dim x 24 blocks, decoder 512-dim x 8 blocks."""
    return _build("mae_vit_large_patch16", kwargs)


def mae_vit_huge_patch14_dec512d8b(**kwargs: Any) -> MaskedAutoencoderViT:
    """Meta's ViT-Huge/14 MAE: encoder 1280-dim x 32 blocks, decoder 512-dim x 8 blocks."""
    return _build("mae_vit_huge_patch14", kwargs)


# short names, as in Meta's models_mae.py and the registry's "arch"
mae_vit_tiny_patch8 = mae_vit_tiny_patch8_dec128d2b
mae_vit_tiny_patch16 = mae_vit_tiny_patch16_dec128d2b
mae_vit_base_patch16 = mae_vit_base_patch16_dec512d8b
mae_vit_large_patch16 = mae_vit_large_patch16_dec512d8b
mae_vit_huge_patch14 = mae_vit_huge_patch14_dec512d8b

#: Architecture name -> factory; short names and Meta's long names both work.
ARCHS: dict[str, Callable[..., MaskedAutoencoderViT]] = {
    "mae_vit_tiny_patch8": mae_vit_tiny_patch8,
    "mae_vit_tiny_patch16": mae_vit_tiny_patch16,
    "mae_vit_base_patch16": mae_vit_base_patch16,
    "mae_vit_large_patch16": mae_vit_large_patch16,
    "mae_vit_huge_patch14": mae_vit_huge_patch14,
    "mae_vit_tiny_patch8_dec128d2b": mae_vit_tiny_patch8,
    "mae_vit_tiny_patch16_dec128d2b": mae_vit_tiny_patch16,
    "mae_vit_base_patch16_dec512d8b": mae_vit_base_patch16,
    "mae_vit_large_patch16_dec512d8b": mae_vit_large_patch16,
    "mae_vit_huge_patch14_dec512d8b": mae_vit_huge_patch14,
}


def _short_arch(arch: str) -> str:
    if arch not in ARCHS:
        import difflib

        close = difflib.get_close_matches(arch, ARCHS, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise InputError(
            f"unknown MAE architecture {arch!r}.{hint} Known: {', '.join(sorted(PRESETS))}"
        )
    return re.sub(r"_dec\d+d\d+b$", "", arch)


def create_mae(arch: str, **overrides: Any) -> MaskedAutoencoderViT:
    """Build a preset by name (``"mae_vit_large_patch16"``, ``"mae_vit_tiny_patch8"``, Meta's
    long names too) with keyword overrides (``in_chans=6``, ``img_size=(96, 128)``, ``norm_pix_loss=True``)."""
    return _build(_short_arch(arch), overrides)


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
        return create_mae(arch, **kwargs) if arch else MaskedAutoencoderViT(**kwargs)


# --------------------------------------------------------------------------- checkpoints


def _block_count(keys: Any, prefix: str) -> int:
    ids = {int(m.group(1)) for k in keys if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", k))}
    return max(ids) + 1 if ids else 0


def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The model a state dict in Meta's format implies, read from its shapes (meta tensors work too).

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
    return f"patch {kw['patch_size']}, encoder {kw['embed_dim']}-dim x {kw['depth']} blocks{dec}, in_chans {kw['in_chans']}"


def _foreign_format(keys: Any) -> str | None:
    """Why weights with these keys are not an MAE ViT in Meta's format, or None."""
    keys = set(keys)
    if any(k.startswith(("vit.embeddings.", "vit.encoder.", "vit.layers.")) for k in keys):
        return (
            "the weights use Hugging Face transformers' names (vit.embeddings..., decoder.decoder_layers...), "
            "not Meta's; load them with transformers' ViTMAEForPreTraining or convert the names"
        )
    if "patch_embed.proj.weight" not in keys or "pos_embed" not in keys:
        return (
            f"these are not MAE ViT weights in Meta's format (no patch_embed.proj.weight / pos_embed; "
            f"first keys: {', '.join(sorted(keys)[:5]) or 'none'})"
        )
    return None


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
            f"the file has no decoder weights (no decoder_embed, decoder_blocks, mask_token): it is {what}. "
            "Reconstruction needs the decoder: use a mae_visualize_vit_* checkpoint (or a *_full.pth one)"
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
            f"the checkpoint takes in_chans={theirs['kwargs']['in_chans']} bands, the model {model.in_chans}"
        )
    elif mismatched:
        problems.append(
            "shapes differ: "
            + "; ".join(
                f"{k} {tuple(state_dict[k].shape)} in the file vs {tuple(expected[k].shape)} in the model"
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


def state_dict_from_file(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = True
) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file (``{"model": ...}``, ``{"state_dict": ...}`` or bare).

    Loaded with ``weights_only=True`` (no code runs) and, where the file allows, memory-mapped
    (``mmap=True``): the tensors stay on disk until used. ``module.`` prefixes are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path}")

    def _load(use_mmap: bool) -> Any:
        with torch.serialization.safe_globals(
            [argparse.Namespace]
        ):  # Meta's fine-tuning files hold their args
            return torch.load(path, map_location=map_location, weights_only=True, mmap=use_mmap)

    try:
        try:
            payload = _load(mmap)
        except RuntimeError as exc:
            if not (mmap and "mmap" in str(exc)):
                raise
            payload = _load(False)  # an old (non-zip) checkpoint cannot be memory-mapped
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint that can be loaded safely ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Expected a file saved with torch.save "
            "holding {'model': state_dict}, like Meta's mae_visualize_vit_*.pth"
        ) from None
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


def _predicts_normalized_pixels(path: Path) -> bool:
    stem = path.stem.lower()
    return stem.endswith("_full") or "pretrain" in stem


def load_meta_checkpoint(
    name_or_path: str | Path, arch: str | None = None, map_location: str | torch.device = "cpu"
) -> MaskedAutoencoderViT:
    """Meta's MAE checkpoint as a ready model in eval mode: a registry name or a file path.

    Registry names: ``mae_visualize_vit_base``, ``mae_visualize_vit_large``,
    ``mae_visualize_vit_large_ganloss``, ``mae_visualize_vit_huge`` (fetched with
    :func:`mae_nb.data.fetch`: cache, mirror folders, then Meta's server). ``arch`` defaults to
    the registry's, or is read from the file's shapes. The file is memory-mapped and the model
    built on the meta device and given the file's tensors (``assign=True``), so nothing is held
    twice: ViT-L loads within 2 GB. Keys or shapes that do not fit raise :class:`CheckpointError`
    naming the likely cause. ``*_full.pth`` / ``mae_pretrain_*`` files predict per-patch normalized
    pixels: they load with ``norm_pix_loss=True`` and a warning. ``model.pretrained_cfg`` holds
    arch, source, and the ImageNet ``mean``/``std`` the RGB models expect.
    """
    from mae_nb.data import registry

    source = str(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in registry.REGISTRY:
        dataset = registry.get(name_or_path)
        if dataset.kind != "checkpoint":
            raise CheckpointError(
                f"{name_or_path!r} is a {dataset.kind} dataset, not a model checkpoint"
            )
        path = registry.fetch(name_or_path)[dataset.files[0].name]
        arch = arch or dataset.meta.get("arch")
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            names = [d.name for d in registry.REGISTRY.values() if d.kind == "checkpoint"]
            raise MissingFileError(
                f"{source!r} is neither a file nor a checkpoint of the registry ({', '.join(names)})"
            )
    sd = state_dict_from_file(path, map_location=map_location, mmap=True)
    norm_pix = _predicts_normalized_pixels(path)
    try:
        inferred = config_from_state_dict(sd)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    kw = inferred["kwargs"]
    overrides = {"in_chans": kw["in_chans"], "norm_pix_loss": norm_pix}
    if "img_size" in kw:
        overrides["img_size"] = kw["img_size"]
    with torch.device("meta"):
        if arch is not None:
            model = create_mae(arch, **overrides)
        elif inferred["arch"] is not None:
            model = create_mae(inferred["arch"], **overrides)
        else:
            model = MaskedAutoencoderViT(**{**kw, **overrides})
    problems = diagnose_state_dict(sd, model)
    if problems:
        raise CheckpointError(
            f"{path} does not fit {model.pretrained_cfg['arch'] or 'the model'}:\n- "
            + "\n- ".join(problems)
        )
    model.load_state_dict(sd, strict=True, assign=True)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:  # cannot happen after a strict load; guards against silent empty weights
        raise CheckpointError(f"{path}: weights left unset after loading: {left[:5]}")
    if norm_pix:
        warnings.warn(
            f"{path.name} was trained with norm_pix_loss: it predicts each patch's pixels normalized by that "
            "patch's own mean and variance, not pixels. It loads (norm_pix_loss=True) but a reconstruction must "
            "be de-normalized, e.g. with the visible patches' statistics; for pictures use mae_visualize_vit_*.",
            stacklevel=2,
        )
    model.pretrained_cfg.update(
        source=source,
        path=str(path),
        norm_pix=norm_pix,
        mean=list(IMAGENET_MEAN) if model.in_chans == 3 else None,
        std=list(IMAGENET_STD) if model.in_chans == 3 else None,
    )
    return model.eval()


# --------------------------------------------------------------------------- the course's own checkpoint


def course_checkpoint_path() -> Path:
    """Where chapter 03 saves its trained tiny MAE: ``<cache>/checkpoints/mae_tiny_ch03.pth``."""
    from mae_nb.data import cache_dir

    return cache_dir() / "checkpoints" / "mae_tiny_ch03.pth"


def load_course_checkpoint(
    path: str | Path | None = None, map_location: str | torch.device = "cpu"
) -> MaskedAutoencoderViT:
    """The MAE that chapter 03 trained (chapter 04's offline stand-in for Meta's weights).

    The file holds ``{"model": state dict (Meta's names), "config": {"arch", "kwargs", "mean",
    "std", ...}, "history": ...}``. Returns the model in eval mode; its ``pretrained_cfg`` has the
    saved config (``mean``/``std``: the per-band normalization the model was trained with).
    """
    from mae_nb.errors import DataUnavailableError

    path = Path(path) if path is not None else course_checkpoint_path()
    if not path.is_file():
        raise DataUnavailableError(
            f"no course checkpoint at {path}: run chapter 03 first (`mae-nb run 03`) to train and save it"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(
            f"{path} lacks 'model' or 'config': not a checkpoint saved by chapter 03"
        )
    config = payload["config"]
    model = build_from_config(config, device="meta")
    problems = diagnose_state_dict(payload["model"], model)
    if problems:
        raise CheckpointError(f"{path} does not fit its own config:\n- " + "\n- ".join(problems))
    model.load_state_dict(payload["model"], strict=True, assign=True)
    model.pretrained_cfg.update({k: v for k, v in config.items() if k not in ("arch", "kwargs")})
    model.pretrained_cfg.update(source="course", path=str(path))
    return model.eval()
