"""InfoNCE against a set of negatives (MoCo's queue), one positive per query."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class InfoNCELoss(nn.Module):
    """L_q = -log( exp(q·k₊/τ) / (exp(q·k₊/τ) + Σ_j exp(q·k_j/τ)) ), averaged over queries.

    - [0] Momentum Contrast for Unsupervised Visual Representation Learning, 2020, He et al.,
      https://arxiv.org/abs/1911.05722 (equation 1)
    - [1] Representation Learning with Contrastive Predictive Coding, 2018, van den Oord et al.,
      https://arxiv.org/abs/1807.03748

    Queries, positive keys and negatives are L2-normalized here (dot products are cosines).

    Shapes: query, positive: N x D; negatives: K x D (shared by all queries); returns a scalar.
    ``valid`` (N x K, optional): False where a shared negative must not count for a query (PIRL's
    memory bank, where a drawn negative can be the query's own image).
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        if query.shape != positive.shape or query.ndim != 2 or negatives.shape[-1] != query.shape[-1]:
            raise ValueError(f"expected N x D query and positive and K x D negatives, got {tuple(query.shape)}, "
                             f"{tuple(positive.shape)}, {tuple(negatives.shape)}")
        q = F.normalize(query.float(), dim=1)
        k = F.normalize(positive.float(), dim=1)
        n = F.normalize(negatives.float(), dim=1)
        negative_logits = q @ n.T
        if valid is not None:
            negative_logits = negative_logits.masked_fill(~valid, float("-inf"))
        logits = torch.cat([(q * k).sum(1, keepdim=True), negative_logits], dim=1) / self.temperature  # N x (1+K)
        return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
