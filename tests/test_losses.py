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
