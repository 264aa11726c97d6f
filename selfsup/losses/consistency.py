"""Consistency training on unlabeled images: UDA's and FixMatch's loss terms as separate functions.

- [0] Xie, Dai, Hovy, Luong, Le, 2019/2020, Unsupervised Data Augmentation for Consistency
  Training (UDA), https://arxiv.org/abs/1904.12848 (equation 1; section 3.2 training signal
  annealing; section 3.3 confidence-based masking and sharpening)
- [1] Sohn et al., 2020, FixMatch: Simplifying Semi-Supervised Learning with Consistency and
  Confidence, https://arxiv.org/abs/2001.07685 (equation 2; the threshold τ = 0.95)

A target distribution comes from the model on the original or weakly augmented image, without
gradient; the prediction on a strongly augmented copy is pulled towards it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TSA_SCHEDULES = ("linear", "log", "exp")


def sharpen(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T): UDA's sharpened targets (T < 1 sharpens; T = 1 is the plain softmax)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return F.softmax(logits.float() / temperature, dim=-1)


def confidence_mask(probabilities: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where the largest class probability reaches ``threshold``, else 0 (float, one per row):
    UDA masks out unlabeled images the model is unsure about, FixMatch keeps only confident pseudo-labels."""
    return (probabilities.max(dim=-1).values >= threshold).float()


def kl_consistency(target: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """UDA's consistency term: (1/B) Σ_b m_b KL(target_b ‖ softmax(logits_b)), ``target`` a probability
    distribution taken without gradient; the mean is over the whole batch, masked rows count as zero."""
    if target.shape != logits.shape or logits.ndim != 2:
        raise ValueError(f"expected B x K targets and logits, got {tuple(target.shape)}, {tuple(logits.shape)}")
    target = target.detach().float()
    log_q = F.log_softmax(logits.float(), dim=-1)
    kl = (target * (torch.log(target.clamp(min=1e-12)) - log_q)).sum(dim=-1)  # 0 log 0 = 0
    if mask is not None:
        kl = kl * mask
    return kl.mean()


def pseudo_label_loss(weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float = 0.95) -> torch.Tensor:
    """FixMatch's unlabeled loss (eq. 2): (1/μB) Σ_b 1(max q_b ≥ τ) H(argmax q_b, p(y | strong_b)),
    q_b = softmax of the weak view's logits, taken without gradient."""
    q = F.softmax(weak_logits.detach().float(), dim=-1)
    mask = confidence_mask(q, threshold)
    per_image = F.cross_entropy(strong_logits.float(), q.argmax(dim=-1), reduction="none")
    return (per_image * mask).mean()


def tsa_threshold(step: int, total_steps: int, num_classes: int, schedule: str = "linear") -> float:
    """Training signal annealing's η_t = α_t (1 − 1/K) + 1/K, rising from about 1/K to about 1 over
    training: α_t = t/T (linear), 1 − exp(−5 t/T) (log: releases the labels early), exp(5 (t/T − 1))
    (exp: releases them late)."""
    if schedule not in TSA_SCHEDULES:
        raise ValueError(f"unknown TSA schedule {schedule!r} (known: {', '.join(TSA_SCHEDULES)})")
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    alpha = {"linear": progress, "log": 1 - math.exp(-5 * progress), "exp": math.exp(5 * (progress - 1))}[schedule]
    return alpha * (1 - 1 / num_classes) + 1 / num_classes


def tsa_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
    """The supervised term under TSA: labeled examples the model already predicts with probability
    above η_t are left out, so a few labels are not memorized before the unlabeled signal builds up;
    the mean is over the examples kept (0 when none is)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    correct = log_p.gather(1, labels[:, None]).squeeze(1)
    keep = (correct.exp() <= threshold).float()
    return -(correct * keep).sum() / keep.sum().clamp(min=1.0)


__all__ = ["sharpen", "confidence_mask", "kl_consistency", "pseudo_label_loss", "tsa_threshold", "tsa_cross_entropy",
           "TSA_SCHEDULES"]
