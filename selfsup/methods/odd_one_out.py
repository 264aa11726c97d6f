"""Odd-one-out: which of several frame sequences of a video is not in temporal order?"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..backbones import Backbone
from ..backbones.video import frame_encoder
from ..heads import Block, MLPHead, classifier_head
from ..views import Views
from ..views.temporal import odd_one_out, take_frames
from .base import Panel, classified, register_method
from .video_base import VIDEO_RECIPE, VideoMethod


@register_method
class OddOneOut(VideoMethod):
    """Self-Supervised Video Representation Learning With Odd-One-Out Networks (O3N).

    - [0] Fernando, Bilen, Gavves & Gould, 2017, https://arxiv.org/abs/1611.06646

    A question holds N+1 = ``elements`` sequences of ``length`` frames from one video: N in temporal
    order and one whose frames are permuted out of order (Sec. 3; ``odd_one_out``). Every frame goes
    through the shared frame encoder; an element's embedding is an MLP of its frame features in
    sequence order; the embeddings are fused by concatenation (one of the paper's fusions, Sec. 4)
    and a classifier predicts the odd element's position: an (N+1)-way softmax cross-entropy.
    """

    name = "odd_one_out"
    family = "video"
    paper = "Fernando et al. 2017, Self-Supervised Video Representation Learning With Odd-One-Out Networks"
    recipe = VIDEO_RECIPE

    def __init__(self, backbone: Backbone, views: Views, elements: int = 6, length: int = 3,
                 element_dim: int = 256) -> None:
        super().__init__(backbone, views)
        frame_encoder(backbone, self.name)
        if elements < 2 or length < 3:
            raise ValueError("odd-one-out needs at least 2 elements of at least 3 frames")
        self.elements, self.length = elements, length
        self.element = MLPHead([Block(length * backbone.feature_dim, element_dim)])
        self.classifier: nn.Module = classifier_head(elements * element_dim, elements)

    def forward(self, clips: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        b = len(clips)
        index, odd = odd_one_out(b, clips.shape[2], generator, self.elements, self.length)
        frames = self.clip_view(take_frames(clips, index.flatten(1)), generator)  # B x C x (E·L) x S x S
        feats = self.backbone.model.per_frame(frames)  # B x E·L x D
        embedded = self.element(feats.reshape(b * self.elements, -1)).reshape(b, -1)
        return classified(self.classifier(embedded), odd.to(clips.device), feats[:, 0])

    @torch.no_grad()
    def illustrate(self, clips: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        index, odd = odd_one_out(len(clips), clips.shape[2], generator, self.elements, self.length)
        labels_text = [f"element {int(o) + 1}" for o in odd]
        return self.frame_strips(self.clip_view(clips, generator), index.flatten(1), labels_text,
                                 f"{self.elements} sequences of {self.length} frames: which one is out of order?")
