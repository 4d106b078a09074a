"""The spatial-spectral transformer of Scheibenreif, Mommert & Borth (CVPR 2023 EarthVision).

Public API (chapters 07-08 and ``mae-nb hsi`` build on exactly these names)::

    SpectralTransformer(in_chans, image_size=7, band_block_size=16, ...)   # the model
        .forward(imgs) -> logits (N, num_classes)      # class of the centre pixel
        .forward_features(imgs, mask=None) -> tokens (N, G, S, D)
        .forward_visible(imgs, mask) -> tokens (N, G, S, D)   # encoder on the visible tokens
        .forward_pretrain(imgs, mask_ratio=None, noise=None, generator=None) -> dict
        .patchify(imgs) -> (N, G, S, P) / .unpatchify(tokens) -> (N, B, p, p)
        .reset_classifier(num_classes) / .config (SpectralTransformer(**config) rebuilds it)
    BlockwisePatchEmbed, FactorizedBlock, Attention   # the parts, for the chapter's shapes
    visible_layout(mask, G, S) -> VisibleLayout       # rows of visible tokens (forward_visible)
    pretrain_loss(model, batch, mask_ratio=None) -> {"loss"}   # a loss_fn for mae_nb.train.fit
    classification_loss(model, batch) -> {"loss", "acc"}       # any classifier; targets -1 ignored
    reconstruct_spectra(model, imgs, mask_ratio, seed=0) -> SpectralReconstruction
    masked_errors(model, imgs, mask_ratio, seed=0) -> {"model", "visible_mean", "zero"}
    neighbour_mean_fill(model, imgs, mask) -> (N, G, S, P)     # the no-learning baseline

Pretraining on a scene and the course checkpoint (``pretrain_on_scene``, ``save_sst``,
``load_sst``) live in :mod:`mae_nb.finetune`, next to fine-tuning: this module is the model.

Shapes. Input ``imgs``: (N, B, p, p), a p x p patch (``image_size``) of B bands around a
pixel. The band axis is cut into G = ceil(B / band_block_size) blocks of consecutive bands;
when B is not a multiple of ``band_block_size``, the last block is padded with zero bands
(they carry no signal and are left out of the reconstruction loss). The spatial axes are
cut into S = (p / spatial_patch_size)^2 positions. So a patch becomes G x S tokens of
P = band_block_size * spatial_patch_size^2 values, each embedded to D dims by the linear
map of its spectral block (``blockwise_embed=True``; one shared map otherwise).

Attention is factorized (``factorized_attention=True``): each block first lets every token
attend to the S tokens with the same spectral index (spatial attention), then to the G
tokens with the same spatial index (spectral attention), then an MLP. That costs
G*S^2 + S*G^2 instead of (G*S)^2 per head. (The paper's public code runs a whole spatial
transformer and then a whole spectral transformer; we interleave the two in each block, as
divided space-time attention does.) ``factorized_attention=False`` is joint attention over
all G*S tokens, for the ablation. Positions: 2-D sin-cos over the spatial grid in 2/3 of
the dims and 1-D sin-cos over the spectral block index in 1/3 (``spectral_pos_embed=True``,
as in the paper); without it, the 2-D spatial one over all dims.

Masked pretraining: a random ``mask_ratio`` share (70 % by default) of the G*S tokens is
hidden (masks drawn with :func:`mae_nb.masking.random_masking`). As in MAE, the encoder
sees only the visible tokens (``drop_masked=True``): its linear maps and MLPs run on the
visible ~30 %, and each attention step lets a visible token attend to the visible tokens of
its row; rows hold different numbers of visible tokens, so :func:`visible_layout` gathers
them into padded rows whose padding the attention masks out (``forward_visible``). The
decoder gets a learned mask token at every hidden place. ``drop_masked=False`` instead
replaces hidden tokens by the mask token and runs the whole grid through the encoder (as
SimMIM and the paper's code do); about 1.6x slower to pretrain on a CPU
(``benchmarks/hsi_pretrain_throughput.py``). A light decoder (``decoder_depth`` factorized
blocks of ``decoder_dim``, then a linear map) predicts each token's P values; the loss is
the mean squared error over masked tokens only. Classification always uses every token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mae_nb.errors import InputError
from mae_nb.masking import check_mask_ratio, random_masking

__all__ = [
    "Attention",
    "BlockwisePatchEmbed",
    "FactorizedBlock",
    "SpectralReconstruction",
    "SpectralTransformer",
    "TokenRows",
    "VisibleLayout",
    "classification_loss",
    "masked_errors",
    "neighbour_mean_fill",
    "pretrain_loss",
    "reconstruct_spectra",
    "sincos_1d",
    "spectral_spatial_pos_embed",
    "visible_layout",
]

# --------------------------------------------------------------------------- positions


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Fixed sin-cos embedding (L, dim) of positions (L,), as in MAE's ``pos_embed.py``."""
    if dim % 2:
        raise InputError(f"a sin-cos embedding needs an even dim, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    out = positions.double()[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1).float()


def _sincos_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """(grid_h * grid_w, dim): half the dims for the row, half for the column."""
    if dim % 4:
        raise InputError(f"a 2-D sin-cos embedding needs dim divisible by 4, got {dim}")
    rows = torch.arange(grid_h).repeat_interleave(grid_w)
    cols = torch.arange(grid_w).repeat(grid_h)
    return torch.cat([sincos_1d(dim // 2, rows), sincos_1d(dim // 2, cols)], dim=1)


def spectral_spatial_pos_embed(
    dim: int, num_groups: int, grid: tuple[int, int], spectral: bool = True
) -> torch.Tensor:
    """Positional embedding (G, S, dim) of the token grid.

    With ``spectral``: 2-D spatial sin-cos in the first ``dim - dim // 3`` dims (rounded to a
    multiple of 4) and 1-D spectral sin-cos of the block index in the rest, so a token knows
    both where it is and which bands it holds. Without: spatial only, shared by all blocks.
    """
    s = grid[0] * grid[1]
    if not spectral:
        return _sincos_2d(dim, *grid)[None].expand(num_groups, s, dim).clone()
    spatial_dim = (dim - dim // 3) // 4 * 4
    spectral_dim = dim - spatial_dim
    if spectral_dim % 2:
        raise InputError(
            f"embed_dim {dim} cannot be split into spatial and spectral sin-cos parts; "
            "use a multiple of 4"
        )
    spatial = _sincos_2d(spatial_dim, *grid)  # (S, ds)
    spec = sincos_1d(spectral_dim, torch.arange(num_groups))  # (G, dc)
    return torch.cat(
        [
            spatial[None].expand(num_groups, s, spatial_dim),
            spec[:, None].expand(num_groups, s, spectral_dim),
        ],
        dim=-1,
    )


# --------------------------------------------------------------------------- parts


class BlockwisePatchEmbed(nn.Module):
    """Cut a patch into spatial-spectral tokens and embed each with its block's linear map.

    imgs: (N, B, p, p) -> tokens (N, G, S, D). Band block g (bands ``g*k .. g*k+k-1``,
    k = ``band_block_size``) has its own weight ``weight[g]``: (P, D) and bias ``bias[g]``;
    with ``blockwise=False`` one (P, D) map is shared by all blocks. Bands are zero-padded
    at the end to a multiple of k.
    """

    def __init__(
        self,
        in_chans: int,
        image_size: int,
        band_block_size: int,
        spatial_patch_size: int,
        embed_dim: int,
        blockwise: bool = True,
    ):
        super().__init__()
        self.in_chans, self.image_size = int(in_chans), int(image_size)
        self.band_block_size, self.spatial_patch_size = (
            int(band_block_size),
            int(spatial_patch_size),
        )
        self.num_groups = math.ceil(in_chans / band_block_size)
        self.pad_bands = self.num_groups * band_block_size - in_chans
        self.grid = (image_size // spatial_patch_size, image_size // spatial_patch_size)
        self.num_spatial = self.grid[0] * self.grid[1]
        self.token_dim = band_block_size * spatial_patch_size**2
        self.blockwise = blockwise
        n_maps = self.num_groups if blockwise else 1
        self.weight = nn.Parameter(torch.empty(n_maps, self.token_dim, embed_dim))
        self.bias = nn.Parameter(torch.zeros(n_maps, embed_dim))
        bound = 1 / math.sqrt(self.token_dim)  # nn.Linear's default init, per block
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        self.norm = nn.LayerNorm(embed_dim)

    def pad(self, imgs: torch.Tensor) -> torch.Tensor:
        """(N, B, p, p) -> (N, G*k, p, p), zero bands appended."""
        return F.pad(imgs, (0, 0, 0, 0, 0, self.pad_bands)) if self.pad_bands else imgs

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(N, B, p, p) -> token values (N, G, S, P), P ordered (band, row, col) within a token."""
        n = imgs.shape[0]
        k, q = self.band_block_size, self.spatial_patch_size
        gh, gw = self.grid
        x = self.pad(imgs).reshape(n, self.num_groups, k, gh, q, gw, q)
        return x.permute(0, 1, 3, 5, 2, 4, 6).reshape(n, self.num_groups, gh * gw, k * q * q)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, G, S, P) -> (N, B, p, p), padded bands dropped."""
        n = tokens.shape[0]
        k, q = self.band_block_size, self.spatial_patch_size
        gh, gw = self.grid
        x = tokens.reshape(n, self.num_groups, gh, gw, k, q, q).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(n, self.num_groups * k, gh * q, gw * q)[:, : self.in_chans]

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        n = imgs.shape[0]
        w = self.weight if self.blockwise else self.weight.expand(self.num_groups, -1, -1)
        if self.spatial_patch_size == 1:
            # (N, G, k, S) is a view of the padded input: no copy before the matmul
            x = self.pad(imgs).reshape(n, self.num_groups, self.band_block_size, self.num_spatial)
            out = torch.einsum("ngps,gpd->ngsd", x, w)
        else:
            out = torch.einsum("ngsp,gpd->ngsd", self.patchify(imgs), w)
        bias = self.bias if self.blockwise else self.bias.expand(self.num_groups, -1)
        return self.norm(out + bias[:, None, :])


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis with fused attention.

    x: (..., L, D) -> (..., L, D); any leading axes are batch axes (so the same module
    attends along the spatial axis of (N, G, S, D) or, given a transposed view (N, S, G, D),
    along the spectral axis). Parameter names follow timm (``qkv``, ``proj``).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise InputError(f"embed_dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, length, dim = x.shape
        qkv = self.qkv(x).reshape(-1, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, L, hd), strided views
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(*lead, length, dim)
        return self.proj(out)

    def forward_rows(self, x: torch.Tensor, rows: "TokenRows") -> torch.Tensor:
        """Attention within rows of a variable number of tokens (the visible ones).

        x: (M, D), the M visible tokens of a batch, packed. ``rows`` gathers them into R
        padded rows (R, L, D); padding keys are masked out, so each token attends only to
        the visible tokens of its row. Returns (M, D) in the packed order.
        """
        dim = x.shape[1]
        qkv = self.qkv(x)[rows.index]  # (R, L, 3D); the linear map runs on the M tokens only
        r, length = rows.index.shape
        q, k, v = (
            qkv.reshape(r, length, 3, self.num_heads, self.head_dim)
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=rows.attn_mask)
        out = out.transpose(1, 2).reshape(r * length, dim)[rows.unpad]  # (M, D), packed order
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class FactorizedBlock(nn.Module):
    """A transformer block on tokens x: (N, G, S, D).

    ``factorized=True``: spatial attention (over S, per spectral index), spectral attention
    (over G, per spatial position), MLP, each pre-norm and residual. ``factorized=False``:
    one joint attention over all G*S tokens, then the MLP (a standard ViT block).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0, factorized: bool = True):
        super().__init__()
        self.factorized = factorized
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)  # spatial (or joint) attention
        if factorized:
            self.norm_spectral = nn.LayerNorm(dim)
            self.attn_spectral = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, g, s, d = x.shape
        if self.factorized:
            x = x + self.attn(self.norm1(x))  # (N, G, S, D): attention along S
            y = self.attn_spectral(self.norm_spectral(x).transpose(1, 2))  # (N, S, G, D): along G
            x = x + y.transpose(1, 2)
        else:
            x = x + self.attn(self.norm1(x).reshape(n, g * s, d)).reshape(n, g, s, d)
        return x + self.mlp(self.norm2(x))

    def forward_visible(self, x: torch.Tensor, layout: "VisibleLayout") -> torch.Tensor:
        """The same block on the visible tokens only: x (M, D) packed, ``layout`` from
        :func:`visible_layout`. Attention runs among the visible tokens of each row."""
        if self.factorized:
            x = x + self.attn.forward_rows(self.norm1(x), layout.spatial)
            x = x + self.attn_spectral.forward_rows(self.norm_spectral(x), layout.spectral)
        else:
            x = x + self.attn.forward_rows(self.norm1(x), layout.joint)
        return x + self.mlp(self.norm2(x))


@dataclass
class TokenRows:
    """Visible tokens gathered into padded rows for attention.

    ``index`` (R, L): the packed index of the token in each slot (padding slots repeat a
    valid index); ``attn_mask`` (R, 1, L, L): True where a query may attend to a key (the
    row's real tokens, and each padding slot to itself so no row is empty); ``unpad`` (M,):
    the flat slots, in packed order, that hold real tokens.
    """

    index: torch.Tensor
    attn_mask: torch.Tensor
    unpad: torch.Tensor


@dataclass
class VisibleLayout:
    """Where the visible tokens of a masked batch are: ``flat`` (M,) their positions in the
    flattened (N*G*S) grid, and their rows for spatial (same spectral index), spectral (same
    spatial position) and joint (same patch) attention."""

    flat: torch.Tensor
    spatial: TokenRows | None = None
    spectral: TokenRows | None = None
    joint: TokenRows | None = None


def _token_rows(visible: torch.Tensor, packed: torch.Tensor) -> TokenRows:
    """Rows of visible tokens. visible: (R, K) bool, packed: (R, K) the packed index of each
    token (valid where visible)."""
    counts = visible.sum(1)
    length = max(int(counts.max()), 1)
    # stable sort puts each row's visible tokens first, in their original order
    order = torch.sort((~visible).to(torch.uint8), dim=1, stable=True).indices[:, :length]
    real = torch.arange(length, device=visible.device)[None] < counts[:, None]  # (R, L)
    index = torch.where(real, packed.gather(1, order), packed.new_zeros(()))
    eye = torch.eye(length, dtype=torch.bool, device=visible.device)
    attn_mask = (real[:, None, :] | eye)[:, None]  # (R, 1, L, L)
    slots = real.flatten().nonzero().squeeze(1)  # the real slots, in row-major order
    unpad = slots[torch.argsort(index.flatten()[slots])]  # ... reordered to packed order
    return TokenRows(index, attn_mask, unpad)


@torch.no_grad()
def visible_layout(
    mask: torch.Tensor, num_groups: int, num_spatial: int, factorized: bool = True
) -> VisibleLayout:
    """The :class:`VisibleLayout` of a token mask (N, G*S) or (N, G, S), 1 = masked: spatial
    and spectral rows when ``factorized``, else joint rows."""
    visible = ~mask.reshape(-1, num_groups, num_spatial).bool()  # (N, G, S)
    n = visible.shape[0]
    packed = (
        torch.cumsum(visible.flatten(), 0).reshape(visible.shape) - 1
    )  # packed index of each token
    layout = VisibleLayout(flat=visible.flatten().nonzero().squeeze(1))
    if factorized:
        layout.spatial = _token_rows(
            visible.reshape(n * num_groups, num_spatial),
            packed.reshape(n * num_groups, num_spatial),
        )
        layout.spectral = _token_rows(
            visible.transpose(1, 2).reshape(n * num_spatial, num_groups),
            packed.transpose(1, 2).reshape(n * num_spatial, num_groups),
        )
    else:
        layout.joint = _token_rows(visible.reshape(n, -1), packed.reshape(n, -1))
    return layout


# --------------------------------------------------------------------------- the model


class SpectralTransformer(nn.Module):
    """Spatial-spectral transformer: blockwise embedding, factorized attention, centre-pixel head.

    imgs: (N, B, p, p) with B = ``in_chans`` bands and p = ``image_size`` (odd: the pixel to
    classify is the centre). ``num_classes=0`` builds no head (pretraining only);
    ``decoder_depth=-1`` builds no decoder (classification only). See the module docstring
    for the shapes and the three switches (``blockwise_embed``, ``factorized_attention``,
    ``spectral_pos_embed``) the ablations turn off.
    """

    def __init__(
        self,
        in_chans: int,
        image_size: int = 7,
        band_block_size: int = 16,
        spatial_patch_size: int = 1,
        embed_dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        num_classes: int = 0,
        decoder_dim: int = 32,
        decoder_depth: int = 1,
        decoder_num_heads: int = 2,
        mask_ratio: float = 0.7,
        blockwise_embed: bool = True,
        factorized_attention: bool = True,
        spectral_pos_embed: bool = True,
        drop_masked: bool = True,
    ):
        super().__init__()
        for name, v in (
            ("in_chans", in_chans),
            ("image_size", image_size),
            ("band_block_size", band_block_size),
            ("spatial_patch_size", spatial_patch_size),
            ("embed_dim", embed_dim),
            ("depth", depth),
        ):
            if int(v) != v or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v}")
        if image_size % spatial_patch_size:
            raise InputError(
                f"image_size {image_size} must be a multiple of spatial_patch_size "
                f"{spatial_patch_size}"
            )
        if (image_size // spatial_patch_size) % 2 == 0:
            raise InputError(
                f"image_size / spatial_patch_size must be odd so one token holds the centre pixel, "
                f"got {image_size} / {spatial_patch_size}"
            )
        if band_block_size > in_chans:
            raise InputError(
                f"band_block_size {band_block_size} is larger than the {in_chans} bands"
            )
        if embed_dim % 4:
            raise InputError(
                f"embed_dim must be a multiple of 4 (sin-cos positions), got {embed_dim}"
            )
        check_mask_ratio(mask_ratio)
        self._config = dict(
            in_chans=int(in_chans),
            image_size=int(image_size),
            band_block_size=int(band_block_size),
            spatial_patch_size=int(spatial_patch_size),
            embed_dim=int(embed_dim),
            depth=int(depth),
            num_heads=int(num_heads),
            mlp_ratio=float(mlp_ratio),
            num_classes=int(num_classes),
            decoder_dim=int(decoder_dim),
            decoder_depth=int(decoder_depth),
            decoder_num_heads=int(decoder_num_heads),
            mask_ratio=float(mask_ratio),
            blockwise_embed=bool(blockwise_embed),
            factorized_attention=bool(factorized_attention),
            spectral_pos_embed=bool(spectral_pos_embed),
            drop_masked=bool(drop_masked),
        )
        self.drop_masked = bool(drop_masked)
        self.mask_ratio = float(mask_ratio)
        self.patch_embed = BlockwisePatchEmbed(
            in_chans,
            image_size,
            band_block_size,
            spatial_patch_size,
            embed_dim,
            blockwise=blockwise_embed,
        )
        g, grid = self.patch_embed.num_groups, self.patch_embed.grid
        self.num_groups, self.num_spatial = g, grid[0] * grid[1]
        self.register_buffer(
            "pos_embed",
            spectral_spatial_pos_embed(embed_dim, g, grid, spectral_pos_embed),
            persistent=False,
        )
        self.mask_token = nn.Parameter(torch.zeros(embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.blocks = nn.ModuleList(
            FactorizedBlock(embed_dim, num_heads, mlp_ratio, factorized_attention)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head: nn.Module = (
            nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        )
        self.num_classes = int(num_classes)
        if decoder_depth >= 0:
            self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
            self.register_buffer(
                "decoder_pos_embed",
                spectral_spatial_pos_embed(decoder_dim, g, grid, spectral_pos_embed),
                persistent=False,
            )
            self.decoder_blocks = nn.ModuleList(
                FactorizedBlock(decoder_dim, decoder_num_heads, mlp_ratio, factorized_attention)
                for _ in range(decoder_depth)
            )
            self.decoder_norm = nn.LayerNorm(decoder_dim)
            self.decoder_pred = nn.Linear(decoder_dim, self.patch_embed.token_dim)
        else:
            self.decoder_embed = None  # type: ignore[assignment]
        # which token values are real bands (not padding): (G, P)
        valid = torch.ones(1, in_chans, image_size, image_size)
        self.register_buffer(
            "token_valid", self.patch_embed.patchify(valid)[0, :, 0] > 0, persistent=False
        )

    @property
    def config(self) -> dict:
        """The constructor's arguments: ``SpectralTransformer(**model.config)`` rebuilds it."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict) -> "SpectralTransformer":
        """The model a saved ``config`` describes. Configs saved before ``drop_masked`` existed
        pretrained with mask tokens in the encoder, so they get ``drop_masked=False``."""
        return cls(**{"drop_masked": False, **config})

    @property
    def centre_index(self) -> int:
        gh, gw = self.patch_embed.grid
        return (gh // 2) * gw + gw // 2

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(N, B, p, p) -> (N, G, S, P)."""
        return self.patch_embed.patchify(imgs)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, G, S, P) -> (N, B, p, p)."""
        return self.patch_embed.unpatchify(tokens)

    def _check_input(self, imgs: torch.Tensor) -> None:
        b, p = self._config["in_chans"], self._config["image_size"]
        if imgs.ndim != 4 or imgs.shape[1:] != (b, p, p):
            raise InputError(
                f"expected patches of shape (N, {b}, {p}, {p}) (bands, rows, cols), "
                f"got {tuple(imgs.shape)}"
            )

    def reset_classifier(self, num_classes: int) -> None:
        """A new (randomly initialized) head for ``num_classes`` classes; 0 removes it."""
        dim = self._config["embed_dim"]
        device = self.mask_token.device
        self.head = nn.Linear(dim, num_classes).to(device) if num_classes > 0 else nn.Identity()
        self.num_classes = self._config["num_classes"] = int(num_classes)

    def forward_features(
        self, imgs: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encoder: imgs (N, B, p, p), mask (N, G*S) or (N, G, S), 1 = masked -> (N, G, S, D),
        normed."""
        self._check_input(imgs)
        x = self.patch_embed(imgs)
        if mask is not None:
            m = mask.reshape(x.shape[0], self.num_groups, self.num_spatial, 1).to(x.dtype)
            x = x * (1 - m) + self.mask_token * m
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes) of the centre pixel of each patch imgs (N, B, p, p)."""
        if self.num_classes == 0:
            raise InputError(
                "this model has no classification head (num_classes=0); call reset_classifier(K)"
            )
        x = self.forward_features(imgs)
        return self.head(x[:, :, self.centre_index].mean(dim=1))

    def forward_visible(self, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encoder on the visible tokens only (as MAE's): imgs (N, B, p, p), mask (N, G*S), 1 =
        masked -> encoded tokens (N, G, S, D), normed, with ``mask_token`` where masked.

        The masked tokens never enter the encoder: its linear maps and MLPs run on the ~30 %
        visible tokens, and attention runs among the visible tokens of each row (spatial:
        same spectral index; spectral: same spatial position) through :func:`visible_layout`.
        """
        self._check_input(imgs)
        n = imgs.shape[0]
        if mask.numel() != n * self.num_groups * self.num_spatial:
            raise InputError(
                f"expected a token mask of shape ({n}, {self.num_groups * self.num_spatial}) "
                f"(1 = hidden), got {tuple(mask.shape)}"
            )
        layout = visible_layout(
            mask, self.num_groups, self.num_spatial, self._config["factorized_attention"]
        )
        if layout.flat.numel() == 0:
            raise InputError(
                "the mask hides every token; the encoder needs at least one visible token"
            )
        x = (self.patch_embed(imgs) + self.pos_embed).reshape(-1, self._config["embed_dim"])[
            layout.flat
        ]
        for block in self.blocks:
            x = block.forward_visible(x, layout)
        x = self.norm(x)
        grid = self.mask_token.expand(n * self.num_groups * self.num_spatial, -1).index_copy(
            0, layout.flat, x
        )
        return grid.reshape(n, self.num_groups, self.num_spatial, -1)

    def forward_decoder(self, x: torch.Tensor) -> torch.Tensor:
        """Encoded tokens (N, G, S, D) -> predicted token values (N, G, S, P)."""
        if self.decoder_embed is None:
            raise InputError("this model was built without a decoder (decoder_depth=-1)")
        x = self.decoder_embed(x) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))

    def random_mask(
        self,
        n: int,
        mask_ratio: float | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A random token mask (N, G*S), 1 = masked; ``L - int(L * (1 - mask_ratio))`` masked
        per sample (MAE's rule)."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        length = self.num_groups * self.num_spatial
        if noise is None:
            noise = torch.rand(n, length, generator=generator).to(self.mask_token.device)
        dummy = torch.zeros(n, length, 1, device=noise.device)
        return random_masking(dummy, ratio, noise=noise)[1]

    def forward_loss(
        self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """MSE over the real (unpadded) values of masked tokens only.

        pred: (N, G, S, P), mask: (N, G*S)."""
        target = self.patchify(imgs)
        valid = self.token_valid[None, :, None, :].to(pred.dtype)  # (1, G, 1, P)
        per_token = ((pred - target) ** 2 * valid).sum(-1) / valid.sum(-1)  # (N, G, S)
        m = mask.reshape(per_token.shape).to(per_token.dtype)
        return (per_token * m).sum() / m.sum().clamp(min=1)

    def forward_pretrain(
        self,
        imgs: torch.Tensor,
        mask_ratio: float | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Masked pretraining step: ``{"loss", "pred" (N, G, S, P), "mask" (N, G*S)}``."""
        self._check_input(imgs)
        if mask is None:
            mask = self.random_mask(imgs.shape[0], mask_ratio, noise, generator)
        encoded = (
            self.forward_visible(imgs, mask)
            if self.drop_masked
            else self.forward_features(imgs, mask)
        )
        pred = self.forward_decoder(encoded)
        return {"loss": self.forward_loss(imgs, pred, mask), "pred": pred, "mask": mask}


# --------------------------------------------------------------------------- losses


def _images(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def pretrain_loss(model: SpectralTransformer, batch: Any, mask_ratio: float | None = None) -> dict:
    """A ``loss_fn`` for :func:`mae_nb.train.fit`: masked reconstruction loss of a batch.

    batch: patches (N, B, p, p) or ``(patches, targets)`` from a
    :class:`~mae_nb.data.hsi.PatchDataset` (targets are ignored). Use
    ``functools.partial(pretrain_loss, mask_ratio=0.5)`` for another ratio than the model's.
    """
    out = model.forward_pretrain(_images(batch), mask_ratio=mask_ratio)
    return {"loss": out["loss"]}


def classification_loss(model: nn.Module, batch: Any) -> dict:
    """A ``loss_fn`` for :func:`mae_nb.train.fit`: cross-entropy of ``(patches, targets)``.

    targets: (N,) 0..K-1, -1 = unlabelled (ignored). Logs the batch accuracy as ``acc``.
    """
    imgs, targets = batch[0], batch[1]
    logits = model(imgs)
    keep = targets >= 0
    if not bool(keep.any()):
        raise InputError(
            "a batch without labelled pixels (all targets -1); serve labelled pixels only"
        )
    loss = F.cross_entropy(logits, targets, ignore_index=-1)
    acc = (logits.argmax(1)[keep] == targets[keep]).float().mean()
    return {"loss": loss, "acc": acc.detach()}


# --------------------------------------------------------------------------- reconstruction


@dataclass
class SpectralReconstruction:
    """Masked reconstruction of patches (all (N, B, p, p) numpy arrays in standardized units).

    ``masked``: True where the value belonged to a masked token; ``filled``: the input with
    masked values replaced by the model's prediction; ``loss``: MSE over masked values.
    """

    original: np.ndarray
    predicted: np.ndarray
    masked: np.ndarray
    mask_ratio: float
    loss: float

    @property
    def filled(self) -> np.ndarray:
        return np.where(self.masked, self.predicted, self.original)

    def centre_spectra(self, i: int = 0) -> dict[str, np.ndarray]:
        """True and predicted spectra (B,) of the centre pixel of patch ``i``, and its masked
        bands (B,) bool."""
        c = self.original.shape[-1] // 2
        return {
            "true": self.original[i, :, c, c],
            "predicted": self.predicted[i, :, c, c],
            "masked": self.masked[i, :, c, c],
        }


@torch.no_grad()
def reconstruct_spectra(
    model: SpectralTransformer,
    imgs: torch.Tensor | np.ndarray,
    mask_ratio: float | None = None,
    seed: int = 0,
) -> SpectralReconstruction:
    """Mask ``mask_ratio`` of the tokens of imgs (N, B, p, p) (seeded) and reconstruct them."""
    model.eval()
    device = model.mask_token.device
    x = (
        torch.as_tensor(np.asarray(imgs) if not isinstance(imgs, torch.Tensor) else imgs)
        .float()
        .to(device)
    )
    ratio = model.mask_ratio if mask_ratio is None else float(mask_ratio)
    check_mask_ratio(ratio)
    gen = torch.Generator().manual_seed(seed)
    out = model.forward_pretrain(x, mask_ratio=ratio, generator=gen)
    tokens_mask = out["mask"].reshape(x.shape[0], model.num_groups, model.num_spatial, 1)
    masked = model.unpatchify(tokens_mask.expand(-1, -1, -1, model.patch_embed.token_dim)) > 0.5
    return SpectralReconstruction(
        original=x.cpu().numpy(),
        predicted=model.unpatchify(out["pred"]).cpu().numpy(),
        masked=masked.cpu().numpy(),
        mask_ratio=ratio,
        loss=float(out["loss"]),
    )


def neighbour_mean_fill(
    model: SpectralTransformer, imgs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """A baseline without learning: each masked token gets the mean of the visible tokens with
    the same spectral index in its patch (its spatial neighbours' values of those bands).

    imgs (N, B, p, p), mask (N, G*S) -> predicted token values (N, G, S, P); a spectral block
    with no visible token in a patch is filled with 0 (the band mean after standardization).
    """
    tokens = model.patchify(imgs)
    visible = 1 - mask.reshape(tokens.shape[:3]).to(tokens.dtype)  # (N, G, S)
    total = (tokens * visible[..., None]).sum(2, keepdim=True)
    count = visible.sum(2, keepdim=True)[..., None]
    return (total / count.clamp(min=1)).expand_as(tokens)


@torch.no_grad()
def masked_errors(
    model: SpectralTransformer,
    imgs: torch.Tensor | np.ndarray,
    mask_ratio: float | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, float]:
    """Mean squared error on masked token values (standardized units) of the model and of two
    baselines for the same masks: ``visible_mean`` (:func:`neighbour_mean_fill`) and ``zero``
    (the band mean). imgs: (N, B, p, p). Returns ``{"model", "visible_mean", "zero"}``."""
    model.eval()
    device = model.mask_token.device
    x_all = torch.as_tensor(
        np.asarray(imgs) if not isinstance(imgs, torch.Tensor) else imgs
    ).float()
    ratio = model.mask_ratio if mask_ratio is None else float(mask_ratio)
    gen = torch.Generator().manual_seed(seed)
    sums = {"model": 0.0, "visible_mean": 0.0, "zero": 0.0}
    count = 0
    for start in range(0, len(x_all), batch_size):
        x = x_all[start : start + batch_size].to(device)
        mask = model.random_mask(x.shape[0], ratio, generator=gen)
        out = model.forward_pretrain(x, mask=mask)
        n = x.shape[0]
        sums["model"] += float(out["loss"]) * n
        sums["visible_mean"] += (
            float(model.forward_loss(x, neighbour_mean_fill(model, x, mask), mask)) * n
        )
        sums["zero"] += float(model.forward_loss(x, torch.zeros_like(out["pred"]), mask)) * n
        count += n
    return {k: v / max(count, 1) for k, v in sums.items()}
