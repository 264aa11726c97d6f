"""Negative cosine similarity, the regression loss of BYOL and SimSiam."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class NegativeCosineSimilarity(nn.Module):
    """Mean of -cos(p, stopgrad(z)) over the batch.

    - [0] Bootstrap Your Own Latent, 2020, Grill et al., https://arxiv.org/abs/2006.07733 (eq. 2:
      ‖p̄ - z̄'‖² = 2 - 2·cos(p, z'), which this equals up to the constant 2 and the factor 2)
    - [1] Exploring Simple Siamese Representation Learning, 2021, Chen & He,
      https://arxiv.org/abs/2011.10566 (eq. 1: D(p, z) = -p/‖p‖ · z/‖z‖, with stop-gradient on z)

    Shapes: p, z: N x D; returns a scalar in [-1, 1]. The target z never receives a gradient.
    """

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if p.shape != z.shape or p.ndim != 2:
            raise ValueError(f"expected two N x D tensors of the same shape, got {tuple(p.shape)}, {tuple(z.shape)}")
        return -F.cosine_similarity(p.float(), z.detach().float(), dim=1).mean()
