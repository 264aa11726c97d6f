"""Jigsaw tiles: a view cut into a grid of jittered tiles (PIRL; the jigsaw pretext task)."""
from __future__ import annotations

import torch


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
    slack = cell - tile
    offsets = torch.randint(0, slack + 1, (b, grid * grid, 2), generator=generator)
    rows = torch.arange(grid).repeat_interleave(grid) * cell  # top of each cell, row-major
    cols = torch.arange(grid).repeat(grid) * cell
    tops = (rows[None, :] + offsets[..., 0]).to(x.device)  # B x G²
    lefts = (cols[None, :] + offsets[..., 1]).to(x.device)
    ar = torch.arange(tile, device=x.device)
    yy = (tops[..., None] + ar)[..., :, None].expand(b, grid * grid, tile, tile)
    xx = (lefts[..., None] + ar)[..., None, :].expand(b, grid * grid, tile, tile)
    flat = (yy * w + xx).reshape(b, 1, -1).expand(b, c, -1)  # gather every tile pixel at once
    tiles = x.reshape(b, c, h * w).gather(2, flat).reshape(b, c, grid * grid, tile, tile)
    return tiles.permute(0, 2, 1, 3, 4).contiguous()
