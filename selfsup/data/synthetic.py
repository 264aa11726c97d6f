"""Generated video data with real motion, written as real video files: moving digits.

Each clip shows one handwritten digit (scikit-learn's bundled 8 x 8 digits, enlarged and tinted)
moving across a dark, lightly textured canvas in one of six ways: right, left, down, up, zooming
in or zooming out. The label is the motion (``label="motion"``, 6 classes: "how it moves") or the
digit (``label="digit"``, 10 classes: "what moves"). Clips are encoded to H.264 mp4 files with PyAV
and read back through the same decoder as a user's videos. Seeded: the same arguments give the same
files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .video import write_video

MOTIONS = ("right", "left", "down", "up", "zoom_in", "zoom_out")


def _sprite(digit: np.ndarray, side: int, colour: np.ndarray) -> torch.Tensor:
    """An 8 x 8 digit (0..16) enlarged to side x side, tinted: 3 x side x side in [0, 1]."""
    x = torch.from_numpy(digit.astype(np.float32) / 16.0)[None, None]
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)[0]
    return x.clamp(0, 1) * torch.from_numpy(colour.astype(np.float32))[:, None, None]


def moving_digit_clip(digit: np.ndarray, motion: str, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One clip (uint8 frames x size x size x 3) of ``digit`` moving as ``motion``."""
    colour = rng.uniform(0.5, 1.0, 3)
    background = rng.uniform(0.0, 0.15, (3, size, size)).astype(np.float32)
    t = np.linspace(0.0, 1.0, frames)
    base = int(size * rng.uniform(0.35, 0.45))
    if motion in ("zoom_in", "zoom_out"):
        grow = np.linspace(0.45, 1.2, frames)
        sides = np.round(base * (grow if motion == "zoom_in" else grow[::-1])).astype(int)
        cy, cx = size / 2 + rng.uniform(-2, 2, 2)
        tops, lefts = cy - sides / 2, cx - sides / 2
    else:
        sides = np.full(frames, base)
        travel = size - base  # from one edge to the other over the clip
        along = (t if motion in ("right", "down") else 1.0 - t) * travel
        across = np.full(frames, rng.uniform(0, size - base))
        tops, lefts = (along, across) if motion in ("down", "up") else (across, along)
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for i in range(frames):
        canvas = torch.from_numpy(background.copy())
        side = int(sides[i])
        sprite = _sprite(digit, side, colour)
        top, left = int(round(tops[i])), int(round(lefts[i]))
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + side, size), min(left + side, size)
        if y1 > y0 and x1 > x0:
            patch = sprite[:, y0 - top:y1 - top, x0 - left:x1 - left]
            canvas[:, y0:y1, x0:x1] = torch.maximum(canvas[:, y0:y1, x0:x1], patch)
        out[i] = (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return out


def make_moving_digits(out: str | Path, per_class: int = 20, test_per_class: int = 10, frames: int = 32,
                       size: int = 32, label: str = "motion", seed: int = 0, fps: int = 10) -> Path:
    """Write OUT/train/CLASS/*.mp4 and OUT/test/CLASS/*.mp4 (``per_class`` and ``test_per_class``
    clips of each class). Train and test use disjoint digit images."""
    from sklearn.datasets import load_digits

    if label not in ("motion", "digit"):
        raise ValueError(f"label must be motion or digit, not {label!r}")
    if size % 2:
        raise ValueError("H.264 needs an even frame size")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    pools = {"train": order[: len(order) * 4 // 5], "test": order[len(order) * 4 // 5:]}
    classes = MOTIONS if label == "motion" else tuple(str(d) for d in range(10))
    out = Path(out)
    for split, count in (("train", per_class), ("test", test_per_class)):
        pool = pools[split]
        for ci, name in enumerate(classes):
            for k in range(count):
                if label == "motion":
                    image, motion = digits.images[rng.choice(pool)], name
                else:
                    candidates = pool[digits.target[pool] == ci]
                    image, motion = digits.images[rng.choice(candidates)], MOTIONS[rng.integers(len(MOTIONS))]
                clip = moving_digit_clip(image, motion, frames, size, rng)
                write_video(out / split / name / f"{k:04d}.mp4", clip, fps=fps)
    return out


# --- 3D volumes -------------------------------------------------------------------------------

SHAPES = ("ellipsoid", "tube", "blob")


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _smooth_noise(size: int, rng: np.random.Generator, cells: int = 5) -> np.ndarray:
    """A smooth random field in about [-1, 1]: Gaussian noise on a cells³ grid, upsampled trilinearly."""
    coarse = torch.from_numpy(rng.normal(size=(1, 1, cells, cells, cells)).astype(np.float32))
    return F.interpolate(coarse, size=(size,) * 3, mode="trilinear", align_corners=True)[0, 0].numpy() / 1.5


def procedural_volume(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One D x H x W float volume holding ``shape`` at a random pose, size and intensity scale, on a
    noisy background: an ellipsoid (smooth, convex), a tube (a cylinder through the volume) or a blob
    (a sphere with a noise-modulated surface and textured inside)."""
    axis = np.linspace(-1, 1, size, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)  # D x H x W x 3
    centre = rng.uniform(-0.2, 0.2, 3).astype(np.float32)
    p = (grid - centre) @ _rotation(rng).astype(np.float32).T  # coordinates in the shape's frame

    def soft(inside: np.ndarray) -> np.ndarray:  # a mask with a soft edge (steepness 12)
        return 1 / (1 + np.exp(-12.0 * np.clip(inside, -4, 4)))

    if shape == "ellipsoid":
        radii = rng.uniform(0.25, 0.6, 3).astype(np.float32)
        inside = 1.0 - np.sqrt(((p / radii) ** 2).sum(-1))
        density = soft(inside)
    elif shape == "tube":
        radius, half_length = rng.uniform(0.1, 0.2), rng.uniform(0.6, 0.9)
        radial = np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2)
        inside = np.minimum(1 - radial / radius, 1 - np.abs(p[..., 2]) / half_length)
        density = soft(inside)
    elif shape == "blob":
        radius = rng.uniform(0.35, 0.55)
        inside = 1.0 - np.sqrt((p ** 2).sum(-1)) / radius + 0.35 * _smooth_noise(size, rng)
        density = soft(inside) * (1 + 0.5 * _smooth_noise(size, rng, cells=9))
    else:
        raise ValueError(f"unknown shape {shape!r} (known: {', '.join(SHAPES)})")
    scale, offset = rng.uniform(200, 1500), rng.uniform(-1000, 0)  # scanner-like intensity ranges
    noise = rng.normal(0, 0.08, density.shape)
    return (offset + scale * (density + noise)).astype(np.float32)


def make_procedural_volumes(out: str | Path, per_class: int = 20, test_per_class: int = 10, size: int = 32,
                            seed: int = 0, suffix: str = ".npy") -> Path:
    """Write OUT/train/SHAPE/*.npy and OUT/test/SHAPE/*.npy (or NIfTI with ``suffix=".nii.gz"``):
    ``per_class`` and ``test_per_class`` volumes of each shape (ellipsoid, tube, blob). Seeded."""
    from .volume import write_nifti

    rng = np.random.default_rng(seed)
    out = Path(out)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for shape in SHAPES:
            for k in range(count):
                volume = procedural_volume(shape, size, rng)
                path = out / split / shape / f"{k:04d}{suffix}"
                if suffix == ".npy":
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.save(path, volume)
                else:
                    write_nifti(path, volume)
    return out
