"""Colorization's class-rebalanced multinomial cross-entropy."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rebalanced_colour_loss(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """L(Ẑ, Z) = -Σ_{h,w} v(Z_{h,w}) Σ_q Z_{h,w,q} log Ẑ_{h,w,q}, averaged over pixels.

    - [0] Colorful Image Colorization, 2016, Zhang, Isola & Efros, https://arxiv.org/abs/1603.08511

    Equation 2 with the rebalancing of equation 3: v(Z_{h,w}) = w_{q*}, q* = argmax_q Z_{h,w,q}.
    logits: B x Q x H x W (Ẑ = softmax over Q); target: B x Q x H x W soft encoding (rows sum to 1);
    class_weights: Q. The paper sums over pixels; the mean keeps the scale independent of H x W.
    """
    log_probs = F.log_softmax(logits.float(), dim=1)
    per_pixel = -(target * log_probs).sum(1)  # B x H x W
    weights = class_weights.to(logits.device)[target.argmax(1)]  # v(Z_{h,w})
    return (weights * per_pixel).mean()
