"""BYOL: an online network predicts a slowly moving average of itself."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..backbones import Backbone
from ..heads import projection_head
from ..losses import NegativeCosineSimilarity
from ..views import Views
from .base import Method, Recipe, Resolved, RunBudget, register_method
from .momentum import cosine_momentum, ema_update, frozen_copy


@register_method
class BYOL(Method):
    """Bootstrap Your Own Latent.

    - [0] Grill et al., 2020, https://arxiv.org/abs/2006.07733

    Online: backbone f_θ, projector g_θ, predictor q_θ; target: f_ξ, g_ξ, an exponential moving
    average of the online weights (ξ ← m ξ + (1-m) θ, m rising from 0.996 to 1 on a cosine).
    Loss (eq. 2, symmetrized): ‖q̄(z₁) - z̄'₂‖² + ‖q̄(z₂) - z̄'₁‖² = 4 + 2·(-cos - cos); here the
    mean negative cosine of both directions, which differs by constants only. Projector and
    predictor: Linear(4096)-BN-ReLU-Linear(256). LARS, lr 0.2 × batch/256, weight decay 1.5e-6.

    ``predictor_lr_scale`` multiplies the predictor's learning rate (1, the paper's, by default). The
    paper's ablation of the target network (appendix: no EMA, "multiply the learning rate of the
    predictor by a constant λ", Table 21) finds that a fast enough predictor keeps BYOL working: the
    online network learns well while q_θ stays near optimal, and a short run gives a slow one little
    time to get there.

    ``paper_scale=True`` trains on eq. 2's sum itself, (2 - 2 cos₁₂) + (2 - 2 cos₂₁), whose gradient is 4x
    the default's. LARS's trust ratio cancels the factor on the layers it adapts; biases and batch-norm
    parameters, which it does not adapt, step 4x further than by default.
    """

    name = "byol"
    family = "non-contrastive"
    paper = "Grill et al. 2020, Bootstrap Your Own Latent"
    minimum_images = 345_600
    recipe = Recipe(optimizer="lars", base_lr=0.2, weight_decay=1.5e-6, warmup_fraction=10 / 300, views="byol")

    def __init__(self, backbone: Backbone, views: Views, hidden_dim: int = 4096, projection_dim: int = 256,
                 base_momentum: float = 0.996, predictor_lr_scale: float = 1.0, paper_scale: bool = False) -> None:
        super().__init__(backbone, views)
        self.projection = projection_head(backbone.feature_dim, hidden_dim, projection_dim)
        self.prediction = self._build_predictor(projection_dim, hidden_dim)
        self.target_backbone = frozen_copy(backbone)
        self.target_projection = frozen_copy(self.projection)
        self.base_momentum, self.paper_scale = base_momentum, paper_scale
        self.criterion = NegativeCosineSimilarity()
        self.scale_lr("prediction", predictor_lr_scale)

    @classmethod
    def for_budget(cls, budget: RunBudget) -> list[Resolved]:
        if not budget.short():
            return []
        return [Resolved("method", "predictor_lr_scale", 10.0, "a short run needs the fast predictor of the "
                         "paper's Table 21 (measured: +3.86 kNN over random weights at 6.9 CIFAR-10 epochs, "
                         "-0.28 with the paper's rate)")]

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(images, generator, n=2)
        both = torch.cat([view1, view2])
        z = self.projection(self.backbone(both))
        p1, p2 = self.prediction(z).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_projection(self.target_backbone(both)).chunk(2)
        loss = 0.5 * (self.criterion(p1, t2) + self.criterion(p2, t1))
        if self.paper_scale:  # eq. 2 and its symmetric term: (2 - 2 cos₁₂) + (2 - 2 cos₂₁), 4x the gradient
            loss = 4 + 4 * loss
        return {"loss": loss, "embedding": z[: len(view1)]}

    def _build_predictor(self, projection_dim: int, hidden_dim: int) -> nn.Module:
        """q_θ, trained by gradient; DirectPred replaces it with one set in closed form."""
        return projection_head(projection_dim, hidden_dim, projection_dim)

    def after_step(self, step: int, total_steps: int) -> None:
        momentum = cosine_momentum(step, total_steps, self.base_momentum)
        ema_update(self.target_backbone, self.backbone, momentum)
        ema_update(self.target_projection, self.projection, momentum)
