"""Frame order verification (Shuffle and Learn): is a triplet of frames in temporal order?"""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..backbones.video import frame_encoder
from ..heads import classifier_head
from ..views import Views
from ..views.temporal import order_tuples, take_frames
from .base import Panel, classified, register_method
from .video_base import VIDEO_RECIPE, VideoMethod


@register_method
class FrameOrder(VideoMethod):
    """Shuffle and Learn: Unsupervised Learning using Temporal Order Verification.

    - [0] Misra, Zitnick & Hebert, 2016, https://arxiv.org/abs/1603.08561

    A tuple of three frames (f_b, f_c, f_d) is "in order" (label 1) when the middle frame lies
    between the other two, forwards or backwards, and "shuffled" (label 0) when it is taken from
    outside the interval (f_b, f_a, f_d) or (f_b, f_e, f_d) (Sec. 3.1; ``order_tuples``). The three
    frames go through one shared frame encoder, their features are concatenated and a classifier
    predicts the label: binary cross-entropy as a 2-way softmax. The three frames share one crop and
    flip, so only content and motion tell them apart.
    """

    name = "frame_order"
    family = "video"
    paper = "Misra et al. 2016, Shuffle and Learn: Unsupervised Learning using Temporal Order Verification"
    recipe = VIDEO_RECIPE

    def __init__(self, backbone: Backbone, views: Views, hidden_dim: int | None = 512) -> None:
        super().__init__(backbone, views)
        frame_encoder(backbone, self.name)  # a frame backbone, or a clear error
        self.classifier = classifier_head(3 * backbone.feature_dim, 2, hidden_dim)

    def forward(self, clips: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        index, labels = order_tuples(len(clips), clips.shape[2], generator)
        triplets = self.clip_view(take_frames(clips, index), generator)  # B x C x 3 x S x S
        feats = self.backbone.model.per_frame(triplets)  # B x 3 x D
        return classified(self.classifier(feats.flatten(1)), labels.to(clips.device), feats[:, 0])

    @torch.no_grad()
    def illustrate(self, clips: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        index, labels = order_tuples(len(clips), clips.shape[2], generator)
        labels_text = ["in order" if y else "shuffled" for y in labels]
        return self.frame_strips(self.clip_view(clips, generator), index, labels_text, "is the triplet in order?")
