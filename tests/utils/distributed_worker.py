"""A few optimizer steps of each method on one fixed batch, through the engine's own step.

Run by tests/utils/test_distributed.py twice: under ``torchrun --nproc-per-node 2`` (gloo), where each
rank trains on its half of the batch, and in one process on the whole batch. Batch norm is
replaced by the identity and the backbone uses GroupNorm, because batch statistics differ per
process by design; views are deterministic so both runs see the same pixels. Rank 0 saves the
losses and the final state (weights and buffers: queues, memory banks) to ``argv[1]``.
"""
from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn as nn

from selfsup.backbones import Backbone, BackboneSpec
from selfsup.utils.distributed import DistContext, init_distributed, shutdown, wrap_data_parallel
from selfsup.engine.loop import Loop
from selfsup.engine.trainer import method_turns, pretrain_forward
from selfsup.backbones.features import extract_pool_features
from selfsup.methods import METHODS
from selfsup.views import Normalization, Views, ViewSettings

BATCH, STEPS, SIZE = 8, 4, 16
SMALL = {
    "simclr": dict(hidden_dim=16, projection_dim=8),
    "moco_v2": dict(hidden_dim=16, projection_dim=8, queue_size=40, momentum=0.9, bn_splits=2),
    "moco_v3": dict(hidden_dim=16, projection_dim=8),
    "nnclr": dict(hidden_dim=16, prediction_hidden_dim=16, projection_dim=8, queue_size=40),
    "triplet": dict(hidden_dim=16, projection_dim=8),
    "barlow_twins": dict(projection_dim=16),
    "vicreg": dict(projection_dim=16),
    "swav": dict(hidden_dim=16, projection_dim=8, num_prototypes=6, freeze_prototypes_steps=0, queue_size=16,
                 queue_start_step=1),
}

# Barlow Twins' and VICReg's losses are sums over dimensions with steep gradients: at 0.01 even a
# reordered batch (the same sum, added in another order) moves their loss by 1e-4 within 4 steps.
LR = {"barlow_twins": 0.002, "vicreg": 0.002}


def without_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            without_batchnorm(child)


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.GroupNorm(2, 8), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                          nn.GroupNorm(4, 16), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    backbone = Backbone(model, BackboneSpec("test-groupnorm"), 16)
    whole = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_p=0.0)
    views = Views([ViewSettings(**whole, flip_p=0.0, grayscale_p=0.0), ViewSettings(**whole, flip_p=1.0, grayscale_p=1.0)],
                  SIZE, Normalization([0.5] * 3, [0.25] * 3))
    method = METHODS.get(name)(backbone, views, **SMALL[name])
    without_batchnorm(method)
    return method


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.arange(BATCH), torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8)


def train(name: str, part: DistContext, device: torch.device) -> dict:
    """STEPS steps of SGD with momentum on this rank's share of the fixed batch."""
    method = build(name).to(device)
    model = wrap_data_parallel(method, part, device, sync_batchnorm=True)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.0005, momentum=0.9)
    indices, images = batch()
    share = BATCH // part.world_size
    mine = slice(part.rank * share, (part.rank + 1) * share)
    losses = []
    forward = pretrain_forward(method, model, False, device)
    loop = Loop(optimizer, STEPS, lambda step: 0.0, 0.0, turns=method_turns(method, optimizer))
    for step in range(STEPS):
        generator = torch.Generator().manual_seed(step)
        result = loop.step(lambda s, batch, logging, player: forward(images[mine], indices[mine], generator, player), step)
        method.after_step(step, STEPS)
        losses.append(float(result.reported))
    return {"losses": losses, "state": {k: v.detach().clone() for k, v in method.state_dict().items()}}


class PoolWithAHole:
    """11 images, the fifth unreadable: the two ranks' shares (6 and 5 images, one dropped) differ in length."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(2)
        self.array = torch.randint(0, 256, (11, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.array)

    def batches(self, indices: np.ndarray, batch_size: int, num_workers: int = 0):
        readable = np.flatnonzero(indices != 4)  # positions in ``indices``, as Prepared.batches gives them
        yield readable, self.array[torch.as_tensor(indices[readable])]


def pool_features(part: DistContext, device: torch.device) -> dict:
    """DeepCluster's pool features, each rank extracting its share, with batch-norm statistics that
    differ per rank as they do on CPUs (running mean = the rank)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1))
    model[1].running_mean.fill_(float(part.rank))
    backbone = Backbone(model, BackboneSpec("test-batchnorm"), 4).to(device)
    features, positions = extract_pool_features(backbone, PoolWithAHole(), Normalization([0.5] * 3, [0.25] * 3),
                                                SIZE, device)
    return {"features": features, "positions": torch.as_tensor(positions)}


def main(out: str) -> None:
    torch.set_num_threads(1)
    part, device = init_distributed("cpu")
    try:
        results = {name: train(name, part, device) for name in SMALL}
        results["pool_features"] = pool_features(part, device)
    finally:
        shutdown()
    if part.is_main:
        torch.save(results, out)


if __name__ == "__main__":
    main(sys.argv[1])
