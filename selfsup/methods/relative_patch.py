"""Relative patch location: where is the second patch, relative to the first."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import classifier_head
from ..views import Views
from ..views.jigsaw import NEIGHBOURS, at_input_size, drop_colour, project_colour, relative_patch_pairs
from .base import Method, Panel, Recipe, classified, register_method

ARROWS = ("↖", "↑", "↗", "←", "→", "↙", "↓", "↘")


@register_method
class RelativePatch(Method):
    """Unsupervised Visual Representation Learning by Context Prediction.

    - [0] Doersch, Gupta & Efros, 2015, https://arxiv.org/abs/1505.05192

    A centre patch and one of its 8 neighbours on a 3 x 3 grid, each through the shared backbone;
    their features concatenated, an MLP (the paper's fc7, fc8) classifies the neighbour's position
    (8-way cross-entropy). Trivial shortcuts are removed as in section 3: gaps between patches
    (half a patch) and jitter (7/96 of a patch) against edge continuation, and, against chromatic
    aberration, colour dropping (two of three channels replaced by faint noise, the default) or
    projection (the green-magenta axis removed): ``aberration`` = drop | project | none.
    Patch side as a fraction of the view (96/384 in the paper's ImageNet setting, 1/4).
    ``patch_input`` resizes each patch (bilinear) to that many pixels before the backbone: the paper
    feeds its 96-px patches at the network's own input size, while a quarter of a 32-px image is 8 px,
    which an ImageNet-stem ResNet reduces to a 2 x 2 map before its first block (None: as cut). On
    CIFAR-10 it did not help (BENCHMARKS.md, 2c): upsampling adds no detail to an 8-px patch.
    """

    name = "relative_patch"
    paper = "Doersch et al. 2015, Unsupervised Visual Representation Learning by Context Prediction"
    recipe = Recipe(optimizer="sgd", base_lr=0.1, weight_decay=5e-4, warmup_fraction=0.0, views="pretext",
                    args={"patch_fraction": 0.25, "aberration": "drop", "hidden_dim": 512, "patch_input": None})

    def __init__(self, backbone: Backbone, views: Views, patch_fraction: float = 0.25, aberration: str = "drop",
                 hidden_dim: int = 512, patch_input: int | None = None) -> None:
        super().__init__(backbone, views)
        if aberration not in ("drop", "project", "none"):
            raise ValueError(f"aberration must be drop, project or none, not {aberration!r}")
        self.patch = max(2, int(views.size * patch_fraction))
        self.gap = self.patch // 2
        self.jitter = max(1, round(self.patch * 7 / 96))
        while 3 * self.patch + 2 * self.gap + 2 * self.jitter > views.size and self.gap > 0:
            self.gap -= 1  # shrink the gap first on tiny images
        self.aberration = aberration
        self.patch_input = patch_input
        self.classifier = classifier_head(2 * backbone.feature_dim, len(NEIGHBOURS), hidden_dim)

    def pairs(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        (view,) = self.views(images, generator, n=1)
        centre, neighbour, labels = relative_patch_pairs(view, generator, self.patch, self.gap, self.jitter)
        both = torch.cat([centre, neighbour])
        if self.aberration == "drop":
            both = drop_colour(both, generator)
        elif self.aberration == "project":
            both = self.views.normalize(project_colour(self.views.denormalize(both)))
        return *both.chunk(2), labels.to(view.device)

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        centre, neighbour, labels = self.pairs(images, generator)
        both = at_input_size(torch.cat([centre, neighbour]), self.patch_input)
        features = self.backbone(both)  # one pass for both patches
        f_centre, f_neighbour = features.chunk(2)
        logits = self.classifier(torch.cat([f_centre, f_neighbour], 1))
        return classified(logits, labels, f_centre)

    @torch.no_grad()
    def illustrate(self, images: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        centre, neighbour, labels = self.pairs(images[:8], generator)
        show = lambda x: self.views.denormalize(x).clamp(0, 1)  # noqa: E731
        return [Panel("centre patches", show(centre)),
                Panel("neighbour patches (label: where)", show(neighbour), [ARROWS[int(y)] for y in labels])]
