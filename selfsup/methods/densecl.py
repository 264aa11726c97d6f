"""DenseCL: MoCo v2 plus a contrastive loss between matched locations of the two views' feature maps."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones import Backbone
from ..heads import Block, DenseProjection, MLPHead
from ..losses import InfoNCELoss, matched_keys, matched_locations
from ..utils.distributed import gather_detached
from ..views import Views
from .base import Method, Recipe, Resolved, RunBudget, register_method
from .momentum import ema_update, frozen_copy
from .queues import queue_for_pool, ring_enqueue


@register_method
class DenseCL(Method):
    """Dense Contrastive Learning, made for dense downstream tasks (detection, segmentation).

    - [0] Wang, Zhang, Shen, Kong, Li, 2021, Dense Contrastive Learning for Self-Supervised Visual
      Pre-Training, https://arxiv.org/abs/2011.09157

    The backbone's last feature map F (B x C x h x w) feeds two heads: the global one (MoCo v2's
    fc-ReLU-fc on F pooled) and a dense one (1x1 conv - ReLU - 1x1 conv at every location, ``DenseProjection``).
    L = (1 - λ) L_q + λ L_r (eq. 4, λ = 0.5):

    - L_q: MoCo v2's InfoNCE (eq. 1) of the global query against its key and a queue of past keys;
    - L_r (eq. 3): for each location i of the query view, InfoNCE of its dense vector r_i against the key
      view's dense vector t_j at the location j = argmax_j cos(f_i, f'_j) of the *backbone's* features,
      with negatives from a second queue holding each past key image's pooled dense vector.

    Keys come from a momentum encoder (m = 0.999) computed on a shuffled batch (shuffling BN), τ = 0.2,
    queues of 65,536; SGD lr 0.03 × batch/256, weight decay 1e-4, cosine schedule, MoCo v2 views (the
    paper's settings, sections 3.2 and 4).
    """

    name = "densecl"
    family = "contrastive"
    paper = "Wang et al. 2021, Dense Contrastive Learning for Self-Supervised Visual Pre-Training"
    recipe = Recipe(optimizer="sgd", base_lr=0.03, weight_decay=1e-4, warmup_fraction=0.0, views="mocov2",
                    sync_batchnorm=False)  # shuffling BN needs per-device statistics

    def __init__(self, backbone: Backbone, views: Views, projection_dim: int = 128, hidden_dim: int = 2048,
                 queue_size: int = 65536, temperature: float = 0.2, momentum: float = 0.999,
                 dense_weight: float = 0.5, bn_splits: int = 8) -> None:
        super().__init__(backbone, views)
        if queue_size < 1 or not 0 <= momentum < 1 or bn_splits < 1 or not 0 <= dense_weight <= 1:
            raise ValueError("queue_size and bn_splits must be positive, momentum in [0, 1) and dense_weight in [0, 1]")
        channels = backbone.feature_map_shape(views.size)[0]
        self.projection = MLPHead([Block(channels, hidden_dim, batch_norm=False),
                                   Block(hidden_dim, projection_dim, batch_norm=False, relu=False)])
        self.dense_projection = DenseProjection(channels, hidden_dim, projection_dim)
        self.target_backbone = frozen_copy(backbone)
        self.target_projection = frozen_copy(self.projection)
        self.target_dense_projection = frozen_copy(self.dense_projection)
        self.criterion = InfoNCELoss(temperature)
        self.momentum, self.dense_weight, self.bn_splits = momentum, dense_weight, bn_splits
        for name in ("queue", "dense_queue"):
            self.register_buffer(name, F.normalize(torch.randn(queue_size, projection_dim), dim=1))
            self.register_buffer(f"{name}_pointer", torch.zeros((), dtype=torch.long))

    @classmethod
    def for_budget(cls, budget: RunBudget) -> list[Resolved]:
        return [Resolved("method", "queue_size", queue_for_pool(budget.n_images, 65536),
                         "both queues no longer than the pool (K = 65,536 is 5 % of ImageNet's images)")]

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self.views(images, generator, n=2)
        features, query, dense_query = self.in_splits(view1, self.backbone, self.projection, self.dense_projection)
        key_features, key, dense_key = self.keys(view2, generator)
        global_loss = self.criterion(query, key, self.queue)
        positives = matched_keys(dense_key, matched_locations(features, key_features))  # B x D x S
        flat = lambda t: t.permute(0, 2, 1).reshape(-1, t.shape[1])  # noqa: E731  B x D x S -> BS x D
        dense_loss = self.criterion(flat(dense_query), flat(positives), self.dense_queue)
        loss = (1 - self.dense_weight) * global_loss + self.dense_weight * dense_loss
        # Every rank enqueues the global batch's keys; the dense queue takes each key image's mean dense vector.
        ring_enqueue(self.queue, self.queue_pointer, gather_detached(F.normalize(key.float(), dim=1)))
        ring_enqueue(self.dense_queue, self.dense_queue_pointer,
                     gather_detached(F.normalize(dense_key.float().mean(2), dim=1)))
        return {"loss": loss, "embedding": query, "global_loss": global_loss.detach(), "dense_loss": dense_loss.detach()}

    @staticmethod
    def encode(view: torch.Tensor, backbone: Backbone, projection: MLPHead,
               dense_projection: DenseProjection) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The backbone's map (B x C x S), the global vector (B x D) and the dense vectors (B x D x S)."""
        feature_map = backbone.feature_map(view)
        return (feature_map.flatten(2), projection(feature_map.mean((2, 3))),
                dense_projection(feature_map).flatten(2))

    def in_splits(self, view: torch.Tensor, *modules) -> tuple[torch.Tensor, ...]:
        """``encode`` on ``bn_splits`` sub-batches, so batch norm sees each one's statistics alone (MoCo's
        per-GPU batches), the outputs concatenated."""
        parts = [self.encode(chunk, *modules) for chunk in view.chunk(max(1, min(self.bn_splits, len(view) // 2)))]
        return tuple(torch.cat(p) for p in zip(*parts))

    @torch.no_grad()
    def keys(self, view: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """The key encoder's map, global and dense vectors, computed on a shuffled order and unshuffled
        (shuffling BN: a query and its key never share batch statistics)."""
        order = torch.randperm(len(view), generator=generator).to(view.device)
        out = []
        for shuffled in self.in_splits(view[order], self.target_backbone, self.target_projection,
                                       self.target_dense_projection):
            unshuffled = torch.empty_like(shuffled)
            unshuffled[order] = shuffled
            out.append(unshuffled)
        return tuple(out)

    def after_step(self, step: int, total_steps: int) -> None:
        for target, online in ((self.target_backbone, self.backbone), (self.target_projection, self.projection),
                               (self.target_dense_projection, self.dense_projection)):
            ema_update(target, online, self.momentum)
