"""Batches of a pool for steps start..stop: each epoch's order asked for when it begins, split among ranks."""
from __future__ import annotations

import logging
from typing import Callable, Iterator

import numpy as np
import torch

from ..data.images import Prepared, collate_good
from ..data.shards import ShardedPool
from ..utils.distributed import DistContext

log = logging.getLogger("selfsup")


class _Indexed(torch.utils.data.Dataset):
    """A streamed dataset whose items carry their pool index, so memory banks find their rows."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def __len__(self) -> int:
        return len(self.stream)

    def __getitem__(self, index: int):
        return index, self.stream[index]


def _collate_indexed(items: list) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    images, bad = collate_good([item for _, item in items])
    good = torch.tensor([i for i, item in items if isinstance(item, torch.Tensor)], dtype=torch.long)
    return good, images, bad


def resident_images(data: Prepared, device: torch.device, share: float = 0.25) -> torch.Tensor | None:
    """The decoded uint8 pool copied once to the GPU when it takes under ``share`` of the free memory
    (CIFAR-10: 150 MB), so a batch is an index into device memory: no host copy, no loader."""
    if data.array is None or device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    if data.array.nbytes > share * free:
        log.info("pool of %.1f GB stays in host memory (%.1f GB free on %s)", data.array.nbytes / 1e9, free / 1e9, device)
        return None
    log.info("pool resident on %s as uint8 (%.0f MB)", device, data.array.nbytes / 1e6)
    return torch.from_numpy(np.ascontiguousarray(data.array)).to(device)


def batches(data: Prepared | ShardedPool, batch: int, order_of: Callable[[int], np.ndarray], start: int, stop: int,
            workers: int, part: DistContext = DistContext(), resident: torch.Tensor | None = None,
            seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(pool indices, uint8 images) for steps start..stop-1: drop-last epochs in ``order_of(epoch)``.

    Each epoch's order is asked for only when that epoch begins, so a method may base it on
    the weights trained so far (DeepCluster samples uniformly over its latest clusters).
    ``batch`` is the global batch; rank r of ``part`` takes its r-th contiguous 1/world of every
    one (DistributedSampler's disjoint shares, but of the engine's own per-epoch order, so a resumed
    or method-planned epoch splits the same way), and loads only those images. With ``resident``
    (the pool already on the device) a batch is gathered there. A sharded pool streams each rank's
    share of every epoch itself, fixed by ``seed`` (see ``selfsup.data.shards``).
    """
    per_epoch = len(data) // batch
    share = batch // part.world_size
    mine = slice(part.rank * share, (part.rank + 1) * share)
    step = start
    while step < stop:
        epoch, first = divmod(step, per_epoch)
        last = min(stop, (epoch + 1) * per_epoch)
        if isinstance(data, ShardedPool):
            yield from data.epoch_batches(epoch, seed, share, last - epoch * per_epoch, first, part.rank,
                                          part.world_size, workers)
            step = last
            continue
        order = order_of(epoch)
        slices = [order[k * batch:(k + 1) * batch][mine] for k in range(first, first + last - step)]
        if resident is not None:
            for idx in slices:
                rows = torch.from_numpy(idx)
                yield rows, resident[rows.to(resident.device, non_blocking=True)]
        elif data.array is not None:
            for idx in slices:
                yield torch.from_numpy(idx), torch.from_numpy(np.ascontiguousarray(data.array[idx]))
        else:
            loader = torch.utils.data.DataLoader(_Indexed(data.stream), batch_sampler=[s.tolist() for s in slices],
                                                 num_workers=workers, collate_fn=_collate_indexed,
                                                 pin_memory=torch.cuda.is_available())
            for good, images, bad in loader:
                data.report_bad(bad)
                yield good, images
        step = last


def first_images(data: Prepared | ShardedPool, n: int) -> torch.Tensor:
    """The first ``n`` images of the pool (normalization statistics, --show-batch)."""
    if isinstance(data, ShardedPool):
        return data.head(n)
    return next(data.batches(np.arange(min(len(data), n)), n))[1]
