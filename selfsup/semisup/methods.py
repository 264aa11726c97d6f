"""UDA and FixMatch: a supervised term on the labeled batch plus a consistency term on the unlabeled one.

Both see, per step, a labeled batch (weak view), and an unlabeled batch twice: a weak view
(flip and translation) whose prediction, taken without gradient, is the target, and a strong view
(RandAugment with random magnitudes, then Cutout) whose prediction is pulled towards it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..losses.consistency import (TSA_SCHEDULES, confidence_mask, kl_consistency, pseudo_label_loss, sharpen,
                                  tsa_cross_entropy, tsa_threshold)


@dataclass
class UDA:
    """Unsupervised Data Augmentation (Xie et al. 2020, https://arxiv.org/abs/1904.12848).

    L = CE_TSA(labeled) + λ · (1/μB) Σ_u 1(max p(y|x_u) ≥ β) · KL(sharpen(p(y|x_u), T) ‖ p(y|x̂_u))
    (equation 1 with training signal annealing, section 3.2, and confidence masking and sharpening,
    section 3.3). The official image code (google-research/uda, CIFAR-10 with 4,000 labels, 5
    unlabeled images per labeled one) turns all three off. Here masking (β = 0.8) and sharpening
    (T = 0.4) are on by default, for the far smaller budgets selfsup studies, and TSA is off: on
    digits with 2 labels per class and 300 steps, linear TSA cost 17 points (59.1% against 76.6%),
    since it withholds the few labels for most of a short run. ``tsa=linear|log|exp`` turns it on
    ("exp" releases the labels late, the paper's advice for long runs on few labels, "log" early);
    ``threshold=0`` and ``temperature=1`` turn masking and sharpening off.
    """

    name: ClassVar[str] = "uda"
    ema_decay: ClassVar[float] = 0.0  # the paper evaluates the trained weights themselves
    unlabeled_ratio: ClassVar[int] = 5  # the official CIFAR-10 script's
    weight: float = 1.0  # λ
    temperature: float = 0.4  # T of the sharpened target
    threshold: float = 0.8  # β of the confidence mask
    tsa: str | None = None

    def __post_init__(self) -> None:
        if self.tsa is not None and self.tsa not in TSA_SCHEDULES:
            raise ValueError(f"tsa must be one of {', '.join(TSA_SCHEDULES)} or null, not {self.tsa!r}")

    def supervised(self, logits: torch.Tensor, labels: torch.Tensor, step: int, total: int) -> torch.Tensor:
        if self.tsa is None:
            return F.cross_entropy(logits.float(), labels)
        return tsa_cross_entropy(logits, labels, tsa_threshold(step, total, logits.shape[1], self.tsa))

    def unlabeled(self, weak_logits: torch.Tensor, strong_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted consistency term and the fraction of unlabeled images it used."""
        weak_logits = weak_logits.detach()
        mask = confidence_mask(F.softmax(weak_logits.float(), dim=-1), self.threshold)
        return self.weight * kl_consistency(sharpen(weak_logits, self.temperature), strong_logits, mask), mask.mean()


@dataclass
class FixMatch:
    """FixMatch (Sohn et al. 2020, https://arxiv.org/abs/2001.07685).

    L = CE(labeled) + λ_u · (1/μB) Σ_u 1(max q_u ≥ τ) H(argmax q_u, p(y|x̂_u)), q_u = p(y|weak(x_u))
    (equations 1-2; τ = 0.95, λ_u = 1); the model evaluated is an EMA of the weights (decay 0.999).
    """

    name: ClassVar[str] = "fixmatch"
    ema_decay: ClassVar[float] = 0.999
    unlabeled_ratio: ClassVar[int] = 7  # μ
    weight: float = 1.0  # λ_u
    threshold: float = 0.95  # τ

    def supervised(self, logits: torch.Tensor, labels: torch.Tensor, step: int, total: int) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels)

    def unlabeled(self, weak_logits: torch.Tensor, strong_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = confidence_mask(F.softmax(weak_logits.detach().float(), dim=-1), self.threshold)
        return self.weight * pseudo_label_loss(weak_logits, strong_logits, self.threshold), mask.mean()


SEMISUP_METHODS = {"uda": UDA, "fixmatch": FixMatch}

__all__ = ["UDA", "FixMatch", "SEMISUP_METHODS"]
