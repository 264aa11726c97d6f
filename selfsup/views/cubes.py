"""Free labels from 3D geometry: 3D rotations and the Rubik's cube's shuffled, turned sub-cubes.

Pure, seeded functions on batches of volumes (B x C x D x H x W); each has an exact inverse.
"""
from __future__ import annotations

import torch

# Rotation classes of 3D rotation prediction (Taleb et al. 2020, Sec. 3): identity, then 1-3 quarter
# turns about each axis (D, H, W): 10 classes. Turning about an axis rotates the plane of the other two.
ROTATION_PLANES = ((3, 4), (2, 4), (2, 3))  # the dims turned by a rotation about D, H, W
ROTATIONS_3D = 10


def rotate_3d(x: torch.Tensor, label: int, inverse: bool = False) -> torch.Tensor:
    """Volumes turned by rotation class ``label`` (0: none; 1 + 3a + (q - 1): q quarter turns about
    axis a), or turned back with ``inverse``."""
    if label == 0:
        return x
    axis, quarters = divmod(label - 1, 3)
    return torch.rot90(x, -(quarters + 1) if inverse else quarters + 1, ROTATION_PLANES[axis])


def rotate_batch_3d(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each volume turned by its own rotation class (cubic volumes, so every turn keeps the shape)."""
    out = x.clone()
    for label in labels.unique().tolist():
        rows = (labels == label).nonzero().flatten().to(x.device)
        out[rows] = rotate_3d(x[rows], label)
    return out


def cut_cubes(x: torch.Tensor, gap: int, generator: torch.Generator) -> torch.Tensor:
    """The 2 x 2 x 2 cubes of each volume (B x 8 x C x c x c x c, in D-major order), side
    c = (S - gap) // 2, each placed at a random offset inside its octant so neighbouring cubes never
    share a face: the gap keeps low-level continuity across cube borders from giving the answer
    (Zhuang et al. 2019, Sec. 3.1; Noroozi & Favaro 2016 for jigsaw tiles)."""
    b, _, s = x.shape[0], x.shape[1], x.shape[-1]
    half = s // 2
    side = (s - gap) // 2
    if side < 2:
        raise ValueError(f"volumes of side {s} are too small for cubes with a gap of {gap}")
    offsets = torch.randint(0, half - side + 1, (b, 8, 3), generator=generator)
    cubes = []
    for i in range(b):
        row = []
        for k in range(8):
            d, h, w = (k >> 2) & 1, (k >> 1) & 1, k & 1
            od, oh, ow = (offsets[i, k] + torch.tensor([d, h, w]) * half).tolist()
            row.append(x[i, :, od:od + side, oh:oh + side, ow:ow + side])
        cubes.append(torch.stack(row))
    return torch.stack(cubes)


def _turn(cubes: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Cubes (B x 8 x C x c x c x c) turned by 180° where ``turns`` (B x 8) is 1 (about the vertical
    H axis: D and W reversed) or 2 (about the horizontal W axis: D and H reversed). Self-inverse."""
    about_h = cubes.flip(3, 5)
    about_w = cubes.flip(3, 4)
    t = turns.to(cubes.device)[:, :, None, None, None, None]
    return torch.where(t == 1, about_h, torch.where(t == 2, about_w, cubes))


def rubik_shuffle(cubes: torch.Tensor, perms: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Position j receives cube perms[:, j], turned by turns[:, j] (0 none, 1 or 2: 180° about H or W)."""
    index = perms.to(cubes.device)[:, :, None, None, None, None].expand_as(cubes)
    return _turn(torch.gather(cubes, 1, index), turns)


def rubik_restore(shuffled: torch.Tensor, perms: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """The exact inverse of ``rubik_shuffle``: turn each cube back, then put it where it came from."""
    inverse = perms.argsort(1).to(shuffled.device)[:, :, None, None, None, None].expand_as(shuffled)
    return torch.gather(_turn(shuffled, turns), 1, inverse)
