"""NT-Xent, the normalized temperature-scaled cross-entropy loss of SimCLR."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.distributed import gather, offset


class NTXentLoss(nn.Module):
    """SimCLR's contrastive loss over 2N views of N images.

    - [0] A Simple Framework for Contrastive Learning of Visual Representations, 2020,
      Chen et al., https://arxiv.org/abs/2002.05709 (equation 1)

    For a positive pair (i, j) with cosine similarity sim:

        l(i, j) = -log( exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ) )

    and the loss is the mean of l over all 2N anchors (each view is an anchor once, so every
    anchor has one positive and 2N-2 negatives).

    Args:
        temperature: τ > 0.

    Under data-parallel training the negatives come from every rank's views (the global batch;
    ``selfsup.distributed.gather``): each rank's anchors are its own 2n views, its candidates
    all 2N, so the mean over ranks is the loss of one process on the whole batch.

    Shapes: z1, z2: N x D (the projections of the two views); returns a scalar.

    Example::

        loss = NTXentLoss(0.5)(projector(backbone(view1)), projector(backbone(view2)))
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.shape != z2.shape or z1.ndim != 2:
            raise ValueError(f"expected two N x D tensors of the same shape, got {tuple(z1.shape)}, {tuple(z2.shape)}")
        n = z1.shape[0]
        z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
        anchors = torch.cat([z1, z2])  # 2n x D, this rank's views
        candidates = torch.cat([gather(z1), gather(z2)])  # 2m x D, every rank's (m = n with one process)
        m, first = len(candidates) // 2, offset(n)
        logits = anchors @ candidates.T / self.temperature  # cosine similarities / τ
        rows = torch.arange(2 * n, device=z1.device)
        own = torch.arange(first, first + n, device=z1.device)
        itself, partner = torch.cat([own, own + m]), torch.cat([own + m, own])
        logits[rows, itself] = float("-inf")  # k ≠ i: a view is never its own negative
        return F.cross_entropy(logits, partner)
