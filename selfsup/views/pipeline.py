"""View pipelines: typed view settings, the presets of the papers, and the batched pipeline."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from ..utils.errors import ConfigError
from ..utils.registry import Registry
from . import kernels as K
from . import params as P


@dataclass(frozen=True)
class ViewSettings:
    """One view's augmentation, applied in SimCLR's order: crop, flip, jitter, grey, blur, solarize."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_fraction: float = 0.1  # kernel size as a fraction of the image side, made odd
    solarize_p: float = 0.0
    noise_std: float = 0.0  # additive Gaussian noise of σ ~ U(0, noise_std) per view, last (0: none)
    size_fraction: float = 1.0  # output side / image side: below 1 for multi-crop's small local crops

    @property
    def is_local(self) -> bool:
        return self.size_fraction < 1.0

    def validate(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be a probability, got {getattr(self, name)}")
        if not 0 < self.size_fraction <= 1:
            raise ConfigError(f"size_fraction must be in (0, 1], got {self.size_fraction}")
        if not 0 <= self.noise_std <= 1:
            raise ConfigError(f"noise_std must be in [0, 1] (of the pixel range), got {self.noise_std}")
        if not 0 <= self.hue <= 0.5:
            raise ConfigError(f"hue must be in [0, 0.5], got {self.hue}")


def jitter(strength: float) -> dict[str, float]:
    """SimCLR's colour distortion of strength s: brightness, contrast, saturation 0.8s, hue 0.2s."""
    return {"brightness": 0.8 * strength, "contrast": 0.8 * strength, "saturation": 0.8 * strength,
            "hue": 0.2 * strength}


VIEW_PRESETS: Registry[tuple[ViewSettings, ...]] = Registry("view preset")
# SimCLR (Chen et al. 2020, appendix B.9): CIFAR uses jitter strength 0.5 and no blur.
VIEW_PRESETS.register("simclr-cifar")((ViewSettings(**jitter(0.5)),) * 2)
# SimCLR ImageNet: strength 1.0 and Gaussian blur with p 0.5, sigma in [0.1, 2], kernel 10%.
VIEW_PRESETS.register("simclr-imagenet")((ViewSettings(**jitter(1.0), blur_p=0.5),) * 2)
# MoCo v2 (Chen et al. 2020, used by SimSiam): crop 0.2-1, jitter 0.4/0.4/0.4/0.1, blur p 0.5.
VIEW_PRESETS.register("mocov2")((ViewSettings(crop_scale=(0.2, 1.0), blur_p=0.5),) * 2)
# BYOL (Grill et al. 2020, table 6): asymmetric blur (1.0 / 0.1) and solarize (0 / 0.2).
_byol = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
VIEW_PRESETS.register("byol")((ViewSettings(**_byol, blur_p=1.0), ViewSettings(**_byol, blur_p=0.1, solarize_p=0.2)))
# Multi-crop (SwAV, Caron et al. 2020, section 3.2): 2 global crops of scale 0.14-1 and 6 local
# crops of scale 0.05-0.14 at 96/224 of the side; SimCLR colour distortion (strength 1), blur p 0.5.
LOCAL_SIZE = 96 / 224
_swav_global = ViewSettings(crop_scale=(0.14, 1.0), **jitter(1.0), blur_p=0.5)
VIEW_PRESETS.register("swav")((_swav_global,) * 2 + (replace(_swav_global, crop_scale=(0.05, 0.14),
                                                              size_fraction=LOCAL_SIZE),) * 6)
# DINO (Caron et al. 2021, appendix; its ResNet-50 setting of the crop scales): BYOL's asymmetric
# global crops (blur 1.0 / 0.1 + solarize 0.2), 8 local crops with blur 0.5.
_dino = dict(_byol, crop_scale=(0.14, 1.0))
VIEW_PRESETS.register("dino")((ViewSettings(**_dino, blur_p=1.0), ViewSettings(**_dino, blur_p=0.1, solarize_p=0.2))
                              + (ViewSettings(**dict(_dino, crop_scale=(0.05, 0.14)), blur_p=0.5,
                                              size_fraction=LOCAL_SIZE),) * 8)
# Crop and flip only (DeepCluster, Caron et al. 2018, section 4: random resized crops and flips).
VIEW_PRESETS.register("crop-flip")((ViewSettings(jitter_p=0.0, grayscale_p=0.0),))
# The classic pretext tasks (rotation, patches, colorization, autoencoders): crops and flips, no
# colour change, so colour stays a signal (and a target) rather than noise; RotNet's CIFAR
# recipe uses crops and flips only (Gidaris et al. 2018).
VIEW_PRESETS.register("pretext")((ViewSettings(crop_scale=(0.35, 1.0), jitter_p=0.0, grayscale_p=0.0),))
# MAE (He et al. 2022, appendix A.1): random resized crop of scale 0.2-1 and flip only.
VIEW_PRESETS.register("mae")((ViewSettings(crop_scale=(0.2, 1.0), jitter_p=0.0, grayscale_p=0.0),))
# GANs (DCGAN, BiGAN): the whole image, horizontal flips only (the paper scales pixels and nothing more;
# flips are the usual GAN augmentation, e.g. Karras et al. 2018); the generator learns the images as they are.
VIEW_PRESETS.register("gan")((ViewSettings(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_p=0.0,
                                           grayscale_p=0.0),))
# Small grayscale images (digits): gentler crops, no colour to jitter beyond brightness/contrast.
VIEW_PRESETS.register("small-gray")((ViewSettings(crop_scale=(0.4, 1.0), crop_ratio=(0.8, 1.25), flip_p=0.0,
                                                  **jitter(0.5), grayscale_p=0.0),) * 2)


@dataclass
class Normalization:
    mean: list[float]
    std: list[float]

    def tensors(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor(self.mean, device=device, dtype=torch.float32),
                torch.tensor(self.std, device=device, dtype=torch.float32))


def estimate_normalization(images: torch.Tensor) -> Normalization:
    """Per-channel mean and std of uint8 N x C x H x W images or N x C x T x H x W clips (a sample is enough)."""
    x = images.float() / 255.0
    dims = (0, *range(2, x.ndim))
    return Normalization(mean=x.mean(dims).tolist(), std=x.std(dims).clamp(min=1e-3).tolist())


@dataclass
class Views:
    """Makes ``len(settings)`` views of a uint8 batch, each image with its own random parameters.

    Usable on its own in a training loop::

        views = Views.preset("simclr-cifar", size=32, normalization=Normalization([0.5]*3, [0.25]*3))
        v1, v2 = views(uint8_batch, torch.Generator().manual_seed(step))
    """

    settings: Sequence[ViewSettings]
    size: int
    normalization: Normalization

    @classmethod
    def preset(cls, name: str, size: int, normalization: Normalization, local_crops: int | None = None,
               local_scale: tuple[float, float] | None = None, local_size: float | None = None,
               **overrides) -> "Views":
        """A named preset; ``overrides`` change every view, ``local_*`` set multi-crop's local crops.

        ``local_crops`` small crops of ``local_scale`` at ``local_size`` x the side are added to
        (or replace those of) the preset's global views; 0 removes them.
        """
        settings = tuple(replace(s, **overrides) for s in VIEW_PRESETS.get(name))
        if local_crops is not None or local_scale is not None or local_size is not None:
            globals_ = tuple(s for s in settings if not s.is_local)
            template = next((s for s in settings if s.is_local), replace(globals_[0], crop_scale=(0.05, 0.14),
                                                                          size_fraction=LOCAL_SIZE))
            template = replace(template, crop_scale=tuple(local_scale) if local_scale else template.crop_scale,
                               size_fraction=local_size or template.size_fraction)
            count = local_crops if local_crops is not None else len(settings) - len(globals_)
            if count < 0:
                raise ConfigError(f"local_crops must be >= 0, got {count}")
            settings = globals_ + (template,) * count
        for s in settings:
            s.validate()
        return cls(settings, size, normalization)

    @property
    def n_global(self) -> int:
        return sum(not s.is_local for s in self.settings)

    @property
    def n_local(self) -> int:
        return sum(s.is_local for s in self.settings)

    def side(self, s: ViewSettings) -> int:
        """The output side of a view of settings ``s`` (local crops are smaller)."""
        return max(1, round(self.size * s.size_fraction))

    def one(self, images: torch.Tensor, s: ViewSettings, generator: torch.Generator) -> torch.Tensor:
        """One view of a uint8 (or [0, 1] float) batch: float, normalized, size x size."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        params = self.sample(x.shape[0], x.shape[-2], x.shape[-1], s, generator, x.device)
        if s.noise_std > 0:  # drawn only when asked, so the presets' random streams are unchanged
            side = self.side(s)
            sigma = torch.rand(x.shape[0], 1, 1, 1, generator=generator) * s.noise_std
            params["noise"] = (sigma * torch.randn(x.shape[0], x.shape[1], side, side, generator=generator)).to(x.device)
        return self.apply(x, params, s)

    @staticmethod
    def sample(b: int, h: int, w: int, s: ViewSettings, generator: torch.Generator,
               device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The random parameters of ``b`` views (one row each), drawn in a fixed order from ``generator``."""
        params = {"boxes": P.crop_boxes(b, h, w, s.crop_scale, s.crop_ratio, generator),
                  "flips": P.bernoulli(b, s.flip_p, generator),
                  "factors": P.jitter_factors(b, s.brightness, s.contrast, s.saturation, s.hue, generator),
                  "orders": P.random_orders(b, generator),
                  "jitter_on": P.bernoulli(b, s.jitter_p, generator),
                  "grey_on": P.bernoulli(b, s.grayscale_p, generator),
                  "sigma": torch.rand(b, generator=generator) * (s.blur_sigma[1] - s.blur_sigma[0]) + s.blur_sigma[0],
                  "blur_on": P.bernoulli(b, s.blur_p, generator),
                  "solar_on": P.bernoulli(b, s.solarize_p, generator)}
        return {k: v.to(device) for k, v in params.items()}

    def apply(self, x: torch.Tensor, p: dict[str, torch.Tensor], s: ViewSettings) -> torch.Tensor:
        """The views of [0, 1] images B x C x H x W with parameters ``p`` (row i for image i), normalized."""
        c = x.shape[1]
        x = K.resized_crop(x, p["boxes"], self.side(s))
        x = K.hflip(x, p["flips"])
        if s.jitter_p > 0:
            x = K.color_jitter(x, p["factors"], p["orders"], p["jitter_on"])
        if s.grayscale_p > 0 and c == 3:
            x = torch.where(p["grey_on"][:, None, None, None], K.grayscale(x), x)
        if s.blur_p > 0:
            kernel = max(3, int(s.blur_kernel_fraction * x.shape[-1]) // 2 * 2 + 1)
            x = K.gaussian_blur(x, p["sigma"], kernel, p["blur_on"])
        if s.solarize_p > 0:
            x = K.solarize(x, p["solar_on"])
        if "noise" in p:  # sensor noise, as on EM and other scans: a level the encoder should not key on
            x = (x + p["noise"]).clamp(0, 1)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the network's input (per-channel mean and std)."""
        mean, std = self.normalization.tensors(x.device)
        return K.normalize(x, mean, std)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input -> [0, 1] images (pretext tasks that change pixels work there)."""
        mean, std = self.normalization.tensors(x.device)
        return x * std[None, :, None, None] + mean[None, :, None, None]

    def __call__(self, images: torch.Tensor, generator: torch.Generator, n: int | None = None) -> list[torch.Tensor]:
        """``n`` views (cycling through the settings), or all of them, global crops first."""
        n = n or len(self.settings)
        return [self.one(images, self.settings[i % len(self.settings)], generator) for i in range(n)]


def eval_transform(images: torch.Tensor, size: int, normalization: Normalization) -> torch.Tensor:
    """Unaugmented evaluation view: centre crop to size (images are already at load size), normalize.
    Clips (B x C x T x H x W) are cropped and normalized frame by frame alike."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    h, w = x.shape[-2:]
    if h != size or w != size:
        top, left = (h - size) // 2, (w - size) // 2
        x = x[..., top:top + size, left:left + size]
    mean, std = normalization.tensors(x.device)
    if x.ndim == 5:  # clips B x C x T x H x W: per channel over every frame
        return (x - mean[None, :, None, None, None]) / std[None, :, None, None, None]
    return K.normalize(x, mean, std)
