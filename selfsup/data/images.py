"""Images ready for training: a decoded uint8 cache for small images, streaming for large ones.

Small images (side <= 64 px, CIFAR-sized) are decoded once into an N x C x H x W uint8 array,
kept in memory or, for large sets, in a memory-mapped file under the cache folder, and reused
by later runs. Larger images stream through DataLoader workers that decode and fit each to a
fixed square load size; views (random crops etc.) are then made in batch on the device.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..utils.errors import SelfSupError
from .decode import DecodeError, decode_bytes, fit_square, match_channels, reason
from .sources import Collection

log = logging.getLogger("selfsup")

SMALL_IMAGE_MAX = 64
IN_MEMORY_MAX_BYTES = 2 << 30  # larger decoded sets are memory-mapped from the cache folder


def cache_dir() -> Path:
    return Path(os.environ.get("SELFSUP_CACHE", Path.home() / ".cache" / "selfsup"))


@dataclass
class ImageSpec:
    """How images are fed to the network: channels, load size (decoded), image size (views)."""

    channels: int
    load_size: int
    image_size: int

    @classmethod
    def of_encoder(cls, info: dict) -> "ImageSpec":
        """The sizes a saved encoder was trained at (its encoder.json)."""
        return cls(channels=info["backbone"]["in_channels"], load_size=info["load_size"], image_size=info["image_size"])

    @property
    def cached(self) -> bool:
        return self.load_size <= SMALL_IMAGE_MAX


def probe_spec(collection: Collection, image_size: int | None = None,
               channels: int | None = None) -> ImageSpec:
    """Decide sizes from the first decodable image unless given."""
    if collection.array is not None:
        c, h, w = collection.array.shape[1:]
    else:
        for key in collection.keys[:50]:
            try:
                c, h, w = decode_bytes(collection.reader.read(key)).shape  # type: ignore[union-attr]
                break
            except (DecodeError, OSError, KeyError):
                continue
        else:
            raise SelfSupError(f"none of the first images in {collection.describe()} could be decoded")
    return spec_from_shape((c, h, w), image_size, channels)


def spec_from_shape(shape: tuple[int, int, int], image_size: int | None = None,
                    channels: int | None = None) -> ImageSpec:
    """Sizes from one image's C x H x W: native up to 64 px, else 224 views from 256-px loads."""
    c, h, w = shape
    channels = channels or (3 if c == 4 else c)
    native = min(h, w)
    if image_size is None:
        image_size = native if native <= SMALL_IMAGE_MAX else 224
    # Large images are decoded a little larger than the crop, as in ImageNet's 256 -> 224.
    load_size = image_size if image_size <= SMALL_IMAGE_MAX else round(image_size * 256 / 224)
    return ImageSpec(channels=channels, load_size=load_size, image_size=image_size)


def _cache_key(collection: Collection, spec: ImageSpec) -> str:
    digest = hashlib.sha256()
    ident = collection.reader.identity() if collection.reader else collection.name
    digest.update(json.dumps([ident, spec.channels, spec.load_size, len(collection)]).encode())
    for key in collection.keys:
        digest.update(key.encode() + b"\0")
    return digest.hexdigest()[:24]


