"""SimCLR: two augmented views, a projection head, and NT-Xent."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import projection_head
from ..losses import NTXentLoss
from ..views import Views
from .base import Method, Recipe, register_method


@register_method
class SimCLR(Method):
    """A Simple Framework for Contrastive Learning of Visual Representations.

    - [0] Chen, Kornblith, Norouzi, Hinton, 2020, https://arxiv.org/abs/2002.05709

    h = f(x̃) (backbone), z = g(h) (MLP projection), and the NT-Xent loss (equation 1) over
    the 2N views of a batch of N images. Defaults follow the paper: projection to 128
    dimensions with a hidden layer as wide as the features, LARS with lr 0.3 x batch/256,
    weight decay 1e-6, 10% warm-up then cosine; temperature 0.5 (its CIFAR-10 setting).
    """

    name = "simclr"
    family = "contrastive"
    paper = "Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations"
    minimum_images = 115_200
    recipe = Recipe(optimizer="lars", base_lr=0.3, weight_decay=1e-6, views="simclr-cifar")

    def __init__(self, backbone: Backbone, views: Views, temperature: float = 0.5,
                 projection_dim: int = 128, hidden_dim: int | None = None) -> None:
        super().__init__(backbone, views)
        self.projection = projection_head(backbone.feature_dim, hidden_dim or backbone.feature_dim, projection_dim)
        self.criterion = NTXentLoss(temperature)

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(images, generator, n=2)
        z = self.projection(self.backbone(torch.cat([view1, view2])))  # 2N x d, one pass for both views
        z1, z2 = z.chunk(2)
        return {"loss": self.criterion(z1, z2), "embedding": z1}
