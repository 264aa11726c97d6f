"""3D rotation prediction: which of 10 rotations was the volume turned by?"""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import classifier_head
from ..views import Views
from ..views.cubes import ROTATIONS_3D, rotate_batch_3d
from .base import Panel, classified, register_method
from .volume_base import VOLUME_RECIPE, VolumeMethod


@register_method
class Rotation3D(VolumeMethod):
    """3D rotation prediction, from "3D Self-Supervised Methods for Medical Imaging".

    - [0] Taleb et al., 2020, https://arxiv.org/abs/2006.03829 (Sec. 3.3)
    - [1] Gidaris, Singh & Komodakis, 2018, https://arxiv.org/abs/1803.07728 (the 2D task)

    Each volume is turned by one of 10 rotations (none, or 1-3 quarter turns about one of the three
    axes; ``rotate_3d``), drawn uniformly, and a classifier on the encoder's features predicts which:
    softmax cross-entropy over the 10 classes.
    """

    name = "rotation3d"
    family = "3D volumes"
    paper = "Taleb et al. 2020, 3D Self-Supervised Methods for Medical Imaging (3D rotation prediction)"
    recipe = VOLUME_RECIPE

    def __init__(self, backbone: Backbone, views: Views, hidden_dim: int | None = None) -> None:
        super().__init__(backbone, views)
        self.classifier = classifier_head(backbone.feature_dim, ROTATIONS_3D, hidden_dim)

    def _rotated(self, volumes: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(ROTATIONS_3D, (len(volumes),), generator=generator)
        return rotate_batch_3d(self.view(volumes, generator), labels), labels

    def forward(self, volumes: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        rotated, labels = self._rotated(volumes, generator)
        features = self.backbone(rotated)
        return classified(self.classifier(features), labels.to(volumes.device), features)

    @torch.no_grad()
    def illustrate(self, volumes: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        rotated, labels = self._rotated(volumes, generator)
        names = ["none"] + [f"{q * 90}° about {axis}" for axis in "DHW" for q in (1, 2, 3)]
        return self.slice_panels(rotated, [names[int(y)] for y in labels], "rotated volume")
