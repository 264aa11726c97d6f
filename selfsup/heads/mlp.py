"""MLP heads built from a list of blocks, so a method's head is one line."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class Block:
    """Linear(in_dim, out_dim), then optional BatchNorm1d and ReLU."""

    in_dim: int
    out_dim: int
    batch_norm: bool = True
    relu: bool = True
    affine: bool = True  # False: batch norm without scale and shift (MoCo v3's last projector layer)


class MLPHead(nn.Module):
    def __init__(self, blocks: list[Block]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for b in blocks:
            layers.append(nn.Linear(b.in_dim, b.out_dim, bias=not b.batch_norm))
            if b.batch_norm:
                layers.append(nn.BatchNorm1d(b.out_dim, affine=b.affine))
            if b.relu:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)
        self.out_dim = blocks[-1].out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def projection_head(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                    last_batch_norm: bool = False) -> MLPHead:
    """SimCLR-style projection g(h) = W_L σ(... σ(W_1 h)), BN after each hidden layer."""
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    blocks = [Block(dims[i], dims[i + 1]) for i in range(num_layers - 1)]
    blocks.append(Block(dims[-2], dims[-1], batch_norm=last_batch_norm, relu=False))
    return MLPHead(blocks)



def classifier_head(in_dim: int, classes: int, hidden_dim: int | None = None) -> MLPHead:
    """The pretext classifier: linear, or one hidden layer (BN, ReLU) when ``hidden_dim`` is given."""
    if not hidden_dim:
        return MLPHead([Block(in_dim, classes, batch_norm=False, relu=False)])
    return MLPHead([Block(in_dim, hidden_dim), Block(hidden_dim, classes, batch_norm=False, relu=False)])


class DenseProjection(nn.Module):
    """The MLP applied at every location of a feature map: 1x1 conv - ReLU - 1x1 conv (DenseCL's dense
    projection head, Wang et al. 2021, section 3.2). B x C x h x w in, B x out_dim x h x w out."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(in_dim, hidden_dim, 1), nn.ReLU(inplace=True),
                                    nn.Conv2d(hidden_dim, out_dim, 1))
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

