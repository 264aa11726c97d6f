"""Images with masks for segmentation: ``images/`` and ``masks/`` paired by file stem.

A source is a folder or archive holding ``images/`` and ``masks/`` (under ``train/`` and ``test/`` when it
is split; one top folder around everything is looked through), or an ``.npz`` with ``x`` (or ``images``)
and ``masks``. A mask is a 1-channel PNG of class indices, or 0/255 for two classes (read as 0 and 1).
Every image is kept at its own size. Bad pairs are named once and skipped, never repaired: an image
without a mask (or a mask without an image), a mask whose size differs from its image's, and a mask
whose values do not belong (a JPEG-compressed mask has dozens of values around every edge).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..utils.errors import SelfSupError
from .decode import DecodeError, decode_bytes, match_channels, reason
from .sources import Reader, source_files

log = logging.getLogger("selfsup")

BINARY = (0, 255)
MAX_CLASSES = 32  # more distinct values than this in one mask: not a mask of class indices


@dataclass
class MaskedImages:
    """Images (uint8 C x H x W, each at its own size) and their masks (int64 H x W class indices)."""

    name: str
    keys: list[str]
    images: list[torch.Tensor]
    masks: list[torch.Tensor]
    classes: list[str] = field(default_factory=list)  # the mask value each class index stands for

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def channels(self) -> int:
        return int(self.images[0].shape[0])

    def subset(self, indices: np.ndarray | list[int], name: str | None = None) -> "MaskedImages":
        return MaskedImages(name or self.name, [self.keys[i] for i in indices], [self.images[i] for i in indices],
                            [self.masks[i] for i in indices], self.classes)


def _pairs(keys: list[str], spec: str) -> dict[str, dict[str, dict[str, str]]]:
    """split -> {"images"|"masks" -> {stem -> key}}; split "all" when there is no train/ and test/."""
    parts = [PurePosixPath(k).parts for k in keys]
    tops = {p[0] for p in parts}
    skip = 1 if len(tops) == 1 and all(len(p) > 2 for p in parts) and tops.pop() not in ("train", "test", "images") else 0
    found: dict[str, dict[str, dict[str, str]]] = {}
    for key, p in zip(keys, parts):
        p = p[skip:]
        role = next((i for i, part in enumerate(p) if part in ("images", "masks")), None)
        if role is None:
            continue  # e.g. an unlabeled/ folder beside the pairs: pretraining's, not segmentation's
        split = p[0] if role == 1 and p[0] in ("train", "test") else "all"
        stem = str(PurePosixPath(*p[role + 1:]).with_suffix(""))
        found.setdefault(split, {"images": {}, "masks": {}})[p[role]][stem] = key
    if not found:
        raise SelfSupError(f"{spec}: no images/ and masks/ folders found (a segmentation source pairs "
                           "images/NAME.png with masks/NAME.png)")
    return found


def _read_mask(reader: Reader, key: str) -> torch.Tensor:
    mask = decode_bytes(reader.read(key))
    if mask.shape[0] > 1:  # a gray mask saved as RGB(A) is fine; a colour-coded one is not read
        if mask.shape[0] == 4:
            mask = mask[:3]
        if not bool((mask == mask[:1]).all()):
            raise DecodeError("is a colour mask; masks hold one class index per pixel (1-channel PNG)")
    return mask[0]


def _value_check(masks: dict[str, torch.Tensor]) -> tuple[list[str], dict[int, int]]:
    """The classes (as mask values) and the value -> index map, from the masks' values: 0/255 when most
    masks hold only those, else indices 0..K-1. Masks holding other values are named and dropped."""
    values = {key: torch.unique(m).tolist() for key, m in masks.items()}
    binary = [k for k, v in values.items() if set(v) <= set(BINARY)]
    if len(binary) * 2 > len(masks):
        bad = {k: v for k, v in values.items() if not set(v) <= set(BINARY)}
        classes = ["0", "255"]
    else:
        bad = {k: v for k, v in values.items() if len(v) > MAX_CLASSES}
        top = max((max(v) for k, v in values.items() if k not in bad), default=0)
        classes = [str(i) for i in range(int(top) + 1)]
    for key, v in bad.items():
        log.warning("skipped mask %s: values %s are not class indices%s (a JPEG-compressed mask?)", key,
                    ", ".join(map(str, v[:6])) + (" …" if len(v) > 6 else ""),
                    " (the masks are 0/255)" if classes == ["0", "255"] else "")
        masks.pop(key)
    lookup = {0: 0, 255: 1} if classes == ["0", "255"] else {i: i for i in range(len(classes))}
    return classes, lookup


def open_segmentation(spec: str, channels: int | None = None, strict: bool = False) -> dict[str, MaskedImages]:
    """The image/mask pairs of ``spec`` by split ("train"/"test", or "all"), every bad pair named once."""
    if spec.lower().endswith(".npz"):
        return {"all": _from_arrays(Path(spec))}
    keys, reader = source_files(spec)
    found = _pairs(keys, spec)
    images: dict[str, dict[str, torch.Tensor]] = {}
    masks: dict[str, torch.Tensor] = {}
    for split, roles in found.items():
        images[split] = {}
        for stem in sorted(set(roles["images"]) | set(roles["masks"])):
            image_key, mask_key = roles["images"].get(stem), roles["masks"].get(stem)
            try:
                if image_key is None or mask_key is None:
                    raise DecodeError(f"has no {'mask' if mask_key is None else 'image'} of the same name")
                image = decode_bytes(reader.read(image_key))
                channels = channels or (3 if image.shape[0] == 4 else image.shape[0])
                image = match_channels(image, channels)
                mask = _read_mask(reader, mask_key)
                if mask.shape != image.shape[1:]:
                    raise DecodeError(f"mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                                      f"{image.shape[2]}x{image.shape[1]}")
            except (DecodeError, OSError, KeyError, RuntimeError) as exc:
                what = image_key or mask_key
                if strict:
                    raise SelfSupError(f"bad image/mask pair {what}: {reason(exc)}") from exc
                log.warning("skipped %s (%s)", what, reason(exc))
                continue
            images[split][mask_key] = image
            masks[mask_key] = mask
    classes, lookup = _value_check(masks)
    out = {}
    for split, pairs in images.items():
        kept = [k for k in pairs if k in masks]
        if kept:
            table = torch.zeros(256, dtype=torch.int64)
            for value, index in lookup.items():
                table[value] = index
            out[split] = MaskedImages(f"{Path(spec).name}:{split}", [found[split]["images"][_stem(k)] for k in kept],
                                      [pairs[k] for k in kept], [table[masks[k].long()] for k in kept], classes)
    if not out:
        raise SelfSupError(f"{spec}: no readable image/mask pair")
    log.info("%s: %s image/mask pairs; %d classes read from the masks (mask values %s)", Path(spec).name,
             ", ".join(f"{len(v)} {k}" for k, v in out.items()), len(classes),
             "0 and 255" if classes == ["0", "255"] else f"0..{len(classes) - 1}")
    return out


def _stem(mask_key: str) -> str:
    parts = PurePosixPath(mask_key).parts
    role = max(i for i, p in enumerate(parts) if p == "masks")
    return str(PurePosixPath(*parts[role + 1:]).with_suffix(""))


def _from_arrays(path: Path) -> MaskedImages:
    """An .npz of images (``x`` or ``images``: N x H x W [x C] or N x C x H x W) and ``masks`` (N x H x W)."""
    from .sources import _array_to_nchw

    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise SelfSupError(f"cannot read NumPy file {path}: {exc}") from exc
    x = next((arrays[k] for k in ("x", "images") if k in arrays), None)
    if x is None or "masks" not in arrays:
        raise SelfSupError(f"{path.name}: a segmentation array file holds 'x' (or 'images') and 'masks' "
                           f"(found {sorted(arrays)})")
    x, y = _array_to_nchw(np.asarray(x), path.name), np.asarray(arrays["masks"])
    if y.shape != (x.shape[0], *x.shape[2:]):
        raise SelfSupError(f"{path.name}: masks are shaped {y.shape}, the images {x.shape} (need N x H x W)")
    masks = {f"{path.name}[{i}]": torch.from_numpy(y[i].astype(np.int64)) for i in range(len(y))}
    classes, lookup = _value_check(masks)
    keep = [i for i in range(len(y)) if f"{path.name}[{i}]" in masks]
    table = torch.zeros(int(max(256, y.max() + 1)), dtype=torch.int64)
    for value, index in lookup.items():
        table[value] = index
    return MaskedImages(path.name, [f"{path.name}[{i}]" for i in keep], [torch.from_numpy(x[i]) for i in keep],
                        [table[masks[f"{path.name}[{i}]"]] for i in keep], classes)
