"""Relative patch location: where is the second patch, relative to the first."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import classifier_head
from ..views import Views
from ..views.jigsaw import (NEIGHBOUR_CELLS, NEIGHBOURS, at_input_size, drop_colour, project_colour,
                            relative_patch_grid, relative_patch_pairs)
from .base import Method, Panel, Recipe, classified, register_method

ARROWS = ("↖", "↑", "↗", "←", "→", "↙", "↓", "↘")


@register_method
class RelativePatch(Method):
    """Unsupervised Visual Representation Learning by Context Prediction.

    - [0] Doersch, Gupta & Efros, 2015, https://arxiv.org/abs/1505.05192
    - [1] Kolesnikov, Zhai & Beyer, 2019, Revisiting Self-Supervised Visual Representation Learning,
      https://arxiv.org/abs/1901.09005 (all 8 pairs per image; patch-grid evaluation)

    A centre patch and one of its 8 neighbours on a 3 x 3 grid, each through the shared backbone;
    their features concatenated, an MLP (the paper's fc7, fc8) classifies the neighbour's position
    (8-way cross-entropy). Trivial shortcuts are removed as in section 3: gaps between patches
    (half a patch) and jitter (7/96 of a patch) against edge continuation, and, against chromatic
    aberration, projection (the green-magenta axis removed, the default) or colour dropping (two of
    three channels replaced by faint noise): ``aberration`` = project | drop | none. The paper offers
    both; projection keeps the rest of each patch's colour, so the encoder trains on inputs like the
    whole-colour images it is scored on, and on CIFAR-10 it transfers 5.6 kNN points better than
    dropping.
    ``all_pairs`` (the default): each image gives all 8 (centre, neighbour) pairs, its 9 patches read
    once, as [1] trains the task, instead of [0]'s one random pair: 8x the labels for 4.5x the patches.
    Patch side as a fraction of the view (96/384 in the paper's ImageNet setting, 1/4).
    ``patch_input`` resizes each patch (bilinear) to that many pixels before the backbone: the paper
    feeds its 96-px patches at the network's own input size, while a quarter of a 32-px image is 8 px,
    which an ImageNet-stem ResNet reduces to a 2 x 2 map before its first block (None: as cut). On
    CIFAR-10 it did not help: upsampling adds no detail to an 8-px patch.
    The encoder learns patches, not whole images: score it as [1] does, on a grid of patch-sized
    cells, ``selfsup eval --patch-grid 4`` (1 / ``patch_fraction``).
    """

    name = "relative_patch"
    family = "pretext tasks"
    paper = "Doersch et al. 2015, Unsupervised Visual Representation Learning by Context Prediction"
    minimum_images = 115_200
    recipe = Recipe(optimizer="sgd", base_lr=0.1, weight_decay=5e-4, warmup_fraction=0.0, views="pretext")

    def __init__(self, backbone: Backbone, views: Views, patch_fraction: float = 0.25, aberration: str = "project",
                 hidden_dim: int = 512, patch_input: int | None = None, all_pairs: bool = True) -> None:
        super().__init__(backbone, views)
        if aberration not in ("project", "drop", "none"):
            raise ValueError(f"aberration must be project, drop or none, not {aberration!r}")
        self.patch = max(2, int(views.size * patch_fraction))
        self.gap = self.patch // 2
        self.jitter = max(1, round(self.patch * 7 / 96))
        while 3 * self.patch + 2 * self.gap + 2 * self.jitter > views.size and self.gap > 0:
            self.gap -= 1  # shrink the gap first on tiny images
        self.aberration = aberration
        self.patch_input, self.all_pairs = patch_input, all_pairs
        self.classifier = classifier_head(2 * backbone.feature_dim, len(NEIGHBOURS), hidden_dim)

    def countered(self, patches: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """N x C x p x p patches with the chromatic-aberration countermeasure applied to each."""
        if self.aberration == "drop":
            return drop_colour(patches, generator)
        if self.aberration == "project":
            return self.views.normalize(project_colour(self.views.denormalize(patches)))
        return patches

    def grids(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """B x 9 x C x p x p: each image's whole 3 x 3 grid of patches, countered (``all_pairs``)."""
        (view,) = self.views(images, generator, n=1)
        grid = relative_patch_grid(view, generator, self.patch, self.gap, self.jitter)
        return self.countered(grid.flatten(0, 1), generator).unflatten(0, grid.shape[:2])

    def pairs(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(centre, neighbour, label) per pair: one random pair per image, or all 8 (``all_pairs``)."""
        if self.all_pairs:
            return every_pair(self.grids(images, generator))
        (view,) = self.views(images, generator, n=1)
        centre, neighbour, labels = relative_patch_pairs(view, generator, self.patch, self.gap, self.jitter)
        both = self.countered(torch.cat([centre, neighbour]), generator)
        return *both.chunk(2), labels.to(view.device)

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.all_pairs:  # each grid's 9 patches read once; the 8 pairs are made of their features
            grid = self.grids(images, generator)
            features = self.backbone(at_input_size(grid.flatten(0, 1), self.patch_input)).unflatten(0, grid.shape[:2])
            f_centre, f_neighbour, labels = every_pair(features)
            embedding = features[:, 4]  # each image's centre patch once, for the collapse watch
        else:
            centre, neighbour, labels = self.pairs(images, generator)
            features = self.backbone(at_input_size(torch.cat([centre, neighbour]), self.patch_input))  # one pass
            f_centre, f_neighbour = features.chunk(2)
            embedding = f_centre
        logits = self.classifier(torch.cat([f_centre, f_neighbour], 1))
        return classified(logits, labels, embedding)

    @torch.no_grad()
    def illustrate(self, images: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        centre, neighbour, labels = self.pairs(images[:8], generator)
        if self.all_pairs:  # image i's pair i: one pair of each image, every direction once
            pick = torch.arange(len(images[:8])) * 9
            centre, neighbour, labels = centre[pick], neighbour[pick], labels[pick]
        show = lambda x: self.views.denormalize(x).clamp(0, 1)  # noqa: E731
        return [Panel("centre patches", show(centre)),
                Panel("neighbour patches (label: where)", show(neighbour), [ARROWS[int(y)] for y in labels])]


def every_pair(grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B x 9 x ... per-cell items (patches or their features) as all 8 pairs of each image:
    (centre, neighbour, label), each B*8 x ..., label i the neighbour in cell NEIGHBOUR_CELLS[i]."""
    b = len(grid)
    centre = grid[:, 4:5].expand(b, 8, *grid.shape[2:]).flatten(0, 1)
    neighbour = grid[:, list(NEIGHBOUR_CELLS)].flatten(0, 1)
    return centre, neighbour, torch.arange(8, device=grid.device).repeat(b)
