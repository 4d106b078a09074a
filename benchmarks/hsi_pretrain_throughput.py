"""Pretraining throughput of the spatial-spectral transformer: mae_nb's vs a straightforward one.

``mae_nb.models.spectral.SpectralTransformer`` pretrains as MAE does: the encoder runs on
the visible 30 % of the tokens only (``drop_masked=True``, the default; attention among the
visible tokens of each row, padded rows with fused ``F.scaled_dot_product_attention`` and a
padding mask), it embeds all band blocks with one batched einsum on a view of the input,
and the decoder gets mask tokens. The straightforward implementation below is the paper's
public code (HSG-AIML/MaskedSST) way: masked tokens replaced by a mask token and run through
the whole encoder, a Python loop over band blocks with one ``nn.Linear`` each, einops-style
rearranges that copy (``permute().contiguous()``), and attention as a materialized matrix
(``softmax(q @ k^T * scale) @ v``).

``mae_nb (drop_masked=False)`` is mae_nb's implementation of that same function (mask
tokens through the encoder, same weights; checked equal to the straightforward ones before
timing): the speed-up of the implementation alone, without the visible-only encoder.

A second straightforward implementation loops the factorized attention in Python: spatial
attention once per spectral index, spectral attention once per spatial position (the way
one writes "attention among tokens with the same spectral index" literally).

All run a masked-pretraining step (forward, 70 % of tokens masked, loss on masked tokens,
backward, AdamW step) on the same random patches and masks of a fixed config, from the same
weights.
The target is at least 1.5x more samples/s. On a shared CPU the wall clock depends on the
neighbours, so throughput is measured per CPU-second of this process with one thread
(``--threads``), in alternating rounds, and the median is reported (wall-clock figures too).

    .venv/bin/python benchmarks/hsi_pretrain_throughput.py            # fixed config
    .venv/bin/python benchmarks/hsi_pretrain_throughput.py --quick    # seconds, for a smoke check
    .venv/bin/python benchmarks/hsi_pretrain_throughput.py --joint    # the joint-attention ablation
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from mae_nb.models.spectral import SpectralTransformer

# the fixed config: a Salinas-like cube (204 bands) in 7 x 7 patches, bands in blocks of 16
# (padded to 208 = 13 blocks), 13 x 49 = 637 tokens per patch
CONFIG = dict(
    in_chans=204,
    image_size=7,
    band_block_size=16,
    embed_dim=64,
    depth=4,
    num_heads=4,
    mlp_ratio=2.0,
    decoder_dim=32,
    decoder_depth=1,
    decoder_num_heads=2,
    mask_ratio=0.7,
)
QUICK = dict(CONFIG, image_size=5, depth=2)


def _rearrange_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """'b n (h d) -> b h n d', materialized as einops does for non-viewable layouts."""
    b, n, hd = t.shape
    return t.reshape(b, n, heads, hd // heads).permute(0, 2, 1, 3).contiguous()


def naive_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x: (b, n, D) with the weights of mae_nb's ``Attention``; the attention matrix is
    materialized."""
    heads = attn.num_heads
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    q, k, v = (_rearrange_heads(t, heads) for t in (q, k, v))
    dots = torch.matmul(q, k.transpose(-1, -2)) * attn.head_dim**-0.5  # (b, h, n, n)
    out = torch.matmul(dots.softmax(dim=-1), v)
    out = out.permute(0, 2, 1, 3).contiguous().reshape(x.shape)  # 'b h n d -> b n (h d)'
    return attn.proj(out)


