"""NASA/IBM's Prithvi, a masked autoencoder for six HLS bands, as the course's MAE.

Prithvi (Jakubik et al., 2023; Szwarcman et al., 2024; Apache-2.0) is an MAE ViT pretrained on
Harmonized Landsat Sentinel-2 (HLS) surface reflectance x 10000 in six bands: blue, green, red,
narrow NIR, SWIR1, SWIR2. Its published code (``prithvi_mae.py``; ``Prithvi.py`` for the first
release) differs from Meta's in three places only, and this module maps each of them:

- a **3-D patch embedding** (``Conv3d`` with kernel ``(tubelet, p, p)``) over ``num_frames``
  time steps. Used with one time step and a tubelet of 1, the kernel's time axis has length 1 and
  the convolution is the 2-D one of the course's model: the weight ``(D, C, 1, p, p)`` becomes
  ``(D, C, p, p)`` (:func:`from_published`).
- **3-D sin-cos position embeddings** (:func:`get_3d_sincos_pos_embed`): 6/16 of the channels
  encode the column, 6/16 the row, 4/16 the time step. :class:`PrithviMAE` uses the first time
  step's table (the stored one, and the same formula for other image sizes).
- the **key names**: Prithvi-EO's files (``Prithvi_EO_V1_100M.pt``, ``Prithvi_EO_V2_300M.pt``) are
  ``torch.save`` of a bare state dict whose encoder keys start with ``encoder.`` and decoder keys
  with ``decoder.`` (``decoder.decoder_blocks.0...``); the first release's ``Prithvi_100M.pt``
  has Meta's names without prefixes. Blocks are timm's, with Meta's names inside.

Everything else (cls token, blocks, decoder, ``decoder_pred`` of ``tubelet * p * p * C``
outputs in Meta's patch order) is Meta's MAE, so the model reconstructs and gives features with
the course's code. :data:`PRITHVI_CONFIGS` holds the published models' sizes, normalization
constants (per-band mean and std in HLS units, from each release's config) and band names.
:func:`published_shapes` is the exact layout of a published file (tests write random-weight files
in it); :func:`prithvi_problems` says what in a file does not fit it. Which file to get is
:mod:`mae_nb.pretrained`'s business (the registry names ``prithvi_eo_v1_100m`` and
``prithvi_eo_v2_300m``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from mae_nb.errors import CheckpointError, InputError
from mae_nb.models.mae import MaskedAutoencoderViT

__all__ = [
    "PRITHVI_BANDS",
    "PRITHVI_CONFIGS",
    "PrithviMAE",
    "from_published",
    "get_3d_sincos_pos_embed",
    "is_prithvi_state_dict",
    "prithvi_problems",
    "published_shapes",
]

#: The six HLS bands every Prithvi model takes, in its input order.
PRITHVI_BANDS = ("blue", "green", "red", "narrow NIR", "SWIR1", "SWIR2")

#: The published models: sizes (course argument names), time steps, normalization (HLS surface
#: reflectance x 10000, per band in :data:`PRITHVI_BANDS` order) from each release's config.
PRITHVI_CONFIGS: dict[str, dict[str, Any]] = {
    "prithvi_eo_v1_100m": dict(
        img_size=224,
        patch_size=16,
        tubelet_size=1,
        num_frames=3,
        in_chans=6,
        embed_dim=768,
        depth=12,
        num_heads=12,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.0,
        mean=[
            775.2290211032589,
            1080.992780391705,
            1228.5855250417867,
            2497.2022620507532,
            2204.2139147975554,
            1610.8324823273745,
        ],
        std=[
            1281.526139861424,
            1270.0297974547493,
            1399.4802505642526,
            1368.3446143747644,
            1291.6764008585435,
            1154.505683480695,
        ],
    ),  # fmt: skip
    "prithvi_eo_v2_300m": dict(
        img_size=224,
        patch_size=16,
        tubelet_size=1,
        num_frames=4,
        in_chans=6,
        embed_dim=1024,
        depth=24,
        num_heads=16,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.0,
        mean=[1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0],
        std=[2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0],
    ),
}

#: Constructor arguments of the course's model among a config's entries.
_MODEL_KEYS = (
    "img_size",
    "patch_size",
    "in_chans",
    "embed_dim",
    "depth",
    "num_heads",
    "decoder_embed_dim",
    "decoder_depth",
    "decoder_num_heads",
    "mlp_ratio",
)

#: Buffers of the -TL variants (time and location encodings, unused with one time step).
_COORD_BUFFERS = re.compile(r"^(encoder|decoder)\.(temporal|location)_embed_(enc|dec)\.scale$")


# --------------------------------------------------------------------------- position embeddings


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(M, dim): [sin | cos] of each position times ``1 / 10000 ** (k / (dim / 2))``."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    out = positions.reshape(-1, 1).double() * omega
    return torch.cat([out.sin(), out.cos()], dim=1)


def get_3d_sincos_pos_embed(
    embed_dim: int, grid_thw: tuple[int, int, int], cls_token: bool = False
) -> torch.Tensor:
    """Prithvi's fixed 3-D sin-cos position embeddings: (T * H * W [+ 1], embed_dim) float32.

    Channels: ``embed_dim // 16 * 6`` for the column, as many for the row, ``embed_dim // 16 * 4``
    for the time step, in that order; tokens in (time, row, column) order. With ``cls_token`` a
    zero row comes first. ``embed_dim`` must be a multiple of 16.
    """
    if embed_dim % 16:
        raise InputError(
            f"embed_dim must be a multiple of 16 for 3-D sin-cos embeddings, got {embed_dim}"
        )
    t, h, w = (int(v) for v in grid_thw)
    six, four = embed_dim // 16 * 6, embed_dim // 16 * 4
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    emb = torch.cat([_sincos_1d(six, ww), _sincos_1d(six, hh), _sincos_1d(four, tt)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()


# --------------------------------------------------------------------------- the model


class PrithviMAE(MaskedAutoencoderViT):
    """The course's MAE with Prithvi's 3-D sin-cos position embeddings, used at one time step.

    Same parameters and methods as :class:`~mae_nb.models.mae.MaskedAutoencoderViT` (so
    ``reconstruct``, ``features`` and the chapters use it as they use Meta's model); only the
    fixed position tables differ: the first time step of :func:`get_3d_sincos_pos_embed`, for
    the built grid and, recomputed, for any other. ``embed_dim`` and ``decoder_embed_dim`` must be
    multiples of 16. Build it from a published file with :func:`from_published`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for key in ("embed_dim", "decoder_embed_dim"):
            if key in kwargs and int(kwargs[key]) % 16:
                raise InputError(
                    f"{key} must be a multiple of 16 (Prithvi's 3-D sin-cos embeddings), "
                    f"got {kwargs[key]}"
                )
        super().__init__(*args, **kwargs)
        self.pretrained_cfg["pos_embed"] = "3d-sincos"

    def initialize_weights(self) -> None:
        """Meta's initialization, with Prithvi's 3-D sin-cos tables at time step 0."""
        super().initialize_weights()
        with torch.no_grad():
            for pos in (self.pos_embed, self.decoder_pos_embed):
                pos.copy_(self._table(pos.shape[-1], self.grid_size)[None])

    @staticmethod
    def _table(dim: int, grid_hw: tuple[int, int]) -> torch.Tensor:
        return get_3d_sincos_pos_embed(dim, (1, *grid_hw), cls_token=True)

    def position_embeddings(self, grid_hw: tuple[int, int], decoder: bool = False) -> torch.Tensor:
        """The fixed position embeddings (1, 1 + gh*gw, D) of a patch grid at time step 0: the
        stored ones for the built grid, recomputed 3-D sin-cos ones for any other."""
        stored = self.decoder_pos_embed if decoder else self.pos_embed
        if tuple(grid_hw) == self.grid_size:
            return stored
        pos = self._table(stored.shape[-1], tuple(grid_hw))
        return pos[None].to(device=stored.device, dtype=stored.dtype)


# --------------------------------------------------------------------------- published files


def is_prithvi_state_dict(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict is in Prithvi's published layout: ``encoder.patch_embed`` (Prithvi-EO)
    or a 5-D ``Conv3d`` patch embedding (the first release). Hugging Face's ViTMAE files, whose
    decoder keys also start with ``decoder.decoder_``, are not."""
    if any(k.startswith("encoder.patch_embed.") for k in state_dict):
        return True
    w = state_dict.get("patch_embed.proj.weight")
    return w is not None and w.ndim == 5


def _course_name(key: str) -> str:
    for prefix in ("encoder.", "decoder."):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _block_count(keys, prefix: str) -> int:
    ids = {int(m.group(1)) for k in keys if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", k))}
    return max(ids) + 1 if ids else 0


def _frames_and_grid(pos: torch.Tensor, dim: int, patch: int, hint: dict | None) -> tuple:
    """(num_frames, grid side) of a stored 3-D table ``pos`` (1, 1 + T*g*g, dim): the
    config's, else the candidate whose recomputed table equals the stored one."""
    tokens = int(pos.shape[1]) - 1
    if hint is not None:
        side = int(hint["img_size"]) // patch
        frames = int(hint["num_frames"]) // int(hint.get("tubelet_size", 1))
        if frames * side * side == tokens:
            return frames, side
    stored = pos[0].float()
    for frames in range(1, tokens + 1):
        side = math.isqrt(tokens // frames)
        if tokens % frames or side * side * frames != tokens or dim % 16:
            continue
        table = get_3d_sincos_pos_embed(dim, (frames, side, side), cls_token=True)
        if torch.allclose(stored, table, atol=1e-4):
            return frames, side
    raise CheckpointError(
        f"its position table (pos_embed, {tokens} patch tokens of {dim} channels) is not "
        "Prithvi's 3-D sin-cos table for any square grid and number of time steps"
    )


def _read_sizes(sd: dict[str, torch.Tensor], hint: dict | None) -> dict[str, Any]:
    """The sizes a Prithvi state dict implies (course argument names, plus ``num_frames`` and
    ``tubelet_size``), read from its shapes; head counts from ``hint`` or 64 channels a head."""
    sd = {_course_name(k): v for k, v in sd.items()}
    for key in ("patch_embed.proj.weight", "pos_embed"):
        if key not in sd:
            raise CheckpointError(
                f"it has no {key} (encoder.{key} in Prithvi-EO's files): not a Prithvi checkpoint"
            )
    w = sd["patch_embed.proj.weight"]
    if w.ndim != 5 or w.shape[-1] != w.shape[-2]:
        raise CheckpointError(
            f"its patch embedding weight has shape {tuple(w.shape)}; Prithvi's is a Conv3d "
            "weight (embed_dim, bands, tubelet, patch, patch)"
        )
    dim, chans, tubelet, patch = int(w.shape[0]), int(w.shape[1]), int(w.shape[2]), int(w.shape[3])
    frames, side = _frames_and_grid(sd["pos_embed"], dim, patch, hint)
    sizes: dict[str, Any] = dict(
        img_size=side * patch,
        patch_size=patch,
        in_chans=chans,
        embed_dim=dim,
        depth=_block_count(sd, "blocks"),
        num_frames=frames * tubelet,
        tubelet_size=tubelet,
        mlp_ratio=4.0,
    )
    if "blocks.0.mlp.fc1.weight" in sd:
        sizes["mlp_ratio"] = float(sd["blocks.0.mlp.fc1.weight"].shape[0]) / dim
    if "decoder_embed.weight" in sd:
        sizes["decoder_embed_dim"] = int(sd["decoder_embed.weight"].shape[0])
        sizes["decoder_depth"] = _block_count(sd, "decoder_blocks")
    same = hint is not None and all(hint.get(k) == sizes.get(k) for k in ("embed_dim", "depth"))
    sizes["num_heads"] = int(hint["num_heads"]) if same else max(1, dim // 64)
    dec = sizes.get("decoder_embed_dim", 16)
    sizes["decoder_num_heads"] = (
        int(hint["decoder_num_heads"])
        if same and hint.get("decoder_embed_dim") == dec
        else max(1, dec // 32)
    )
    return sizes


def published_shapes(sizes: dict[str, Any], prefixed: bool = True) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a Prithvi checkpoint with these sizes, as published.

    ``sizes``: a :data:`PRITHVI_CONFIGS` entry or :func:`_read_sizes`' result (``num_frames``,
    ``tubelet_size`` and the model's sizes). ``prefixed``: Prithvi-EO's names (``encoder.``,
    ``decoder.``); False: the first release's (``Prithvi_100M.pt``, Meta's names).
    """
    kw = {k: sizes[k] for k in _MODEL_KEYS if k in sizes}
    with torch.device("meta"):
        model = PrithviMAE(**kw)
    frames = int(sizes.get("num_frames", 1)) // int(sizes.get("tubelet_size", 1))
    t = int(sizes.get("tubelet_size", 1))
    out = {}
    for name, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if name == "patch_embed.proj.weight":
            shape = (shape[0], shape[1], t, shape[2], shape[3])
        elif name == "decoder_pred.weight":
            shape = (shape[0] * t, shape[1])
        elif name == "decoder_pred.bias":
            shape = (shape[0] * t,)
        elif name in ("pos_embed", "decoder_pos_embed"):
            shape = (1, 1 + frames * model.num_patches, shape[2])
        decoder = name.startswith(("decoder_", "mask_token"))
        prefix = ("decoder." if decoder else "encoder.") if prefixed else ""
        out[prefix + name] = shape
    return out


def prithvi_problems(
    state_dict: dict[str, torch.Tensor], config: dict[str, Any] | None = None
) -> list[str]:
    """What in ``state_dict`` does not fit a Prithvi checkpoint; [] when it loads.

    The sizes are read from the file (:func:`_read_sizes`; ``config`` is a hint for the head
    counts and the grid); the file is then checked tensor by tensor against
    :func:`published_shapes` of those sizes: missing tensors, extra ones, misshaped ones, a
    tubelet longer than one time step, no decoder (reconstruction needs it).
    """
    try:
        sizes = _read_sizes(state_dict, config)
    except CheckpointError as exc:
        return [str(exc)]
    keys = {k for k in state_dict if not _COORD_BUFFERS.match(k)}
    prefixed = any(k.startswith("encoder.") for k in keys)
    try:
        expected = published_shapes(sizes, prefixed)
    except InputError as exc:
        shown = {k: sizes[k] for k in _MODEL_KEYS if k in sizes}
        return [f"the sizes read from its tensors ({shown}) make no Prithvi model: {exc}"]
    problems = []
    if sizes["tubelet_size"] != 1:
        problems.append(
            f"its patch embedding spans {sizes['tubelet_size']} time steps per patch (tubelet); "
            "the course uses Prithvi with one time step, which needs a tubelet of 1"
        )
    if "decoder_embed_dim" not in sizes:
        problems.append(
            "it has no decoder (no decoder_embed, decoder_blocks): an encoder-only file. "
            "Reconstruction needs the decoder: use a published Prithvi MAE checkpoint"
        )
        expected = {k: v for k, v in expected.items() if "decoder" not in k and "mask" not in k}
    missing = sorted(set(expected) - keys)
    extra = sorted(keys - set(expected))
    shaped = sorted(k for k in keys & set(expected) if tuple(state_dict[k].shape) != expected[k])
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing: {', '.join(missing[:6])}")
    if extra:
        problems.append(f"{len(extra)} tensor(s) not in Prithvi's layout: {', '.join(extra[:6])}")
    if shaped:
        problems.append(
            f"{len(shaped)} tensor(s) of the wrong shape: "
            + "; ".join(
                f"{k} {tuple(state_dict[k].shape)} in the file, {expected[k]} expected"
                for k in shaped[:5]
            )
        )
    return problems


def from_published(
    state_dict: dict[str, torch.Tensor],
    config: str | dict[str, Any] | None = None,
    what: str = "the state dict",
) -> PrithviMAE:
    """A :class:`PrithviMAE` (eval mode) holding a published Prithvi state dict, at one time step.

    ``config``: a :data:`PRITHVI_CONFIGS` name or dict (head counts, normalization, band names);
    None: matched by size to a published config, else read from the shapes. The ``Conv3d``
    patch weight ``(D, C, 1, p, p)`` becomes the ``Conv2d`` one ``(D, C, p, p)``; the position
    tables keep their first time step; ``encoder.``/``decoder.`` prefixes go. A file that does
    not fit raises :class:`CheckpointError` listing the missing, extra and misshaped tensors.
    ``pretrained_cfg`` gets ``mean``/``std`` (HLS units) and ``band_names`` of a published config.
    """
    name = config if isinstance(config, str) else None
    if name is not None:
        if name not in PRITHVI_CONFIGS:
            raise CheckpointError(
                f"unknown Prithvi config {name!r}; known: {', '.join(PRITHVI_CONFIGS)}"
            )
        config = PRITHVI_CONFIGS[name]
    problems = prithvi_problems(state_dict, config)
    if problems:
        raise CheckpointError(
            f"{what} is not a Prithvi MAE checkpoint:\n- " + "\n- ".join(problems)
        )
    sizes = _read_sizes(state_dict, config)
    if config is None:
        for known, cfg in PRITHVI_CONFIGS.items():
            if all(cfg[k] == sizes[k] for k in ("embed_dim", "depth", "patch_size", "in_chans")):
                name, config = known, cfg
                sizes = _read_sizes(state_dict, config)
                break
    tokens = 1 + (sizes["img_size"] // sizes["patch_size"]) ** 2
    ours = {}
    for key, tensor in state_dict.items():
        if _COORD_BUFFERS.match(key):
            continue
        key = _course_name(key)
        if key == "patch_embed.proj.weight":
            tensor = tensor[:, :, 0].contiguous()
        elif key in ("pos_embed", "decoder_pos_embed"):
            tensor = tensor[:, :tokens]
        ours[key] = tensor.float() if tensor.is_floating_point() else tensor
    with torch.device("meta"):
        model = PrithviMAE(**{k: sizes[k] for k in _MODEL_KEYS})
    model.load_state_dict(ours, strict=True, assign=True)
    model.pretrained_cfg.update(
        arch=None,
        prithvi=name,
        num_frames=sizes["num_frames"],
        band_names=list(PRITHVI_BANDS[: sizes["in_chans"]]) if sizes["in_chans"] == 6 else None,
        mean=list(config["mean"]) if config and "mean" in config else None,
        std=list(config["std"]) if config and "std" in config else None,
        units="HLS surface reflectance x 10000" if config and "mean" in config else None,
        # the constants span every HLS scene: one scene's spread is far smaller (8-bit counts,
        # about 1/100 of it, are still told apart; mae_nb.pretrained.in_training_units)
        spread_factor=20.0,
    )
    return model.eval()
