"""A ring buffer of past embeddings: MoCo's queue of negatives, NNCLR's support set."""
from __future__ import annotations

import torch


def queue_for_pool(n_images: int, published: int) -> int:
    """A key queue no longer than the pool: the largest power of two not above ``n_images``, at most the
    published K. MoCo's 65,536 keys are 5 % of ImageNet; a queue longer than the pool holds every image's
    own stale key among its negatives."""
    return min(published, 1 << max(0, n_images.bit_length() - 1))


@torch.no_grad()
def ring_enqueue(queue: torch.Tensor, pointer: torch.Tensor, rows: torch.Tensor) -> None:
    """Overwrite the oldest rows of ``queue`` with ``rows`` and advance ``pointer`` (both buffers)."""
    slots = (pointer + torch.arange(len(rows), device=rows.device)) % len(queue)
    queue[slots] = rows.to(queue.dtype)
    pointer.copy_((pointer + len(rows)) % len(queue))
