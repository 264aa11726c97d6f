"""The method zoo's losses against independent float64 computations (loops, closed forms)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup.losses import CrossViewInfoNCELoss, DINOLoss, NCELoss, SwAVLoss, TripletMarginLoss, sinkhorn


def unit(rows):
    return [[x / math.sqrt(sum(y * y for y in r)) for x in r] for r in rows]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


# --- MoCo v3 / NNCLR: InfoNCE across two aligned batches -------------------------------------

def crossview_by_loop(q, k, tau):
    q, k = unit(q.double().tolist()), unit(k.double().tolist())
    total = 0.0
    for i in range(len(q)):
        logits = [dot(q[i], k[j]) / tau for j in range(len(k))]
        total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    return total / len(q)


@pytest.mark.parametrize("n,d,tau", [(2, 3, 1.0), (6, 8, 0.2), (12, 16, 0.1)])
def test_crossview_infonce_equals_loop(n, d, tau):
    g = torch.Generator().manual_seed(n)
    q, k = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    assert CrossViewInfoNCELoss(tau)(q, k).item() == pytest.approx(crossview_by_loop(q, k, tau), abs=1e-6)


def test_crossview_infonce_uniform_case_and_scale_invariance():
    # Identical rows: every logit equal, the softmax uniform over N keys: loss log N.
    z = torch.ones(5, 4)
    assert CrossViewInfoNCELoss(0.3)(z, z).item() == pytest.approx(math.log(5), abs=1e-6)
    q, k = torch.randn(6, 8), torch.randn(6, 8)
    loss = CrossViewInfoNCELoss(0.5)
    assert loss(2 * q, 0.1 * k).item() == pytest.approx(loss(q, k).item(), abs=1e-6)


# --- Triplet margin loss ---------------------------------------------------------------------

def triplet_by_loop(z1, z2, margin, mining):
    z = unit(torch.cat([z1, z2]).double().tolist())
    n, total = len(z1), 0.0
    for a in range(2 * n):
        p = (a + n) % (2 * n)
        d = lambda j: sum((x - y) ** 2 for x, y in zip(z[a], z[j]))  # noqa: E731
        negatives = [d(j) for j in range(2 * n) if j % n != a % n]
        if mining == "hard":
            d_neg = min(negatives)
        else:
            farther = [x for x in negatives if x > d(p)]
            d_neg = min(farther) if farther else max(negatives)
        total += max(0.0, margin + d(p) - d_neg)
    return total / (2 * n)


@pytest.mark.parametrize("mining", ["semi-hard", "hard"])
@pytest.mark.parametrize("n,d,margin", [(2, 3, 0.2), (7, 5, 0.5), (10, 16, 1.0)])
def test_triplet_equals_loop(mining, n, d, margin):
    g = torch.Generator().manual_seed(n * d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    expected = triplet_by_loop(z1, z2, margin, mining)
    assert TripletMarginLoss(margin, mining)(z1, z2).item() == pytest.approx(expected, abs=1e-6)


def test_triplet_random_mining_lies_between_hardest_and_easiest():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    hard = TripletMarginLoss(2.0, "hard")(z1, z2).item()
    rand = TripletMarginLoss(2.0, "random")(z1, z2, torch.Generator().manual_seed(1)).item()
    # The easiest negative everywhere: the largest distance, a lower bound on any mining.
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    dist = torch.cdist(z, z).pow(2)
    idx = torch.arange(16)
    same = (idx[:, None] % 8) == (idx[None, :] % 8)
    easiest = F.relu(2.0 + dist[idx, (idx + 8) % 16] - dist.masked_fill(same, -1).max(1).values).mean().item()
    assert easiest - 1e-6 <= rand <= hard + 1e-6


def test_triplet_zero_when_views_agree_and_images_are_far_apart():
    z = torch.eye(4)  # orthogonal images: d(a, n) = 2; identical views: d(a, p) = 0
    assert TripletMarginLoss(0.5)(z, z).item() == pytest.approx(0.0, abs=1e-7)
    assert TripletMarginLoss(2.5)(z, z).item() == pytest.approx(0.5, abs=1e-6)  # margin beyond the gap


# --- SwAV: Sinkhorn-Knopp and the swapped prediction ---------------------------------------

def sinkhorn_by_loop(scores, eps, iterations):
    """Scaling vectors u (prototypes) and v (samples) on exp(scores/ε), alternately updated."""
    s = scores.double().tolist()
    b, k = len(s), len(s[0])
    kernel = [[math.exp(s[i][j] / eps) for j in range(k)] for i in range(b)]
    u, v = [1.0] * k, [1.0] * b
    total = sum(map(sum, kernel))
    v = [1.0 / total] * b
    for _ in range(iterations):
        u = [(1.0 / k) / sum(kernel[i][j] * v[i] for i in range(b)) for j in range(k)]
        v = [(1.0 / b) / sum(kernel[i][j] * u[j] for j in range(k)) for i in range(b)]
    return [[kernel[i][j] * u[j] * v[i] * b for j in range(k)] for i in range(b)]


@pytest.mark.parametrize("b,k,iterations,eps", [(4, 3, 3, 0.5), (6, 10, 3, 0.5), (8, 5, 1, 0.5), (12, 7, 3, 0.02)])
def test_sinkhorn_equals_scaling_vector_loop(b, k, iterations, eps):
    scores = torch.randn(b, k, generator=torch.Generator().manual_seed(b * k)).double()
    q = sinkhorn(scores, eps, iterations)
    np.testing.assert_allclose(q.numpy(), np.array(sinkhorn_by_loop(scores, eps, iterations)), atol=1e-6)


def test_sinkhorn_marginals_and_shift_invariance():
    scores = torch.randn(16, 4, generator=torch.Generator().manual_seed(0)).double()
    q = sinkhorn(scores, 0.5, 200)
    torch.testing.assert_close(q.sum(1), torch.ones(16, dtype=torch.float64))  # a distribution per sample
    torch.testing.assert_close(q.sum(0), torch.full((4,), 16 / 4, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(sinkhorn(scores + 3.0, 0.05, 3), sinkhorn(scores, 0.05, 3))


def test_swav_loss_equals_loop():
    g = torch.Generator().manual_seed(0)
    scores = [torch.randn(5, 7, generator=g).double() for _ in range(4)]
    codes = [torch.softmax(torch.randn(5, 7, generator=g), 1).double() for _ in range(2)]
    tau, expected = 0.1, 0.0
    for t in range(2):
        sub = 0.0
        for s in range(4):
            if s == t:
                continue
            for b in range(5):
                logits = [x / tau for x in scores[s][b].tolist()]
                lse = math.log(sum(math.exp(x) for x in logits))
                sub += -sum(codes[t][b][k].item() * (logits[k] - lse) for k in range(7)) / 5
        expected += sub / 3
    assert SwAVLoss(tau)(scores, codes).item() == pytest.approx(expected / 2, abs=1e-5)


# --- DINO ------------------------------------------------------------------------------------

def test_dino_loss_equals_loop_and_center_follows_ema():
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(3, 6, generator=g) for _ in range(4)]
    teacher = [torch.randn(3, 6, generator=g) for _ in range(2)]
    loss = DINOLoss(6, student_temperature=0.1, teacher_temperature=0.04, center_momentum=0.9)
    loss.center.copy_(torch.randn(1, 6, generator=g))
    c = loss.center[0].double().tolist()
    expected, pairs = 0.0, 0
    for t in range(2):
        for s in range(4):
            if s == t:
                continue
            for b in range(3):
                tl = [(x - ci) / 0.04 for x, ci in zip(teacher[t][b].double().tolist(), c)]
                tz = sum(math.exp(x) for x in tl)
                sl = [x / 0.1 for x in student[s][b].double().tolist()]
                lse = math.log(sum(math.exp(x) for x in sl))
                expected += -sum(math.exp(tl[k]) / tz * (sl[k] - lse) for k in range(6)) / 3
            pairs += 1
    assert loss(student, teacher).item() == pytest.approx(expected / pairs, abs=1e-5)
    before = loss.center.clone()
    loss.update_center(teacher)
    torch.testing.assert_close(loss.center, 0.9 * before + 0.1 * torch.cat(teacher).mean(0, keepdim=True))


def test_dino_teacher_gets_no_gradient():
    student = [torch.randn(2, 4, requires_grad=True) for _ in range(3)]
    teacher = [torch.randn(2, 4, requires_grad=True) for _ in range(2)]
    DINOLoss(4)(student, teacher).backward()
    assert all(t.grad is None for t in teacher) and all(s.grad is not None for s in student)


# --- PIRL's NCE ------------------------------------------------------------------------------

def test_nce_equals_loop_with_its_partition_estimate():
    g = torch.Generator().manual_seed(0)
    memory, views, negatives = (torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g),
                                torch.randn(9, 5, generator=g))
    tau, size = 0.5, 100
    loss = NCELoss(tau, size)
    value = loss(memory, views, negatives).item()
    m, v, n = unit(memory.double().tolist()), unit(views.double().tolist()), unit(negatives.double().tolist())
    z = size * sum(math.exp(dot(vi, nj) / tau) for vi in v for nj in n) / (4 * 9)  # Wu et al., eq. 8
    assert loss.partition.item() == pytest.approx(z, rel=1e-5)
    noise = 9 / size
    expected = 0.0
    for i in range(4):
        p = math.exp(dot(m[i], v[i]) / tau) / z
        expected += -math.log(p / (p + noise))
        for j in range(9):
            pn = math.exp(dot(v[i], n[j]) / tau) / z
            expected += -math.log(1 - pn / (pn + noise))
    assert value == pytest.approx(expected / 4, rel=1e-5)
    # By default Z is estimated afresh on every batch; "first_batch" holds the first estimate (the official code).
    other = torch.randn(9, 5, generator=g)
    z_other = size * sum(math.exp(dot(vi, nj) / tau) for vi in v for nj in unit(other.double().tolist())) / (4 * 9)
    loss(memory, views, other)
    assert loss.partition.item() == pytest.approx(z_other, rel=1e-5) and z_other != pytest.approx(z, rel=1e-2)
    held = NCELoss(tau, size, partition="first_batch")
    held(memory, views, negatives), held(memory, views, other)
    assert held.partition.item() == pytest.approx(z, rel=1e-5)
    with pytest.raises(ValueError, match="partition"):
        NCELoss(tau, size, partition="running")


def test_nce_masks_a_negative_that_is_the_image_itself():
    g = torch.Generator().manual_seed(1)
    memory, views, negatives = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g), torch.randn(3, 4, generator=g)
    loss = NCELoss(0.5, 10)
    full = loss(memory, views, negatives)
    valid = torch.tensor([[True, False, True], [True, True, True]])
    assert loss(memory, views, negatives, valid).item() < full.item()


# --- DirectPred's predictor ------------------------------------------------------------------

def test_direct_predictor_eigenvalues_follow_equation_18():
    from selfsup.methods.directpred import direct_predictor

    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g).double()
    corr = x.T @ x / 50
    w = direct_predictor(corr, 0.01)
    s, u = np.linalg.eigh(corr.numpy())
    expected = u @ np.diag(np.sqrt(s / s.max()) + 0.01) @ u.T
    np.testing.assert_allclose(w.numpy(), expected, atol=1e-10)
    torch.testing.assert_close(w @ corr, corr @ w)  # shares F's eigenvectors
