"""Jigsaw puzzle: which permutation shuffled the 3 x 3 tiles."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..backbones import Backbone
from ..heads import classifier_head
from ..views import Views
from ..views.jigsaw import at_input_size, jigsaw_tiles, permutation_set, shuffle_tiles
from .base import Method, Panel, Recipe, classified, register_method


@register_method
class Jigsaw(Method):
    """Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles.

    - [0] Noroozi & Favaro, 2016, https://arxiv.org/abs/1603.09246

    A view is cut into 3 x 3 cells and a tile is cropped at a random place in each (gaps against
    edge shortcuts); the tiles are shuffled by one of ``num_permutations`` permutations chosen
    greedily for a large minimum Hamming distance (section 3.2), each tile goes through the shared
    backbone (the context-free network) and a linear layer (fc6), the 9 outputs are concatenated
    and an MLP (fc7, fc8) classifies the permutation; cross-entropy. Each tile is standardized
    by its own mean and std (section 3.1, against low-level statistics shortcuts). ``tile_input``
    resizes each tile (bilinear) to that many pixels before the backbone, as the paper feeds its
    64-px tiles at the network's scale; at CIFAR's 32 px a tile is 7 px (None: as cut). On CIFAR-10
    ``tile_input=32`` solved the puzzle better and transferred worse; what made
    the 7-px tiles transfer was ResNet's small-image stem (``--stem auto``'s choice at <= 64 px),
    which keeps their resolution: +4.0 kNN over random weights, against -0.2 with the ImageNet stem.
    """

    name = "jigsaw"
    family = "pretext tasks"
    paper = "Noroozi & Favaro 2016, Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles"
    minimum_images = 115_200
    recipe = Recipe(optimizer="sgd", base_lr=0.1, weight_decay=5e-4, warmup_fraction=0.0, views="pretext")

    def __init__(self, backbone: Backbone, views: Views, num_permutations: int = 100, tile_dim: int = 256,
                 hidden_dim: int = 1024, normalize_tiles: bool = True, tile_fraction: float = 0.75,
                 tile_input: int | None = None) -> None:
        super().__init__(backbone, views)
        self.register_buffer("permutations", torch.from_numpy(permutation_set(num_permutations)), persistent=False)
        self.normalize_tiles, self.tile_fraction, self.tile_input = normalize_tiles, tile_fraction, tile_input
        self.tile_head = nn.Linear(backbone.feature_dim, tile_dim)
        self.classifier = classifier_head(9 * tile_dim, num_permutations, hidden_dim)

    def puzzles(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        (view,) = self.views(images, generator, n=1)
        tiles = jigsaw_tiles(view, generator, 3, self.tile_fraction)  # B x 9 x C x t x t
        shuffled, labels = shuffle_tiles(tiles, self.permutations.cpu(), generator)
        return shuffled, labels.to(view.device)

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        tiles, labels = self.puzzles(images, generator)
        b = len(tiles)
        flat = at_input_size(tiles.flatten(0, 1), self.tile_input)  # 9B x C x t x t
        if self.normalize_tiles:
            mean, std = flat.mean((1, 2, 3), keepdim=True), flat.std((1, 2, 3), keepdim=True)
            flat = (flat - mean) / (std + 1e-5)
        features = self.backbone(flat)
        logits = self.classifier(self.tile_head(features).reshape(b, -1))
        return classified(logits, labels, features[::9])

    @torch.no_grad()
    def illustrate(self, images: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        tiles, labels = self.puzzles(images[:8], generator)
        b, k, c, t, _ = tiles.shape
        grid = torch.ones(b, c, 3 * t + 2, 3 * t + 2)  # the tiles in the order fed, laid out row by row, 1 px apart
        shown = self.views.denormalize(tiles.flatten(0, 1)).clamp(0, 1).reshape(b, k, c, t, t).cpu()
        for i in range(k):
            row, col = divmod(i, 3)
            grid[:, :, row * (t + 1):row * (t + 1) + t, col * (t + 1):col * (t + 1) + t] = shown[:, i]
        return [Panel("shuffled tiles, in the order the network receives them (label: permutation index)", grid,
                      [f"perm {int(y)}" for y in labels])]
