"""MAE random masking: ratio, reproducibility, restore order, errors."""

from __future__ import annotations

import pytest
import torch

from mae_nb.masking import block_mask, check_mask_ratio, patch_mask_to_pixels, random_masking


def test_keeps_the_right_share_and_restores_the_order():
    x = torch.randn(3, 20, 5)
    visible, mask, ids_restore, ids_keep = random_masking(
        x, 0.75, generator=torch.Generator().manual_seed(0)
    )
    assert visible.shape == (3, 5, 5) and mask.shape == (3, 20)
    assert torch.all(mask.sum(1) == 15)
    # un-shuffling [visible, placeholders] puts every visible token back where it came from
    full = torch.cat([visible, torch.zeros(3, 15, 5)], 1)
    restored = torch.gather(full, 1, ids_restore[..., None].expand(-1, -1, 5))
    assert torch.equal(restored[mask == 0], x[mask == 0])
    assert torch.equal(torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, 5)), visible)


def test_noise_chooses_the_mask():
    x = torch.randn(1, 4, 2)
    noise = torch.tensor([[0.9, 0.1, 0.8, 0.2]])  # smallest noise is kept
    _, mask, _, _ = random_masking(x, 0.5, noise=noise)
    assert mask.tolist() == [[1, 0, 1, 0]]
    with pytest.raises(ValueError, match="noise must have shape"):
        random_masking(x, 0.5, noise=torch.rand(1, 3))


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.2, float("nan"), "half"])
def test_mask_ratio_outside_the_range_is_refused(ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be"):
        check_mask_ratio(ratio)


def test_a_ratio_that_leaves_nothing_visible_is_refused():
    with pytest.raises(ValueError, match="leaves no visible patch out of 4"):
        random_masking(torch.randn(1, 4, 2), 0.9)


def test_patch_mask_to_pixels():
    mask = torch.tensor([[1.0, 0, 0, 1, 0, 0]])
    px = patch_mask_to_pixels(mask, (2, 3), 2)
    assert px.shape == (1, 4, 6)
    assert px[0, :2, :2].eq(1).all() and px[0, 2:, :2].eq(1).all() and px[0, :2, 2:4].eq(0).all()
    assert block_mask(2, (4, 4), 0.5).sum(1).tolist() == [8, 8]