def looped_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A FactorizedBlock on x (N, G, S, D), attention looped over the other axis in Python."""
    n, g, s, d = x.shape
    if not block.factorized:
        return naive_block(block, x)
    h = block.norm1(x)
    x = x + torch.stack([naive_attention(block.attn, h[:, i]) for i in range(g)], dim=1)
    h = block.norm_spectral(x)
    x = x + torch.stack([naive_attention(block.attn_spectral, h[:, :, j]) for j in range(s)], dim=2)
    return x + block.mlp(block.norm2(x))


def naive_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A FactorizedBlock on x (N, G, S, D), with explicit copies between the two layouts."""
    n, g, s, d = x.shape
    if not block.factorized:  # the joint-attention ablation: one sequence of G*S tokens
        x = x + naive_attention(block.attn, block.norm1(x).reshape(n, g * s, d)).reshape(n, g, s, d)
        return x + block.mlp(block.norm2(x))
    y = naive_attention(block.attn, block.norm1(x).reshape(n * g, s, d))  # '(n g) s d'
    x = x + y.reshape(n, g, s, d)
    xs = x.permute(0, 2, 1, 3).contiguous().reshape(n * s, g, d)  # 'n g s d -> (n s) g d'
    y = naive_attention(block.attn_spectral, block.norm_spectral(xs))
    x = x + y.reshape(n, s, g, d).permute(0, 2, 1, 3).contiguous()
    return x + block.mlp(block.norm2(x))


