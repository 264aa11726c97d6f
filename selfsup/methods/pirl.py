"""PIRL: an image and its jigsaw-shuffled tiles map near the image's memory-bank entry."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import Backbone
from ..utils.distributed import gather_detached
from ..losses import InfoNCELoss, NCELoss
from ..views import Views
from ..views.jigsaw import jigsaw_tiles
from .base import Method, Recipe, Resolved, RunBudget, register_method


@register_method
class PIRL(Method):
    """Pretext-Invariant Representation Learning.

    - [0] Misra & van der Maaten, 2020, https://arxiv.org/abs/1912.01991

    f(v_I): backbone + linear to 128 on an augmented image. g(v_It): the jigsaw transform of
    another augmented view, 3x3 tiles (random crops inside their cells), each tile through the
    same backbone and a linear to 128, the 9 features concatenated in a random (shuffled)
    order and projected to 128. Memory bank m_I (one row per image, a buffer): the running
    average m_I ← 0.5 m_I + 0.5 f(v_I) (section 3.2). Loss (equation 5):
    L = λ L_NCE(m_I, g(v_It)) + (1 - λ) L_NCE(m_I, f(v_I)), λ = 0.5, with |D_N| negatives drawn
    uniformly from the bank excluding I (32,000 in the paper, at most the pool size), τ = 0.07.
    SGD lr 0.12 at batch 1,024 (0.03 x batch/256), weight decay 1e-4, cosine schedule.

    NCE's partition Z is estimated on every batch (``partition="batch"``; NCELoss says why).
    ``partition="first_batch"`` holds the first batch's estimate, as the official code does: on
    CIFAR-10 the features' effective rank then fell to 1.5-8 of 128 from step 30 on, and stayed
    under 8 to step 820 of 1,350; with Z per batch the same run trained, rank 36
    at the end. ``loss_type="infonce"`` puts a softmax over the positive and the drawn negatives in
    place of NCE's binary terms (InfoNCE; VISSL's ``nce_loss_with_memory`` offers it as
    ``loss_type: cross_entropy``, and Wu et al.'s equation 2 is its full-bank form).
    - [1] Wu et al., 2018, https://arxiv.org/abs/1805.01978 (equations 2, 6-8)
    """

    name = "pirl"
    family = "contrastive"
    paper = "Misra & van der Maaten 2020, Self-Supervised Learning of Pretext-Invariant Representations"
    minimum_images = 345_600
    recipe = Recipe(optimizer="sgd", base_lr=0.03, weight_decay=1e-4, warmup_fraction=0.0, views="simclr-cifar")
    needs_indices = True

    def __init__(self, backbone: Backbone, views: Views, projection_dim: int = 128, num_negatives: int = 32000,
                 temperature: float = 0.07, loss_weight: float = 0.5, bank_momentum: float = 0.5,
                 loss_type: str = "nce", partition: str = "batch", dataset_size: int | None = None) -> None:
        super().__init__(backbone, views)
        if not 0 <= loss_weight <= 1 or not 0 <= bank_momentum < 1:
            raise ValueError("loss_weight must be in [0, 1] and bank_momentum in [0, 1)")
        if loss_type not in ("nce", "infonce"):
            raise ValueError(f"loss_type must be 'nce' or 'infonce', got {loss_type!r}")
        if loss_type == "infonce" and partition != "batch":
            raise ValueError(f"partition={partition!r} is NCE's partition estimate; loss_type='infonce' has none")
        d = backbone.feature_dim
        self.image_head = nn.Linear(d, projection_dim)
        self.tile_head = nn.Linear(d, projection_dim)
        self.jigsaw_head = nn.Linear(9 * projection_dim, projection_dim)
        self.dataset_size = dataset_size or 1
        self.num_negatives, self.loss_weight, self.bank_momentum = num_negatives, loss_weight, bank_momentum
        self.loss_type = loss_type
        self.criterion = NCELoss(temperature, self.dataset_size, partition) if loss_type == "nce" else InfoNCELoss(temperature)
        self.register_buffer("memory", F.normalize(torch.randn(self.dataset_size, projection_dim), dim=1))

    @classmethod
    def for_budget(cls, budget: RunBudget) -> list[Resolved]:
        if not budget.short():
            return []
        return [Resolved("method", "loss_type", "infonce", "a short run: the softmax over the positive and the bank's "
                         "negatives (measured +3.51 kNN over random weights at 6.9 CIFAR-10 epochs; the paper's NCE +0.50)")]

    def encode_jigsaw(self, view: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        tiles = jigsaw_tiles(view, generator)  # B x 9 x C x t x t
        b = len(tiles)
        shuffle = torch.argsort(torch.rand(b, 9, generator=generator), dim=1).to(view.device)
        tiles = tiles[torch.arange(b, device=view.device)[:, None], shuffle]  # tiles in a random order
        features = self.tile_head(self.backbone(tiles.flatten(0, 1))).reshape(b, -1)
        return self.jigsaw_head(features)

    def contrast(self, view: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                 valid: torch.Tensor) -> torch.Tensor:
        """The loss of a view against its own bank rows (positives) and the drawn bank rows."""
        if self.loss_type == "nce":
            return self.criterion(positives, view, negatives, valid)
        return self.criterion(view, positives, negatives, valid)

    def forward(self, images: torch.Tensor, generator: torch.Generator,
                indices: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if indices is None:
            raise ValueError("PIRL needs the pool indices of the batch (its memory bank has one row per image)")
        if int(indices.max()) >= len(self.memory):
            raise ValueError(f"index {int(indices.max())} is outside the memory bank of {len(self.memory)} rows")
        view, jigsaw_view = self.views(images, generator, n=2)
        f = self.image_head(self.backbone(view))
        g = self.encode_jigsaw(jigsaw_view, generator)
        k = min(self.num_negatives, len(self.memory))
        drawn = torch.randint(0, len(self.memory), (k,), generator=generator).to(self.memory.device)
        negatives, positives = self.memory[drawn], self.memory[indices]
        valid = drawn[None, :] != indices[:, None]  # the paper draws negatives from D excluding I
        loss = (self.loss_weight * self.contrast(g, positives, negatives, valid)
                + (1 - self.loss_weight) * self.contrast(f, positives, negatives, valid))
        with torch.no_grad():  # m_I ← λ m_I + (1-λ) f(v_I), kept on the unit sphere
            rows, fresh = gather_detached(indices), gather_detached(F.normalize(f.detach().float(), dim=1))  # every rank's
            updated = self.bank_momentum * self.memory[rows].float() + (1 - self.bank_momentum) * fresh
            self.memory[rows] = F.normalize(updated, dim=1).to(self.memory.dtype)
        return {"loss": loss, "embedding": f}
