"""DINO: a student matches a momentum teacher's centred, sharpened output across crops."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import Backbone
from ..utils.monitor import perplexity
from ..losses import DINOLoss
from ..views import Views
from .base import Method, Recipe, Resolved, RunBudget, narrower_for_small_pool, register_method
from .momentum import cosine_momentum, ema_update, frozen_copy
from .multicrop import encode_crops


class DINOHead(nn.Module):
    """MLP (GELU; batch norm for convnets) to a bottleneck, L2-normalized, then a weight-normalized
    linear layer to K outputs: w_k = g_k v_k / ||v_k||, g fixed to 1 with ``norm_last_layer`` (the
    official default), learned otherwise (the official ``--norm_last_layer false``, solo-learn's CIFAR
    setting), so the logits can outgrow the cosine's [-1, 1]."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 batch_norm: bool = True, norm_last_layer: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in ((in_dim, hidden_dim), (hidden_dim, hidden_dim)):
            layers += [nn.Linear(a, b)] + ([nn.BatchNorm1d(b)] if batch_norm else []) + [nn.GELU()]
        layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.last_layer = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.last_layer, std=0.02)
        self.last_layer_norm = None if norm_last_layer else nn.Parameter(torch.ones(out_dim, 1))  # g, from 1

    def forward(self, x: torch.Tensor, freeze_last_layer: bool = False) -> torch.Tensor:
        weight = F.normalize(self.last_layer, dim=1)
        if self.last_layer_norm is not None:
            weight = self.last_layer_norm * weight
        if freeze_last_layer:
            weight = weight.detach() + 0 * weight  # zero gradient, still in the graph
        return F.normalize(self.mlp(x), dim=1) @ weight.T


@register_method
class DINO(Method):
    """Self-DIstillation with NO labels.

    - [0] Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin, 2021, Emerging Properties in
      Self-Supervised Vision Transformers, https://arxiv.org/abs/2104.14294

    Student g_θs sees all crops (2 global + 8 local), the teacher g_θt (EMA of the student,
    momentum 0.996 rising to 1 on a cosine) only the global ones; loss and centring as in
    ``DINOLoss`` (equation 3, τ_s = 0.1, τ_t = 0.04, centre momentum 0.9). Head: 3-layer MLP
    (2048 hidden, GELU; batch norm with ``head_batch_norm``, on by default as in solo-learn's ResNet
    recipes, where the official code's ResNet-50 command leaves ``--use_bn_in_head`` off), 256
    bottleneck, weight-normalized last layer to K = 65,536, frozen for the first
    ``freeze_last_layer_steps`` (the paper: 1 epoch; 1,251 steps of ImageNet at batch 1,024). The
    paper's ResNet-50 recipe: SGD lr 0.03 x batch/256, weight decay 1e-4, crops 0.14-1 (global) and
    0.05-0.14 (local). ``teacher_perplexity`` (logged) is exp of the teacher targets' mean entropy,
    the paper's watch for the two collapses (figure 7): near K a uniform output, near 1 a one-hot one.
    In a short run from scratch τ_t 0.04 leaves the targets near-uniform (perplexity ~K/2) and the loss
    at log K; ``teacher_temperature=0.01`` makes them teach.
    """

    name = "dino"
    family = "clustering and distillation"
    paper = "Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers"
    minimum_images = 345_600
    recipe = Recipe(optimizer="sgd", base_lr=0.03, weight_decay=1e-4, warmup_fraction=0.1, views="dino")
    multi_crop = True
    logged = ("teacher_perplexity",)

    def __init__(self, backbone: Backbone, views: Views, out_dim: int = 65536, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, student_temperature: float = 0.1, teacher_temperature: float = 0.04,
                 center_momentum: float = 0.9, base_momentum: float = 0.996, freeze_last_layer_steps: int = 1251,
                 head_batch_norm: bool = True, norm_last_layer: bool = True) -> None:
        super().__init__(backbone, views)
        if views.n_global < 1 or len(views.settings) < 2:
            raise ValueError("DINO needs at least one global crop and two crops in all")
        self.head = DINOHead(backbone.feature_dim, out_dim, hidden_dim, bottleneck_dim, batch_norm=head_batch_norm,
                            norm_last_layer=norm_last_layer)
        self.target_backbone = frozen_copy(backbone)
        self.target_head = frozen_copy(self.head)
        self.criterion = DINOLoss(out_dim, student_temperature, teacher_temperature, center_momentum)
        self.base_momentum, self.freeze_last_layer_steps = base_momentum, freeze_last_layer_steps
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    @classmethod
    def for_budget(cls, budget: RunBudget) -> list[Resolved]:
        values = [Resolved("method", "freeze_last_layer_steps", budget.steps_per_epoch,
                           "the last layer stays frozen for the first epoch (the official code's freeze_last_layer=1)")]
        values += narrower_for_small_pool(budget, "out_dim", 4096, "4,096 prototypes, not 65,536,")
        if budget.short():
            why = "a short run: τ_t 0.01 and two crops (measured +2.51 kNN over random weights at 6.9 CIFAR-10 epochs)"
            values += [Resolved("method", "teacher_temperature", 0.01, why), Resolved("view", "local_crops", 0, why)]
        return values

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        crops = self.views(images, generator)
        n_global = self.views.n_global
        frozen = int(self.steps_done) < self.freeze_last_layer_steps
        student = encode_crops(self.backbone, lambda f: self.head(f, frozen), crops)
        with torch.no_grad():
            teacher = self.target_head(self.target_backbone(torch.cat(crops[:n_global]))).chunk(n_global)
        targets = self.criterion.targets(teacher)  # made once: the loss's and the log's, before the centre moves
        loss = self.criterion.cross_entropy(student, targets)
        out = {"loss": loss, "embedding": student[0]}
        if self.logging_step:
            out["teacher_perplexity"] = perplexity(torch.cat(targets))
        if self.training:
            self.criterion.update_center(teacher)
        return out

    def after_step(self, step: int, total_steps: int) -> None:
        self.steps_done += 1
        momentum = cosine_momentum(step, total_steps, self.base_momentum)
        ema_update(self.target_backbone, self.backbone, momentum)
        ema_update(self.target_head, self.head, momentum)
