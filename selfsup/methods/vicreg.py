"""VICReg: invariance between views, with variance and covariance regularizers against collapse."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import projection_head
from ..losses import VICRegLoss
from ..views import Views
from .base import Method, Recipe, Resolved, RunBudget, narrower_for_small_pool, register_method


@register_method
class VICReg(Method):
    """VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning.

    - [0] Bardes, Ponce, LeCun, 2022, https://arxiv.org/abs/2105.04906

    Expander: three linear layers of 8192 (BN and ReLU after the first two); loss eq. 6 with
    λ = μ = 25, ν = 1. LARS, lr 0.2 × batch/256, weight decay 1e-6, BYOL's augmentations.
    """

    name = "vicreg"
    family = "non-contrastive"
    paper = "Bardes et al. 2022, VICReg: Variance-Invariance-Covariance Regularization"
    minimum_images = 115_200
    recipe = Recipe(optimizer="lars", base_lr=0.2, weight_decay=1e-6, warmup_fraction=10 / 1000, views="byol")

    @classmethod
    def for_budget(cls, budget: RunBudget) -> list[Resolved]:
        return narrower_for_small_pool(budget, "projection_dim", 2048, "a 2,048-wide projector, not 8,192,")

    def __init__(self, backbone: Backbone, views: Views, projection_dim: int = 8192, invariance: float = 25.0,
                 variance: float = 25.0, covariance: float = 1.0) -> None:
        super().__init__(backbone, views)
        self.projection = projection_head(backbone.feature_dim, projection_dim, projection_dim, num_layers=3)
        self.criterion = VICRegLoss(invariance, variance, covariance)

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(images, generator, n=2)
        # Separate passes: the variance and covariance terms are per-branch statistics.
        z1, z2 = self.projection(self.backbone(view1)), self.projection(self.backbone(view2))
        return {"loss": self.criterion(z1, z2), "embedding": z1}
