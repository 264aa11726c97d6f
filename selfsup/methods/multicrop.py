"""Multi-crop helper: the backbone once per crop size, the head once on every crop's features."""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def encode_crops(backbone: Callable[[torch.Tensor], torch.Tensor], head: Callable[[torch.Tensor], torch.Tensor],
                 crops: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``head(backbone(crop))`` for every crop, as the official SwAV and DINO code computes it
    (DINO's ``MultiCropWrapper``): one backbone pass per distinct resolution (crops of one size
    batch together), then one head pass on all crops' features concatenated in crop order, so the
    head's batch norm normalizes global and local crops together. Every crop has the same batch size."""
    features: list[torch.Tensor | None] = [None] * len(crops)
    for size in sorted({c.shape[-1] for c in crops}, reverse=True):
        group = [i for i, c in enumerate(crops) if c.shape[-1] == size]
        for i, f in zip(group, backbone(torch.cat([crops[i] for i in group])).chunk(len(group))):
            features[i] = f
    return list(head(torch.cat(features)).chunk(len(crops)))  # type: ignore[arg-type]
