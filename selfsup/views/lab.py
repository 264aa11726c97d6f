"""CIE Lab colour and the quantized ab space of colorization (Zhang, Isola & Efros 2016).

sRGB (D65) -> linear RGB -> XYZ -> Lab, the standard CIE formulas (as in scikit-image and
OpenCV), batched on B x 3 x H x W tensors in [0, 1].
"""
from __future__ import annotations

from functools import lru_cache

import torch

_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423),
               (0.212671, 0.715160, 0.072169),
               (0.019334, 0.119193, 0.950227))
_WHITE = (0.950456, 1.0, 1.088754)  # D65 white point of the matrix above
_DELTA = 6.0 / 29.0


def _matrix(rows, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, device=like.device, dtype=like.dtype)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W sRGB in [0, 1] -> Lab (L in [0, 100], a and b roughly in [-110, 110])."""
    linear = torch.where(rgb > 0.04045, ((rgb.clamp(min=0) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,bjhw->bihw", _matrix(_RGB_TO_XYZ, rgb), linear)
    xyz = xyz / _matrix(_WHITE, rgb)[None, :, None, None]
    f = torch.where(xyz > _DELTA ** 3, xyz.clamp(min=1e-12) ** (1 / 3), xyz / (3 * _DELTA ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Inverse of ``rgb_to_lab``; colours outside sRGB's gamut are clipped to [0, 1] when ``clip``."""
    L, a, b = lab.unbind(1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], 1)
    xyz = torch.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4 / 29))
    xyz = xyz * _matrix(_WHITE, lab)[None, :, None, None]
    linear = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_matrix(_RGB_TO_XYZ, lab)), xyz)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp(min=1e-12) ** (1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0, 1) if clip else rgb


@lru_cache(maxsize=4)
def ab_bins(grid: int = 10) -> torch.Tensor:
    """Centres (Q x 2) of the ab cells of side ``grid`` that in-gamut sRGB colours reach.

    Zhang et al. quantize ab with grid size 10 and keep the Q = 313 in-gamut cells; here the
    cells are found by converting a dense 64³ sample of the sRGB cube, which gives the same
    kind of set without shipping the paper's file.
    """
    levels = torch.linspace(0, 1, 64, dtype=torch.float64)
    cube = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij"), 0).reshape(1, 3, -1, 1)
    ab = rgb_to_lab(cube)[0, 1:, :, 0].T  # N x 2
    cells = torch.unique(torch.floor(ab / grid + 0.5).long(), dim=0)  # nearest grid point
    return (cells * grid).to(torch.float32)


def soft_encode(ab: torch.Tensor, centres: torch.Tensor, neighbours: int = 5, sigma: float = 5.0) -> torch.Tensor:
    """Soft-encode B x 2 x H x W ab values over the Q bins: the 5 nearest bins weighted by a Gaussian
    of their distance (σ = 5), as Zhang et al. (section 2.1). Returns B x Q x H x W, summing to 1."""
    b, _, h, w = ab.shape
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2)  # (BHW) x 2
    distances = torch.cdist(points.float(), centres.to(points.device).float())  # (BHW) x Q
    near, which = distances.topk(neighbours, dim=1, largest=False)
    weights = torch.softmax(-near ** 2 / (2 * sigma ** 2), dim=1)  # Gaussian kernel, normalized
    target = torch.zeros_like(distances).scatter_(1, which, weights)
    return target.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def rebalancing_weights(counts: torch.Tensor, centres: torch.Tensor, lam: float = 0.5, sigma: float = 5.0) -> torch.Tensor:
    """Class-rebalancing weights w ∝ ((1 - λ) p̃ + λ / Q)^-1 with E_p̃[w] = 1 (Zhang et al., equation 4).

    p̃ is the empirical ab distribution (``counts`` of each bin) smoothed with a Gaussian of σ = 5
    over the bin centres.
    """
    q = len(centres)
    p = counts.double() / counts.sum().clamp(min=1)
    c = centres.to(counts.device).double()
    kernel = torch.exp(-torch.cdist(c, c) ** 2 / (2 * sigma ** 2))
    smoothed = kernel @ p
    smoothed = smoothed / smoothed.sum()
    w = 1.0 / ((1 - lam) * smoothed + lam / q)
    return (w / (smoothed * w).sum()).float()
