"""Frame-between: is this frame the one midway between two others?"""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..backbones.video import frame_encoder
from ..heads import classifier_head
from ..views import Views
from ..views.temporal import between_triplets, take_frames
from .base import Panel, classified, register_method
from .video_base import VIDEO_RECIPE, VideoMethod


@register_method
class FrameBetween(VideoMethod):
    """Frame-between verification: given frames i and k of a clip, is a candidate frame j = (i+k)/2?

    - [0] Misra, Zitnick & Hebert, 2016, https://arxiv.org/abs/1603.08561 (the triplet verification
      this task varies)
    - [1] Wei et al., 2018, Learning and Using the Arrow of Time, and the frame-interpolation pretext
      tasks of e.g. Jayaraman & Grauman 2016, https://arxiv.org/abs/1605.06240 (temporal coherence)

    Positives (label 1): the true middle frame. Negatives (label 0), half each: a frame of another
    video of the batch, or a frame of the same video outside [i, k] (``between_triplets``), so
    "same video" alone does not answer it. The three frames go through the shared frame encoder;
    a classifier on the concatenated features predicts the label (2-way cross-entropy). Each clip's
    frames share one crop and flip.
    """

    name = "frame_between"
    family = "video"
    paper = "Misra et al. 2016 (triplet verification); frame-between variant"
    recipe = VIDEO_RECIPE

    def __init__(self, backbone: Backbone, views: Views, hidden_dim: int | None = 512) -> None:
        super().__init__(backbone, views)
        frame_encoder(backbone, self.name)
        self.classifier = classifier_head(3 * backbone.feature_dim, 2, hidden_dim)

    def _triplets(self, clips: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index, source, labels = between_triplets(len(clips), clips.shape[2], generator)
        view = self.clip_view(clips, generator)  # the whole clip, so a candidate from it shares its crop
        outer = take_frames(view, index[:, [0, 2]])
        candidate = take_frames(view[source.to(view.device)], index[:, 1:2])
        return torch.cat([outer[:, :, :1], candidate, outer[:, :, 1:]], 2), labels  # B x C x 3 x S x S

    def forward(self, clips: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        triplets, labels = self._triplets(clips, generator)
        feats = self.backbone.model.per_frame(triplets)  # B x 3 x D
        return classified(self.classifier(feats.flatten(1)), labels.to(clips.device), feats[:, 0])

    @torch.no_grad()
    def illustrate(self, clips: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        triplets, labels = self._triplets(clips, generator)
        labels_text = ["yes" if y else "no" for y in labels]
        return self.frame_strips(triplets, torch.arange(3).expand(len(clips), 3), labels_text,
                                 "first, candidate, last: the middle frame?")
