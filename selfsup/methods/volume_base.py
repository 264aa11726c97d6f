"""What the 3D volume methods share: volumes as input (uint8 B x 1 x S x S x S), volume views, a small
3D ConvNet by default, and ``--show-batch`` panels of orthogonal slices."""
from __future__ import annotations

import torch

from .base import Method, Panel, Recipe

# SGD with momentum, as the Rubik's cube paper trains its 3D networks; lr 0.05 x batch/256.
VOLUME_RECIPE = Recipe(optimizer="sgd", base_lr=0.05, weight_decay=5e-4, warmup_fraction=0.05, views="volume-pretext",
                       backbone="small-convnet3d")


def orthogonal_slices(volumes: torch.Tensor) -> torch.Tensor:
    """The three central slices (axial, coronal, sagittal) of each volume: B x 3 x C x H x W."""
    mid = volumes.shape[-1] // 2
    return torch.stack([volumes[:, :, mid], volumes[:, :, :, mid], volumes[:, :, :, :, mid]], 1)


class VolumeMethod(Method):
    """A method on 3D volumes (``modality = "volume"``); ``self.views`` are ``VolumeViews``."""

    modality = "volume"
    collapse_prone = False  # as for the frame tasks (VideoMethod): rubik_cube and rotation3d classify; simclr3d sets it back

    def view(self, volumes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        (view,) = self.views(volumes, generator, n=1)
        return view

    def slice_panels(self, volumes: torch.Tensor, labels: list[str] | None, what: str, rows: int = 4) -> list[Panel]:
        """One row per volume: its three central slices, titled with the task and the volume's label."""
        slices = orthogonal_slices(self.views.denormalize(volumes).clamp(0, 1))
        return [Panel(f"{what}: {labels[i]}" if labels else what, slices[i], ["axial", "coronal", "sagittal"])
                for i in range(min(rows, len(volumes)))]