def decode_collection(collection: Collection, spec: ImageSpec, *, strict: bool = False,
                      use_disk_cache: bool = True, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Decode every item to uint8 N x C x S x S. Returns (array, indices of the good items).

    Bad items are named once on stderr and skipped (or raise with ``strict``).
    """
    if collection.array is not None:
        arr = torch.from_numpy(collection.array)
        if arr.shape[-1] != spec.load_size or arr.shape[-2] != spec.load_size or arr.shape[1] != spec.channels:
            arr = torch.stack([fit_square(match_channels(x, spec.channels), spec.load_size) for x in arr])
        return arr.numpy(), np.arange(len(collection))
    folder = cache_dir() / "decoded"
    key = _cache_key(collection, spec)
    data_path, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    cached = _read_cache(data_path, meta_path, strict) if use_disk_cache else None
    if cached is not None:
        return cached
    n, s, c = len(collection), spec.load_size, spec.channels
    nbytes = n * c * s * s
    memmapped = use_disk_cache and nbytes > IN_MEMORY_MAX_BYTES
    if memmapped:
        folder.mkdir(parents=True, exist_ok=True)
        tmp_path = folder / f"{key}.tmp.{os.getpid()}.npy"
        array = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.uint8, shape=(n, c, s, s))
    else:
        array = np.empty((n, c, s, s), dtype=np.uint8)
    good: list[int] = []
    bad: list[dict[str, str]] = []
    assert collection.reader is not None
    items = tqdm(collection.keys, desc=f"decoding {collection.name}", unit="img", file=sys.stderr,
                 disable=not progress or n < 2000, leave=False)
    for i, item in enumerate(items):
        try:
            image = fit_square(match_channels(decode_bytes(collection.reader.read(item), spec.channels),
                                              spec.channels), s)
        except (DecodeError, OSError, KeyError, RuntimeError) as exc:
            why = reason(exc)
            if strict:
                raise SelfSupError(f"unreadable image {item}: {why}") from exc
            log.warning("skipped unreadable image %s (%s)", item, why)
            bad.append({"key": item, "why": why})
            continue
        array[len(good)] = image.numpy()
        good.append(i)
    array = array[: len(good)]
    if use_disk_cache:
        array = _write_cache(array, good, bad, data_path, meta_path, tmp_path if memmapped else None)
    return array, np.asarray(good, dtype=np.int64)


def _read_cache(data_path: Path, meta_path: Path, strict: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """A decode-cache entry (array, good indices), its bad items named again; None when absent or damaged."""
    if not (data_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        array = np.load(data_path, mmap_mode="r")
        for bad in meta["bad"]:
            log.warning("skipped unreadable image %s (%s)", bad["key"], bad["why"])
        if strict and meta["bad"]:
            raise SelfSupError(f"unreadable image {meta['bad'][0]['key']}: {meta['bad'][0]['why']}")
        good = np.asarray(meta["good"], dtype=np.int64)
        # Small sets are copied into memory (writable, fast); large ones stay memory-mapped.
        return (np.array(array) if array.nbytes <= IN_MEMORY_MAX_BYTES else array), good
    except (ValueError, KeyError, OSError):
        return None  # a damaged cache entry is rebuilt


def _write_cache(array: np.ndarray, good: list[int], bad: list[dict[str, str]], data_path: Path, meta_path: Path,
                 memmap_path: Path | None) -> np.ndarray:
    """Store a decoded array (the memory map at ``memmap_path``, or an in-memory array) and its item lists,
    each written then renamed; the array to use from now on."""
    folder = data_path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if memmap_path is not None:
            array.flush()
            os.replace(memmap_path, data_path)  # the header still says n rows; trim on reload
            array = np.load(data_path, mmap_mode="r")[: len(good)]
        else:
            tmp = folder / f"{data_path.stem}.tmp.{os.getpid()}.npy"
            np.save(tmp, array)
            os.replace(tmp, data_path)
        tmp_meta = meta_path.with_suffix(f".tmp{os.getpid()}")
        tmp_meta.write_text(json.dumps({"good": good, "bad": bad}))
        os.replace(tmp_meta, meta_path)
    except OSError as exc:
        log.warning("could not write the decode cache in %s: %s", folder, exc)
    return array


class StreamingImages(torch.utils.data.Dataset):
    """Decodes and fits one image per call, for DataLoader workers; bad items yield their key."""

    def __init__(self, collection: Collection, spec: ImageSpec) -> None:
        self.collection, self.spec = collection, spec

    def __len__(self) -> int:
        return len(self.collection)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[str, str]:
        key = self.collection.keys[index]
        try:
            image = decode_bytes(self.collection.reader.read(key), self.spec.channels)  # type: ignore[union-attr]
            return fit_square(match_channels(image, self.spec.channels), self.spec.load_size)
        except (DecodeError, OSError, KeyError, RuntimeError) as exc:
            return key, reason(exc)


def collate_good(items: list) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """Stack decoded images; return the bad items' (key, reason) beside them."""
    good = [x for x in items if isinstance(x, torch.Tensor)]
    bad = [x for x in items if isinstance(x, tuple)]
    return (torch.stack(good) if good else torch.empty(0, dtype=torch.uint8)), bad


class ReportsBadItems:
    """A pool that names each unreadable item once, however many times a stream meets it, or
    fails on the first one when ``strict``."""

    strict: bool
    reported: set[str]
    item_kind = "image"

    def report_bad(self, bad: list[tuple[str, str]]) -> None:
        for key, why in bad:
            if self.strict:
                raise SelfSupError(f"unreadable {self.item_kind} {key}: {why}")
            if key not in self.reported:
                self.reported.add(key)
                log.warning("skipped unreadable %s %s (%s)", self.item_kind, key, why)


def array_batches(array: np.ndarray, indices: np.ndarray, batch_size: int):
    """(positions in ``indices``, uint8 batch) from a decoded pool array, ``batch_size`` items at a time."""
    for start in range(0, len(indices), batch_size):
        pos = np.arange(start, min(start + batch_size, len(indices)))
        yield pos, torch.from_numpy(np.ascontiguousarray(array[indices[pos]]))


class Prepared(ReportsBadItems):
    """A collection ready to feed a network: decoded cache or stream, with labels of good items.

    ``batches(indices)`` yields (positions, uint8 batch) where positions index ``indices``;
    items found unreadable while streaming are left out and named once.
    """

    modality = "image"
    crops_per_image: float | None = None  # a pool of large images read as native-resolution crops (data.crops)

    def __init__(self, collection: Collection, spec: ImageSpec, strict: bool = False,
                 progress: bool = True) -> None:
        self.spec, self.strict = spec, strict
        self.stream: StreamingImages | None = None
        self.array: np.ndarray | None = None
        self.reported: set[str] = set()
        if spec.cached or collection.array is not None:  # decoded already (an array, or native crops)
            self.array, good = decode_collection(collection, spec, strict=strict, progress=progress)
            self.skipped = len(collection) - len(good)
            collection = collection.subset(good) if self.skipped else collection
        else:
            self.stream = StreamingImages(collection, spec)
            self.skipped = 0
        self.collection = collection
        self.labels = collection.labels

    def __len__(self) -> int:
        return len(self.collection)

    def batches(self, indices: np.ndarray, batch_size: int, num_workers: int = 0):
        if self.array is not None:
            yield from array_batches(self.array, indices, batch_size)
            return
        assert self.stream is not None
        chunks = [list(range(s, min(s + batch_size, len(indices)))) for s in range(0, len(indices), batch_size)]
        loader = torch.utils.data.DataLoader(
            _Positions(self.stream, indices), batch_sampler=chunks, num_workers=num_workers,
            collate_fn=_collate_positions)
        for pos, images, bad in loader:
            self.report_bad(bad)
            if len(pos):
                yield np.asarray(pos), images


class _Positions(torch.utils.data.Dataset):
    def __init__(self, stream: StreamingImages, indices: np.ndarray) -> None:
        self.stream, self.indices = stream, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        return position, self.stream[int(self.indices[position])]


def _collate_positions(items: list) -> tuple[list[int], torch.Tensor, list[str]]:
    pos = [p for p, x in items if isinstance(x, torch.Tensor)]
    images, bad = collate_good([x for _, x in items])
    return pos, images, bad
