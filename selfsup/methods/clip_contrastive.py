"""Clip contrastive learning: two clips of the same video are a positive pair."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..heads import projection_head
from ..losses import NTXentLoss
from ..views import Views
from ..views.temporal import take_frames, two_clip_starts
from .base import Panel, Recipe, register_method
from .video_base import VideoMethod


@register_method
class ClipContrastive(VideoMethod):
    """Spatiotemporal Contrastive Video Representation Learning (CVRL).

    - [0] Qian et al., 2021, https://arxiv.org/abs/2008.03800

    Two sub-clips of ``length`` frames at independent random times of the same video (Sec. 3.1),
    each with its own temporally consistent augmentation (one crop, flip and colour distortion for
    all its frames, Sec. 3.2), are encoded (any clip encoder: ``frames:NAME`` or a 3D network),
    projected by an MLP and contrasted with NT-Xent (eq. 1; SimCLR's loss): the other clips of the
    batch are the negatives. Temperature 0.1 and LARS as in CVRL; SimCLR's CIFAR colour distortion.
    """

    name = "clip_contrastive"
    family = "video"
    paper = "Qian et al. 2021, Spatiotemporal Contrastive Video Representation Learning"
    recipe = Recipe(optimizer="lars", base_lr=0.3, weight_decay=1e-6, views="simclr-cifar", backbone="frames:resnet18")
    collapse_prone = True

    def __init__(self, backbone: Backbone, views: Views, length: int = 8, temperature: float = 0.1,
                 projection_dim: int = 128) -> None:
        super().__init__(backbone, views)
        self.length = length
        self.projection = projection_head(backbone.feature_dim, backbone.feature_dim, projection_dim)
        self.criterion = NTXentLoss(temperature)

    def _clips(self, clips: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        length = min(self.length, clips.shape[2])
        first, second = two_clip_starts(len(clips), clips.shape[2], length, generator)
        steps = torch.arange(length)
        settings = self.views.settings
        return (self.views.one(take_frames(clips, first[:, None] + steps), settings[0], generator),
                self.views.one(take_frames(clips, second[:, None] + steps), settings[1 % len(settings)], generator))

    def forward(self, clips: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        view1, view2 = self._clips(clips, generator)
        z1, z2 = self.projection(self.backbone(torch.cat([view1, view2]))).chunk(2)
        return {"loss": self.criterion(z1, z2), "embedding": z1}

    @torch.no_grad()
    def illustrate(self, clips: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        view1, view2 = self._clips(clips, generator)
        every = torch.arange(0, view1.shape[2], max(1, view1.shape[2] // 4)).expand(len(clips), -1)
        first = self.frame_strips(view1, every, None, "clip 1", rows=3)
        second = self.frame_strips(view2, every, None, "clip 2 of the same video (the positive)", rows=3)
        return [panel for pair in zip(first, second) for panel in pair]
