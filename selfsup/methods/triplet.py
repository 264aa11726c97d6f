"""Triplet: the other view is the positive, another image of the batch the negative, a margin between."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import projection_head
from ..losses import TripletMarginLoss
from ..views import Views
from .base import Method, Recipe, register_method


@register_method
class Triplet(Method):
    """Self-supervised triplets with in-batch mining.

    - [0] Schroff, Kalenichenko, Philbin, 2015, FaceNet, https://arxiv.org/abs/1503.03832
      (the loss, margin 0.2, semi-hard mining)
    - [1] Wang & Gupta, 2015, Unsupervised Learning of Visual Representations using Videos,
      https://arxiv.org/abs/1505.00687 (triplets whose positive comes free from the data)

    Two augmented views of an image are anchor and positive; the views of the other images in
    the batch are the negatives; max(0, m + d(a,p) - d(a,n)) on L2-normalized projections,
    d the squared distance. ``mining``: semi-hard (default), hard or random. SimCLR's head,
    views and optimizer, so the comparison with NT-Xent isolates the loss.
    """

    name = "triplet"
    family = "contrastive"
    paper = "Schroff et al. 2015, FaceNet (triplet margin loss, semi-hard mining) on two views"
    minimum_images = 115_200
    recipe = Recipe(optimizer="lars", base_lr=0.3, weight_decay=1e-6, views="simclr-cifar")

    def __init__(self, backbone: Backbone, views: Views, margin: float = 0.2, mining: str = "semi-hard",
                 projection_dim: int = 128, hidden_dim: int | None = None) -> None:
        super().__init__(backbone, views)
        self.projection = projection_head(backbone.feature_dim, hidden_dim or backbone.feature_dim, projection_dim)
        self.criterion = TripletMarginLoss(margin, mining)

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(images, generator, n=2)
        z1, z2 = self.projection(self.backbone(torch.cat([view1, view2]))).chunk(2)
        return {"loss": self.criterion(z1, z2, generator), "embedding": z1}
