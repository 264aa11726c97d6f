"""NNCLR: the positive of a view is its nearest neighbour in a support queue of past embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones import Backbone
from ..utils.distributed import gather_detached
from ..heads import Block, MLPHead
from ..losses import CrossViewInfoNCELoss
from ..views import Views
from .base import Method, Recipe, register_method
from .queues import ring_enqueue


@register_method
class NNCLR(Method):
    """Nearest-Neighbor Contrastive Learning of visual Representations.

    - [0] Dwibedi, Aytar, Tompson, Sermanet, Zisserman, 2021, With a Little Help from My
      Friends, https://arxiv.org/abs/2104.14548

    z = proj(f(x)), p = pred(z); NN(z, Q) = the support-set entry of highest cosine with z.
    Loss (equation 2, symmetrized as in section 3.2): InfoNCE between NN(z₁) and p₂, the other
    rows of p₂ as negatives, plus the same from view 2 to view 1; τ = 0.1. The support set Q is
    a queue of 98,304 normalized z₁ (after each step, the batch's replace the oldest); it gets
    no gradient. Projector 3 layers (2048 hidden, 256 out, BN everywhere), predictor 2 layers
    (4096 hidden); LARS lr 0.3 x batch/256 (4.8 at 4096), weight decay 1e-6.
    """

    name = "nnclr"
    family = "contrastive"
    paper = "Dwibedi et al. 2021, With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning"
    minimum_images = 115_200
    recipe = Recipe(optimizer="lars", base_lr=0.3, weight_decay=1e-6, warmup_fraction=10 / 1000, views="byol")

    def __init__(self, backbone: Backbone, views: Views, hidden_dim: int = 2048, prediction_hidden_dim: int = 4096,
                 projection_dim: int = 256, queue_size: int = 98304, temperature: float = 0.1) -> None:
        super().__init__(backbone, views)
        if queue_size < 1:
            raise ValueError("queue_size must be positive")
        d = backbone.feature_dim
        self.projection = MLPHead([Block(d, hidden_dim), Block(hidden_dim, hidden_dim),
                                   Block(hidden_dim, projection_dim, relu=False)])
        self.prediction = MLPHead([Block(projection_dim, prediction_hidden_dim),
                                   Block(prediction_hidden_dim, projection_dim, batch_norm=False, relu=False)])
        self.criterion = CrossViewInfoNCELoss(temperature)
        # The support set starts as random unit vectors; real embeddings replace them within
        # queue_size / batch steps (the paper fills it the same way, from the first batches).
        self.register_buffer("support", F.normalize(torch.randn(queue_size, projection_dim), dim=1))
        self.register_buffer("support_pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def nearest_neighbour(self, z: torch.Tensor) -> torch.Tensor:
        """The support-set row of highest cosine similarity to each row of z."""
        return self.support[(F.normalize(z.float(), dim=1) @ self.support.T).argmax(dim=1)]

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(images, generator, n=2)
        z = self.projection(self.backbone(torch.cat([view1, view2])))
        p1, p2 = self.prediction(z).chunk(2)
        z1, z2 = z.chunk(2)
        loss = 0.5 * (self.criterion(self.nearest_neighbour(z1), p2) + self.criterion(self.nearest_neighbour(z2), p1))
        ring_enqueue(self.support, self.support_pointer, gather_detached(F.normalize(z1.detach().float(), dim=1)))
        return {"loss": loss, "embedding": z1}
