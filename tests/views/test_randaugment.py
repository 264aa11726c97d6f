"""FixMatch's strong augmentation: per-image operations and magnitudes, torchvision's ops, Cutout."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from selfsup.views.randaugment import STRONG_OPS, cutout, rand_augment


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_fixmatch_has_fourteen_operations_with_the_papers_ranges():
    assert len(STRONG_OPS) == 14
    assert STRONG_OPS["rotate"][1] == (-30.0, 30.0) and STRONG_OPS["shear_x"][1] == (-0.3, 0.3)
    assert STRONG_OPS["translate_y"][1] == (-0.3, 0.3) and STRONG_OPS["brightness"][1] == (0.05, 0.95)


def test_operations_are_torchvisions_at_the_mapped_magnitude():
    x = _images(1)[0]
    torch.testing.assert_close(STRONG_OPS["brightness"][0](x, 0.5), TF.adjust_brightness(x, 1.05))
    torch.testing.assert_close(STRONG_OPS["rotate"][0](x, 20.0), TF.rotate(x, 20.0))
    assert torch.equal(STRONG_OPS["posterize"][0](x, 8.999), x)  # 8 bits: unchanged
    assert torch.equal(STRONG_OPS["posterize"][0](x, 4.0), x & 0xF0)
    line = torch.zeros(3, 32, 32, dtype=torch.uint8)
    line[:, :, 5] = 255
    moved = STRONG_OPS["translate_x"][0](line, 0.25)  # a quarter of 32 px to the right
    assert moved[0, 0].nonzero().flatten().tolist() == [13]


def test_cutout_greys_one_square_and_nothing_else():
    x = _images(1)[0]
    y = cutout(x, 0.25, (0.5, 0.5))
    changed = (y != x).any(dim=0)
    assert torch.equal(y[:, 12:20, 12:20], torch.full((3, 8, 8), 127, dtype=torch.uint8))
    assert not changed[:12].any() and not changed[20:].any() and not changed[:, :12].any()
    corner = cutout(x, 0.5, (0.0, 0.0))  # clipped at the border
    assert (corner[:, :8, :8] == 127).all() and torch.equal(corner[:, 16:, 16:], x[:, 16:, 16:])


def test_every_image_draws_its_own_operations_and_the_generator_fixes_them():
    same = _images(1).expand(16, -1, -1, -1).contiguous()  # one image 16 times
    out = rand_augment(same, torch.Generator().manual_seed(0))
    assert out.shape == same.shape and out.dtype == torch.uint8
    assert len({tuple(o.flatten().tolist()) for o in out}) > 8  # per-image, not per-batch, randomness
    again = rand_augment(same, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="uint8"):
        rand_augment(same.float(), torch.Generator())
