"""SimCLR on 3D volumes: two 3D views of a volume are the positive pair."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import projection_head
from ..losses import NTXentLoss
from ..views import Views
from .base import Panel, Recipe, register_method
from .volume_base import VolumeMethod


@register_method
class SimCLR3D(VolumeMethod):
    """3D contrastive learning: SimCLR with 3D views.

    - [0] Chen, Kornblith, Norouzi, Hinton, 2020, https://arxiv.org/abs/2002.05709 (NT-Xent, eq. 1)
    - [1] Taleb et al., 2020, 3D Self-Supervised Methods for Medical Imaging,
      https://arxiv.org/abs/2006.03829 (3D contrastive predictive coding and its 3D augmentations)

    Two views of each volume (random cubic crop resized back, axis flips, intensity shift and scale,
    Gaussian noise: ``VolumeViews``), the encoder, an MLP projection to 128 dimensions and NT-Xent over
    the 2N views (temperature 0.5, SimCLR's CIFAR setting; LARS, lr 0.3 x batch/256).
    """

    name = "simclr3d"
    family = "3D volumes"
    paper = "Chen et al. 2020 (SimCLR) with 3D views (Taleb et al. 2020)"
    recipe = Recipe(optimizer="lars", base_lr=0.3, weight_decay=1e-6, views="volume-simclr", backbone="small-convnet3d")
    collapse_prone = True

    def __init__(self, backbone: Backbone, views: Views, temperature: float = 0.5, projection_dim: int = 128) -> None:
        super().__init__(backbone, views)
        self.projection = projection_head(backbone.feature_dim, backbone.feature_dim, projection_dim)
        self.criterion = NTXentLoss(temperature)

    def forward(self, volumes: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(volumes, generator, n=2)
        z1, z2 = self.projection(self.backbone(torch.cat([view1, view2]))).chunk(2)
        return {"loss": self.criterion(z1, z2), "embedding": z1}

    @torch.no_grad()
    def illustrate(self, volumes: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        view1, view2 = self.views(volumes[:3], generator, n=2)
        first, second = self.slice_panels(view1, None, "view 1"), self.slice_panels(view2, None, "view 2 (the positive)")
        return [panel for pair in zip(first, second) for panel in pair]
