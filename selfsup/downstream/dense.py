"""Whole images through a segmentation model by overlapping sliding windows.

The image is covered by ``window`` x ``window`` tiles placed every ``stride`` pixels (the last tile of a
row or column flush with the edge), each tile's logits are added into the image's canvas and every pixel
is divided by the number of tiles that covered it: pixels near a tile's border, where the network sees
least context, are outvoted by the tiles that hold them in their interior. An image no larger than a
window is one tile: the whole-image pass.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _starts(side: int, window: int, stride: int) -> list[int]:
    if side <= window:
        return [0]
    starts = list(range(0, side - window, stride))
    return starts + [side - window]


@torch.no_grad()
def sliding_window_logits(model: nn.Module, image: torch.Tensor, window: int, overlap: float = 0.5,
                          batch_size: int = 8) -> torch.Tensor:
    """K x H x W logits of ``model`` (B x C x h x w -> B x K x h x w) for one normalized C x H x W image."""
    _, height, width = image.shape
    stride = max(1, int(window * (1 - overlap)))
    boxes = [(top, left) for top in _starts(height, window, stride) for left in _starts(width, window, stride)]
    canvas, counts = None, torch.zeros(1, height, width, device=image.device)
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first:first + batch_size]
        tiles = torch.stack([image[:, t:t + window, s:s + window] for t, s in chunk])
        logits = model(tiles).float()
        if canvas is None:
            canvas = torch.zeros(logits.shape[1], height, width, device=image.device)
        for (t, s), tile in zip(chunk, logits):
            canvas[:, t:t + tile.shape[1], s:s + tile.shape[2]] += tile
            counts[:, t:t + tile.shape[1], s:s + tile.shape[2]] += 1
    assert canvas is not None
    return canvas / counts
