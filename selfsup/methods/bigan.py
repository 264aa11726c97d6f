"""BiGAN / ALI: an encoder learned jointly with the generator, by discriminating (image, code) pairs."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..backbones import Backbone, build_backbone
from ..heads import JointDiscriminator
from ..losses import discriminator_loss
from ..views import Views
from .adversarial import GAN_RECIPE, AdversarialMethod
from .base import Panel, Recipe, register_method


@register_method
class BiGAN(AdversarialMethod):
    """Adversarial Feature Learning (BiGAN) / Adversarially Learned Inference (ALI).

    - [0] Donahue, Krähenbühl & Darrell, 2017, Adversarial Feature Learning, https://arxiv.org/abs/1605.09782
    - [1] Dumoulin et al., 2017, Adversarially Learned Inference, https://arxiv.org/abs/1606.00704

    The encoder E(x) = W·f(x) (the backbone f, then a linear map to the latent space) and the generator
    G(z) play together against a joint discriminator D(x, z), which tells data pairs (x, E(x)) from
    generated pairs (G(z), z) ([0] eq. 3): L_D = E[softplus(-D(x, E(x)))] + E[softplus(D(G(z), z))].
    E and G minimize the same game with the labels inverted, the non-saturating form ([0] section 3.4):
    L_EG = E[softplus(D(x, E(x)))] + E[softplus(-D(G(z), z))]. At the optimum E inverts G. D's image trunk
    is a DCGAN discriminator (``discriminator_backbone``); ``r1_gamma``, ``spectral_norm`` and the EMA
    generator as in ``dcgan``. The transferred encoder is f.
    """

    name = "bigan"
    family = "GANs"
    paper = "Donahue et al. 2017, Adversarial Feature Learning (BiGAN); Dumoulin et al. 2017 (ALI)"
    recipe = Recipe(**GAN_RECIPE)

    def __init__(self, backbone: Backbone, views: Views, discriminator_backbone: str = "dcgan", latent_dim: int = 100, generator_width: int = 64,
                 spectral_norm: bool = False, r1_gamma: float = 0.0, ema_decay: float = 0.999) -> None:
        super().__init__(backbone, views, latent_dim, generator_width, spectral_norm, r1_gamma, ema_decay)
        self.to_latent = nn.Linear(backbone.feature_dim, self.latent_dim)
        trunk = build_backbone(discriminator_backbone, backbone.spec.in_channels, "auto", views.size)
        channels, side = trunk.feature_map_shape(views.size)
        self.discriminator = JointDiscriminator(trunk, channels * side * side, self.latent_dim)
        self.check_discriminator(self.discriminator)

    def player_modules(self, player: str) -> nn.Module:
        if player == "discriminator":
            return self.discriminator
        return nn.ModuleList([self.backbone, self.to_latent, self.generator])

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """E(x) and the backbone feature it is read from."""
        features = self.backbone(images)
        return self.to_latent(features), features

    def forward(self, images: torch.Tensor, generator: torch.Generator,
                player: str = "discriminator") -> dict[str, torch.Tensor]:
        (real,) = self.views(images, generator, n=1)
        z = self.latent(len(images), generator, images.device)
        if player == "generator":
            codes, features = self.encode(real)
            # the labels inverted: E wants (x, E(x)) called generated, G wants (G(z), z) called data
            loss = discriminator_loss(self.discriminator(self.generate(z), z), self.discriminator(real, codes))
            return {"loss": loss, "g_loss": loss.detach()}
        with torch.no_grad():
            codes, features = self.encode(real)
            fake = self.generate(z)
        real.requires_grad_(self.r1_gamma > 0)
        real_logits = self.discriminator(real, codes)
        fake_logits = self.discriminator(fake, z)
        return self.discriminator_out(real_logits, fake_logits, real, fake, features)

    @torch.no_grad()
    def illustrate(self, images: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        (real,) = self.views(images[:8], generator, n=1)
        show = lambda x: self.views.denormalize(x).clamp(0, 1)  # noqa: E731
        reconstructed = self.generate(self.encode(real)[0])
        return [Panel("real images x", show(real)), Panel("reconstructions G(E(x))", show(reconstructed)),
                *self.sample_panels(images.device)]
