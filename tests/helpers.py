"""Small models the tests share (imported by test modules: ``from helpers import tiny_mae``)."""

from __future__ import annotations

import torch

from mae_nb.models.mae import MaskedAutoencoderViT, create_mae


def tiny_mae(in_chans: int = 3, img_size: int = 32, seed: int = 0) -> MaskedAutoencoderViT:
    """A very small MAE of the tiny preset's family (patch 8, one block each side), in eval mode."""
    torch.manual_seed(seed)
    return create_mae(
        "mae_vit_tiny_patch8",
        img_size=img_size,
        in_chans=in_chans,
        embed_dim=32,
        depth=1,
        num_heads=2,
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=2,
    ).eval()