class StraightforwardSST(nn.Module):
    """The same model and weights as a ``SpectralTransformer``, computed straightforwardly."""

    def __init__(self, model: SpectralTransformer, looped: bool = False):
        super().__init__()
        self.model = model
        self.block_fn = looped_block if looped else naive_block
        pe = model.patch_embed
        # one nn.Linear per band block, as in MaskedSST's BlockwisePatchEmbedding
        self.block_embed = nn.ModuleList(
            nn.Linear(pe.token_dim, pe.weight.shape[-1]) for _ in range(pe.num_groups)
        )
        with torch.no_grad():
            for g, lin in enumerate(self.block_embed):
                lin.weight.copy_(pe.weight[g].T)
                lin.bias.copy_(pe.bias[g])
        pe.weight.requires_grad_(False)
        pe.bias.requires_grad_(False)

    def embed(self, imgs: torch.Tensor) -> torch.Tensor:
        pe = self.model.patch_embed
        n = imgs.shape[0]
        x = pe.pad(imgs)
        tokens = []
        for g, lin in enumerate(self.block_embed):
            block = x[:, g * pe.band_block_size : (g + 1) * pe.band_block_size]  # (N, k, p, p)
            block = block.permute(0, 2, 3, 1).contiguous().reshape(n, pe.num_spatial, pe.token_dim)
            tokens.append(lin(block))
        return pe.norm(torch.stack(tokens, dim=1))

    def forward_pretrain(self, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = self.embed(imgs)
        mk = mask.reshape(x.shape[0], m.num_groups, m.num_spatial, 1)
        x = x * (1 - mk) + m.mask_token * mk
        x = x + m.pos_embed
        for block in m.blocks:
            x = self.block_fn(block, x)
        x = m.norm(x)
        x = m.decoder_embed(x) + m.decoder_pos_embed
        for block in m.decoder_blocks:
            x = self.block_fn(block, x)
        pred = m.decoder_pred(m.decoder_norm(x))
        return m.forward_loss(imgs, pred, mask)


def check_same_function(config: dict, looped: bool = False, seed: int = 0) -> float:
    """Largest difference of the loss and of every gradient between mae_nb's and a
    straightforward implementation."""
    torch.manual_seed(seed)
    fast = SpectralTransformer(**config, drop_masked=False)
    twin = SpectralTransformer(**config, drop_masked=False)
    twin.load_state_dict(fast.state_dict())
    slow = StraightforwardSST(twin, looped=looped)
    imgs = torch.randn(4, config["in_chans"], config["image_size"], config["image_size"])
    mask = fast.random_mask(4, generator=torch.Generator().manual_seed(seed))
    loss_fast = fast.forward_pretrain(imgs, mask=mask)["loss"]
    loss_slow = slow.forward_pretrain(imgs, mask)
    loss_fast.backward()
    loss_slow.backward()
    diff = abs(loss_fast.item() - loss_slow.item())
    grads_slow = dict(slow.model.named_parameters())
    for name, p in fast.named_parameters():
        if name in ("patch_embed.weight", "patch_embed.bias"):
            continue
        diff = max(diff, float((p.grad - grads_slow[name].grad).abs().max()))
    for g, lin in enumerate(slow.block_embed):
        diff = max(diff, float((fast.patch_embed.weight.grad[g].T - lin.weight.grad).abs().max()))
        diff = max(diff, float((fast.patch_embed.bias.grad[g] - lin.bias.grad).abs().max()))
    return diff


def throughput(
    step, opt, imgs: torch.Tensor, masks: list[torch.Tensor], seconds: float
) -> tuple[float, float]:
    """(samples per CPU-second, samples per wall-second) of ``step`` over about ``seconds``
    CPU-seconds."""
    for i in range(2):  # warm-up
        loss = step(imgs, masks[i % len(masks)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    done, i = 0, 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.process_time() - cpu0 < seconds or i < 3:
        loss = step(imgs, masks[i % len(masks)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += imgs.shape[0]
        i += 1
    return done / (time.process_time() - cpu0), done / (time.perf_counter() - wall0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller config and short timings")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: CPU time is then exact)"
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="CPU-seconds per implementation and round"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating timing rounds (the median is reported)"
    )
    parser.add_argument(
        "--joint",
        action="store_true",
        help="time the joint-attention ablation (all G*S tokens in one sequence) instead",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = dict(QUICK if args.quick else CONFIG)
    if args.joint:
        config["factorized_attention"] = False
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    for looped in (False,) if args.joint else (False, True):
        diff = check_same_function(config, looped=looped)
        print(
            f"mae_nb (drop_masked=False) computes the same function as the "
            f"{'looped' if looped else 'materialized'} reference: "
            f"max |loss or gradient difference| = {diff:.2e}"
        )
        if diff > 1e-4:
            raise SystemExit("the implementations disagree; not timing them")

    torch.manual_seed(0)
    fast = SpectralTransformer(**config)
    same = SpectralTransformer(**config, drop_masked=False)
    same.load_state_dict(fast.state_dict())
    impls = {
        "mae_nb (default): visible-only encoder": (
            fast,
            lambda x, m: fast.forward_pretrain(x, mask=m)["loss"],
        ),
        "mae_nb (drop_masked=False): mask tokens in encoder": (
            same,
            lambda x, m: same.forward_pretrain(x, mask=m)["loss"],
        ),
    }
    refs = [("straightforward: block loop, materialized attention", False)]
    if not args.joint:
        refs.append(("straightforward: attention looped in Python", True))
    for label, looped in refs:
        twin = SpectralTransformer(**config, drop_masked=False)
        twin.load_state_dict(fast.state_dict())
        ref = StraightforwardSST(twin, looped=looped)
        impls[label] = (ref, ref.forward_pretrain)
    n, b, p = args.batch_size, config["in_chans"], config["image_size"]
    imgs = torch.randn(n, b, p, p)
    gen = torch.Generator().manual_seed(0)
    masks = [fast.random_mask(n, generator=gen) for _ in range(4)]
    print(f"config: {config}")
    print(
        f"tokens per patch: {fast.num_groups} spectral x {fast.num_spatial} spatial = "
        f"{fast.num_groups * fast.num_spatial}; batch {n}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    print(
        f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} CPUs"
    )
    opts = {
        k: torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=1e-4)
        for k, (m, _) in impls.items()
    }
    cpu: dict[str, list[float]] = {k: [] for k in impls}
    wall: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(args.rounds):
        for k, (_, step) in impls.items():
            c, w = throughput(step, opts[k], imgs, masks, seconds)
            cpu[k].append(c)
            wall[k].append(w)
    med = {k: sorted(v)[len(v) // 2] for k, v in cpu.items()}
    medw = {k: sorted(v)[len(v) // 2] for k, v in wall.items()}
    names = list(impls)
    for k in impls:
        print(
            f"{k:52s} {med[k]:7.1f} samples/CPU-s  ({medw[k]:6.1f} samples/s wall; rounds "
            f"{', '.join(f'{x:.1f}' for x in cpu[k])})"
        )
    for ours in names[:2]:
        for k in names[2:]:
            print(
                f"{ours.split(':')[0]:28s} vs {k.split(': ')[1]}: "
                f"{med[ours] / med[k]:.2f}x per CPU-second, "
                f"{medw[ours] / medw[k]:.2f}x wall"
                + (" (target >= 1.5x)" if ours == names[0] else "")
            )
    print(
        f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
