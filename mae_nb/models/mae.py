"""The masked autoencoder ViT of He et al. (2022), with the parameter names of Meta's code.

:class:`MaskedAutoencoderViT` reads top to bottom like facebookresearch/mae's ``models_mae.py``:
``patchify``, ``unpatchify``, ``random_masking``, ``forward_encoder`` (the encoder sees only the
visible patches), ``forward_decoder`` (mask tokens fill the gaps), ``forward_loss`` (mean squared
error on the masked patches), ``forward``; then timm's ``forward_features`` (every token, nothing
masked). Its parameters have Meta's names, so Meta's checkpoints load with ``strict=True``; the
blocks are timm's ``PatchEmbed`` and ``Block``. Beyond Meta's file: any ``in_chans``, non-square
images and other sizes than the built one (the fixed sin-cos position embeddings are recomputed),
a ``noise`` or ``generator`` argument for reproducible masks, and errors that say what is wrong.
Reading checkpoints is :mod:`mae_nb.models.checkpoints`' job.
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import Any, Callable

import torch
from torch import nn

from mae_nb.errors import InputError, InputTypeError
from mae_nb.masking import check_mask_ratio
from mae_nb.masking import random_masking as _random_masking

__all__ = [
    "ARCHS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MaskedAutoencoderViT",
    "PRESETS",
    "create_mae",
    "get_2d_sincos_pos_embed",
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
    position times ``1 / 10000 ** (k / (embed_dim / 4))``. With ``cls_token`` a zero row comes
    first.
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


def _check_sizes(img_hw: tuple[int, int], sizes: dict[str, int]) -> None:
    """Raise a clear error for sizes the model cannot be built with."""
    for name, value in sizes.items():
        if int(value) != value or value < (0 if "depth" in name else 1):
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    p = sizes["patch_size"]
    if img_hw[0] % p or img_hw[1] % p or min(img_hw) < p:
        raise InputError(f"img_size {img_hw} must be a multiple of patch_size={p}")
    for what in ("", "decoder_"):
        dim, heads = sizes[f"{what}embed_dim"], sizes[f"{what}num_heads"]
        if dim % heads:
            raise InputError(f"{what}embed_dim={dim} must be divisible by {what}num_heads={heads}")
        if dim % 4:
            raise InputError(
                f"{what}embed_dim must be a multiple of 4 (sin-cos position embeddings), got {dim}"
            )


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
        sizes = dict(
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
        )
        _check_sizes(img_hw, sizes)
        self.img_size = img_hw
        self.patch_size = int(patch_size)
        self.in_chans = int(in_chans)
        self.grid_size = (img_hw[0] // patch_size, img_hw[1] // patch_size)
        self.norm_pix_loss = bool(norm_pix_loss)
        #: What the model is and how to rebuild it; loaders add "mean", "std", "source" (as timm).
        self.pretrained_cfg: dict[str, Any] = {
            "arch": None,
            "kwargs": {
                "img_size": list(img_hw),
                **{k: int(v) for k, v in sizes.items()},
                "mlp_ratio": mlp_ratio,
                "norm_pix_loss": bool(norm_pix_loss),
            },
        }
        num_patches = self.grid_size[0] * self.grid_size[1]
        block = partial(Block, mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=norm_layer)

        # MAE encoder
        self.patch_embed = PatchEmbed(
            img_hw, patch_size, in_chans, embed_dim, strict_img_size=False
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False
        )  # fixed sin-cos
        self.blocks = nn.ModuleList([block(embed_dim, num_heads) for _ in range(depth)])
        self.norm = norm_layer(embed_dim)

        # MAE decoder
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False
        )  # fixed sin-cos
        self.decoder_blocks = nn.ModuleList(
            [block(decoder_embed_dim, decoder_num_heads) for _ in range(decoder_depth)]
        )
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(
            decoder_embed_dim, patch_size**2 * in_chans, bias=True
        )  # decoder to patch

        self.initialize_weights()

    # ----------------------------------------------------------------------- initialization

    def initialize_weights(self) -> None:
        """Meta's initialization: sin-cos positions, xavier linears, normal(0.02) tokens."""
        with torch.no_grad():
            for pos in (self.pos_embed, self.decoder_pos_embed):
                pos.copy_(get_2d_sincos_pos_embed(pos.shape[-1], self.grid_size, True)[None])
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
                f"x must have shape (N, L, {p * p * c}) (patch_size={p}, in_chans={c}), "
                f"got {tuple(x.shape)}"
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
        """Per-sample random masking by argsort of noise (:func:`mae_nb.masking.random_masking`).

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

        imgs: (N, C, H, W) -> latent (N, 1 + L_keep, D) (cls token first), mask (N, L),
        ids_restore (N, L).
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

    # ----------------------------------------------------------------------- checks and grids

    @property
    def num_patches(self) -> int:
        """Number of patches L for the size the model was built for."""
        return self.grid_size[0] * self.grid_size[1]

    def check_imgs(self, imgs: torch.Tensor) -> tuple[int, int]:
        """Raise a clear error for images the model cannot take; return the patch grid (gh, gw)."""
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
                f"crop to {h // p * p} x {w // p * p} or pad to "
                f"{math.ceil(h / p) * p} x {math.ceil(w / p) * p}"
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
            f"{num_patches} patches do not form the model's grid nor a square one; "
            "pass grid_hw=(gh, gw)"
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


# --------------------------------------------------------------------------- presets


def _preset(img_size, patch_size, embed_dim, depth, num_heads, decoder=(512, 8, 16)) -> dict:
    """A preset's constructor arguments; ``decoder`` = (embed_dim, depth, num_heads)."""
    return dict(
        img_size=img_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        decoder_embed_dim=decoder[0],
        decoder_depth=decoder[1],
        decoder_num_heads=decoder[2],
        mlp_ratio=4.0,
    )


#: Each preset's architecture (short name -> constructor arguments besides in_chans).
PRESETS: dict[str, dict[str, Any]] = {
    "mae_vit_tiny_patch8": _preset(64, 8, 192, 4, 3, decoder=(128, 2, 4)),
    "mae_vit_tiny_patch16": _preset(224, 16, 192, 4, 3, decoder=(128, 2, 4)),
    "mae_vit_base_patch16": _preset(224, 16, 768, 12, 12),
    "mae_vit_large_patch16": _preset(224, 16, 1024, 24, 16),
    "mae_vit_huge_patch14": _preset(224, 14, 1280, 32, 16),
}


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
    name: factory
    for factory in (
        mae_vit_tiny_patch8,
        mae_vit_tiny_patch16,
        mae_vit_base_patch16,
        mae_vit_large_patch16,
        mae_vit_huge_patch14,
    )
    for name in (re.sub(r"_dec\d+d\d+b$", "", factory.__name__), factory.__name__)
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
    long names too) with keyword overrides (``in_chans=6``, ``img_size=(96, 128)``,
    ``norm_pix_loss=True``)."""
    return _build(_short_arch(arch), overrides)
