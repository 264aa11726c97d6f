"""Views of clips: the image view pipeline applied with one set of parameters per clip.

Each clip (uint8 C x T x H x W) draws a single crop, flip and colour distortion shared by all its
frames, so the augmentation changes what a clip looks like but never its motion (the temporally
consistent augmentation of CVRL, Qian et al. 2021, https://arxiv.org/abs/2008.03800, Sec. 3.2).
"""
from __future__ import annotations

import torch

from .pipeline import ViewSettings, Views


class ClipViews(Views):
    """``Views`` for clips: B x C x T x H x W in, normalized float B x C x T x size x size out."""

    def one(self, clips: torch.Tensor, s: ViewSettings, generator: torch.Generator) -> torch.Tensor:
        x = clips.float() / 255.0 if clips.dtype == torch.uint8 else clips.float()
        b, c, t, h, w = x.shape
        params = self.sample(b, h, w, s, generator, x.device)
        params = {k: v.repeat_interleave(t, 0) for k, v in params.items()}  # clip i's row for each of its frames
        frames = self.apply(x.transpose(1, 2).reshape(b * t, c, h, w), params, s)
        return frames.reshape(b, t, c, *frames.shape[-2:]).transpose(1, 2)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            return super().denormalize(x)
        mean, std = self.normalization.tensors(x.device)
        return x * std[None, :, None, None, None] + mean[None, :, None, None, None]
