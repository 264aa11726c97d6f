"""MoCo v2: a momentum key encoder and a queue of negatives, with shuffled batch norm."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import Backbone
from ..utils.distributed import gather_detached
from ..heads import Block, MLPHead
from ..losses import InfoNCELoss
from ..views import Views
from .base import Method, Recipe, Resolved, RunBudget, register_method
from .momentum import ema_update, frozen_copy
from .queues import queue_for_pool, ring_enqueue


def forward_in_splits(module: nn.Module, x: torch.Tensor, splits: int) -> torch.Tensor:
    """Run ``module`` on ``splits`` sub-batches, so batch norm sees each one's statistics alone."""
    splits = max(1, min(splits, len(x) // 2))
    return torch.cat([module(chunk) for chunk in x.chunk(splits)])


@register_method
class MoCoV2(Method):
    """Momentum Contrast, version 2.

    - [0] He et al., 2020, Momentum Contrast for Unsupervised Visual Representation Learning,
      https://arxiv.org/abs/1911.05722
    - [1] Chen, Fan, Girshick, He, 2020, Improved Baselines with Momentum Contrastive Learning,
      https://arxiv.org/abs/2003.04297

    Query encoder f_q (backbone + fc-ReLU-fc head to 128), key encoder f_k = EMA of f_q with
    m = 0.999, InfoNCE (eq. 1) with τ = 0.2 against a queue of K = 65,536 past keys. Shuffling
    BN: on one device the batch is cut into ``bn_splits`` sub-batches (MoCo's per-GPU batches);
    keys are computed on a shuffled order and unshuffled, so a query and its key never share
    batch statistics and the model cannot cheat through them. SGD lr 0.03 × batch/256, weight
    decay 1e-4, cosine schedule; MoCo v2 augmentations.

    ``symmetric=True`` (off by default, as in [1]) also asks the second view to find the first:
    L = ½ (L(q₁, k₂) + L(q₂, k₁)), both views' keys joining the queue. This is the improved
    MoCo v2 of SimSiam's comparison ([2], Table 4 and Appendix C: 69.9 % against the paper's 67.5 %
    on ImageNet at 200 epochs) and solo-learn's ``mocov2plus``; it doubles the compute per step.

    - [2] Chen, He, 2021, Exploring Simple Siamese Representation Learning,
      https://arxiv.org/abs/2011.10566
    """

    name = "moco_v2"
    family = "contrastive"
    paper = "He et al. 2020 / Chen et al. 2020, Momentum Contrast (v2: Improved Baselines)"
    minimum_images = 345_600
    recipe = Recipe(optimizer="sgd", base_lr=0.03, weight_decay=1e-4, warmup_fraction=0.0, views="mocov2",
                    sync_batchnorm=False)  # shuffling BN needs per-device statistics

    def __init__(self, backbone: Backbone, views: Views, projection_dim: int = 128, hidden_dim: int = 2048,
                 queue_size: int = 65536, temperature: float = 0.2, momentum: float = 0.999, bn_splits: int = 8,
                 symmetric: bool = False) -> None:
        super().__init__(backbone, views)
        if queue_size < 1 or not 0 <= momentum < 1 or bn_splits < 1:
            raise ValueError("queue_size and bn_splits must be positive and momentum in [0, 1)")
        # MoCo v2's head is fc-ReLU-fc without batch norm (Chen et al. 2020, section 2).
        self.projection = MLPHead([Block(backbone.feature_dim, hidden_dim, batch_norm=False),
                                   Block(hidden_dim, projection_dim, batch_norm=False, relu=False)])
        self.target_backbone = frozen_copy(backbone)
        self.target_projection = frozen_copy(self.projection)
        self.criterion = InfoNCELoss(temperature)
        self.momentum, self.bn_splits, self.symmetric = momentum, bn_splits, symmetric
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, projection_dim), dim=1))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    @classmethod
    def for_budget(cls, budget: RunBudget) -> list[Resolved]:
        values = [Resolved("method", "queue_size", queue_for_pool(budget.n_images, 65536),
                           "the queue no longer than the pool (K = 65,536 is 5 % of ImageNet's images; a longer one holds each image's own stale key among its negatives)")]
        if budget.short():
            # solo-learn's CIFAR mocov2plus (lr 0.3 with warm-up, 256-d, m 0.99), symmetrized: measured +4.49
            # kNN over random weights at 6.9 CIFAR-10 epochs, against -1.31 with the paper's recipe.
            why = "a short run: the symmetrized MoCo v2 at solo-learn's CIFAR settings (measured +4.49 kNN, paper's -1.31)"
            values += [Resolved("method", "symmetric", True, why), Resolved("method", "projection_dim", 256, why),
                       Resolved("method", "momentum", 0.99, why), Resolved("training", "lr", 0.3, why),
                       Resolved("training", "warmup_fraction", 0.1, why)]
        return values

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(images, generator, n=2)
        query = self.queries(view1)
        key = self.keys(view2, generator)
        embedding = query
        if self.symmetric:  # the mean over both directions' queries is ½ (L(q₁, k₂) + L(q₂, k₁))
            query = torch.cat([query, self.queries(view2)])
            key = torch.cat([key, self.keys(view1, generator)])
        loss = self.criterion(query, key, self.queue)  # normalized copies are taken inside; no grad flows here
        # Every rank enqueues the global batch's keys, so all hold the same queue; oldest keys out.
        ring_enqueue(self.queue, self.queue_pointer, gather_detached(F.normalize(key.float(), dim=1)))
        return {"loss": loss, "embedding": embedding}

    def queries(self, view: torch.Tensor) -> torch.Tensor:
        return forward_in_splits(lambda x: self.projection(self.backbone(x)), view, self.bn_splits)

    @torch.no_grad()
    def keys(self, view: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The key encoder's outputs, computed on a shuffled order and unshuffled (shuffling BN)."""
        order = torch.randperm(len(view), generator=generator).to(view.device)
        shuffled = forward_in_splits(lambda x: self.target_projection(self.target_backbone(x)),
                                     view[order], self.bn_splits)
        key = torch.empty_like(shuffled)
        key[order] = shuffled
        return key

    def after_step(self, step: int, total_steps: int) -> None:
        ema_update(self.target_backbone, self.backbone, self.momentum)
        ema_update(self.target_projection, self.projection, self.momentum)
