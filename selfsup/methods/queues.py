"""A ring buffer of past embeddings: MoCo's queue of negatives, NNCLR's support set."""
from __future__ import annotations

import torch


@torch.no_grad()
def ring_enqueue(queue: torch.Tensor, pointer: torch.Tensor, rows: torch.Tensor) -> None:
    """Overwrite the oldest rows of ``queue`` with ``rows`` and advance ``pointer`` (both buffers)."""
    slots = (pointer + torch.arange(len(rows), device=rows.device)) % len(queue)
    queue[slots] = rows.to(queue.dtype)
    pointer.copy_((pointer + len(rows)) % len(queue))
