"""GAN networks besides the discriminator backbone: DCGAN's generator and BiGAN's joint discriminator."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones.dcgan import dcgan_init, downsampling_layers


class DCGANGenerator(nn.Module):
    """DCGAN's generator (Radford et al. 2016, https://arxiv.org/abs/1511.06434, figure 1, section 3).

    z (``latent_dim``) is projected and reshaped to a 4 x 4 map, then 4 x 4 transposed convolutions of
    stride 2 double the side and halve the width (batch norm and ReLU after each), the last one to the
    image's channels with tanh: pixels in [-1, 1]. 32 px: 256 x 4 x 4 -> 128 x 8 x 8 -> 64 x 16 x 16 -> 3 x 32 x 32.
    Sizes that are not 4 x 2^k are resized at the end.
    """

    def __init__(self, latent_dim: int, out_channels: int, image_size: int, width: int = 64) -> None:
        super().__init__()
        stages = downsampling_layers(image_size)
        widths = [width * 2 ** (stages - 1 - i) for i in range(stages)]
        self.project = nn.Sequential(nn.Linear(latent_dim, widths[0] * 16, bias=False), nn.BatchNorm1d(widths[0] * 16),
                                     nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 1), nn.Tanh()]
        self.layers = nn.Sequential(*layers)
        self.first_width, self.image_size = widths[0], image_size
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.project(z).view(len(z), self.first_width, 4, 4))
        if out.shape[-1] != self.image_size:
            out = F.interpolate(out, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                                antialias=True)
        return out


class JointDiscriminator(nn.Module):
    """BiGAN's D(x, z) (Donahue et al. 2017, https://arxiv.org/abs/1605.09782, section 3; ALI's
    layout, Dumoulin et al. 2017): an image trunk's last map, flattened, and an MLP embedding of z,
    concatenated and scored by a joint MLP. LeakyReLU 0.2 throughout, no batch norm outside the trunk."""

    def __init__(self, image_trunk: nn.Module, image_features: int, latent_dim: int, width: int = 512) -> None:
        super().__init__()
        self.image_trunk = image_trunk  # a Backbone: its feature_map is the input of the joint layers
        self.code = nn.Sequential(nn.Linear(latent_dim, width), nn.LeakyReLU(0.2), nn.Linear(width, width),
                                  nn.LeakyReLU(0.2))
        self.joint = nn.Sequential(nn.Linear(image_features + width, 2 * width), nn.LeakyReLU(0.2), nn.Linear(2 * width, 1))

    def forward(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        x = self.image_trunk.feature_map(images).flatten(1)
        return self.joint(torch.cat([x, self.code(codes)], 1)).squeeze(1)
