"""The Rubik's cube: recover how a volume's 2 x 2 x 2 cubes were shuffled and which were turned."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones import Backbone
from ..heads import classifier_head
from ..views import Views
from ..views.cubes import cut_cubes, rubik_restore, rubik_shuffle
from ..views.jigsaw import min_hamming_distance, permutation_set
from .base import Panel, register_method
from .volume_base import VOLUME_RECIPE, VolumeMethod, orthogonal_slices


@register_method
class RubikCube(VolumeMethod):
    """Self-supervised Feature Learning for 3D Medical Images by Playing a Rubik's Cube.

    - [0] Zhuang, Li, Ma, Zheng, 2019, https://arxiv.org/abs/1910.02241

    A volume is cut into 2 x 2 x 2 cubes (with a random gap, ``cut_cubes``), the cubes are shuffled by
    one of ``permutations`` fixed permutations chosen greedily for a large minimum Hamming distance
    (as for the jigsaw puzzle), and each cube is turned by 180° about the vertical or the horizontal
    axis, or not. A shared 3D encoder embeds each cube; from the 8 concatenated embeddings one head
    classifies the permutation (softmax cross-entropy, L_P) and another predicts, for each cube, whether
    it was turned about each axis (16 sigmoid outputs, binary cross-entropy, L_R); L = L_P + L_R (Sec. 3).
    """

    name = "rubik_cube"
    family = "3D volumes"
    paper = "Zhuang et al. 2019, Self-supervised Feature Learning for 3D Medical Images by Playing a Rubik's Cube"
    recipe = VOLUME_RECIPE

    def __init__(self, backbone: Backbone, views: Views, permutations: int = 100, gap_fraction: float = 0.125,
                 turn_p: float = 0.5, hidden_dim: int | None = 512) -> None:
        super().__init__(backbone, views)
        self.register_buffer("perms", torch.from_numpy(permutation_set(permutations, items=8)), persistent=False)
        self.min_distance = min_hamming_distance(self.perms.numpy())
        self.gap, self.turn_p = max(1, round(gap_fraction * views.size)), turn_p
        self.order_head = classifier_head(8 * backbone.feature_dim, permutations, hidden_dim)
        self.turn_head = classifier_head(8 * backbone.feature_dim, 16, hidden_dim)

    def _puzzle(self, volumes: torch.Tensor, generator: torch.Generator):
        b = len(volumes)
        cubes = cut_cubes(self.view(volumes, generator), self.gap, generator)  # B x 8 x C x c x c x c
        order = torch.randint(len(self.perms), (b,), generator=generator)
        turned = torch.rand(b, 8, generator=generator) < self.turn_p
        turns = torch.where(turned, torch.randint(1, 3, (b, 8), generator=generator), 0)
        return rubik_shuffle(cubes, self.perms[order.to(self.perms.device)], turns), order, turns

    def forward(self, volumes: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        shuffled, order, turns = self._puzzle(volumes, generator)
        b = len(volumes)
        feats = self.backbone(shuffled.flatten(0, 1)).reshape(b, 8, -1)  # one shared encoder for every cube
        joint = feats.flatten(1)
        order_logits = self.order_head(joint)
        turn_targets = torch.stack([turns == 1, turns == 2], -1).flatten(1).float().to(volumes.device)  # B x 16
        order_loss = F.cross_entropy(order_logits.float(), order.to(volumes.device))
        turn_loss = F.binary_cross_entropy_with_logits(self.turn_head(joint).float(), turn_targets)
        accuracy = (order_logits.argmax(1) == order.to(volumes.device)).float().mean()
        return {"loss": order_loss + turn_loss, "embedding": feats.mean(1), "pretext_accuracy": accuracy,
                "turn_loss": turn_loss.detach()}

    @torch.no_grad()
    def illustrate(self, volumes: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        shuffled, order, turns = self._puzzle(volumes[:2], generator)
        panels = []
        for i in range(len(shuffled)):
            restored = rubik_restore(shuffled[i:i + 1], self.perms[order[i:i + 1].to(self.perms.device)], turns[i:i + 1])
            for title, cubes in (("shuffled and turned", shuffled[i]), ("restored by the inverse", restored[0])):
                mids = orthogonal_slices(self.views.denormalize(cubes).clamp(0, 1))[:, 0]  # 8 x C x c x c axial
                captions = [f"{'↻H' if t == 1 else '↻W' if t == 2 else ''}" for t in turns[i]] if "turned" in title else None
                panels.append(Panel(f"volume {i + 1}, permutation {int(order[i])}: {title} (axial slices)", mids, captions))
        return panels
