"""A U-Net decoder over a pretrained encoder's stages: the segmentation model of dense transfer.

- [0] Ronneberger, Fischer & Brox, 2015, U-Net: Convolutional Networks for Biomedical Image
  Segmentation, https://arxiv.org/abs/1505.04597 (the expanding path: upsample, concatenate the
  contracting path's map of that resolution, two 3 x 3 convolutions)

The encoder is the backbone as pretrained, its weights untouched and keyed as saved. Its stages are
read by running the model's top-level modules in order (a torchvision or timm ResNet, selfsup's small
convnet and any ``nn.Sequential`` are such chains) and keeping, at every resolution, the last map
before global pooling: ResNet's stem, layer1 ... layer4; the small convnet's four stages. That needs
no hook, so the model traces and exports like any module. A decoder of our own rather than
``segmentation_models_pytorch``: its encoders are its own classes, with no small-image stem and no
small convnet, while this one reads whatever selfsup pretrained.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones.registry import Backbone
from ..utils.errors import ConfigError

GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _global_pool(module: nn.Module) -> bool:
    """torch's adaptive pooling or timm's ``SelectAdaptivePool2d``: where the stages end."""
    return isinstance(module, GLOBAL_POOLS) or type(module).__name__ == "SelectAdaptivePool2d"


class EncoderStages(nn.Module):
    """The encoder's maps at each resolution, shallowest first, from its top-level modules run in order."""

    def __init__(self, backbone: Backbone, probe_size: int = 64) -> None:
        super().__init__()
        self.backbone = backbone  # kept whole: its state dict is the encoder's, keyed as pretrained
        children = list(backbone.model.children())
        pooled = next((i for i, m in enumerate(children) if _global_pool(m)), None)
        if pooled is None:
            raise ConfigError(f"segmentation needs a convolutional encoder made of stages; {backbone.spec.name} "
                              "has no global pooling layer to stop before")
        self.depth = pooled
        with torch.no_grad():
            was = backbone.training
            backbone.eval()
            x = torch.zeros(1, backbone.spec.in_channels, probe_size, probe_size)
            sides = []
            for module in children[:pooled]:
                x = module(x)
                if x.ndim != 4:
                    raise ConfigError(f"segmentation needs a convolutional encoder; {backbone.spec.name}'s "
                                      f"{type(module).__name__} gives {x.ndim}-d output")
                sides.append(x.shape[-1])
            backbone.train(was)
        # At each resolution the last module's output (a stage's end, before the next downsampling).
        self.taps = [i for i in range(pooled) if i == pooled - 1 or sides[i + 1] != sides[i]]
        self.channels = self._channels(children, probe_size)

    def _channels(self, children: list[nn.Module], probe_size: int) -> list[int]:
        with torch.no_grad():
            was = self.backbone.training
            self.backbone.eval()
            maps = self(torch.zeros(1, self.backbone.spec.in_channels, probe_size, probe_size))
            self.backbone.train(was)
        return [int(m.shape[1]) for m in maps]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        x = images
        for i, module in enumerate(self.backbone.model.children()):
            if i == self.depth:
                break
            x = module(x)
            if i in self.taps:
                maps.append(x)
        return maps


class UpBlock(nn.Module):
    """Upsample to the skip's size, concatenate it, two 3 x 3 convolutions with batch norm and ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1))


class UNet(nn.Module):
    """Encoder stages -> U-Net decoder -> per-pixel logits (B x K x H x W at the input's size).

    Each decoder level has the width of the skip it joins (U-Net's symmetric widths), at least
    ``min_width``; a last 1 x 1 convolution gives the classes."""

    def __init__(self, backbone: Backbone, num_classes: int, min_width: int = 16) -> None:
        super().__init__()
        self.encoder = EncoderStages(backbone)
        widths = self.encoder.channels
        blocks, width = [], widths[-1]
        for skip in reversed(widths[:-1]):
            out = max(min_width, skip)
            blocks.append(UpBlock(width, skip, out))
            width = out
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.encoder(images)
        x = maps[-1]
        for block, skip in zip(self.decoder, reversed(maps[:-1])):
            x = block(x, skip)
        logits = self.head(x)
        if logits.shape[-2:] != images.shape[-2:]:
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits
