"""The triplet margin loss with in-batch negatives, mined semi-hard, hardest or at random."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.distributed import gather, offset

MINING = ("semi-hard", "hard", "random")


class TripletMarginLoss(nn.Module):
    """L = mean over anchors a of max(0, m + d(a, p) - d(a, n)).

    - [0] Schroff, Kalenichenko, Philbin, 2015, FaceNet: A Unified Embedding for Face
      Recognition and Clustering, https://arxiv.org/abs/1503.03832 (equation 1; semi-hard
      mining, section 3.2; margin 0.2 on L2-normalized embeddings, d the squared distance)
    - [1] Weinberger & Saul, 2009, Distance Metric Learning for Large Margin Nearest Neighbor
      Classification (the margin formulation)

    Every one of the 2N views is an anchor; its positive is the other view of the same image,
    its candidate negatives the 2N-2 views of other images. Mining picks one negative each:
    - ``semi-hard`` (default): the closest negative still farther than the positive,
      d(a, p) < d(a, n); when there is none, the farthest negative (FaceNet's rule as in
      TensorFlow's implementation). The hardest negatives make training collapse early [0].
    - ``hard``: the closest negative. ``random``: one drawn uniformly (needs a generator).

    Under data-parallel training the candidate negatives are every rank's views (the global batch).

    Shapes: z1, z2: N x D (N >= 2); returns a scalar.
    """

    def __init__(self, margin: float = 0.2, mining: str = "semi-hard") -> None:
        super().__init__()
        if margin < 0 or mining not in MINING:
            raise ValueError(f"margin must be >= 0 and mining one of {MINING}, got {margin}, {mining!r}")
        self.margin, self.mining = margin, mining

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if z1.shape != z2.shape or z1.ndim != 2 or len(z1) < 2:
            raise ValueError(f"expected two N x D tensors of one shape with N >= 2, got {tuple(z1.shape)}, "
                             f"{tuple(z2.shape)}")
        n = len(z1)
        z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
        anchors, candidates = torch.cat([z1, z2]), torch.cat([gather(z1), gather(z2)])  # 2n local, 2m global
        m, first = len(candidates) // 2, offset(n)
        dist = (2 - 2 * anchors @ candidates.T).clamp(min=0)  # squared Euclidean distance of unit vectors
        idx = torch.arange(2 * n, device=z1.device)
        image = first + idx % n  # each anchor's image in the global batch
        partner = torch.where(idx < n, image + m, image)
        d_pos = dist[idx, partner]
        same_image = image[:, None] == (torch.arange(2 * m, device=z1.device) % m)[None, :]
        inf = torch.tensor(float("inf"), device=z1.device)
        if self.mining == "hard":
            d_neg = torch.where(same_image, inf, dist).min(dim=1).values
        elif self.mining == "random":
            scores = torch.rand(dist.shape, generator=generator).to(z1.device)
            pick = torch.where(same_image, -inf, scores).argmax(dim=1)
            d_neg = dist[idx, pick]
        else:
            farther = ~same_image & (dist > d_pos[:, None])
            semi_hard = torch.where(farther, dist, inf).min(dim=1).values
            easiest = torch.where(same_image, -inf, dist).max(dim=1).values
            d_neg = torch.where(farther.any(dim=1), semi_hard, easiest)
        return F.relu(self.margin + d_pos - d_neg).mean()
