"""DirectPred: BYOL whose linear predictor is set, not trained, from the features' correlation."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import projection_head
from ..losses import NegativeCosineSimilarity
from ..views import Views
from .base import Method, Recipe, register_method
from .momentum import cosine_momentum, ema_update, frozen_copy


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


@register_method
class DirectPred(Method):
    """Direct predictor: the non-contrastive dynamics of BYOL with the predictor in closed form.

    - [0] Tian, Chen, Ganguli, 2021, Understanding Self-supervised Learning Dynamics without
      Contrastive Pairs, https://arxiv.org/abs/2102.06810 (section 5, equations 18-19)

    BYOL (online backbone + projector, EMA target) with a linear, bias-free predictor that gets
    no gradient: every step F̂ ← ρ F̂ + (1 - ρ) E_B[f fᵀ] over the online projections f of both
    views (equation 19, ρ = 0.3), then W_p from F̂'s eigen-decomposition (equation 18, ε = 0.01,
    the official code's setting; update every step). W_p and F̂ are buffers, saved with the run.
    Loss: BYOL's symmetrized negative cosine. Optimizer, views and EMA as BYOL.
    """

    name = "directpred"
    paper = "Tian, Chen, Ganguli 2021, Understanding Self-supervised Learning Dynamics without Contrastive Pairs"
    recipe = Recipe(optimizer="lars", base_lr=0.2, weight_decay=1.5e-6, warmup_fraction=10 / 300, views="byol",
                    args={"hidden_dim": 4096, "projection_dim": 256, "base_momentum": 0.996, "rho": 0.3,
                          "epsilon": 0.01})

    def __init__(self, backbone: Backbone, views: Views, hidden_dim: int = 4096, projection_dim: int = 256,
                 base_momentum: float = 0.996, rho: float = 0.3, epsilon: float = 0.01) -> None:
        super().__init__(backbone, views)
        if not 0 <= rho < 1 or epsilon < 0:
            raise ValueError("rho must be in [0, 1) and epsilon >= 0")
        self.projection = projection_head(backbone.feature_dim, hidden_dim, projection_dim)
        self.target_backbone = frozen_copy(backbone)
        self.target_projection = frozen_copy(self.projection)
        self.base_momentum, self.rho, self.epsilon = base_momentum, rho, epsilon
        self.criterion = NegativeCosineSimilarity()
        self.register_buffer("correlation", torch.zeros(projection_dim, projection_dim))
        self.register_buffer("predictor_weight", torch.eye(projection_dim))  # identity until the first update

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(images, generator, n=2)
        both = torch.cat([view1, view2])
        z = self.projection(self.backbone(both))
        if self.training:
            with torch.no_grad():
                f = z.detach().float()
                self.correlation.mul_(self.rho).add_(f.T @ f / len(f), alpha=1 - self.rho)
                self.predictor_weight.copy_(direct_predictor(self.correlation, self.epsilon))
        p1, p2 = (z.float() @ self.predictor_weight).chunk(2)  # W_p symmetric: z W_pᵀ = z W_p
        with torch.no_grad():
            t1, t2 = self.target_projection(self.target_backbone(both)).chunk(2)
        loss = 0.5 * (self.criterion(p1, t2) + self.criterion(p2, t1))
        return {"loss": loss, "embedding": z[: len(view1)]}

    def after_step(self, step: int, total_steps: int) -> None:
        momentum = cosine_momentum(step, total_steps, self.base_momentum)
        ema_update(self.target_backbone, self.backbone, momentum)
        ema_update(self.target_projection, self.projection, momentum)
