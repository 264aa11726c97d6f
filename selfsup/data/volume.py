"""3D volumes (CT, MRI, ...): .npy/.npz and NIfTI files, normalized per volume, held as uint8 N x 1 x S x S x S.

Each volume is read (NumPy, or ``nibabel`` for .nii/.nii.gz), its intensities are clipped to its own
0.5th-99.5th percentiles and scaled to 0..255 (per-volume normalization: scanners and protocols
differ in scale, and a percentile window ignores the few extreme voxels of metal or air), and it is
resampled to S voxels a side (trilinear; area-averaged when shrinking). The pool is batched like
images; the volume methods and views work on B x 1 x S x S x S.
"""
from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..utils.errors import ConfigError, SelfSupError
from .pool import DecodedPool, DecodedSpec
from .sources import Collection

DEFAULT_VOLUME_SIZE = 32
VOLUME_ARRAY_KEYS = ("volume", "image", "images", "x", "data", "arr_0")


@dataclass
class VolumeSpec(DecodedSpec):
    """How volumes are fed: channels (1) and the side S of the resampled cube."""

    channels: int = 1
    size: int = DEFAULT_VOLUME_SIZE

    def validate(self) -> "VolumeSpec":
        if self.channels != 1 or self.size < 8:
            raise ConfigError(f"volumes are 1-channel cubes of side >= 8 (got {self.channels} channels, side {self.size})")
        return self


def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise ConfigError("NIfTI volumes need nibabel: pip install 'selfsup[volume]'") from None
    return nibabel


def read_volume(data: bytes, key: str) -> np.ndarray:
    """A D x H x W float array from a .npy, .npz (its 'volume'/'x'/... or only array) or NIfTI file's bytes."""
    name = key.lower()
    if name.endswith((".nii", ".nii.gz")):
        raw = gzip.decompress(data) if name.endswith(".gz") else data
        volume = np.asarray(_nibabel().Nifti1Image.from_bytes(raw).get_fdata(dtype=np.float32))
    elif name.endswith(".npz"):
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            keys = [k for k in VOLUME_ARRAY_KEYS if k in z.files] or z.files
            volume = z[keys[0]]
    else:
        volume = np.load(io.BytesIO(data), allow_pickle=False)
    volume = np.squeeze(np.asarray(volume))
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {volume.shape}")
    if not np.issubdtype(volume.dtype, np.number) or not np.isfinite(volume).all():
        raise ValueError("volume holds non-numeric, NaN or infinite values")
    return volume.astype(np.float32)


def normalize_volume(volume: np.ndarray, size: int, low: float = 0.5, high: float = 99.5) -> torch.Tensor:
    """uint8 1 x S x S x S: intensities clipped to the volume's own [low, high] percentiles and scaled
    to 0..255, then resampled to ``size`` a side (each axis; area-averaged when shrinking)."""
    lo, hi = np.percentile(volume, [low, high])
    scaled = np.clip((volume - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(volume)
    x = torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32))[None, None]
    if tuple(x.shape[2:]) != (size,) * 3:
        shrinking = all(s >= size for s in x.shape[2:])
        x = F.interpolate(x, size=(size,) * 3, mode="area") if shrinking else \
            F.interpolate(x, size=(size,) * 3, mode="trilinear", align_corners=False)
    return (x[0] * 255).round().clamp(0, 255).to(torch.uint8)


def probe_volume_spec(collection: Collection, size: int | None = None) -> VolumeSpec:
    """The volume settings: the given side, else the first readable volume's smallest side up to 32
    (a CPU-sized cube: 32³ voxels are already 32 times a 32² image)."""
    if size is None:
        if collection.array is not None:
            native = min(collection.array.shape[1:])
        else:
            for key in collection.keys[:20]:
                try:
                    native = min(read_volume(collection.reader.read(key), key).shape)  # type: ignore[union-attr]
                    break
                except Exception:  # noqa: BLE001 - any unreadable file: try the next
                    continue
            else:
                raise SelfSupError(f"none of the first volumes in {collection.describe()} could be read")
        size = max(8, min(native, DEFAULT_VOLUME_SIZE))
    return VolumeSpec(channels=1, size=size).validate()


class VolumePool(DecodedPool):
    """Volumes ready to feed a network: read, normalized and resampled once into uint8 N x 1 x S x S x S."""

    item_kind = "volume"
    modality = "volume"

    def item_shape(self) -> tuple[int, ...]:
        return (1, self.spec.size, self.spec.size, self.spec.size)

    def decode(self, data: bytes, key: str) -> torch.Tensor:
        return normalize_volume(read_volume(data, key), self.spec.size)

    def fit_array(self, array: np.ndarray) -> np.ndarray:
        return np.stack([normalize_volume(np.asarray(v, dtype=np.float32), self.spec.size).numpy() for v in array])


def write_nifti(path: str | Path, volume: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Path:
    """Save a D x H x W array as NIfTI (.nii or .nii.gz), for generated data and tests."""
    nibabel = _nibabel()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(np.asarray(volume, dtype=np.float32), np.diag([*spacing, 1.0])), str(path))
    return path
