"""A classifier on a pretrained MAE encoder: one class per patch token, or labels per image.

After masked pretraining, the MAE paper keeps the encoder, drops the decoder and the masking,
and puts a head on the encoder's tokens. :class:`MAEClassifier` does that for the course's
:class:`~mae_nb.models.mae.MaskedAutoencoderViT`:

- ``task="patch"``: a linear head on every patch token, logits (N, K, gh, gw): land cover
  patch by patch (a coarse segmentation, one class per ``patch_size`` x ``patch_size`` cell);
- ``task="image"``: the mean of the patch tokens (the MAE paper's global pooling) through a
  linear head, logits (N, K): multi-label classification of whole images.

:meth:`MAEClassifier.set_trainable` chooses what trains: ``"probe"`` (the head only, a linear
probe of frozen features), ``"partial"`` (the last ``last_blocks`` encoder blocks, the final
norm and the head), ``"full"`` and ``"scratch"`` (everything; ``scratch`` starts from a
re-initialized encoder, :meth:`MAEClassifier.reinitialize`). :func:`layer_id` numbers the
parameters as the MAE paper's layer-wise learning-rate decay does (patch embedding, cls token
and positions 0, block ``i`` ``i + 1``, final norm and head ``depth + 1``).
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from mae_nb.errors import InputError, InputTypeError
from mae_nb.models.mae import MaskedAutoencoderViT, get_2d_sincos_pos_embed

__all__ = ["CLASSIFIER_MODES", "CLASSIFIER_TASKS", "MAEClassifier", "layer_id"]

#: What a classifier can train (see :meth:`MAEClassifier.set_trainable`).
CLASSIFIER_MODES = ("probe", "partial", "full", "scratch")

#: What a classifier predicts: one class per patch token, or labels per image.
CLASSIFIER_TASKS = ("patch", "image")


def layer_id(name: str, depth: int) -> int:
    """The MAE paper's layer id of parameter ``name`` of an encoder with ``depth`` blocks.

    ``cls_token``, ``pos_embed`` and ``patch_embed.*``: 0; ``blocks.<i>.*``: ``i + 1``;
    everything else (the final ``norm``, the ``head``): ``depth + 1``.
    """
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed."):
        return 0
    match = re.match(r"blocks\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    return int(depth) + 1


def _sincos_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    return get_2d_sincos_pos_embed(dim, grid, cls_token=True)


class MAEClassifier(nn.Module):
    """The encoder of ``encoder`` (copied, no decoder, no masking) with a linear head.

    ``encoder``: a :class:`~mae_nb.models.mae.MaskedAutoencoderViT` (or a subclass such as
    Prithvi's, whose position table it keeps; its weights are copied, the original is left
    untouched). ``num_classes``: K. ``task``: ``"patch"`` (logits (N, K,
    gh, gw), one per patch token) or ``"image"`` (logits (N, K) from the mean patch token).
    Images (N, C, H, W) of any size that is a multiple of the patch size work (the fixed
    sin-cos positions are recomputed for another grid). The head starts near zero (weights
    drawn with std 0.01, seeded by torch's current random state), as in the MAE paper.
    """

    def __init__(self, encoder: MaskedAutoencoderViT, num_classes: int, task: str = "patch"):
        super().__init__()
        if not isinstance(encoder, MaskedAutoencoderViT):
            raise InputTypeError(
                f"expected a MaskedAutoencoderViT (mae_nb.models.mae), got {type(encoder).__name__}"
            )
        if task not in CLASSIFIER_TASKS:
            raise InputError(f"task must be one of {CLASSIFIER_TASKS}, got {task!r}")
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise InputError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.task = task
        self.num_classes = int(num_classes)
        self.patch_size = encoder.patch_size
        self.in_chans = encoder.in_chans
        self.img_size = encoder.img_size
        self.grid_size = encoder.grid_size
        self.depth = len(encoder.blocks)
        self.pretrained_cfg = copy.deepcopy(encoder.pretrained_cfg)
        self.patch_embed = copy.deepcopy(encoder.patch_embed)
        self.cls_token = nn.Parameter(encoder.cls_token.detach().clone())
        self.pos_embed = nn.Parameter(encoder.pos_embed.detach().clone(), requires_grad=False)
        # the encoder's own position table for other grids (2-D sin-cos; Prithvi's 3-D at t=0)
        self._pos_table = getattr(type(encoder), "_table", None) or _sincos_2d
        self.blocks = copy.deepcopy(encoder.blocks)
        self.norm = copy.deepcopy(encoder.norm)
        dim = encoder.cls_token.shape[-1]
        self.head = nn.Linear(dim, self.num_classes)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        self.mode = "full"
        self.last_blocks = self.depth

    def reinitialize(self) -> None:
        """Re-draw every encoder weight with Meta's initialization (seeded by torch's state):
        the same architecture, nothing learned ("from scratch")."""
        with torch.no_grad():
            w = self.patch_embed.proj.weight
            nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
            if self.patch_embed.proj.bias is not None:
                nn.init.zeros_(self.patch_embed.proj.bias)
            nn.init.normal_(self.cls_token, std=0.02)
            self.blocks.apply(MaskedAutoencoderViT._init_weights)
            self.norm.apply(MaskedAutoencoderViT._init_weights)

    def set_trainable(self, mode: str, last_blocks: int = 1) -> None:
        """Choose what trains: ``"probe"`` (head), ``"partial"`` (the last ``last_blocks``
        blocks, the final norm and the head), ``"full"`` or ``"scratch"`` (all but the fixed
        positions). Sets ``requires_grad``; the optimizer sees only trainable parameters."""
        if mode not in CLASSIFIER_MODES:
            raise InputError(f"mode must be one of {CLASSIFIER_MODES}, got {mode!r}")
        if mode == "partial" and (
            isinstance(last_blocks, bool)
            or int(last_blocks) != last_blocks
            or not 1 <= last_blocks <= self.depth
        ):
            raise InputError(
                f"last_blocks must be a whole number from 1 to {self.depth} (the encoder's "
                f"blocks), got {last_blocks!r}"
            )
        first = {"probe": self.depth + 1, "partial": self.depth + 1 - int(last_blocks)}.get(mode, 0)
        for name, p in self.named_parameters():
            trains = name != "pos_embed" and layer_id(name, self.depth) >= first
            p.requires_grad_(trains and (mode != "probe" or name.startswith("head.")))
        self.mode = mode
        self.last_blocks = {"probe": 0, "partial": int(last_blocks)}.get(mode, self.depth)

    def positions(self, grid: tuple[int, int]) -> torch.Tensor:
        """The fixed sin-cos positions (1, 1 + gh*gw, D) of a patch grid, cls position first."""
        if tuple(grid) == tuple(self.grid_size):
            return self.pos_embed
        pos = self._pos_table(self.pos_embed.shape[-1], tuple(grid))
        return pos[None].to(device=self.pos_embed.device, dtype=self.pos_embed.dtype)

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs (N, C, H, W) -> the encoder's tokens (N, 1 + L, D), nothing masked, cls first."""
        if imgs.ndim != 4 or imgs.shape[1] != self.in_chans:
            raise InputError(
                f"imgs must have shape (N, {self.in_chans}, H, W), got {tuple(imgs.shape)}"
            )
        p = self.patch_size
        h, w = imgs.shape[2:]
        if h % p or w % p or h < p or w < p:
            raise InputError(f"image sides must be multiples of patch_size={p}, got {h} x {w}")
        pos = self.positions((h // p, w // p))
        x = self.patch_embed(imgs) + pos[:, 1:, :]
        cls = (self.cls_token + pos[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs (N, C, H, W) -> logits (N, K, H/p, W/p) (``task="patch"``) or (N, K) (image)."""
        tokens = self.forward_features(imgs)[:, 1:, :]
        if self.task == "image":
            return self.head(tokens.mean(dim=1))
        n = imgs.shape[0]
        gh, gw = imgs.shape[2] // self.patch_size, imgs.shape[3] // self.patch_size
        return self.head(tokens).transpose(1, 2).reshape(n, self.num_classes, gh, gw)

    def extra_repr(self) -> str:
        return (
            f"task={self.task}, num_classes={self.num_classes}, depth={self.depth}, "
            f"mode={self.mode}, patch_size={self.patch_size}, in_chans={self.in_chans}"
        )
