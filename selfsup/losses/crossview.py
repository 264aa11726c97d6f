"""InfoNCE between two aligned batches, the other rows of the batch as negatives (MoCo v3, NNCLR)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.distributed import gather, offset


class CrossViewInfoNCELoss(nn.Module):
    """L = -(1/N) Σ_i log( exp(q_i·k_i/τ) / Σ_j exp(q_i·k_j/τ) ), q and k L2-normalized.

    - [0] Chen, Xie, He, 2021, An Empirical Study of Training Self-Supervised Vision
      Transformers (MoCo v3), https://arxiv.org/abs/2104.02057 (algorithm 1, ``ctr``; the
      official code multiplies this by 2τ, which MoCo v3 does itself)
    - [1] Dwibedi et al., 2021, With a Little Help from My Friends: Nearest-Neighbor
      Contrastive Learning of Visual Representations (NNCLR), https://arxiv.org/abs/2104.14548
      (equation 2, with q = NN(z), k = p⁺)

    Unlike NT-Xent, the negatives of q_i are only the N-1 other keys, not the other queries.
    Under data-parallel training the keys are every rank's (the global batch).

    Shapes: query, key: N x D; returns a scalar.
    """

    def __init__(self, temperature: float) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        if query.shape != key.shape or query.ndim != 2:
            raise ValueError(f"expected two N x D tensors of one shape, got {tuple(query.shape)}, {tuple(key.shape)}")
        q, k = F.normalize(query.float(), dim=1), gather(F.normalize(key.float(), dim=1))
        logits = q @ k.T / self.temperature
        first = offset(len(q))
        return F.cross_entropy(logits, torch.arange(first, first + len(q), device=q.device))
