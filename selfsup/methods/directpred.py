"""DirectPred: BYOL whose linear predictor is set, not trained, from the features' correlation."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..backbones import Backbone
from ..utils.distributed import gather_detached
from ..views import Views
from .base import Recipe, Resolved, RunBudget, register_method
from .byol import BYOL


@torch.no_grad()
def direct_predictor(correlation: torch.Tensor, epsilon: float) -> torch.Tensor:
    """W_p = U diag(p) Uᵀ with F = U diag(s) Uᵀ and p_j = sqrt(s_j / max s) + ε (equation 18).

    Negative eigenvalues (round-off of a positive semi-definite F) count as 0. Dividing by
    max s only rescales W_p, which the cosine loss ignores; it keeps ε's meaning fixed.
    """
    s, u = torch.linalg.eigh(correlation.double())
    s = s.clamp(min=0)
    p = (s / s.max().clamp(min=1e-30)).sqrt() + epsilon
    return ((u * p) @ u.T).to(correlation.dtype)


class DirectPredictor(nn.Module):
    """A linear, bias-free predictor with no parameters: every training call first updates the
    running correlation F̂ ← ρ F̂ + (1 - ρ) E_B[f fᵀ] of its inputs (equation 19), then sets W_p
    from it (equation 18). Both are buffers, so checkpoints carry them; W_p starts as identity."""

    def __init__(self, dim: int, rho: float, epsilon: float) -> None:
        super().__init__()
        if not 0 <= rho < 1 or epsilon < 0:
            raise ValueError("rho must be in [0, 1) and epsilon >= 0")
        self.rho, self.epsilon = rho, epsilon
        self.register_buffer("correlation", torch.zeros(dim, dim))
        self.register_buffer("weight", torch.eye(dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                f = gather_detached(z.detach().float())  # the global batch's correlation
                self.correlation.mul_(self.rho).add_(f.T @ f / len(f), alpha=1 - self.rho)
                self.weight.copy_(direct_predictor(self.correlation, self.epsilon))
        return z.float() @ self.weight  # W_p symmetric: z W_pᵀ = z W_p


@register_method
class DirectPred(BYOL):
    """Direct predictor: the non-contrastive dynamics of BYOL with the predictor in closed form.

    - [0] Tian, Chen, Ganguli, 2021, Understanding Self-supervised Learning Dynamics without
      Contrastive Pairs, https://arxiv.org/abs/2102.06810 (section 5, equations 18-19)

    BYOL (online backbone + projector, EMA target, its loss and schedule) with BYOL's trained
    predictor replaced by ``DirectPredictor``: linear, bias-free, no gradient, set every step
    from the running correlation of the online projections f of both views (ρ = 0.3, ε = 0.01,
    the official code's setting). Optimizer, views and EMA as BYOL.
    """

    name = "directpred"
    family = "non-contrastive"
    paper = "Tian, Chen, Ganguli 2021, Understanding Self-supervised Learning Dynamics without Contrastive Pairs"
    minimum_images = 345_600
    recipe = Recipe(optimizer="lars", base_lr=0.2, weight_decay=1.5e-6, warmup_fraction=10 / 300, views="byol")

    def __init__(self, backbone: Backbone, views: Views, hidden_dim: int = 4096, projection_dim: int = 256,
                 base_momentum: float = 0.996, rho: float = 0.3, epsilon: float = 0.01) -> None:
        self._direct_args = (rho, epsilon)  # read by _build_predictor inside BYOL's __init__
        super().__init__(backbone, views, hidden_dim, projection_dim, base_momentum)

    @classmethod
    def for_budget(cls, budget: RunBudget) -> list[Resolved]:
        return []  # its predictor is set in closed form, not trained: no predictor rate to raise

    def _build_predictor(self, projection_dim: int, hidden_dim: int) -> nn.Module:
        return DirectPredictor(projection_dim, *self._direct_args)
