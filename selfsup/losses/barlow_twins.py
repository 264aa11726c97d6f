"""Barlow Twins: the cross-correlation of two views' embeddings driven to the identity."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..utils.distributed import gather


def _standardize(z: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit (biased) variance per dimension over the batch."""
    z = z.float()
    return (z - z.mean(0)) / z.std(0, unbiased=False).clamp(min=1e-6)


class BarlowTwinsLoss(nn.Module):
    """Σ_i (1 - C_ii)² + λ Σ_i Σ_{j≠i} C_ij².

    - [0] Barlow Twins: Self-Supervised Learning via Redundancy Reduction, 2021, Zbontar et al.,
      https://arxiv.org/abs/2103.03230 (equations 1 and 2)

    C is the D x D cross-correlation between the batch-standardized embeddings of the two views
    (each dimension: zero mean, unit variance over the batch), averaged over the batch.

    Args:
        lambda_offdiag: λ, the weight of the redundancy-reduction term (paper: 5e-3).

    Shapes: z1, z2: N x D with N > 1; returns a scalar.
    """

    def __init__(self, lambda_offdiag: float = 5e-3) -> None:
        super().__init__()
        if lambda_offdiag < 0:
            raise ValueError(f"lambda_offdiag must be non-negative, got {lambda_offdiag}")
        self.lambda_offdiag = lambda_offdiag

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
            raise ValueError(f"expected two N x D tensors (N > 1) of the same shape, got {tuple(z1.shape)}, {tuple(z2.shape)}")
        z1, z2 = gather(z1), gather(z2)  # the global batch under data-parallel training
        c = _standardize(z1).T @ _standardize(z2) / z1.shape[0]  # D x D cross-correlation
        on_diag = (1 - c.diagonal()).pow(2).sum()
        off_diag = c.pow(2).sum() - c.diagonal().pow(2).sum()
        return on_diag + self.lambda_offdiag * off_diag
