"""FixMatch's strong augmentation: RandAugment with a random magnitude per operation, then Cutout.

- [0] Sohn et al., 2020, FixMatch, https://arxiv.org/abs/2001.07685 (section 2.3 and the
  supplement's table of RandAugment operations and ranges)
- [1] Cubuk, Zoph, Shlens, Le, 2020, RandAugment, https://arxiv.org/abs/1909.13719
- [2] DeVries & Taylor, 2017, Cutout, https://arxiv.org/abs/1708.04552

Each image gets ``ops`` operations drawn uniformly (with replacement) from FixMatch's 14, each with
its own magnitude drawn uniformly from the operation's range (FixMatch's "random magnitude" variant
of RandAugment, instead of one global magnitude), then a grey Cutout square whose side is a uniform
fraction in [0, ``cutout``] of the image side. The pixel operations are torchvision's
``transforms.v2.functional`` ones on uint8 tensors; enhancement levels v in [0.05, 0.95] map to
factors 0.1 + 1.9 v as in FixMatch's own code (so v = 0.5 is close to the identity).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torchvision.transforms.v2 import functional as TF

Op = Callable[[torch.Tensor, float], torch.Tensor]  # (uint8 C x H x W image, magnitude in the op's range)


def _enhance(adjust: Callable[[torch.Tensor, float], torch.Tensor]) -> Op:
    return lambda x, v: adjust(x, 0.1 + 1.9 * v)


def _shear(x: torch.Tensor, r: float, axis: int) -> torch.Tensor:
    degrees = math.degrees(math.atan(r))  # torchvision takes the shear as an angle
    return TF.affine(x, angle=0.0, translate=[0.0, 0.0], scale=1.0, shear=[degrees, 0.0] if axis == 0 else [0.0, degrees])


def _translate(x: torch.Tensor, fraction: float, axis: int) -> torch.Tensor:
    shift = fraction * x.shape[-1 if axis == 0 else -2]
    return TF.affine(x, angle=0.0, translate=[shift, 0.0] if axis == 0 else [0.0, shift], scale=1.0, shear=[0.0, 0.0])


# name: (operation, (low, high) range of its magnitude), after FixMatch's supplement.
STRONG_OPS: dict[str, tuple[Op, tuple[float, float]]] = {
    "identity": (lambda x, v: x, (0.0, 0.0)),
    "autocontrast": (lambda x, v: TF.autocontrast(x), (0.0, 0.0)),
    "equalize": (lambda x, v: TF.equalize(x), (0.0, 0.0)),
    "rotate": (lambda x, v: TF.rotate(x, v), (-30.0, 30.0)),
    "solarize": (lambda x, v: TF.solarize(x, threshold=v * 255.0), (0.0, 1.0)),
    "color": (_enhance(TF.adjust_saturation), (0.05, 0.95)),
    "contrast": (_enhance(TF.adjust_contrast), (0.05, 0.95)),
    "brightness": (_enhance(TF.adjust_brightness), (0.05, 0.95)),
    "sharpness": (_enhance(TF.adjust_sharpness), (0.05, 0.95)),
    "posterize": (lambda x, v: TF.posterize(x, int(v)), (4.0, 8.999)),  # 4 to 8 bits, uniformly
    "shear_x": (lambda x, v: _shear(x, v, 0), (-0.3, 0.3)),
    "shear_y": (lambda x, v: _shear(x, v, 1), (-0.3, 0.3)),
    "translate_x": (lambda x, v: _translate(x, v, 0), (-0.3, 0.3)),
    "translate_y": (lambda x, v: _translate(x, v, 1), (-0.3, 0.3)),
}


def cutout(image: torch.Tensor, side_fraction: float, centre: tuple[float, float], fill: int = 127) -> torch.Tensor:
    """A grey square of side ``side_fraction`` x the image side centred at ``centre`` (fractions of
    height and width), clipped at the borders."""
    h, w = image.shape[-2:]
    side = int(round(side_fraction * min(h, w)))
    if side == 0:
        return image
    top = min(max(int(centre[0] * h) - side // 2, 0), h)
    left = min(max(int(centre[1] * w) - side // 2, 0), w)
    out = image.clone()
    out[..., top:top + side, left:left + side] = fill
    return out


def rand_augment(images: torch.Tensor, generator: torch.Generator, ops: int = 2,
                 cutout_fraction: float = 0.5) -> torch.Tensor:
    """FixMatch's strong view of a uint8 batch (B x C x H x W), every image with its own operations,
    magnitudes and Cutout, all drawn from ``generator``."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a uint8 B x C x H x W batch, got {images.dtype} {tuple(images.shape)}")
    names = list(STRONG_OPS)
    choices = torch.randint(len(names), (len(images), ops), generator=generator)
    levels = torch.rand(len(images), ops, generator=generator)
    cut = torch.rand(len(images), 3, generator=generator)
    out = []
    for b, image in enumerate(images):
        for k in range(ops):
            op, (low, high) = STRONG_OPS[names[int(choices[b, k])]]
            image = op(image, low + (high - low) * float(levels[b, k]))
        out.append(cutout(image, cutout_fraction * float(cut[b, 0]), (float(cut[b, 1]), float(cut[b, 2]))))
    return torch.stack(out)


__all__ = ["STRONG_OPS", "cutout", "rand_augment"]
