"""Baselines for per-pixel hyperspectral classification, and one factory for every model.

Public API::

    ViTClassifier(in_chans, num_classes, image_size=7, embed_dim=64, depth=4, num_heads=4)
        # a standard ViT: one token per pixel holding all B bands (joint tokens), one shared
        # linear embedding, learned positions, timm blocks; logits of the centre pixel
    CNN3D(in_chans, num_classes, image_size=7, n_planes=16)
        # Li, Zhang & Shen (2017), the 3D-CNN MaskedSST compared against
    MODEL_KINDS                       # names build_classifier knows
    build_classifier(kind, in_chans, num_classes, image_size=7, **kwargs) -> nn.Module

All take patches (N, B, p, p) and return logits (N, num_classes) for the centre pixel, so
:func:`mae_nb.models.spectral.classification_loss` and :func:`mae_nb.train.fit` train any
of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mae_nb.errors import InputError
from mae_nb.models.spectral import SpectralTransformer

__all__ = ["CNN3D", "MODEL_KINDS", "ViTClassifier", "build_classifier"]


class ViTClassifier(nn.Module):
    """Standard vision transformer on hyperspectral patches.

    imgs (N, B, p, p) -> p*p tokens, each the full spectrum (B values) of one pixel embedded
    by one shared linear map; learned positional embeddings; ``depth`` timm ``Block`` layers
    (fused attention); the centre pixel's token -> LayerNorm -> linear head.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        image_size: int = 7,
        embed_dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
    ):
        super().__init__()
        from timm.models.vision_transformer import Block

        if image_size % 2 == 0:
            raise InputError(f"image_size must be odd (a centre pixel), got {image_size}")
        self.config = dict(
            in_chans=in_chans,
            num_classes=num_classes,
            image_size=image_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
        )
        self.in_chans, self.image_size, self.num_classes = in_chans, image_size, num_classes
        self.embed = nn.Linear(in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, image_size * image_size, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(
            *[Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        if imgs.ndim != 4 or imgs.shape[1:] != (self.in_chans, self.image_size, self.image_size):
            raise InputError(
                f"expected patches (N, {self.in_chans}, {self.image_size}, {self.image_size}), "
                f"got {tuple(imgs.shape)}"
            )
        x = self.embed(imgs.flatten(2).transpose(1, 2)) + self.pos_embed  # (N, p*p, D)
        x = self.norm(self.blocks(x))
        return self.head(x[:, x.shape[1] // 2])


class CNN3D(nn.Module):
    """The 3D-CNN of Li, Zhang & Shen, Remote Sensing 9(1):67, 2017.

    imgs (N, B, p, p) are treated as one-channel volumes (N, 1, B, p, p): C1 = ``n_planes``
    3-D kernels of 7 bands x 3 x 3 px, C2 = ``2 * n_planes`` kernels of 3 x 3 x 3 (ReLU after
    each, no spatial padding), then a fully connected layer F1 to the classes.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        image_size: int = 7,
        n_planes: int = 16,
        dropout: float = 0.0,
    ):
        super().__init__()
        if image_size < 5:
            raise InputError(
                "the 3D-CNN needs patches of at least 5 x 5 px (two 3 x 3 kernels), "
                f"got {image_size}"
            )
        if in_chans < 7:
            raise InputError(
                f"the 3D-CNN needs at least 7 bands (its first kernel spans 7), got {in_chans}"
            )
        self.config = dict(
            in_chans=in_chans,
            num_classes=num_classes,
            image_size=image_size,
            n_planes=n_planes,
            dropout=dropout,
        )
        self.in_chans, self.image_size, self.num_classes = in_chans, image_size, num_classes
        self.conv1 = nn.Conv3d(1, n_planes, (7, 3, 3), padding=(1, 0, 0))
        self.conv2 = nn.Conv3d(n_planes, 2 * n_planes, (3, 3, 3), padding=(1, 0, 0))
        bands = in_chans - 4  # conv1 shortens the band axis by 4, conv2 keeps it
        self.features = 2 * n_planes * bands * (image_size - 4) ** 2
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.features, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        if imgs.ndim != 4 or imgs.shape[1:] != (self.in_chans, self.image_size, self.image_size):
            raise InputError(
                f"expected patches (N, {self.in_chans}, {self.image_size}, {self.image_size}), "
                f"got {tuple(imgs.shape)}"
            )
        x = F.relu(self.conv1(imgs.unsqueeze(1)))
        x = F.relu(self.conv2(x))
        return self.fc(self.dropout(x.flatten(1)))


#: kinds for :func:`build_classifier`: the model, its two ablations, and the two baselines.
MODEL_KINDS = ("sst", "sst-shared-embed", "sst-joint-attention", "vit", "cnn3d")


def build_classifier(
    kind: str, in_chans: int, num_classes: int, image_size: int = 7, **kwargs
) -> nn.Module:
    """A classifier of patches (N, in_chans, image_size, image_size) -> logits (N, num_classes).

    ``"sst"``: :class:`SpectralTransformer` (no decoder); ``"sst-shared-embed"``: the same
    with one shared embedding instead of blockwise ones; ``"sst-joint-attention"``: joint
    instead of factorized attention; ``"vit"``: :class:`ViTClassifier`; ``"cnn3d"``:
    :class:`CNN3D`. ``kwargs`` go to the constructor (e.g. ``embed_dim``, ``depth``).
    """
    if kind not in MODEL_KINDS:
        raise InputError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    if kind.startswith("sst"):
        kwargs.setdefault("decoder_depth", -1)
        if kind == "sst-shared-embed":
            kwargs["blockwise_embed"] = False
        if kind == "sst-joint-attention":
            kwargs["factorized_attention"] = False
        return SpectralTransformer(
            in_chans, image_size=image_size, num_classes=num_classes, **kwargs
        )
    if kind == "vit":
        return ViTClassifier(in_chans, num_classes, image_size, **kwargs)
    return CNN3D(in_chans, num_classes, image_size, **kwargs)
