"""What the video methods share: clips as input (uint8 B x C x T x H x W), clip views with one set of
augmentation parameters per clip, and a recipe sized for short CPU runs."""
from __future__ import annotations

import torch

from ..views.temporal import take_frames
from .base import Method, Panel, Recipe

# SGD with momentum for the frame-level tasks (Shuffle and Learn and O3N trained CaffeNet with SGD);
# lr 0.05 x batch/256 with weight decay 5e-4, the pretext-task setting used for images here.
VIDEO_RECIPE = Recipe(optimizer="sgd", base_lr=0.05, weight_decay=5e-4, warmup_fraction=0.05, views="pretext",
                      backbone="frames:resnet18")


class VideoMethod(Method):
    """A method on clips (``modality = "video"``); ``self.views`` are ``ClipViews``."""

    modality = "video"
    # The frame tasks are classifiers: their pooled ReLU features share a dominant direction by nature
    # and a classification loss has no constant optimum, so they are watched for rank collapse only.
    # The contrastive video methods (next_frame, clip_contrastive) set it back.
    collapse_prone = False

    def clip_view(self, clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One temporally consistent view of each clip (normalized float B x C x T x S x S)."""
        (view,) = self.views(clips, generator, n=1)
        return view

    def frame_strips(self, clips: torch.Tensor, index: torch.Tensor, labels: list[str] | None, what: str,
                     rows: int = 4) -> list[Panel]:
        """``--show-batch``: one row per clip (the first ``rows``), its frames ``index`` (B x K) side by
        side, each captioned with its frame number; the row title says what the task asks (``what``)
        and the clip's label."""
        frames = take_frames(self.views.denormalize(clips).clamp(0, 1), index)  # B x C x K x H x W
        return [Panel(f"{what}: {labels[i]}" if labels else what, frames[i].transpose(0, 1),
                      [f"frame {int(f)}" for f in index[i]]) for i in range(min(rows, len(clips)))]
