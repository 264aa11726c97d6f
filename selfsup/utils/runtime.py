"""Device choice, seeding and the run folder."""
from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, SelfSupError
from .runlock import LOCK


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SelfSupError(f"--device {name}: CUDA is not available on this machine")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, *parts: int) -> torch.Generator:
    """A CPU generator seeded from (seed, parts...): the same numbers whenever a step is replayed."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def run_files(out: Path) -> list[Path]:
    """What ``out`` holds besides the lock of the process writing it."""
    return [p for p in out.iterdir() if p.name != LOCK] if out.is_dir() else []


def clear(out: Path) -> None:
    """Empty ``out`` for --overwrite, keeping the lock this process holds there."""
    for p in run_files(out):
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def prepare_out(out: Path, resume: bool, overwrite: bool, create: bool = True) -> None:
    """A new run needs an empty folder: refuse a non-empty one unless told to resume or overwrite.
    Only ``create`` (rank 0 of a data-parallel run) replaces or makes it; the other ranks only check."""
    if resume:
        if not (out / "config.yaml").exists():
            raise ConfigError(f"--resume: {out} holds no run to resume (no config.yaml)")
        return
    if run_files(out):
        if not overwrite:
            raise ConfigError(f"output folder {out} is not empty: pass --resume to continue it "
                              "or --overwrite to replace it")
        if create:
            clear(out)
    if create:
        out.mkdir(parents=True, exist_ok=True)
