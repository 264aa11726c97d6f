"""Quality diagnostics of a checkpoint's frozen features: spread, rank, alignment, uniformity.

- Per-dimension std of the L2-normalized features (·sqrt(d): healthy ≈ 1, collapsed ≈ 0) and the
  effective rank: the collapse statistics of ``engine.monitor``, here on test images.
- Alignment and uniformity, Wang & Isola 2020, "Understanding Contrastive Representation Learning
  through Alignment and Uniformity on the Hypersphere", https://arxiv.org/abs/2005.10242, eq. 4-5,
  on L2-normalized features f:

      L_align(α=2)   = E_{(x, y) positive} ||f(x) - f(y)||²           (lower: views agree)
      L_uniform(t=2) = log E_{x, y iid} exp(-t ||f(x) - f(y)||²)       (lower: spread on the sphere)

  Positive pairs are two augmented views of one test image, with one fixed augmentation for every
  method (SimCLR's crop, flip and colour jitter; crops only on 1-channel data), so checkpoints of
  different methods are measured with the same ruler. Uniformity runs over distinct pairs of the
  unaugmented test features, as in the paper's code (``torch.pdist``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones import Backbone
from ..data.images import Prepared
from ..utils.monitor import effective_rank, embedding_std
from ..utils.runtime import step_generator
from ..views import VIEW_CLASSES, Normalization, Views


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> float:
    """E ||f(x) - f(y)||^α over positive pairs (rows of z1 and z2), on L2-normalized features."""
    a, b = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    """log E exp(-t ||f(x) - f(y)||²) over distinct pairs, on L2-normalized features."""
    a = F.normalize(z.double(), dim=1)
    return float(torch.pdist(a, p=2).pow(2).mul(-t).exp().mean().log())


def positive_pair_views(channels: int, size: int, normalization: Normalization, modality: str = "image") -> Views:
    """The shared ruler for alignment: SimCLR CIFAR views (no colour change on 1-channel data); for
    clips the same views with one set of parameters per clip, for volumes their 3D counterpart."""
    return VIEW_CLASSES[modality].preset("small-gray" if channels == 1 else "simclr-cifar", size, normalization)


@torch.no_grad()
def feature_diagnostics(backbone: Backbone, test_features: torch.Tensor, data: Prepared,
                        normalization: Normalization | None, image_size: int, device: torch.device, max_images: int = 2048,
                        seed: int = 0) -> dict[str, float | None]:
    """std·sqrt(d), effective rank and uniformity of ``test_features``; alignment on augmented pairs of ``data``
    (images only: text has no views to align, so its alignment is None)."""
    rng = np.random.default_rng(seed)
    n = min(max_images, len(test_features))
    pick = torch.from_numpy(np.sort(rng.choice(len(test_features), n, replace=False)))
    feats = test_features[pick]
    d = feats.shape[1]
    std = embedding_std(feats)
    summary = {"embedding_std_x_sqrt_d": round(std * math.sqrt(d), 4), "effective_rank": round(effective_rank(feats), 3),
               "alignment": None, "uniformity": round(uniformity(feats), 4), "feature_dim": d}
    if normalization is None:
        return summary
    views = positive_pair_views(data.spec.channels, image_size, normalization, data.modality)
    was_training = backbone.training
    backbone.eval()
    first, second = [], []
    indices = np.sort(rng.choice(len(data), min(max_images, len(data)), replace=False))
    for batch_no, (_, images) in enumerate(data.batches(indices, 256)):
        v1, v2 = views(images.to(device), step_generator(seed, 11, batch_no), 2)
        first.append(backbone(v1).float().cpu())
        second.append(backbone(v2).float().cpu())
    backbone.train(was_training)
    return {**summary, "alignment": round(alignment(torch.cat(first), torch.cat(second)), 4)}


__all__ = ["alignment", "uniformity", "feature_diagnostics", "positive_pair_views"]
