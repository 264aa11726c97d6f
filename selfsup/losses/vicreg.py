"""VICReg: variance, invariance and covariance terms on two views' embeddings."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.distributed import gather


def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """v(Z) = mean_j max(0, γ - sqrt(Var(z_j) + ε)) (VICReg eq. 1)."""
    std = torch.sqrt(z.var(0) + eps)
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """c(Z) = (1/d) Σ_{i≠j} C(Z)_ij², C the covariance matrix (VICReg eq. 3-4)."""
    n, d = z.shape
    centred = z - z.mean(0)
    cov = centred.T @ centred / (n - 1)
    return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d


class VICRegLoss(nn.Module):
    """λ·s(Z, Z') + μ·[v(Z) + v(Z')] + ν·[c(Z) + c(Z')].

    - [0] VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning,
      2022, Bardes, Ponce & LeCun, https://arxiv.org/abs/2105.04906 (equation 6)

    s is the mean squared error between paired embeddings (per element, as the reference code's
    ``F.mse_loss``); v and c as in ``variance_term`` and ``covariance_term``, summed over the two
    branches as equation 6 and the paper's Algorithm 1 write it. The reference code averages the
    two variance terms (halving μ's weight against s) but sums the covariance terms; selfsup keeps
    the paper's sum on purpose: it is the written definition, and selfsup's measured CIFAR-10
    results were trained with it.
    Defaults are the paper's: λ = μ = 25, ν = 1, γ = 1, ε = 1e-4.

    Shapes: z1, z2: N x D with N > 1; returns a scalar.
    """

    def __init__(self, invariance: float = 25.0, variance: float = 25.0, covariance: float = 1.0,
                 gamma: float = 1.0, eps: float = 1e-4) -> None:
        super().__init__()
        if min(invariance, variance, covariance) < 0:
            raise ValueError("VICReg coefficients must be non-negative")
        self.invariance, self.variance, self.covariance = invariance, variance, covariance
        self.gamma, self.eps = gamma, eps

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
            raise ValueError(f"expected two N x D tensors (N > 1) of the same shape, got {tuple(z1.shape)}, {tuple(z2.shape)}")
        z1, z2 = gather(z1).float(), gather(z2).float()  # the global batch under data-parallel training
        invariance = F.mse_loss(z1, z2)
        variance = variance_term(z1, self.gamma, self.eps) + variance_term(z2, self.gamma, self.eps)
        covariance = covariance_term(z1) + covariance_term(z2)
        return self.invariance * invariance + self.variance * variance + self.covariance * covariance
