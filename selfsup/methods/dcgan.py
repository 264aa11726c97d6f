"""DCGAN: the discriminator of a GAN is the encoder."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..backbones import Backbone
from ..backbones.dcgan import dcgan_init
from ..losses import generator_loss
from ..views import Views
from .adversarial import GAN_RECIPE, AdversarialMethod
from .base import Panel, Recipe, register_method


@register_method
class DCGAN(AdversarialMethod):
    """Unsupervised Representation Learning with Deep Convolutional Generative Adversarial Networks.

    - [0] Radford, Metz & Chintala, 2016, https://arxiv.org/abs/1511.06434
    - [1] Goodfellow et al., 2014, Generative Adversarial Nets, https://arxiv.org/abs/1406.2661

    D = a linear real/fake logit on the backbone's last map (DCGAN's discriminator: the ``dcgan``
    backbone, or any convolutional one), G = DCGAN's generator. Each step, in turn ([1] algorithm 1):
    the discriminator minimizes L_D = E[softplus(-D(x))] + E[softplus(D(G(z)))] ([1] eq. 1), plus
    γ/2·E‖∇_x D(x)‖² with ``r1_gamma`` (Mescheder et al. 2018); then the generator minimizes the
    non-saturating L_G = E[softplus(-D(G(z)))]. Options: ``spectral_norm`` on D's layers; an EMA of G
    (``ema_decay``) draws the samples. The transferred encoder is D's trunk, whose feature is the
    paper's: every layer max-pooled to 4 x 4 and concatenated ([0] section 5.1).
    """

    name = "dcgan"
    family = "GANs"
    paper = "Radford et al. 2016, Unsupervised Representation Learning with Deep Convolutional GANs"
    minimum_images = 345_600
    recipe = Recipe(**GAN_RECIPE)

    def __init__(self, backbone: Backbone, views: Views, latent_dim: int = 100, generator_width: int = 64,
                 spectral_norm: bool = False, r1_gamma: float = 0.0, ema_decay: float = 0.999) -> None:
        super().__init__(backbone, views, latent_dim, generator_width, spectral_norm, r1_gamma, ema_decay)
        channels, side = backbone.feature_map_shape(views.size)
        self.critic = nn.Linear(channels * side * side, 1)  # DCGAN's last layer: the 4 x 4 map to one logit
        dcgan_init(self.critic)
        self.check_discriminator(nn.ModuleList([backbone, self.critic]))

    def player_modules(self, player: str) -> nn.Module:
        return nn.ModuleList([self.backbone, self.critic] if player == "discriminator" else [self.generator])

    def discriminate(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the last map's mean over positions (what the collapse watch reads)."""
        maps = self.backbone.feature_map(images)
        return self.critic(maps.flatten(1)).squeeze(1), maps.mean((2, 3))

    def forward(self, images: torch.Tensor, generator: torch.Generator,
                player: str = "discriminator") -> dict[str, torch.Tensor]:
        z = self.latent(len(images), generator, images.device)
        if player == "generator":
            fake_logits, _ = self.discriminate(self.generate(z))
            loss = generator_loss(fake_logits)
            return {"loss": loss, "g_loss": loss.detach()}
        (real,) = self.views(images, generator, n=1)
        real.requires_grad_(self.r1_gamma > 0)
        with torch.no_grad():
            fake = self.generate(z)
        real_logits, embedding = self.discriminate(real)
        fake_logits, _ = self.discriminate(fake)
        return self.discriminator_out(real_logits, fake_logits, real, fake, embedding.detach())

    @torch.no_grad()
    def illustrate(self, images: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        (real,) = self.views(images[:8], generator, n=1)
        return [Panel("real images", self.views.denormalize(real).clamp(0, 1)), *self.sample_panels(images.device)]
