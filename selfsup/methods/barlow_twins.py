"""Barlow Twins: make the two views' embedding cross-correlation the identity."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import projection_head
from ..losses import BarlowTwinsLoss
from ..views import Views
from .base import Method, Recipe, Resolved, RunBudget, narrower_for_small_pool, register_method


@register_method
class BarlowTwins(Method):
    """Barlow Twins: Self-Supervised Learning via Redundancy Reduction.

    - [0] Zbontar, Jing, Misra, LeCun, Deny, 2021, https://arxiv.org/abs/2103.03230

    Projector: three linear layers of 8192 (BN and ReLU after the first two); loss eq. 1 with
    λ = 5e-3 on batch-standardized embeddings. LARS, lr 0.2 × batch/256, weight decay 1.5e-6,
    BYOL's augmentations.
    """

    name = "barlow_twins"
    family = "non-contrastive"
    paper = "Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy Reduction"
    minimum_images = 115_200
    recipe = Recipe(optimizer="lars", base_lr=0.2, weight_decay=1.5e-6, warmup_fraction=10 / 1000, views="byol")

    @classmethod
    def for_budget(cls, budget: RunBudget) -> list[Resolved]:
        return narrower_for_small_pool(budget, "projection_dim", 2048, "a 2,048-wide projector, not 8,192,")

    def __init__(self, backbone: Backbone, views: Views, projection_dim: int = 8192,
                 lambda_offdiag: float = 5e-3) -> None:
        super().__init__(backbone, views)
        self.projection = projection_head(backbone.feature_dim, projection_dim, projection_dim, num_layers=3)
        self.criterion = BarlowTwinsLoss(lambda_offdiag)

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(images, generator, n=2)
        # Each view goes through the network on its own: the loss standardizes per view.
        z1, z2 = self.projection(self.backbone(view1)), self.projection(self.backbone(view2))
        return {"loss": self.criterion(z1, z2), "embedding": z1}
