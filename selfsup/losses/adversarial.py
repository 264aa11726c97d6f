"""Adversarial losses: the GAN game's two players, and the R1 penalty.

- [0] Goodfellow et al., 2014, Generative Adversarial Nets, https://arxiv.org/abs/1406.2661
- [1] Mescheder, Geiger & Nowozin, 2018, Which Training Methods for GANs do actually Converge?,
  https://arxiv.org/abs/1801.04406

The discriminator outputs logits l = D(x); σ(l) is its belief that x is real. In logits,
-log σ(l) = softplus(-l) and -log(1 - σ(l)) = softplus(l), which stay finite where σ saturates.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """[0] eq. 1, the discriminator's side: L_D = -E[log σ(D(x))] - E[log(1 - σ(D(G(z))))]
    = E[softplus(-D(x))] + E[softplus(D(G(z)))]. 2 log 2 ≈ 1.386 when D cannot tell (σ = 1/2),
    0 when it wins outright."""
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss ([0] section 3): L_G = -E[log σ(D(G(z)))] = E[softplus(-D(G(z)))].
    Minimizing log(1 - σ(D(G(z)))) instead has a vanishing gradient while D rejects every sample,
    which is exactly the start of training; this loss has the same fixed point and strong gradients there."""
    return F.softplus(-fake_logits.float()).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """[1] eq. 9 without its γ/2: R1 = E_x[‖∇_x D(x)‖²] on real images only, so D's gradient vanishes
    on the data manifold (the caller adds γ/2·R1 to L_D). ``real_images`` must require grad and have
    produced ``real_logits``; the graph is kept (``create_graph``) so the penalty itself trains D."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()
