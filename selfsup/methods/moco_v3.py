"""MoCo v3: a momentum encoder, in-batch keys (no queue), a predictor and a symmetric loss."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import Block, MLPHead
from ..losses import CrossViewInfoNCELoss
from ..views import Views
from .base import Method, Recipe, register_method
from .momentum import cosine_momentum, ema_update, frozen_copy


@register_method
class MoCoV3(Method):
    """Momentum Contrast, version 3.

    - [0] Chen, Xie, He, 2021, An Empirical Study of Training Self-Supervised Vision
      Transformers, https://arxiv.org/abs/2104.02057

    Algorithm 1: q = pred(proj(f(x))), k = proj_m(f_m(x)) from the momentum encoder; the keys
    of the same batch are the negatives (no queue); loss ctr(q₁, k₂) + ctr(q₂, k₁) with
    ctr(q, k) = CrossEntropy(q kᵀ / τ, labels = arange(N)) x 2τ (the official scaling, so the
    gradient's size does not depend on τ). ResNet setting of the official code: projector
    2 layers (4096 hidden, 256 out, BN on both, the last without affine), predictor 2 layers
    (no BN on its output); τ = 1.0; momentum 0.99 rising to 1 on a cosine; LARS lr 0.6 x batch/256,
    weight decay 1e-6, 10 warm-up epochs of 100; BYOL's augmentations.
    """

    name = "moco_v3"
    family = "contrastive"
    paper = "Chen, Xie, He 2021, An Empirical Study of Training Self-Supervised Vision Transformers"
    minimum_images = 345_600
    recipe = Recipe(optimizer="lars", base_lr=0.6, weight_decay=1e-6, warmup_fraction=0.1, views="byol")

    def __init__(self, backbone: Backbone, views: Views, hidden_dim: int = 4096, projection_dim: int = 256,
                 temperature: float = 1.0, base_momentum: float = 0.99) -> None:
        super().__init__(backbone, views)
        d = backbone.feature_dim
        # The official ResNet heads: 2-layer projector ending in a batch norm without affine,
        # 2-layer predictor without a last batch norm (3-layer projectors are for ViTs).
        self.projection = MLPHead([Block(d, hidden_dim), Block(hidden_dim, projection_dim, relu=False, affine=False)])
        self.prediction = MLPHead([Block(projection_dim, hidden_dim),
                                   Block(hidden_dim, projection_dim, batch_norm=False, relu=False)])
        self.target_backbone = frozen_copy(backbone)
        self.target_projection = frozen_copy(self.projection)
        self.criterion = CrossViewInfoNCELoss(temperature)
        self.temperature, self.base_momentum = temperature, base_momentum

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(images, generator, n=2)
        both = torch.cat([view1, view2])
        z = self.projection(self.backbone(both))
        q1, q2 = self.prediction(z).chunk(2)
        with torch.no_grad():
            k1, k2 = self.target_projection(self.target_backbone(both)).chunk(2)
        loss = 2 * self.temperature * (self.criterion(q1, k2) + self.criterion(q2, k1))
        return {"loss": loss, "embedding": z[: len(view1)]}

    def after_step(self, step: int, total_steps: int) -> None:
        momentum = cosine_momentum(step, total_steps, self.base_momentum)
        ema_update(self.target_backbone, self.backbone, momentum)
        ema_update(self.target_projection, self.projection, momentum)
