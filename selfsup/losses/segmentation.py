"""Per-pixel losses of segmentation: cross-entropy plus soft Dice.

- [0] Milletari, Navab & Ahmadi, 2016, V-Net, https://arxiv.org/abs/1606.04797 (the Dice loss, Eq. 1)
- [1] Drozdzal et al. 2016, The Importance of Skip Connections in Biomedical Image Segmentation,
  https://arxiv.org/abs/1608.04117 (cross-entropy and Dice together)

Soft Dice of class c over a batch: ``D_c = (2 Σ p_c y_c + ε) / (Σ p_c + Σ y_c + ε)`` with ``p`` the softmax
probabilities and ``y`` the one-hot mask, summed over every pixel of the batch; the loss is
``CE + (1 - mean_c D_c)``. Cross-entropy gives every pixel a gradient; Dice keeps a thin class (EM's
membranes, a fifth of the pixels) from being outvoted by the background.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice(logits: torch.Tensor, masks: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Mean over classes of the soft Dice coefficient of ``logits`` (B x K x H x W) against ``masks`` (B x H x W)."""
    probabilities = logits.float().softmax(1)
    one_hot = F.one_hot(masks, logits.shape[1]).permute(0, 3, 1, 2).to(probabilities.dtype)
    dims = (0, 2, 3)
    overlap = (probabilities * one_hot).sum(dims)
    total = probabilities.sum(dims) + one_hot.sum(dims)
    return ((2 * overlap + eps) / (total + eps)).mean()


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy plus ``dice_weight`` x (1 - soft Dice)."""
    return F.cross_entropy(logits.float(), masks) + dice_weight * (1 - soft_dice(logits, masks))
