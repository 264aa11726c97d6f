"""Rotation prediction: which of 0/90/180/270 degrees was the image turned by."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import classifier_head
from ..views import Views
from ..views.corrupt import rotate_batch
from .base import Method, Panel, Recipe, classified, register_method


@register_method
class Rotation(Method):
    """Unsupervised Representation Learning by Predicting Image Rotations (RotNet).

    - [0] Gidaris, Singh & Komodakis, 2018, https://arxiv.org/abs/1803.07728

    Each image x is rotated by g_y(x) = rot(x, 90°·y), y ∈ {0, 1, 2, 3}, and a classifier F on the
    backbone's features predicts y; loss (equation 2): -1/4 Σ_y log F^y(g_y(x)). All four
    rotations of an image are in the same batch (the paper's finding that this trains best).
    SGD with Nesterov momentum 0.9, lr 0.1, weight decay 5e-4 (its CIFAR setting); crops and flips.
    """

    name = "rotation"
    family = "pretext tasks"
    paper = "Gidaris et al. 2018, Unsupervised Representation Learning by Predicting Image Rotations"
    minimum_images = 1_036_800
    recipe = Recipe(optimizer="sgd", base_lr=0.1, weight_decay=5e-4, warmup_fraction=0.0, views="pretext")

    def __init__(self, backbone: Backbone, views: Views, hidden_dim: int | None = None) -> None:
        super().__init__(backbone, views)
        self.classifier = classifier_head(backbone.feature_dim, 4, hidden_dim)

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        (view,) = self.views(images, generator, n=1)
        rotated, labels = rotate_batch(view)  # 4B images, labels 0..3
        features = self.backbone(rotated)
        logits = self.classifier(features)
        return classified(logits, labels, features[:len(view)])

    @torch.no_grad()
    def illustrate(self, images: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        (view,) = self.views(images, generator, n=1)
        rotated, labels = rotate_batch(view[:4])
        return [Panel("rotated images (label: degrees)", self.views.denormalize(rotated).clamp(0, 1),
                      [f"{90 * int(y)}°" for y in labels])]
