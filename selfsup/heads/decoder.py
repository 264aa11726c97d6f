"""Convolutional decoders: a feature map (or a bottleneck vector) back to an image-sized output."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvDecoder(nn.Module):
    """Transposed-convolution upsampling, as in the context encoder's decoder (Pathak et al. 2016).

    Each stage doubles the side (4 x 4 kernel, stride 2, batch norm, ReLU) and halves the width
    (not below ``min_width``), from ``in_size`` until ``out_size`` is reached; a 3 x 3 convolution
    gives ``out_channels``. Sizes that are not a power-of-two multiple are resized at the end.
    Input B x in_channels x in_size x in_size, output B x out_channels x out_size x out_size.
    """

    def __init__(self, in_channels: int, out_channels: int, in_size: int, out_size: int, min_width: int = 32) -> None:
        super().__init__()
        stages = max(0, math.ceil(math.log2(max(out_size, 1) / max(in_size, 1))))
        layers: list[nn.Module] = []
        width = in_channels
        for _ in range(stages):
            nxt = max(min_width, width // 2)
            layers += [nn.ConvTranspose2d(width, nxt, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(nxt),
                       nn.ReLU(inplace=True)]
            width = nxt
        layers.append(nn.Conv2d(width, out_channels, 3, padding=1))
        self.layers = nn.Sequential(*layers)
        self.out_size = out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        if out.shape[-1] != self.out_size:
            out = F.interpolate(out, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)
        return out


class BottleneckDecoder(nn.Module):
    """A vector (B x D) to an image: a linear layer to a ``seed`` x ``seed`` map, then ``ConvDecoder``."""

    def __init__(self, in_dim: int, out_channels: int, out_size: int, width: int = 256, seed: int = 4) -> None:
        super().__init__()
        seed = min(seed, out_size)
        self.width, self.seed = width, seed
        self.project = nn.Sequential(nn.Linear(in_dim, width * seed * seed), nn.ReLU(inplace=True))
        self.decode = ConvDecoder(width, out_channels, seed, out_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(self.project(z).reshape(len(z), self.width, self.seed, self.seed))
