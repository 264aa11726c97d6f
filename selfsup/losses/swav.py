"""SwAV: equal-partition codes by Sinkhorn-Knopp, and the swapped prediction loss."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft codes Q (B x K) maximizing Tr(Qᵀ C ᵀZ) + ε H(Q) over the transportation polytope.

    - [0] Caron et al., 2020, Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments (SwAV), https://arxiv.org/abs/2006.09882 (equations 3-4; appendix A.1)
    - [1] Cuturi, 2013, Sinkhorn Distances (the iterations)

    Q = diag(u) exp(scores / ε) diag(v), u and v found by alternately normalizing so that each
    prototype receives B/K of the batch and each sample sums to 1: the equal partition that
    keeps every sample from landing in one cluster. Returns rows that sum to 1.

    The iterations update the scaling vectors u (samples) and v (prototypes) by matrix-vector
    products instead of rescaling the B x K matrix twice per iteration: the same iterates as the
    official loop, on one float64 copy of the scores worked in place (float64: at small ε, exp of
    the shifted scores underflows float32).
    """
    kernel = scores.to(torch.float64, copy=True)  # B x K, worked in place: 100 MB at 4,096 x 3,000
    kernel.sub_(kernel.max()).div_(epsilon).exp_()  # the shift keeps exp finite
    b, k = kernel.shape
    u = kernel.new_ones(b)
    for _ in range(iterations):
        v = 1.0 / (k * (u @ kernel))  # each prototype: total mass 1/K
        u = 1.0 / (b * (kernel @ v))  # each sample: total mass 1/B
    return kernel.mul_((b * u)[:, None]).mul_(v).to(scores.dtype)


class SwAVLoss(nn.Module):
    """Swapped prediction (equations 1-2): predict crop t's code from crop s's scores, s ≠ t.

    L = (1 / |codes|) Σ_{t ∈ code crops} (1 / (V-1)) Σ_{s ≠ t} -(1/B) Σ_b Σ_k q_t[b,k] log softmax(z_s C / τ)[b,k]

    Codes are computed on the global crops only (paper, section 3.2: multi-crop), by Sinkhorn
    on their scores and optionally on a queue of earlier features' scores prepended (section 4.3).
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, scores: Sequence[torch.Tensor], codes: Sequence[torch.Tensor]) -> torch.Tensor:
        """``scores``: one B x K tensor per crop (global crops first); ``codes``: B x K per global crop."""
        if len(scores) < 2 or len(codes) < 1 or len(codes) > len(scores):
            raise ValueError(f"need at least 2 crops and 1 to <= crops codes, got {len(scores)} and {len(codes)}")
        log_probs = [F.log_softmax(s.float() / self.temperature, dim=1) for s in scores]
        total = scores[0].new_zeros((), dtype=torch.float32)
        for t, q in enumerate(codes):
            others = [lp for s, lp in enumerate(log_probs) if s != t]
            total = total + sum(-(q.float() * lp).sum(dim=1).mean() for lp in others) / len(others)
        return total / len(codes)
