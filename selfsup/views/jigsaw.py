"""Patches of a view: jigsaw tiles and their permutations (Noroozi & Favaro 2016; PIRL) and the
centre/neighbour pairs of relative patch location (Doersch et al. 2015).

Pure, seeded label generators: each returns the network's input and the free label.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import torch


def cut_patches(x: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, size: int) -> torch.Tensor:
    """Square ``size`` patches of B x C x H x W images at per-image corners (B x K each).

    Returns B x K x C x size x size; one gather for every patch pixel of the batch.
    """
    b, c, h, w = x.shape
    k = tops.shape[1]
    if int(tops.min()) < 0 or int(lefts.min()) < 0 or int(tops.max()) + size > h or int(lefts.max()) + size > w:
        raise ValueError(f"patches of {size} px fall outside the {h}x{w} images")
    ar = torch.arange(size, device=x.device)
    yy = (tops.to(x.device)[..., None] + ar)[..., :, None].expand(b, k, size, size)
    xx = (lefts.to(x.device)[..., None] + ar)[..., None, :].expand(b, k, size, size)
    flat = (yy * w + xx).reshape(b, 1, -1).expand(b, c, -1)
    patches = x.reshape(b, c, h * w).gather(2, flat).reshape(b, c, k, size, size)
    return patches.permute(0, 2, 1, 3, 4).contiguous()


def jigsaw_tiles(x: torch.Tensor, generator: torch.Generator, grid: int = 3, tile_fraction: float = 0.75) -> torch.Tensor:
    """Cut B x C x S x S views into ``grid``² tiles, each a random crop of ``tile_fraction`` of its cell.

    The random offset inside each cell (Noroozi & Favaro 2016, section 3; PIRL's 64 px tiles in
    85 px cells) leaves gaps between tiles, so low-level edge continuity cannot solve the task.
    Returns B x grid² x C x t x t, tiles in row-major order of their cells.
    """
    b, c, h, w = x.shape
    cell = min(h, w) // grid
    if cell < 2:
        raise ValueError(f"images of {h}x{w} are too small for a {grid}x{grid} jigsaw")
    tile = max(1, int(cell * tile_fraction))
    offsets = torch.randint(0, cell - tile + 1, (b, grid * grid, 2), generator=generator)
    rows = torch.arange(grid).repeat_interleave(grid) * cell  # top of each cell, row-major
    cols = torch.arange(grid).repeat(grid) * cell
    return cut_patches(x, rows[None, :] + offsets[..., 0], cols[None, :] + offsets[..., 1], tile)


def at_input_size(patches: torch.Tensor, size: int | None) -> torch.Tensor:
    """N x C x p x p patches resized (bilinear) to ``size`` px, or as cut when ``size`` is None.

    The papers feed their patches at the network's own input size (Doersch et al.: 96 px, Noroozi &
    Favaro: 64 px); a quarter of a 32-px image is 8 px, which an ImageNet-stem ResNet reduces to a
    2 x 2 map before its first block, so its later 3 x 3 kernels train only their centre taps.
    """
    if not size or patches.shape[-1] == size:
        return patches
    return torch.nn.functional.interpolate(patches, size=size, mode="bilinear", align_corners=False)


@lru_cache(maxsize=8)
def permutation_set(count: int, grid: int = 3, seed: int = 0, items: int | None = None) -> np.ndarray:
    """``count`` permutations of grid² tiles (or of ``items`` things: the Rubik's cube's 8 cubes),
    chosen greedily to maximize the minimum Hamming distance.

    Noroozi & Favaro 2016 (section 3.2, algorithm 1) pick each next permutation by its distance to
    those already chosen; here each next one is the candidate whose *minimum* distance to the set
    is largest (ties: the first in a seeded shuffle), which keeps every pair of classes far
    apart. Deterministic for (count, grid, seed, items). Returns count x grid² (or items) int64.
    """
    n = items or grid * grid
    if math.factorial(n) > 362880:
        raise ValueError(f"{n} items have too many permutations to search; use at most 9 (a 3x3 grid)")
    if not 1 <= count <= math.factorial(n):
        raise ValueError(f"count must be in 1..{math.factorial(n)}, got {count}")
    rng = np.random.default_rng(seed)
    candidates = np.array(list(itertools.permutations(range(n))), dtype=np.int8)
    candidates = candidates[rng.permutation(len(candidates))]
    # at[i][v]: which candidates hold tile v at position i, so a distance is n minus n lookups' sum.
    at = [[candidates[:, i] == v for v in range(n)] for i in range(n)]

    def distances(row: np.ndarray) -> np.ndarray:
        same = np.zeros(len(candidates), dtype=np.int8)
        for i, v in enumerate(row):
            same += at[i][v]
        return n - same

    chosen = [0]
    min_distance = distances(candidates[0])  # each candidate's distance to the set
    for _ in range(count - 1):
        best = int(np.argmax(min_distance))  # first maximum: deterministic tie-break
        chosen.append(best)
        np.minimum(min_distance, distances(candidates[best]), out=min_distance)
    return candidates[chosen].astype(np.int64)


def min_hamming_distance(perms: np.ndarray) -> int:
    """The smallest number of differing positions between any two permutations of the set."""
    diff = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    np.fill_diagonal(diff, perms.shape[1] + 1)
    return int(diff.min())


def shuffle_tiles(tiles: torch.Tensor, perms: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle each image's B x K x ... tiles by a random permutation of the set; the label is its index.

    Position i of the output holds tile ``perm[i]``, so ``tiles[inverse]`` restores the grid.
    """
    b = len(tiles)
    labels = torch.randint(0, len(perms), (b,), generator=generator)
    order = perms[labels].to(tiles.device)  # B x K
    return tiles[torch.arange(b, device=tiles.device)[:, None], order], labels


