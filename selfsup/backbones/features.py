"""Frozen features: the backbone's pooled output, in eval mode, on unaugmented images."""
from __future__ import annotations

import sys

import numpy as np
import torch
from tqdm import tqdm

from ..data.images import Prepared
from ..utils import distributed
from ..views import Normalization, eval_transform
from .registry import Backbone


def model_input(images: torch.Tensor, image_size: int, normalization: Normalization | None,
                device: torch.device) -> torch.Tensor:
    """What an encoder reads at evaluation: images resized and normalized as in training, or token
    ids (text: ``normalization`` is None) as they are."""
    images = images.to(device)
    return images if normalization is None else eval_transform(images, image_size, normalization)


@torch.no_grad()
def extract_features(backbone: Backbone, data: Prepared, normalization: Normalization | None, image_size: int,
                     device: torch.device, batch_size: int = 256, indices: np.ndarray | None = None,
                     num_workers: int = 0, progress: str | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Features (N x D float32, on the CPU) and the positions in ``indices`` they belong to.

    ``progress``: a label for a progress bar on stderr (none when not given).
    """
    was_training = backbone.training
    backbone.eval()  # batch norm uses its running statistics
    indices = np.arange(len(data)) if indices is None else indices
    feats, kept = [], []
    bar = tqdm(total=len(indices), desc=progress, unit="img", file=sys.stderr, disable=progress is None, leave=False)
    # Texts go in shortest first, so each batch is padded only to lengths like its own.
    order = np.argsort(data.lengths[indices], kind="stable") if hasattr(data, "lengths") else np.arange(len(indices))
    for pos, images in data.batches(indices[order], batch_size, num_workers):
        pos = order[pos]
        feats.append(backbone(model_input(images, image_size, normalization, device)).float().cpu())
        kept.append(pos)
        bar.update(len(pos))
    bar.close()
    backbone.train(was_training)
    if not feats:
        return torch.empty(0, backbone.feature_dim), np.empty(0, dtype=np.int64)
    kept_at = np.concatenate(kept)
    back = np.argsort(kept_at, kind="stable")  # the order of ``indices`` again (texts were sorted by length)
    return torch.cat(feats)[torch.from_numpy(back)], kept_at[back]


@torch.no_grad()
def extract_pool_features(backbone: Backbone, data: Prepared, normalization: Normalization | None, image_size: int,
                          device: torch.device, num_workers: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """The whole pool's features on every rank, each rank extracting every ``world``-th image.

    Returns what :func:`extract_features` returns on one process: the rows of the images that
    decoded, in pool order, and their pool positions. The weights are equal on every rank, and the
    batch-norm statistics, each process's own on CPUs, are made rank 0's first, so the shares are
    one extraction with rank 0's backbone, cut in ``world`` parts.
    """
    world = distributed.world_size()
    if world == 1:
        return extract_features(backbone, data, normalization, image_size, device, num_workers=num_workers)
    distributed.broadcast_buffers(backbone)
    share = np.arange(distributed.rank(), len(data), world)
    features, kept = extract_features(backbone, data, normalization, image_size, device, indices=share,
                                      num_workers=num_workers)
    positions = distributed.gather_uneven(torch.as_tensor(share[kept], device=device)).cpu()
    features = distributed.gather_uneven(features.to(device)).cpu()
    order = torch.argsort(positions)
    return features[order], positions[order].numpy()
