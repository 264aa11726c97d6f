"""UDA's and FixMatch's loss terms against their formulas, computed another way."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from selfsup.losses.consistency import (confidence_mask, kl_consistency, pseudo_label_loss, sharpen, tsa_cross_entropy,
                                        tsa_threshold)


def test_sharpening_is_a_tempered_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    sharp = sharpen(logits, 0.4)
    expected = torch.tensor([math.exp(5.0), math.exp(2.5), 1.0])
    torch.testing.assert_close(sharp[0], expected / expected.sum())
    assert sharp[0, 0] > torch.softmax(logits, 1)[0, 0]  # T < 1 sharpens
    torch.testing.assert_close(sharpen(logits, 1.0), torch.softmax(logits, 1))
    with pytest.raises(ValueError):
        sharpen(logits, 0.0)


def test_kl_consistency_equals_torch_distributions_kl_with_the_mask_counting_as_zero():
    torch.manual_seed(0)
    target = torch.softmax(torch.randn(6, 5), 1)
    target[0] = torch.tensor([1.0, 0, 0, 0, 0])  # 0 log 0 terms
    logits = torch.randn(6, 5, requires_grad=True)
    mask = torch.tensor([1.0, 1, 0, 1, 0, 1])
    per_row = kl_divergence(Categorical(probs=target), Categorical(logits=logits))
    torch.testing.assert_close(kl_consistency(target, logits), per_row.mean())
    torch.testing.assert_close(kl_consistency(target, logits, mask), (per_row * mask).sum() / 6)
    kl_consistency(target.requires_grad_(), logits).backward()
    assert target.grad is None and logits.grad is not None  # the target takes no gradient


def test_confidence_mask_and_fixmatch_pseudo_labels_on_hand_made_logits():
    probs = torch.tensor([[0.96, 0.02, 0.02], [0.5, 0.3, 0.2], [0.95, 0.05, 0.0]])
    assert confidence_mask(probs, 0.95).tolist() == [1.0, 0.0, 1.0]
    weak = torch.log(probs.clamp(min=1e-9))  # softmax(weak) == probs
    strong = torch.tensor([[0.0, 3.0, 0.0], [5.0, 0.0, 0.0], [2.0, 0.0, 1.0]])
    expected = (-torch.log_softmax(strong[0], 0)[0] - torch.log_softmax(strong[2], 0)[0]) / 3  # row 1 masked out
    torch.testing.assert_close(pseudo_label_loss(weak, strong, 0.95), expected)
    assert pseudo_label_loss(weak, strong, 0.99) == 0  # nothing confident enough: no unlabeled signal


def test_tsa_thresholds_rise_from_one_over_k_to_one():
    """UDA's endpoints: linear from 1/K to 1, log from 1/K to (1 - e^-5)(1 - 1/K) + 1/K, exp from
    e^-5 (1 - 1/K) + 1/K to 1."""
    k = 10
    assert tsa_threshold(1000, 1000, k, "linear") == pytest.approx(1.0)
    assert tsa_threshold(1000, 1000, k, "exp") == pytest.approx(1.0)
    assert tsa_threshold(1000, 1000, k, "log") == pytest.approx((1 - math.exp(-5)) * 0.9 + 0.1)
    assert tsa_threshold(0, 1000, k, "linear") == pytest.approx(0.1)
    assert tsa_threshold(0, 1000, k, "log") == pytest.approx(0.1)
    assert tsa_threshold(0, 1000, k, "exp") == pytest.approx(math.exp(-5) * 0.9 + 0.1)
    mid = {s: tsa_threshold(500, 1000, k, s) for s in ("linear", "log", "exp")}
    assert mid["exp"] < mid["linear"] < mid["log"] and mid["linear"] == pytest.approx(0.55)
    with pytest.raises(ValueError):
        tsa_threshold(0, 10, k, "cosine")


def test_tsa_cross_entropy_leaves_out_examples_already_learned():
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.5], [0.2, 0.0]])
    labels = torch.tensor([0, 1, 0])
    p = torch.softmax(logits, 1)[torch.arange(3), labels]  # 0.982, 0.622, 0.550
    kept = p <= 0.9
    expected = -torch.log(p[kept]).mean()
    torch.testing.assert_close(tsa_cross_entropy(logits, labels, 0.9), expected)
    torch.testing.assert_close(tsa_cross_entropy(logits, labels, 1.0), torch.nn.functional.cross_entropy(logits, labels))
    assert tsa_cross_entropy(logits, labels, 0.1) == 0
