"""Next-frame prediction in feature space: predictive coding over a clip's frames."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..backbones import Backbone
from ..backbones.video import frame_encoder
from ..heads import projection_head
from ..losses import CrossViewInfoNCELoss
from ..views import Views
from ..views.temporal import sorted_frames, take_frames
from .base import Panel, register_method
from .video_base import VIDEO_RECIPE, VideoMethod


@register_method
class NextFrame(VideoMethod):
    """Predict the next frame's features from the frames before it (Contrastive Predictive Coding on
    frames; Dense Predictive Coding's recipe with one frame per step).

    - [0] van den Oord, Li & Vinyals, 2018, Representation Learning with Contrastive Predictive
      Coding, https://arxiv.org/abs/1807.03748 (equations 3-4)
    - [1] Han, Xie & Zisserman, 2019, Video Representation Learning by Dense Predictive Coding,
      https://arxiv.org/abs/1909.04656

    ``context + 1`` frames in order (every ``gap``-th of the clip, random start; by default the
    largest gap that fits, so the frames span the clip): z_t = g(f(x_t))
    per frame, c_t = GRU(z_1..z_t), and the prediction ẑ_{t+1} = W c_t must pick the true z_{t+1}
    among every frame of the batch, its own clip's other frames included (InfoNCE, eq. 4, cosine
    similarities at temperature τ): L = -log exp(ẑ·z₊/τ) / Σ_j exp(ẑ·z_j/τ). Regressing features
    instead would have a constant optimum; the negatives rule it out. The frames share one crop.
    """

    name = "next_frame"
    family = "video"
    paper = "van den Oord et al. 2018 (CPC); Han et al. 2019, Video Representation Learning by Dense Predictive Coding"
    recipe = VIDEO_RECIPE
    collapse_prone = True  # features are contrasted, as in the joint-embedding methods

    def __init__(self, backbone: Backbone, views: Views, context: int = 4, gap: int | None = None, dim: int = 128,
                 temperature: float = 0.1) -> None:
        super().__init__(backbone, views)
        frame_encoder(backbone, self.name)
        if context < 1 or (gap is not None and gap < 1):
            raise ValueError("next_frame needs context >= 1 and gap >= 1")
        self.context, self.gap = context, gap
        self.project = projection_head(backbone.feature_dim, backbone.feature_dim, dim)
        self.aggregate = nn.GRU(dim, dim, batch_first=True)
        self.predict = nn.Linear(dim, dim)
        self.criterion = CrossViewInfoNCELoss(temperature)

    def _index(self, b: int, t: int, generator: torch.Generator) -> torch.Tensor:
        gap = self.gap or max(1, (t - 1) // self.context)
        span = self.context * gap + 1
        if span > t:
            raise ValueError(f"next_frame with context {self.context} and gap {gap} needs clips of {span} frames, "
                             f"these have {t} (--frames)")
        start = sorted_frames(b, t - span + 1, 1, generator)  # B x 1, uniform
        return start + torch.arange(0, span, gap)  # B x (context + 1)

    def forward(self, clips: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        b = len(clips)
        frames = self.clip_view(take_frames(clips, self._index(b, clips.shape[2], generator)), generator)
        feats = self.backbone.model.per_frame(frames)  # B x (K+1) x D
        z = self.project(feats.flatten(0, 1)).reshape(b, self.context + 1, -1)
        states, _ = self.aggregate(z[:, :-1])  # c_t sees frames 1..t
        predicted = self.predict(states)  # ẑ_{t+1} for t = 1..K
        return {"loss": self.criterion(predicted.flatten(0, 1), z[:, 1:].flatten(0, 1)), "embedding": z[:, 0]}

    @torch.no_grad()
    def illustrate(self, clips: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        index = self._index(len(clips), clips.shape[2], generator)
        return self.frame_strips(self.clip_view(clips, generator), index, None,
                                 "predict each frame's features from the frames before it")
