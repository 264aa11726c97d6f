"""Label generators that change the image: rotations, masks, noise and named corruptions.

Pure and seeded (every random choice comes from the step's generator), batched on float images
in [0, 1] (B x C x H x W), so each is testable with fixed parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import kernels as K


def rotate_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of every image (Gidaris et al. 2018): 4B images and labels 0..3 (k x 90°
    counter-clockwise), rotation-major, so the four copies of an image share the batch."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation needs square images, got {tuple(x.shape[-2:])}")
    rotated = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)])
    labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
    return rotated, labels


def region_masks(b: int, size: int, fraction: float, mode: str, generator: torch.Generator) -> torch.Tensor:
    """B x 1 x size x size bool masks (True = hidden) of a square region covering ``fraction`` of the side.

    ``central``: the centre square (Pathak et al. 2016's central region); ``random``: the same
    square at a random position of each image.
    """
    side = max(1, round(size * fraction))
    if mode == "central":
        tops = lefts = torch.full((b,), (size - side) // 2)
    elif mode == "random":
        tops = torch.randint(0, size - side + 1, (b,), generator=generator)
        lefts = torch.randint(0, size - side + 1, (b,), generator=generator)
    else:
        raise ValueError(f"mask mode must be central or random, not {mode!r}")
    ar = torch.arange(size)
    rows = (ar[None] >= tops[:, None]) & (ar[None] < tops[:, None] + side)  # B x size
    cols = (ar[None] >= lefts[:, None]) & (ar[None] < lefts[:, None] + side)
    return (rows[:, :, None] & cols[:, None, :])[:, None]


def random_token_mask(b: int, n: int, keep: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking (He et al. 2022, section 3): shuffle the n tokens by uniform
    noise and keep the first ``keep``. Returns (shuffle B x n, restore B x n), with
    ``restore = argsort(shuffle)``; kept tokens are ``shuffle[:, :keep]``."""
    shuffle = torch.argsort(torch.rand(b, n, generator=generator), dim=1)
    return shuffle, torch.argsort(shuffle, dim=1)


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise of ``std`` (in [0, 1] pixel units), clipped to [0, 1]."""
    return (x + torch.randn(x.shape, generator=generator).to(x.device, x.dtype) * std).clamp(0, 1)


def masking_noise(x: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Vincent et al. 2008's masking noise: a random ``fraction`` of the pixels (all channels) set to 0."""
    b, _, h, w = x.shape
    hidden = (torch.rand(b, 1, h, w, generator=generator) < fraction).to(x.device)
    return x.masked_fill(hidden, 0.0)


def _pixelate(x: torch.Tensor, factor: int = 4) -> torch.Tensor:
    small = F.interpolate(x, scale_factor=1 / factor, mode="area")
    return F.interpolate(small, size=x.shape[-2:], mode="nearest")


def _blur(x: torch.Tensor) -> torch.Tensor:
    kernel = max(3, x.shape[-1] // 8 * 2 + 1)
    return K.gaussian_blur(x, torch.full((len(x),), max(1.0, x.shape[-1] / 32)), kernel)


CORRUPTIONS = {
    "none": lambda x, g: x,
    "blur": lambda x, g: _blur(x),
    "noise": lambda x, g: gaussian_noise(x, 0.1, g),
    "grayscale": lambda x, g: K.grayscale(x),
    "solarize": lambda x, g: K.solarize(x, torch.ones(len(x), dtype=torch.bool, device=x.device)),
    "pixelate": lambda x, g: _pixelate(x),
}


def severity_range(severity: tuple[float, float] | list[float]) -> tuple[float, float]:
    """``severity`` as a (lo, hi) pair of floats, checked to lie within (0, 1] with lo <= hi."""
    lo, hi = float(severity[0]), float(severity[1])
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"severity must be a range within (0, 1], got {list(severity)}")
    return lo, hi


def corrupt_batch(x: torch.Tensor, names: tuple[str, ...], generator: torch.Generator,
                  severity: tuple[float, float] = (1.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image gets one corruption drawn uniformly from ``names``; the label is its index.

    ``severity`` (lo, hi): each image moves a fraction s ~ U(lo, hi) of the way from itself to its
    full corruption, x + s·(c(x) − x): s = 1 is the corruption as named, small s a faint trace of it
    (partial desaturation, noise of std 0.1·s, a blend towards the blurred or pixelated image).
    """
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption {unknown[0]!r} (known: {', '.join(CORRUPTIONS)})")
    lo, hi = severity_range(severity)
    labels = torch.randint(0, len(names), (len(x),), generator=generator)
    # a fixed severity draws nothing, so (1, 1) replays the same stream as the named corruptions alone
    strength = (lo + (hi - lo) * torch.rand(len(x), generator=generator)).to(x.device, x.dtype) if lo < hi else None
    out = x.clone()
    for k, name in enumerate(names):
        sel = torch.nonzero(labels == k).squeeze(1).to(x.device)
        if sel.numel():
            full = CORRUPTIONS[name](x[sel], generator).to(x.dtype)
            weight = lo if strength is None else strength[sel, None, None, None]
            out[sel] = full if lo == 1 else torch.lerp(x[sel], full, weight)
    return out, labels.to(x.device)
