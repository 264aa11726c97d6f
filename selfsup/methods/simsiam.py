"""SimSiam: a siamese network with a predictor and stop-gradient, and nothing else."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import Block, MLPHead
from ..losses import NegativeCosineSimilarity
from ..views import Views
from .base import Method, Recipe, Resolved, RunBudget, register_method


@register_method
class SimSiam(Method):
    """Exploring Simple Siamese Representation Learning.

    - [0] Chen & He, 2021, https://arxiv.org/abs/2011.10566

    L = D(p₁, stopgrad(z₂))/2 + D(p₂, stopgrad(z₁))/2 with D the negative cosine (eq. 1-3), no
    momentum encoder, no negatives. Projector: 3 layers of 2048 with BN on every layer, the
    output included; predictor: 2048 → 512 (BN, ReLU) → 2048. SGD lr 0.05 × batch/256,
    weight decay 1e-4, momentum 0.9, cosine schedule except for the predictor, whose lr stays
    fixed (section 4.2: 68.1 vs 67.7 % with decay, as the predictor should keep adapting to the latest
    representations; the official code's ``--fix-pred-lr``); MoCo v2 augmentations.
    ``predictor_lr_scale`` multiplies the predictor's lr on top (1, the paper's, by default): the
    argument of section 4.2 taken further, as BYOL's predictor ablation does (see ``BYOL``).
    """

    constant_lr = ("prediction",)  # the optimizer's groups for these modules skip the lr decay

    name = "simsiam"
    family = "non-contrastive"
    paper = "Chen & He 2021, Exploring Simple Siamese Representation Learning"
    minimum_images = 345_600
    recipe = Recipe(optimizer="sgd", base_lr=0.05, weight_decay=1e-4, warmup_fraction=0.0, views="mocov2")

    def __init__(self, backbone: Backbone, views: Views, projection_dim: int = 2048, prediction_dim: int = 512,
                 predictor_lr_scale: float = 1.0) -> None:
        super().__init__(backbone, views)
        d = backbone.feature_dim
        self.projection = MLPHead([Block(d, projection_dim), Block(projection_dim, projection_dim),
                                   Block(projection_dim, projection_dim, relu=False)])
        self.prediction = MLPHead([Block(projection_dim, prediction_dim),
                                   Block(prediction_dim, projection_dim, batch_norm=False, relu=False)])
        self.criterion = NegativeCosineSimilarity()
        self.scale_lr("prediction", predictor_lr_scale)

    @classmethod
    def for_budget(cls, budget: RunBudget) -> list[Resolved]:
        if not budget.short():
            return []
        return [Resolved("method", "predictor_lr_scale", 10.0, "a short run needs a faster predictor (measured: "
                         "+2.16 kNN over random weights at 6.9 CIFAR-10 epochs, -2.05 with the paper's rate)")]

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(images, generator, n=2)
        z = self.projection(self.backbone(torch.cat([view1, view2])))
        p1, p2 = self.prediction(z).chunk(2)
        z1, z2 = z.chunk(2)
        return {"loss": 0.5 * (self.criterion(p1, z2) + self.criterion(p2, z1)), "embedding": z1}
