import math

import pytest
import torch

from selfsup.utils.knn import knn_predict, topk_accuracy
from selfsup.evaluate.linear import fit_head, linear_probe


def test_knn_scores_match_the_weighted_vote_by_hand():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(12, 5, generator=g), torch.randn(3, 5, generator=g)
    labels = torch.arange(12) % 3
    scores = knn_predict(train, labels, test, 3, k=4, temperature=0.1)
    for q in range(3):
        sims = [float(torch.nn.functional.cosine_similarity(test[q], t, dim=0)) for t in train]
        top = sorted(range(12), key=lambda i: -sims[i])[:4]
        expected = [sum(math.exp(sims[i] / 0.1) for i in top if labels[i] == c) for c in range(3)]
        assert scores[q].tolist() == pytest.approx(expected, rel=1e-4)


def test_k_is_capped_by_the_number_of_labeled_examples():
    scores = knn_predict(torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 0]), torch.randn(2, 4), 2, k=200)
    assert scores.shape == (2, 2)


def test_topk_accuracy():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    acc = topk_accuracy(scores, torch.tensor([0, 1, 1]), (1, 2))
    assert acc[1] == pytest.approx(1 / 3) and acc[2] == pytest.approx(1.0)


def test_linear_probe_separates_separable_classes():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 4
    y = torch.arange(200) % 4
    x = centres[y] + torch.randn(200, 16, generator=g)
    scores, wd = linear_probe(x[:160], y[:160], x[160:], 4)
    assert topk_accuracy(scores, y[160:], (1,))[1] > 0.95
    weight, bias = fit_head(x[:160], y[:160], 4)
    assert ((x[160:] @ weight.T + bias).argmax(1) == y[160:]).float().mean() > 0.95
