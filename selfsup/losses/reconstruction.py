"""Reconstruction losses of the autoencoders, the context encoder and MAE."""
from __future__ import annotations

import torch


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the masked elements only (all elements when ``mask`` is None).

    - [0] Context Encoders: Feature Learning by Inpainting, 2016, Pathak et al., https://arxiv.org/abs/1604.07379

    The context encoder's reconstruction loss L_rec = ‖M̂ ⊙ (x - F((1 - M̂) ⊙ x))‖²₂ (equation 1),
    normalized by the number of hidden values; with no mask, the plain autoencoder's mean
    squared error. ``mask`` (True = scored) broadcasts against prediction (e.g. B x 1 x H x W).
    """
    error = (prediction.float() - target.float()) ** 2
    if mask is None:
        return error.mean()
    weights = mask.to(error.dtype).expand_as(error)
    return (error * weights).sum() / weights.sum().clamp(min=1)


def normalized_patch_mse(prediction: torch.Tensor, patches: torch.Tensor, hidden: torch.Tensor,
                         normalize: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """MAE's loss: per-patch mean squared error on the hidden patches, targets normalized per patch.

    - [0] Masked Autoencoders Are Scalable Vision Learners, 2022, He et al., https://arxiv.org/abs/2111.06377

    prediction, patches: B x N x (p²·C); hidden: B x N (True = masked, scored). With ``normalize``
    (the paper's default "normalized pixels", section 3) each target patch is standardized by
    its own mean and variance (+1e-6) first.
    """
    target = patches.float()
    if normalize:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + eps) ** 0.5
    per_patch = ((prediction.float() - target) ** 2).mean(-1)  # B x N
    hidden = hidden.to(per_patch.dtype)
    return (per_patch * hidden).sum() / hidden.sum().clamp(min=1)
