"""SwAV: predict the Sinkhorn cluster code of one crop from the features of another."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import Backbone
from ..utils.distributed import gather_detached, offset, world_size
from ..utils.monitor import perplexity
from ..heads import projection_head
from ..losses import SwAVLoss, sinkhorn
from ..views import Views
from .base import Method, Recipe, Resolved, RunBudget, register_method
from .multicrop import encode_crops


@register_method
class SwAV(Method):
    """Swapping Assignments between multiple Views.

    - [0] Caron, Misra, Mairal, Goyal, Bojanowski, Joulin, 2020, Unsupervised Learning of Visual
      Features by Contrasting Cluster Assignments, https://arxiv.org/abs/2006.09882

    z = normalize(proj(f(x))) for every crop (multi-crop: 2 global + 6 local); scores z Cᵀ
    against K = 3000 L2-normalized prototypes C (renormalized every step); codes by
    Sinkhorn-Knopp (ε = 0.05, 3 iterations) on the global crops only; swapped-prediction loss
    with τ = 0.1 (equations 1-3). Small batches (section 4.3, the official batch-256 recipe):
    a queue of the last 3,840 global features per crop joins the batch in Sinkhorn once
    ``queue_start_step`` is reached and the queue is full; the prototypes stay frozen for the
    first ``freeze_prototypes_steps`` (the paper: the first epoch; 313 steps at batch 4,096). The
    official batch-256 script starts the queue at epoch 15; a shorter run wants ``queue_size=0``
    (started at epoch 1, the queue cost 5 points of kNN in a 7-epoch CIFAR-10 run).
    Projector 2048 hidden -> 128; LARS lr 0.6 x batch/256 (the batch-256 recipe), weight decay 1e-6.
    The queue and the step count are buffers, saved and restored with the run. ``code_perplexity``
    (logged) is exp of the codes' mean entropy: near K the codes are uniform and carry no cluster
    (the official README's collapse, loss stuck at log K); lower ε sharpens them.
    """

    name = "swav"
    family = "clustering and distillation"
    paper = "Caron et al. 2020, Unsupervised Learning of Visual Features by Contrasting Cluster Assignments"
    minimum_images = 345_600
    recipe = Recipe(optimizer="lars", base_lr=0.6, weight_decay=1e-6, warmup_fraction=0.0, views="swav")
    multi_crop = True
    logged = ("code_perplexity",)

    def __init__(self, backbone: Backbone, views: Views, hidden_dim: int = 2048, projection_dim: int = 128,
                 num_prototypes: int = 3000, temperature: float = 0.1, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, freeze_prototypes_steps: int = 313, queue_size: int = 3840,
                 queue_start_step: int = 3000) -> None:
        super().__init__(backbone, views)
        if views.n_global < 1 or len(views.settings) < 2:
            raise ValueError("SwAV needs at least one global crop and two crops in all")
        self.projection = projection_head(backbone.feature_dim, hidden_dim, projection_dim)
        self.prototypes = nn.Linear(projection_dim, num_prototypes, bias=False)
        self.criterion = SwAVLoss(temperature)
        self.epsilon, self.iterations = epsilon, sinkhorn_iterations
        self.freeze_prototypes_steps, self.queue_start_step = freeze_prototypes_steps, queue_start_step
        self.register_buffer("queue", torch.zeros(views.n_global, queue_size, projection_dim))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    @classmethod
    def for_budget(cls, budget: RunBudget) -> list[Resolved]:
        values = [Resolved("method", "freeze_prototypes_steps", budget.steps_per_epoch,
                           "the prototypes stay frozen for the first epoch (the paper's schedule)"),
                  Resolved("method", "queue_start_step", budget.epochs_to_steps(15),
                           "the official batch-256 script starts the queue at epoch 15")]
        if budget.short():
            why = "a short run: ε 0.01 and two crops (measured +4.42 kNN over random weights at 6.9 CIFAR-10 epochs)"
            values += [Resolved("method", "epsilon", 0.01, why), Resolved("view", "local_crops", 0, why)]
        return values

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        crops = self.views(images, generator)
        z = encode_crops(self.backbone, lambda f: F.normalize(self.projection(f), dim=1), crops)
        weight = self.prototypes.weight
        if int(self.steps_done) < self.freeze_prototypes_steps:
            weight = weight.detach() + 0 * weight  # a zero gradient: frozen, yet every parameter stays in the graph
        scores = [zi @ weight.T for zi in z]
        batch = len(images)
        use_queue = self.queue.shape[1] > 0 and bool(self.queue[:, -1].abs().sum() > 0)
        codes = []
        for i in range(self.views.n_global):
            s = gather_detached(scores[i].detach())  # equal partition over the global batch, as the paper's all-reduce
            if use_queue:
                s = torch.cat([self.queue[i].to(s.dtype) @ weight.detach().T, s])
            q = sinkhorn(s.float(), self.epsilon, self.iterations)
            mine = len(q) - world_size() * batch + offset(batch)  # this rank's rows, after the queue's
            codes.append(q[mine:mine + batch])
        loss = self.criterion(scores, codes)
        if self.training and self.queue.shape[1] > 0 and int(self.steps_done) >= self.queue_start_step:
            self._enqueue([gather_detached(zi.detach()) for zi in z[: self.views.n_global]])
        out = {"loss": loss, "embedding": z[0]}
        if self.logging_step:
            out["code_perplexity"] = perplexity(torch.cat(codes))
        return out

    @torch.no_grad()
    def _enqueue(self, features: list[torch.Tensor]) -> None:
        """Newest first: shift the queue by one batch and write this batch's global features in front."""
        b = min(len(features[0]), self.queue.shape[1])
        self.queue[:, b:] = self.queue[:, :-b].clone()
        for i, f in enumerate(features):
            self.queue[i, :b] = f[:b].to(self.queue.dtype)

    def after_step(self, step: int, total_steps: int) -> None:
        self.steps_done += 1
