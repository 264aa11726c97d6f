"""Random parameters for the batched kernels, drawn per image from a seeded generator.

Drawn on the CPU from a ``torch.Generator`` seeded per step, then moved to the device, so a
run's augmentations are identical on any device and a resumed run redraws exactly the same.
"""
from __future__ import annotations

import math

import torch


def _uniform(n: int, low: float, high: float, generator: torch.Generator, shape: tuple = ()) -> torch.Tensor:
    return torch.rand((n, *shape), generator=generator, dtype=torch.float64) * (high - low) + low


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
               generator: torch.Generator, attempts: int = 10) -> torch.Tensor:
    """RandomResizedCrop boxes (top, left, h, w), n x 4 int64, as torchvision samples them.

    Up to ten (area, log-aspect) draws per image; the first that fits wins, otherwise the
    central crop clamped to the aspect-ratio range.
    """
    area = height * width
    target = area * _uniform(n, scale[0], scale[1], generator, (attempts,))
    log_ratio = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator, (attempts,))
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.argmax(fits.long(), dim=1)  # index of the first fitting attempt
    any_fit = fits.any(1)
    rows = torch.arange(n)
    h, w = h[rows, first], w[rows, first]
    # Fallback: whole image, clamped to the ratio range, centred.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = height, int(round(height * max(ratio)))
    else:
        fw, fh = width, height
    h = torch.where(any_fit, h, torch.full_like(h, fh))
    w = torch.where(any_fit, w, torch.full_like(w, fw))
    u_top, u_left = torch.rand(n, generator=generator, dtype=torch.float64), torch.rand(n, generator=generator, dtype=torch.float64)
    top = torch.where(any_fit, (u_top * (height - h + 1)).floor().long(), (height - h) // 2)
    left = torch.where(any_fit, (u_left * (width - w + 1)).floor().long(), (width - w) // 2)
    return torch.stack((top, left, h, w), 1)


def bernoulli(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def jitter_factors(n: int, brightness: float, contrast: float, saturation: float, hue: float,
                   generator: torch.Generator) -> torch.Tensor:
    """n x 4 factors: brightness, contrast, saturation in [max(0, 1-s), 1+s]; hue in [-h, h]."""
    cols = [_uniform(n, max(0.0, 1 - s), 1 + s, generator) for s in (brightness, contrast, saturation)]
    cols.append(_uniform(n, -hue, hue, generator))
    return torch.stack(cols, 1).float()


def random_orders(n: int, generator: torch.Generator, k: int = 4) -> torch.Tensor:
    """n random permutations of 0..k-1 (ColorJitter's per-call operation order)."""
    return torch.argsort(torch.rand(n, k, generator=generator), dim=1)
