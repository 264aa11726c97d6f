"""Views of 3D volumes: a random cubic crop resized back (one batched trilinear resampling), axis
flips, intensity shift and scale, and Gaussian noise: the 3D counterparts of SimCLR's crop, flip and
colour distortion used for medical volumes (Taleb et al. 2020, "3D Self-Supervised Methods for Medical
Imaging", https://arxiv.org/abs/2006.03829; Chaitanya et al. 2020).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F

from ..utils.errors import ConfigError
from ..utils.registry import Registry
from .pipeline import Normalization


@dataclass(frozen=True)
class VolumeViewSettings:
    """One view: crop side (fraction of the volume's), flips, intensity jitter and noise."""

    crop_scale: tuple[float, float] = (0.5, 1.0)  # side of the cubic crop, as a fraction of the volume's
    flip_p: float = 0.5  # per axis
    jitter_p: float = 0.8
    brightness: float = 0.2  # added, uniform in ±brightness (intensities are in [0, 1])
    contrast: float = 0.3  # scaled about the volume's mean by a factor uniform in 1 ± contrast
    noise_std: float = 0.05  # Gaussian noise of a standard deviation uniform in [0, noise_std]

    def validate(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        for name in ("flip_p", "jitter_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be a probability, got {getattr(self, name)}")


VOLUME_PRESETS: Registry[tuple[VolumeViewSettings, ...]] = Registry("volume view preset")
VOLUME_PRESETS.register("volume-simclr")((VolumeViewSettings(),) * 2)
# Geometric pretext tasks (Rubik's cube, 3D rotation): their labels are rotations, which flips would
# confuse (a 180° turn is two flips), so a milder crop, no flips, light intensity jitter.
VOLUME_PRESETS.register("volume-pretext")((VolumeViewSettings(crop_scale=(0.75, 1.0), flip_p=0.0, brightness=0.1,
                                                              contrast=0.1, noise_std=0.02),))
VOLUME_PRESETS.register("volume-light")((VolumeViewSettings(crop_scale=(0.75, 1.0), brightness=0.1, contrast=0.1,
                                                            noise_std=0.02),))


@dataclass
class VolumeViews:
    """Makes views of a uint8 batch of volumes (B x 1 x S x S x S), each with its own random parameters."""

    settings: Sequence[VolumeViewSettings]
    size: int
    normalization: Normalization
    n_local = 0

    @classmethod
    def preset(cls, name: str, size: int, normalization: Normalization, **overrides) -> "VolumeViews":
        # image presets name the volume counterpart of what they do
        name = {"simclr-cifar": "volume-simclr", "pretext": "volume-pretext", "small-gray": "volume-light"}.get(name, name)
        try:
            settings = tuple(replace(s, **overrides) for s in VOLUME_PRESETS.get(name))
        except TypeError as exc:
            raise ConfigError(f"view_args: {exc}") from None
        for s in settings:
            s.validate()
        return cls(settings, size, normalization)

    @property
    def n_global(self) -> int:
        return len(self.settings)

    def one(self, volumes: torch.Tensor, s: VolumeViewSettings, generator: torch.Generator) -> torch.Tensor:
        x = volumes.float() / 255.0 if volumes.dtype == torch.uint8 else volumes.float()
        b, dev = len(x), x.device
        side = torch.rand(b, generator=generator) * (s.crop_scale[1] - s.crop_scale[0]) + s.crop_scale[0]
        shift = (torch.rand(b, 3, generator=generator) * 2 - 1) * (1 - side[:, None])  # the crop stays inside
        flips = torch.where(torch.rand(b, 3, generator=generator) < s.flip_p, -1.0, 1.0)
        jitter_on = (torch.rand(b, generator=generator) < s.jitter_p).float()
        shift_by = (torch.rand(b, generator=generator) * 2 - 1) * s.brightness * jitter_on
        scale_by = 1 + (torch.rand(b, generator=generator) * 2 - 1) * s.contrast * jitter_on
        sigma = torch.rand(b, generator=generator) * s.noise_std
        noise = torch.randn(b, *x.shape[1:2], self.size, self.size, self.size, generator=generator)
        theta = torch.zeros(b, 3, 4)
        theta[:, :, :3] = torch.diag_embed(side[:, None] * flips)
        theta[:, :, 3] = shift
        grid = F.affine_grid(theta.to(dev), [b, x.shape[1], self.size, self.size, self.size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        mean = x.mean((1, 2, 3, 4), keepdim=True)
        x = (x - mean) * scale_by.to(dev)[:, None, None, None, None] + mean + shift_by.to(dev)[:, None, None, None, None]
        x = (x + sigma.to(dev)[:, None, None, None, None] * noise.to(dev)).clamp(0, 1)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.normalization.tensors(x.device)
        return (x - mean[None, :, None, None, None]) / std[None, :, None, None, None]

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.normalization.tensors(x.device)
        return x * std[None, :, None, None, None] + mean[None, :, None, None, None]

    def __call__(self, volumes: torch.Tensor, generator: torch.Generator, n: int | None = None) -> list[torch.Tensor]:
        n = n or len(self.settings)
        return [self.one(volumes, self.settings[i % len(self.settings)], generator) for i in range(n)]
