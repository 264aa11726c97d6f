"""Shared fixtures: small real image folders and a fixed seed for every test.

The real data the suite reads is committed under ``tests/data/`` (CIFAR-10 JPEGs, SST-2 rows), so a
plain clone runs its own tests. The few checks of the full data sets in ``../shared/datasets/`` are
marked ``needs_shared`` and skipped where it is absent.
"""
from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"
CIFAR_SLICE = DATA / "cifar10"  # the first 8 train and 4 test JPEGs of each class of the shared zip
SST2_SLICE = DATA / "sst2"  # every 40th row of SST-2's train.tsv; the first 80 rows of dev.tsv
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
CIFAR_ZIP = SHARED / "cifar10-jpeg.zip"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="the full data sets in ../shared/datasets are absent")


@pytest.fixture(autouse=True)
def _seed(tmp_path, monkeypatch):
    torch.manual_seed(0)
    np.random.seed(0)
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))


def cifar_members(per_class: int, split: str = "train") -> list[tuple[str, bytes]]:
    """The first ``per_class`` JPEGs of each class of CIFAR-10's ``split`` (real images, from the slice
    in tests/data: up to 8 a class for train, 4 for test), as (archive name, bytes)."""
    out = []
    for folder in sorted((CIFAR_SLICE / split).iterdir()):
        files = sorted(folder.glob("*.jpg"))
        if len(files) < per_class:
            raise ValueError(f"tests/data holds {len(files)} {split} images of {folder.name}, not {per_class}")
        out += [(f"{split}/{folder.name}/{f.name}", f.read_bytes()) for f in files[:per_class]]
    return out


@pytest.fixture(scope="session")
def cifar_folder(tmp_path_factory) -> Path:
    """train/ and test/ class folders holding 8 + 4 real CIFAR-10 images per class."""
    root = tmp_path_factory.mktemp("cifar-slice")
    for split, n in (("train", 8), ("test", 4)):
        for name, data in cifar_members(n, split):
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``selfsup ARGS`` run in this process (no interpreter start-up, ~3 s a call saved): its exit code,
    stdout and stderr, as a subprocess would give them."""
    from selfsup.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    return subprocess.CompletedProcess(["selfsup", *args], code, out.getvalue(), err.getvalue())


def make_jpeg(rng: np.random.Generator, size: int = 32) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def assert_method_trains(method, batch: torch.Tensor, steps: int = 10) -> None:
    """A method's smoke check on a fixed batch (fixed views each step): a finite scalar loss, an
    embedding row per item, a gradient for every trainable parameter, and a loss that falls under AdamW."""
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    out = method(batch, generator())
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"]) and out["embedding"].shape[0] == len(batch)
    out["loss"].backward()
    missing = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        loss = method(batch, generator())["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < losses[0]


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def square_pair(rng: np.random.Generator, side: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A gray image with a bright square and its 0/255 mask."""
    image = rng.integers(0, 90, (side, side), dtype=np.uint8)
    mask = np.zeros((side, side), dtype=np.uint8)
    top, left = rng.integers(4, side // 2, 2)
    mask[top:top + side // 3, left:left + side // 3] = 255
    image[mask == 255] += 140
    return image, mask


def write_source(root, pairs: dict[str, tuple[np.ndarray, np.ndarray]], split: str = "") -> None:
    for stem, (image, mask) in pairs.items():
        for role, array in (("images", image), ("masks", mask)):
            path = root / split / role / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png(array))
