"""DCGAN's discriminator as a backbone: what a GAN's discriminator learns is the representation.

- [0] Radford, Metz & Chintala, 2016, Unsupervised Representation Learning with Deep Convolutional
  Generative Adversarial Networks, https://arxiv.org/abs/1511.06434

The paper's guidelines (section 3): strided convolutions instead of pooling, batch norm in every
layer but the first, LeakyReLU (slope 0.2), no fully connected hidden layers. Here 4 x 4 convolutions
of stride 2 halve the image until it is about 4 x 4 (32 px: 64-128-256 channels, 16 -> 8 -> 4);
a GAN method puts its real/fake logit on that last map. The feature is the paper's (section 5.1):
every layer's map max-pooled to a 4 x 4 grid, flattened and concatenated (7,168 dimensions at 32 px).
``dcgan-nonorm`` drops batch norm, for the gradient penalties (a penalty per example is not defined
when batch norm mixes the examples).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .registry import OWN_BACKBONES


def downsampling_layers(image_size: int) -> int:
    """Stride-2 layers from ``image_size`` to about 4 x 4 (at least one)."""
    return max(1, round(math.log2(max(image_size, 8) / 4)))


def dcgan_init(module: nn.Module) -> None:
    """The paper's initialization (section 4): every weight from N(0, 0.02); batch norm's scale from
    N(1, 0.02) and shift 0 (its reference code). PyTorch's default, scaled to each layer's fan-in, starts
    the discriminator far ahead of the generator: on CIFAR-10 it rejected 98% of the samples within
    100 steps."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)


class DCGANDiscriminator(nn.Module):
    """The convolutional trunk of DCGAN's discriminator; ``forward`` returns the paper's pooled feature."""

    def __init__(self, in_channels: int, image_size: int, width: int = 64, batch_norm: bool = True) -> None:
        super().__init__()
        layers, channels = [], in_channels
        for i in range(downsampling_layers(image_size)):
            out = width * 2 ** i
            norm = batch_norm and i > 0  # none on the first layer, as in the paper
            layers.append(nn.Sequential(nn.Conv2d(channels, out, 4, 2, 1, bias=not norm),
                                        nn.BatchNorm2d(out) if norm else nn.Identity(), nn.LeakyReLU(0.2)))
            channels = out
        self.layers = nn.ModuleList(layers)
        self.grid = nn.AdaptiveMaxPool2d(4)
        dcgan_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled, x = [], images
        for layer in self.layers:
            x = layer(x)
            pooled.append(self.grid(x).flatten(1))
        return torch.cat(pooled, 1)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last map (about 4 x 4), where a GAN puts its real/fake logit: ``Backbone.feature_map``."""
        x = images
        for layer in self.layers:
            x = layer(x)
        return x


@OWN_BACKBONES.register("dcgan")
def dcgan(in_channels: int, image_size: int = 32) -> nn.Module:
    """DCGAN's discriminator (batch norm after every convolution but the first)."""
    return DCGANDiscriminator(in_channels, image_size)


@OWN_BACKBONES.register("dcgan-nonorm")
def dcgan_nonorm(in_channels: int, image_size: int = 32) -> nn.Module:
    """DCGAN's discriminator without batch norm (for R1 penalties and spectral normalization)."""
    return DCGANDiscriminator(in_channels, image_size, batch_norm=False)
