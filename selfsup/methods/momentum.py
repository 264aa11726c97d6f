"""Momentum (EMA) target networks, shared by BYOL and, later, MoCo and DINO."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy whose parameters get no gradient: updated only by ``ema_update``."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """ξ ← m·ξ + (1 - m)·θ for every parameter; buffers (batch-norm statistics) are copied."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)
    for t, o in zip(target.buffers(), online.buffers()):
        t.copy_(o)


def cosine_momentum(step: int, total_steps: int, base: float) -> float:
    """BYOL's schedule: m = 1 - (1 - m_base)·(cos(π k / K) + 1) / 2, rising from m_base to 1."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / max(1, total_steps)) + 1.0) / 2.0
