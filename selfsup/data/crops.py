"""A pool of few large images, read as many crops at native resolution rather than shrunk whole.

Thirty 512-px EM slices resized to a 64-px view lose the membranes the task is about; cut into crops of
the view's side they give hundreds of items at the scale the downstream model reads. Each image becomes
the overlapping ``side`` x ``side`` crops of a grid with stride ``side / 2`` (the last row and column
flush with the edge); the method's own views (random resized crops, flips) then draw within each crop,
so every epoch still sees new windows. A segmentation source (``images/`` + ``masks/``) gives pretraining
the images of its training split and of an ``unlabeled/`` folder beside it: never a mask, never test/.
"""
from __future__ import annotations

import logging
from pathlib import PurePosixPath

import numpy as np

from ..utils.errors import SelfSupError
from .decode import DecodeError, decode_bytes, match_channels, reason
from .sources import Collection, source_files

log = logging.getLogger("selfsup")


def segmentation_pool(spec: str) -> Collection | None:
    """The pretraining images of a segmentation source (train/images and unlabeled/), or None when ``spec``
    is not one (no images/ and masks/ folders)."""
    try:
        keys, reader = source_files(spec)
    except SelfSupError:
        return None
    parts = [PurePosixPath(k).parts for k in keys]
    if not any("masks" in p for p in parts) or not any("images" in p for p in parts):
        return None
    kept = [k for k, p in zip(keys, parts) if "masks" not in p and "test" not in p
            and ("images" in p or "unlabeled" in p)]
    if not kept:
        raise SelfSupError(f"{spec}: a segmentation source with no training or unlabeled images to pretrain on")
    log.info("%s: pretraining on %d images (train/images and unlabeled/; no mask, no test image)", spec, len(kept))
    return Collection(name=PurePosixPath(spec).name, keys=kept, labels=None, classes=None, reader=reader)


def _starts(length: int, side: int) -> list[int]:
    stride = max(1, side // 2)
    starts = list(range(0, length - side + 1, stride))
    if starts[-1] != length - side:
        starts.append(length - side)
    return starts


def native_crops(collection: Collection, channels: int, side: int, strict: bool = False) -> tuple[Collection, float]:
    """Every image's overlapping ``side``-px crops at native resolution, as an in-memory array collection, and
    the mean number of crops per image. Unreadable images (or ones smaller than ``side``) are named and skipped."""
    crops: list[np.ndarray] = []
    images = 0
    for key in collection.keys:
        try:
            if collection.array is not None:
                image = collection.array[collection.keys.index(key)]
            else:
                image = match_channels(decode_bytes(collection.reader.read(key), channels), channels).numpy()  # type: ignore[union-attr]
            height, width = image.shape[-2:]
            if min(height, width) < side:
                raise DecodeError(f"is {width}x{height}, smaller than the {side}-px crops")
        except (DecodeError, OSError, KeyError, RuntimeError) as exc:
            if strict:
                raise SelfSupError(f"unreadable image {key}: {reason(exc)}") from exc
            log.warning("skipped image %s (%s)", key, reason(exc))
            continue
        crops += [image[:, top:top + side, left:left + side] for top in _starts(height, side)
                  for left in _starts(width, side)]
        images += 1
    if not crops:
        raise SelfSupError(f"{collection.describe()}: no image to crop")
    array = np.ascontiguousarray(np.stack(crops))
    keys = [f"{collection.name}[crop {i}]" for i in range(len(array))]
    return Collection(name=f"{collection.name} ({side}-px crops)", keys=keys, labels=None, classes=None,
                      array=array), len(array) / images
