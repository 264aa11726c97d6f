"""Data-parallel training on PyTorch's own stack: torchrun sets the environment, this module reads it.

``torchrun --nproc-per-node N -m selfsup pretrain ...`` (or ``selfsup pretrain --devices N``, which
launches exactly that) starts N processes; each joins the process group (NCCL on GPUs, gloo on
CPUs), takes its 1/N of every global batch, and DistributedDataParallel averages the gradients.

Losses that compare a sample with the rest of the batch call :func:`gather` so that an N-process
run sees the global batch: the all-gather of ``torch.distributed.nn`` carries gradients back to
the rank that produced each row, so the loss and every parameter update equal those of one process
on the N-times batch (tests/utils/test_distributed.py checks it). Queues and memory banks enqueue
:func:`gather_detached` rows, so every rank holds the same queue. With one process every function
here is the identity, and nothing else changes.
"""
from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from .errors import ConfigError, SelfSupError

log = logging.getLogger("selfsup")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank among world_size, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, shows progress and writes checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_name: str) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes (or stay single-process); returns the context and
    this rank's device: ``cuda:LOCAL_RANK`` with NCCL when CUDA is asked for or available, else the
    CPU with gloo."""
    from .runtime import resolve_device

    if not launched_by_torchrun():
        return DistContext(), resolve_device(device_name)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise SelfSupError(f"rank {rank}: LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs here")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30),
                                **({"device_id": device} if device.type == "cuda" else {}))
    return DistContext(rank, world, local_rank), device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def max_over_ranks(value: int, device: torch.device) -> int:
    """The largest of every rank's ``value`` (one process: the value): ranks agree on a stop request
    that reached only some of them."""
    if world_size() == 1:
        return value
    out = torch.tensor([value], device=device)
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return int(out.item())


def gather(x: torch.Tensor) -> torch.Tensor:
    """The rows of every rank, in rank order (R x n -> R*n rows), with gradients flowing back to
    each rank's own rows. Every rank must pass the same shape."""
    if world_size() == 1:
        return x
    try:  # what PyTorch names as the successor of torch.distributed.nn's (deprecated) all_gather
        from torch.distributed._functional_collectives import all_gather_single_autograd
    except ImportError:
        import torch.distributed.nn.functional as dist_fn

        return torch.cat(dist_fn.all_gather(x.contiguous()))
    return all_gather_single_autograd(x.contiguous(), 0, dist.group.WORLD)


@torch.no_grad()
def gather_detached(x: torch.Tensor) -> torch.Tensor:
    """:func:`gather` without gradients (keys for queues, memory-bank rows and indices)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def gather_uneven(x: torch.Tensor) -> torch.Tensor:
    """:func:`gather_detached` for ranks with different numbers of rows: every rank's rows, in rank order."""
    if world_size() == 1:
        return x
    counts = gather_detached(torch.tensor([len(x)], device=x.device)).tolist()
    padded = x.new_zeros((max(counts), *x.shape[1:]))  # all_gather needs one shape
    padded[:len(x)] = x
    parts = gather_detached(padded).split(max(counts))
    return torch.cat([part[:count] for part, count in zip(parts, counts)])


def offset(local_rows: int) -> int:
    """Where this rank's rows start in a gathered batch."""
    return rank() * local_rows


@torch.no_grad()
def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The average of a (scalar) tensor over ranks: the logged loss of the global batch."""
    if world_size() == 1:
        return x
    out = x.detach().clone().float()
    dist.all_reduce(out)
    return out / world_size()


def wrap_data_parallel(method: torch.nn.Module, context: DistContext, device: torch.device,
                       sync_batchnorm: bool) -> torch.nn.Module | None:
    """``method`` in DistributedDataParallel (None with one process), its batch norms synchronized
    first when ``sync_batchnorm`` (the paper's global-batch statistics: SimCLR, BYOL ...).

    SyncBatchNorm runs on CUDA only; on CPUs batch norm stays per process (said once in the log).
    Buffers are not broadcast: queues and memory banks are kept equal by enqueueing the gathered
    batch, and BN statistics are rank 0's to save.
    """
    if not context.active:
        return None
    if sync_batchnorm and device.type == "cuda":
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    elif sync_batchnorm and context.is_main and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                                    for m in method.modules()):
        log.warning("SyncBatchNorm needs CUDA: on CPUs each of the %d processes normalizes its own share "
                    "of the batch", context.world_size)
    # PyTorch renamed broadcast_buffers to forward_sync_buffers; older releases (>= 2.3 is supported) lack it.
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
               else {"broadcast_buffers": False})
    return DDP(method, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)


@torch.no_grad()
def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers on every rank: batch-norm statistics are otherwise each process's own
    (see :func:`wrap_data_parallel`)."""
    if world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)


def share_plan(method: torch.nn.Module, plan: np.ndarray, device: torch.device) -> np.ndarray:
    """Rank 0's epoch plan and buffers on every rank: a method that plans its epoch from the pool's
    features (DeepCluster's k-means) would otherwise plan from each rank's own batch-norm statistics."""
    if world_size() == 1:
        return plan
    broadcast_buffers(method)
    length = torch.tensor([len(plan)], device=device)
    dist.broadcast(length, 0)
    shared = torch.from_numpy(np.ascontiguousarray(plan, dtype=np.int64)).to(device)
    if len(shared) != int(length):
        shared = torch.empty(int(length), dtype=torch.int64, device=device)
    dist.broadcast(shared, 0)
    return shared.cpu().numpy()


def local_batch(global_batch: int, context: DistContext) -> int:
    """Each rank's share of ``--batch-size``, which is the global batch (the learning rate scales with it)."""
    if global_batch % context.world_size:
        raise ConfigError(f"--batch-size {global_batch} is the global batch and must divide evenly among "
                          f"the {context.world_size} processes")
    return global_batch // context.world_size


__all__ = ["DistContext", "init_distributed", "launched_by_torchrun", "shutdown", "world_size", "rank", "barrier",
           "gather", "gather_detached", "offset", "mean_over_ranks", "wrap_data_parallel", "share_plan", "local_batch"]
