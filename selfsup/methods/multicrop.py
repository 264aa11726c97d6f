"""Multi-crop helper: run a network once per crop size, as crops of one size batch together."""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def encode_crops(encode: Callable[[torch.Tensor], torch.Tensor], crops: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``encode`` applied to every crop, one forward pass per distinct resolution (global, local)."""
    outputs: list[torch.Tensor | None] = [None] * len(crops)
    sizes = sorted({c.shape[-1] for c in crops}, reverse=True)
    for size in sizes:
        group = [i for i, c in enumerate(crops) if c.shape[-1] == size]
        encoded = encode(torch.cat([crops[i] for i in group])).chunk(len(group))
        for i, e in zip(group, encoded):
            outputs[i] = e
    return outputs  # type: ignore[return-value]
