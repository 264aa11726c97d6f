"""DINO: cross-entropy between a centred, sharpened teacher and the student, crop to crop."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.distributed import gather_detached


class DINOLoss(nn.Module):
    """L = (1/P) Σ_{t ∈ teacher crops} Σ_{s ≠ t} H(P_t, P_s) with H(a, b) = -Σ_k a_k log b_k.

    - [0] Caron et al., 2021, Emerging Properties in Self-Supervised Vision Transformers (DINO),
      https://arxiv.org/abs/2104.14294 (equation 3 and algorithm 1)

    P_s = softmax(g_s / τ_s); P_t = softmax((g_t - c) / τ_t), with τ_t < τ_s (sharpening) and
    the centre c an EMA of the teacher's batch means (c ← m c + (1 - m) mean(g_t)), which keeps
    one dimension from dominating. Sharpening and centring balance each other, so neither
    collapse (uniform output, or one-hot output) wins. P counts the (t, s) pairs.
    The centre is a buffer: it is saved in checkpoints and restored on resume.
    """

    def __init__(self, out_dim: int, student_temperature: float = 0.1, teacher_temperature: float = 0.04,
                 center_momentum: float = 0.9) -> None:
        super().__init__()
        if student_temperature <= 0 or teacher_temperature <= 0 or not 0 <= center_momentum < 1:
            raise ValueError("temperatures must be positive and center_momentum in [0, 1)")
        self.student_temperature, self.teacher_temperature = student_temperature, teacher_temperature
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
        """``student``: B x K per crop (the teacher's crops first); ``teacher``: B x K per global crop."""
        return self.cross_entropy(student, self.targets(teacher))

    def cross_entropy(self, student: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
        """The loss from targets already made by ``targets`` (a caller that also inspects them)."""
        log_probs = [F.log_softmax(s.float() / self.student_temperature, dim=1) for s in student]
        total, pairs = student[0].new_zeros((), dtype=torch.float32), 0
        for t, target in enumerate(targets):
            for s, lp in enumerate(log_probs):
                if s != t:
                    total = total + (-(target * lp).sum(dim=1)).mean()
                    pairs += 1
        return total / pairs

    def targets(self, teacher: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """P_t per teacher crop: centred, sharpened by τ_t, without gradient."""
        return [F.softmax((t.detach().float() - self.center) / self.teacher_temperature, dim=1) for t in teacher]

    @torch.no_grad()
    def update_center(self, teacher: Sequence[torch.Tensor]) -> None:
        batch_center = gather_detached(torch.cat([t.float() for t in teacher])).mean(dim=0, keepdim=True)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
