"""NT-Xent, the normalized temperature-scaled cross-entropy loss of SimCLR."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # 2N x D
        logits = z @ z.T / self.temperature  # 2N x 2N cosine similarities / τ
        logits.fill_diagonal_(float("-inf"))  # k ≠ i: a view is never its own negative
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return F.cross_entropy(logits, targets)
