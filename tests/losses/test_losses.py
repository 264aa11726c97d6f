import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.losses import NTXentLoss


def ntxent_by_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """Equation 1 of SimCLR written out anchor by anchor, in float64."""
    z = torch.cat([z1, z2]).double()
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        sim = [float(z[i] @ z[k] / (z[i].norm() * z[k].norm())) for k in range(n2)]
        denom = sum(math.exp(sim[k] / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim[j] / tau) / denom)
    return total / n2


@pytest.mark.parametrize("n,d,tau", [(2, 3, 0.5), (5, 8, 0.1), (16, 32, 1.0)])
def test_ntxent_equals_loop(n, d, tau):
    g = torch.Generator().manual_seed(n * d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    assert NTXentLoss(tau)(z1, z2).item() == pytest.approx(ntxent_by_loop(z1, z2, tau), abs=1e-6)


def test_ntxent_analytic_identical_embeddings():
    # Every similarity is 1, so each anchor's softmax is uniform over 2N-1 others: log(2N-1).
    z = torch.ones(4, 6)
    assert NTXentLoss(0.3)(z, z).item() == pytest.approx(math.log(2 * 4 - 1), abs=1e-6)


def test_ntxent_symmetric_in_views_and_scale_invariant():
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    loss = NTXentLoss(0.5)
    assert loss(z1, z2).item() == pytest.approx(loss(z2, z1).item(), abs=1e-6)
    assert loss(3 * z1, 0.5 * z2).item() == pytest.approx(loss(z1, z2).item(), abs=1e-6)


def test_ntxent_lower_for_matching_views():
    z = F.normalize(torch.randn(8, 16), dim=1)
    loss = NTXentLoss(0.1)
    assert loss(z, z).item() < loss(z, z[torch.randperm(8)]).item()


def test_ntxent_rejects_bad_input():
    with pytest.raises(ValueError):
        NTXentLoss(0.0)
    with pytest.raises(ValueError):
        NTXentLoss(0.5)(torch.randn(4, 3), torch.randn(5, 3))


def test_ntxent_falls_under_sgd():
    z1 = torch.randn(8, 4, requires_grad=True)
    z2 = torch.randn(8, 4, requires_grad=True)
    opt = torch.optim.SGD([z1, z2], lr=0.5)
    losses = []
    for _ in range(10):
        loss = NTXentLoss(0.5)(z1, z2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < losses[0]


def test_negative_cosine_equals_formula_and_stops_gradient():
    from selfsup.losses import NegativeCosineSimilarity

    p = torch.randn(6, 8, requires_grad=True)
    z = torch.randn(6, 8, requires_grad=True)
    loss = NegativeCosineSimilarity()(p, z)
    pd, zd = p.detach().double(), z.detach().double()
    expected = -sum(float(pd[i] @ zd[i] / (pd[i].norm() * zd[i].norm())) for i in range(6)) / 6
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert z.grad is None and p.grad is not None
    assert NegativeCosineSimilarity()(z, 2 * z).item() == pytest.approx(-1.0, abs=1e-6)


def barlow_by_loop(z1, z2, lam):
    z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    a = [(z1[:, i] - z1[:, i].mean()) / z1[:, i].std(unbiased=False) for i in range(d)]
    b = [(z2[:, j] - z2[:, j].mean()) / z2[:, j].std(unbiased=False) for j in range(d)]
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = float((a[i] * b[j]).sum() / n)
            total += (1 - c) ** 2 if i == j else lam * c ** 2
    return total


def test_barlow_twins_equals_loop_and_is_zero_for_whitened_identical_views():
    from selfsup.losses import BarlowTwinsLoss

    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g)
    assert BarlowTwinsLoss(0.01)(z1, z2).item() == pytest.approx(barlow_by_loop(z1, z2, 0.01), rel=1e-5)
    # Orthogonal, standardized columns correlate only with themselves: C = I, loss 0.
    q, _ = torch.linalg.qr(torch.randn(64, 4, generator=g))
    z = (q - q.mean(0)) / q.std(0, unbiased=False)
    z, _ = torch.linalg.qr(z - z.mean(0))
    assert BarlowTwinsLoss()(z, z).item() == pytest.approx(0.0, abs=1e-4)
    assert BarlowTwinsLoss()(z1, z2).item() == pytest.approx(BarlowTwinsLoss()(z2, z1).item(), rel=1e-5)


def test_vicreg_terms_equal_their_formulas():
    from selfsup.losses import VICRegLoss, covariance_term, variance_term

    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(10, 4, generator=g) * 0.5, torch.randn(10, 4, generator=g) * 2.0
    z = z1.double()
    std = [math.sqrt(float(z[:, j].var()) + 1e-4) for j in range(4)]
    assert variance_term(z1).item() == pytest.approx(sum(max(0.0, 1 - s) for s in std) / 4, rel=1e-5)
    cov = torch.cov(z.T)
    off = sum(float(cov[i, j]) ** 2 for i in range(4) for j in range(4) if i != j) / 4
    assert covariance_term(z1).item() == pytest.approx(off, rel=1e-5)
    mse = float(((z1 - z2) ** 2).mean())
    expected = 25 * mse + 25 * (variance_term(z1) + variance_term(z2)).item() + (covariance_term(z1) + covariance_term(z2)).item()
    assert VICRegLoss()(z1, z2).item() == pytest.approx(expected, rel=1e-5)
    # Collapse is penalized: identical constant embeddings have zero invariance but full variance cost.
    const = torch.ones(8, 4)
    assert VICRegLoss()(const, const).item() == pytest.approx(25 * 2 * (1 - math.sqrt(1e-4)), rel=1e-5)


def test_infonce_equals_loop():
    from selfsup.losses import InfoNCELoss

    g = torch.Generator().manual_seed(2)
    q, k, neg = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g), torch.randn(7, 6, generator=g)
    qd, kd, nd = (F.normalize(t.double(), dim=1) for t in (q, k, neg))
    expected = 0.0
    for i in range(5):
        pos = math.exp(float(qd[i] @ kd[i]) / 0.2)
        expected += -math.log(pos / (pos + sum(math.exp(float(qd[i] @ nd[j]) / 0.2) for j in range(7))))
    assert InfoNCELoss(0.2)(q, k, neg).item() == pytest.approx(expected / 5, abs=1e-6)
    # Analytic case: everything identical -> each query's softmax is uniform over 1 + K entries.
    same = torch.ones(3, 4)
    assert InfoNCELoss(0.5)(same, same, torch.ones(9, 4)).item() == pytest.approx(math.log(10), abs=1e-6)


def test_infonce_leaves_out_masked_negatives():
    from selfsup.losses import InfoNCELoss

    g = torch.Generator().manual_seed(3)
    q, k, neg = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g), torch.randn(5, 4, generator=g)
    valid = torch.tensor([[True, False, True, True, False], [True] * 5, [False, True, True, True, True]])
    loss = InfoNCELoss(0.3)
    # Each query on its own, with only its valid negatives, averaged: the mask is a removal.
    expected = sum(loss(q[i:i + 1], k[i:i + 1], neg[valid[i]]).item() for i in range(3)) / 3
    assert loss(q, k, neg, valid).item() == pytest.approx(expected, abs=1e-6)
    assert loss(q, k, neg, valid).item() < loss(q, k, neg).item()
