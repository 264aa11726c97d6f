"""What DCGAN and BiGAN share: the generator and its EMA copy, the latent prior, the discriminator's
loss with its optional R1 penalty, spectral normalization, the failure watch and the sample grid."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..backbones import Backbone, build_from_spec
from ..backbones.spectral import plain_state, with_spectral_norm
from ..utils.monitor import AdversarialWatch
from ..heads import DCGANGenerator
from ..losses import discriminator_loss, r1_penalty
from ..views import Views
from .base import Method, Panel
from .momentum import ema_update, frozen_copy

# DCGAN (Radford et al. 2016, section 4): Adam, lr 2e-4, β1 = 0.5 (0.9 oscillated), no weight decay, no
# augmentation beyond scaling to [-1, 1] (here: horizontal flips, the usual GAN augmentation). The engine
# scales lr by batch / 256 and decays it by a cosine.
GAN_RECIPE = dict(optimizer="adamw", base_lr=2e-4, weight_decay=0.0, warmup_fraction=0.0, adam_betas=(0.5, 0.999),
                  views="gan", backbone="dcgan", sync_batchnorm=False)
GAN_ARGS = {"latent_dim": 100, "generator_width": 64, "spectral_norm": False, "r1_gamma": 0.0, "ema_decay": 0.999}
SAMPLE_SEED = 1234  # the sample grid's latents: the same images across a run's pictures


class AdversarialMethod(Method):
    """A GAN whose players take turns each step (see the engine's ``_turn_step``); subclasses build the
    discriminator and say which modules each player trains."""

    players = ("discriminator", "generator")
    collapse_prone = False  # the embedding is a by-product here; generator collapse is watched instead
    logged = ("d_loss", "g_loss", "d_real", "d_fake", "diversity", "r1")

    def __init__(self, backbone: Backbone, views: Views, latent_dim: int = 100, generator_width: int = 64,
                 spectral_norm: bool = False, r1_gamma: float = 0.0, ema_decay: float = 0.999) -> None:
        super().__init__(backbone, views)
        if r1_gamma < 0 or not 0 <= ema_decay < 1:
            raise ValueError("r1_gamma must be >= 0 and ema_decay in [0, 1)")
        self.latent_dim, self.use_spectral_norm, self.r1_gamma, self.ema_decay = latent_dim, spectral_norm, r1_gamma, ema_decay
        self.generator = DCGANGenerator(latent_dim, len(views.normalization.mean), views.size, generator_width)
        # Karras et al. 2018 (https://arxiv.org/abs/1710.10196), section A.1: samples from an EMA of G's weights
        # are better than the last iterate's; it is what the sample grid shows.
        self.ema_generator = frozen_copy(self.generator)
        self.watch = AdversarialWatch()
        self._last: tuple[float, float] | None = None

    def check_discriminator(self, discriminator: nn.Module) -> None:
        """Spectral norm on request; R1 refuses batch norm (a per-example gradient is not defined when
        batch norm mixes the examples: Gulrajani et al. 2017, section 4)."""
        if self.r1_gamma > 0 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in discriminator.modules()):
            raise ValueError("r1_gamma needs a discriminator without batch norm: use --backbone dcgan-nonorm "
                             "(BiGAN: discriminator_backbone=dcgan-nonorm)")
        if self.use_spectral_norm:
            with_spectral_norm(discriminator)

    def latent(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """z ~ N(0, I) (the paper draws from a uniform; a Gaussian is today's usual prior)."""
        return torch.randn(n, self.latent_dim, generator=generator).to(device)

    def generate(self, z: torch.Tensor, ema: bool = False) -> torch.Tensor:
        """G(z) in the discriminator's input space: tanh's [-1, 1] as pixels in [0, 1], normalized like real views."""
        return self.views.normalize((self.ema_generator if ema else self.generator)(z) * 0.5 + 0.5)

    def discriminator_out(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, real: torch.Tensor,
                          fake: torch.Tensor, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_D (+ γ/2·R1 on real images), D's mean beliefs, and the fake batch's diversity."""
        loss = discriminator_loss(real_logits, fake_logits)
        out = {"d_loss": loss.detach(), "d_real": torch.sigmoid(real_logits.detach().float()).mean(),
               "d_fake": torch.sigmoid(fake_logits.detach().float()).mean()}
        if self.r1_gamma > 0:
            penalty = r1_penalty(real_logits, real)
            loss = loss + 0.5 * self.r1_gamma * penalty
            out["r1"] = penalty.detach()
        out["diversity"] = sample_diversity(fake.detach(), real.detach())
        self._last = (float(out["d_loss"]), float(out["diversity"]))
        return {"loss": loss, "embedding": embedding, **out}

    def after_step(self, step: int, total_steps: int) -> None:
        # The decay warms up as (1 + t) / (10 + t) (TensorFlow's ExponentialMovingAverage with num_updates):
        # at 0.999 from the first step, a few-hundred-step run's average would still be mostly the random init.
        ema_update(self.ema_generator, self.generator, min(self.ema_decay, (1 + step) / (10 + step)))
        if self._last is not None:
            self.watch.check(step + 1, *self._last)

    def export_encoder(self):
        if not self.use_spectral_norm:
            return self.backbone, self.views.normalization
        plain = build_from_spec(self.backbone.spec, self.views.size)
        plain.load_state_dict(plain_state(self.backbone), strict=True)
        return plain.to(next(self.backbone.parameters()).device), self.views.normalization

    @torch.no_grad()
    def sample_panels(self, device: torch.device, rows: int = 4) -> list[Panel]:
        """``rows`` x 8 samples of the EMA generator from fixed latents."""
        z = self.latent(8 * rows, torch.Generator().manual_seed(SAMPLE_SEED), device)
        samples = self.views.denormalize(self.generate(z, ema=True)).clamp(0, 1)
        return [Panel("samples, EMA generator" if i == 0 else "", samples[8 * i:8 * (i + 1)]) for i in range(rows)]


@torch.no_grad()
def sample_diversity(fake: torch.Tensor, real: torch.Tensor, n: int = 64) -> torch.Tensor:
    """Mean pairwise L2 distance of (up to ``n``) fake images over that of the real ones: about 1 when
    the samples spread like the data, 0 when the generator gives one image for every z."""
    spread = lambda x: torch.pdist(x[:n].flatten(1).float()).mean()  # noqa: E731
    return spread(fake) / spread(real).clamp_min(1e-8)