# Neighbour positions of relative patch location, as (row, column) offsets from the centre; the
# label is the index: 0 top-left, 1 top, 2 top-right, 3 left, 4 right, 5 bottom-left, 6 bottom, 7 bottom-right.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _grid_span(x: torch.Tensor, patch: int, gap: int, jitter: int) -> int:
    """The side of relative patch location's 3 x 3 grid with its gaps and jitter; it must fit the views."""
    span = 3 * patch + 2 * gap + 2 * jitter
    if span > min(x.shape[-2:]):
        raise ValueError(f"3 patches of {patch} px with gaps of {gap} and jitter {jitter} need {span} px; "
                         f"the views are {x.shape[-2]}x{x.shape[-1]}")
    return span


def _grid_origin(x: torch.Tensor, generator: torch.Generator, patch: int, gap: int, jitter: int) -> torch.Tensor:
    """B x 2 (top, left) of each image's grid, at a random position of its view, inside the jitter margin."""
    span, (h, w) = _grid_span(x, patch, gap, jitter), x.shape[-2:]
    return torch.stack([torch.randint(0, h - span + 1, (len(x),), generator=generator),
                        torch.randint(0, w - span + 1, (len(x),), generator=generator)], 1) + jitter


def relative_patch_pairs(x: torch.Tensor, generator: torch.Generator, patch: int, gap: int,
                         jitter: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A centre patch and one of its 8 neighbours per image, with a gap and jitter between them.

    Doersch et al. 2015 (section 3): patches on a 3 x 3 grid separated by ``gap`` pixels, each
    moved by up to ``jitter`` pixels, so the network cannot match edges or continue lines across
    the boundary. The grid is placed at a random position of the view.
    Returns (centre B x C x p x p, neighbour B x C x p x p, labels B in 0..7).
    """
    b = len(x)
    labels = torch.randint(0, 8, (b,), generator=generator)
    origin = _grid_origin(x, generator, patch, gap, jitter)
    step = patch + gap
    offsets = torch.tensor(NEIGHBOURS)[labels]  # B x 2 in cells
    shake = torch.randint(-jitter, jitter + 1, (b, 2, 2), generator=generator)  # per patch, per axis
    centre = origin + step + shake[:, 0]
    neighbour = origin + step + offsets * step + shake[:, 1]
    corners = torch.stack([centre, neighbour], 1)  # B x 2 patches x (top, left)
    pairs = cut_patches(x, corners[..., 0], corners[..., 1], patch)
    return pairs[:, 0], pairs[:, 1], labels


def relative_patch_grid(x: torch.Tensor, generator: torch.Generator, patch: int, gap: int,
                        jitter: int) -> torch.Tensor:
    """All nine patches of relative patch location's 3 x 3 grid, each jittered on its own: the centre
    (index 4) and its 8 neighbours, so one image gives all 8 (centre, neighbour) pairs.

    Kolesnikov et al. 2019 (Revisiting Self-Supervised Visual Representation Learning) train Doersch
    et al.'s task this way; gaps, jitter and grid placement are as in :func:`relative_patch_pairs`.
    Returns B x 9 x C x p x p in row-major order of the grid's cells; neighbour label i is cell
    ``NEIGHBOUR_CELLS[i]``.
    """
    origin = _grid_origin(x, generator, patch, gap, jitter)
    cells = torch.tensor([(row, col) for row in range(3) for col in range(3)])  # 9 x 2
    shake = torch.randint(-jitter, jitter + 1, (len(x), 9, 2), generator=generator)
    corners = origin[:, None] + cells[None] * (patch + gap) + shake  # B x 9 x (top, left)
    return cut_patches(x, corners[..., 0], corners[..., 1], patch)


# The grid cell (row-major, of relative_patch_grid) of each neighbour label: NEIGHBOURS as cells.
NEIGHBOUR_CELLS = tuple(3 * (1 + row) + 1 + col for row, col in NEIGHBOURS)


def drop_colour(patches: torch.Tensor, generator: torch.Generator, noise: float = 0.01) -> torch.Tensor:
    """Doersch et al.'s colour dropping: keep one random channel of each patch, replace the other two
    with Gaussian noise of ``noise`` x that channel's std, defeating chromatic aberration."""
    b, c = patches.shape[:2]
    if c != 3:
        return patches
    keep = torch.randint(0, 3, (b,), generator=generator).to(patches.device)
    kept = patches[torch.arange(b, device=patches.device), keep]  # B x p x p
    scale = kept.flatten(1).std(1).clamp(min=1e-6)[:, None, None, None] * noise
    filler = torch.randn(patches.shape, generator=generator).to(patches.device, patches.dtype) * scale
    mask = torch.nn.functional.one_hot(keep, 3).bool()[:, :, None, None]
    return torch.where(mask, patches, filler)


def project_colour(patches: torch.Tensor) -> torch.Tensor:
    """Doersch et al.'s projection: remove the green-magenta axis (-1, 2, -1)/√6 from every pixel,
    the colour direction that chromatic aberration shifts."""
    if patches.shape[1] != 3:
        return patches
    axis = torch.tensor([-1.0, 2.0, -1.0], device=patches.device, dtype=patches.dtype) / math.sqrt(6.0)
    along = torch.einsum("bchw,c->bhw", patches, axis)
    return patches - along[:, None] * axis[None, :, None, None]
