"""Colorization: predict the colours (ab of Lab, quantized) of an image from its lightness L."""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import Backbone
from ..backbones.stems import first_conv
from ..heads import ConvDecoder
from ..losses import rebalanced_colour_loss
from ..views import Normalization, Views
from ..views.kernels import LUMA
from ..views.lab import ab_bins, lab_to_rgb, rebalancing_weights, rgb_to_lab, soft_encode
from .base import Method, Panel, Recipe, register_method


@register_method
class Colorization(Method):
    """Colorful Image Colorization.

    - [0] Zhang, Isola & Efros, 2016, https://arxiv.org/abs/1603.08511

    The encoder sees only the lightness L of a view (one channel); a decoder from its last feature
    map predicts, at 1/4 of the view's side, a distribution Ẑ over the Q in-gamut ab bins (grid 10).
    Targets are soft-encoded (5 nearest bins, Gaussian σ = 5) and the multinomial cross-entropy is
    rebalanced by w ∝ ((1 - λ) p̃ + λ/Q)^-1, λ = 0.5 (equations 2-4), p̃ the smoothed ab histogram
    of the images seen so far (a buffer, so it resumes). Adam in the paper; AdamW here, lr 3e-4.

    Transfer: the saved encoder takes RGB. L/100 is close to the gamma-encoded luma
    Y' = 0.299 R' + 0.587 G' + 0.114 B', so the first convolution's weights become
    w_c = w_L · luma_c · σ_c / σ_L for channel c (σ_c the RGB normalization's std): an RGB image
    then gives the encoder (nearly) the lightness image it was trained on, normalized the same way.
    """

    name = "colorization"
    family = "pretext tasks"
    paper = "Zhang et al. 2016, Colorful Image Colorization"
    minimum_images = 345_600
    recipe = Recipe(optimizer="adamw", base_lr=3e-4, weight_decay=1e-3, warmup_fraction=0.0, views="pretext")
    input_channels = 1

    def __init__(self, backbone: Backbone, views: Views, rebalance: float = 0.5, output_fraction: float = 0.25) -> None:
        super().__init__(backbone, views)
        if len(views.normalization.mean) != 3:
            raise ValueError("colorization needs colour (3-channel) images to take the colours from")
        if backbone.spec.in_channels != 1:
            raise ValueError("colorization's encoder takes the 1-channel lightness")
        self.rebalance = rebalance
        self.register_buffer("bins", ab_bins(10), persistent=False)
        self.register_buffer("ab_counts", torch.zeros(len(self.bins)))
        mean, std = views.normalization.mean, views.normalization.std
        # L/100 is normalized like the luma of the RGB normalization, so the RGB adaptation is exact for Y' = L/100.
        self.l_mean = sum(w * m for w, m in zip(LUMA, mean))
        self.l_std = sum(w * s for w, s in zip(LUMA, std))
        channels, side = backbone.feature_map_shape(views.size)
        self.out_size = max(1, round(views.size * output_fraction))
        self.decoder = ConvDecoder(channels, len(self.bins), side, self.out_size)

    @property
    def input_normalization(self) -> Normalization:
        return Normalization([self.l_mean], [self.l_std])

    def lightness_and_targets(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        (view,) = self.views(images, generator, n=1)
        lab = rgb_to_lab(self.views.denormalize(view).clamp(0, 1).float())
        lightness = (lab[:, :1] / 100 - self.l_mean) / self.l_std  # B x 1 x H x W, the encoder's input
        ab = F.adaptive_avg_pool2d(lab[:, 1:], self.out_size)  # targets at the output resolution
        return lightness, ab

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        lightness, ab = self.lightness_and_targets(images, generator)
        target = soft_encode(ab, self.bins)  # B x Q x h x w
        with torch.no_grad():
            self.ab_counts += torch.bincount(target.argmax(1).flatten(), minlength=len(self.bins)).to(self.ab_counts)
            weights = rebalancing_weights(self.ab_counts, self.bins, self.rebalance)
        features = self.backbone.feature_map(lightness)
        logits = self.decoder(features)
        loss = rebalanced_colour_loss(logits, target, weights)
        accuracy = (logits.argmax(1) == target.argmax(1)).float().mean()  # the bin of the colour, per pixel
        return {"loss": loss, "embedding": features.mean((2, 3)), "pretext_accuracy": accuracy}

    def export_encoder(self) -> tuple[Backbone, Normalization]:
        """A 3-channel copy of the encoder: w_c = w_L · luma_c · σ_c / σ_L (see the class docstring)."""
        rgb = copy.deepcopy(self.backbone).cpu()
        parent, attr, conv = first_conv(rgb.model)
        std = self.views.normalization.std
        new = nn.Conv2d(3, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
        with torch.no_grad():
            scale = torch.tensor([LUMA[c] * std[c] / self.l_std for c in range(3)])
            new.weight.copy_(conv.weight[:, :1] * scale[None, :, None, None])
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        setattr(parent, attr, new)
        rgb.spec = replace(rgb.spec, in_channels=3)
        return rgb, self.views.normalization

    @torch.no_grad()
    def illustrate(self, images: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        lightness, ab = self.lightness_and_targets(images[:8], generator)
        lum = (lightness * self.l_std + self.l_mean) * 100  # L
        probs = self.decoder(self.backbone.feature_map(lightness)).softmax(1)
        predicted = torch.einsum("bqhw,qc->bchw", probs, self.bins)  # the mean colour of Ẑ
        size = lum.shape[-2:]
        up = lambda x: F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # noqa: E731
        return [Panel("lightness L (the input)", (lum / 100).clamp(0, 1)),
                Panel("true colours", lab_to_rgb(torch.cat([lum, up(ab)], 1))),
                Panel("predicted colours (mean of Ẑ)", lab_to_rgb(torch.cat([lum, up(predicted)], 1)))]
