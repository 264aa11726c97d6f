"""Pooling token states into one vector per text."""
from __future__ import annotations

import torch


def masked_mean(states: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``keep`` is true (zero for a row with none)."""
    weights = keep.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)
