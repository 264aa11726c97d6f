"""Weighted k-nearest-neighbour classification on L2-normalized features."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                num_classes: int, k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """Class scores (N_test x C) of the weighted kNN classifier of Wu et al. 2018.

    - [0] Unsupervised Feature Learning via Non-Parametric Instance Discrimination, 2018,
      Wu et al., https://arxiv.org/abs/1805.01978

    Each of the k most cosine-similar training examples votes for its class with weight
    exp(s / T). k = min(k, N_train); T = 0.1 as in MoCo's CIFAR kNN monitor.
    """
    k = min(k, train_features.shape[0])
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1)
    scores = []
    for start in range(0, test.shape[0], chunk):
        sim = test[start:start + chunk] @ train.T  # chunk x N_train
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(sim.shape[0], num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        scores.append(votes)
    return torch.cat(scores)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return {k: float(hits[:, :k].any(1).float().mean()) for k in ks}
