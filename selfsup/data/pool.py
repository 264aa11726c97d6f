"""Pools of items decoded once into one uint8 array N x C x D x S x S: video clips (D = frames) and
3D volumes (D = depth). The engine batches them exactly as it batches decoded images."""
from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..utils.errors import SelfSupError
from .decode import reason
from .images import ReportsBadItems, array_batches
from .sources import Collection


class DecodedSpec:
    """What a decoded pool's spec (``ClipSpec``, ``VolumeSpec``; dataclasses with a ``size``) shares: its
    fields as ``encoder.json``'s info, and ``size`` read as the engine's ``image_size``."""

    size: int

    def info(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]  (subclasses are dataclasses)

    @property
    def image_size(self) -> int:
        return self.size


class DecodedPool(ReportsBadItems):
    """Items of ``collection`` decoded by ``decode`` (files) or fitted by ``fit_array`` (arrays), with
    the labels of the readable ones; ``batches(indices)`` yields (positions, uint8 batch)."""

    modality = ""

    def __init__(self, collection: Collection, spec: Any, strict: bool = False, progress: bool = True) -> None:
        self.spec, self.strict, self.reported = spec, strict, set()
        if collection.array is not None:
            self.array, good = self.fit_array(collection.array), np.arange(len(collection))
        else:
            self.array, good = self._decode_all(collection, progress)
        self.skipped = len(collection) - len(good)
        self.collection = collection.subset(good) if self.skipped else collection
        self.labels = self.collection.labels
        if len(self.collection) == 0:
            raise SelfSupError(f"no readable {self.item_kind} in {collection.describe()}")

    def item_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def decode(self, data: bytes, key: str) -> torch.Tensor:
        """One item from its file's bytes (uint8, ``item_shape``); raises on anything unreadable."""
        raise NotImplementedError

    def fit_array(self, array: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _decode_all(self, collection: Collection, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        array = np.empty((len(collection), *self.item_shape()), dtype=np.uint8)
        good = []
        items = tqdm(collection.keys, desc=f"decoding {collection.name}", unit=self.item_kind, file=sys.stderr,
                     disable=not progress or len(collection) < 200, leave=False)
        for i, key in enumerate(items):
            try:
                array[len(good)] = self.decode(collection.reader.read(key), key).numpy()  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - decoders raise many kinds; any one means unreadable
                self.report_bad([(key, reason(exc))])
                continue
            good.append(i)
        return array[:len(good)], np.asarray(good, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.collection)

    def batches(self, indices: np.ndarray, batch_size: int, num_workers: int = 0):
        return array_batches(self.array, indices, batch_size)
