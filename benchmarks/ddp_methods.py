"""Every method under data-parallel training: `selfsup pretrain --devices 2` (gloo on CPUs) for a few
steps on a 400-image slice of CIFAR-10, with each method's default backbone shrunk to fit a CPU.

Prints one row per method: exit code, seconds, the logged loss and the global throughput. A method
whose parameters do not all receive gradients each step, or whose ranks disagree on a collective,
fails here (DistributedDataParallel stops at the second step).

    python benchmarks/ddp_methods.py ../shared/datasets/cifar10-jpeg.zip [--methods simclr,byol] [--steps 4]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from selfsup.methods import METHODS


def cifar_slice(source: str, out: Path, per_class: int = 40) -> Path:
    """train/ with ``per_class`` JPEGs a class from the CIFAR-10 zip (and test/ with a quarter as many)."""
    target = out / "cifar-slice.zip"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        counts: dict[tuple[str, str], int] = {}
        for name in sorted(src.namelist()):
            split, _, rest = name.partition("/")
            if not name.endswith(".jpg") or split not in ("train", "test"):
                continue
            key = (split, rest.split("/")[0])
            if counts.get(key, 0) < (per_class if split == "train" else per_class // 4):
                counts[key] = counts.get(key, 0) + 1
                dst.writestr(name, src.read(name))
    return target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zip")
    parser.add_argument("--methods", default=",".join(METHODS.names()))
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ddp-methods-"))
    data = cifar_slice(args.zip, work)
    print("| method | exit | seconds | loss | img/s (both processes) |")
    print("|---|---|---|---|---|")
    for name in args.methods.split(","):
        backbone = "vit-tiny" if METHODS.get(name).recipe.backbone.startswith("vit") else "small-convnet"
        command = [sys.executable, "-m", "selfsup", "pretrain", "--devices", "2", "--device", "cpu", "--data", str(data),
                   "--method", name, "--backbone", backbone, "--steps", str(args.steps), "--batch-size", "32",
                   "--out", str(work / name), "--quiet", "--json"]
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode == 0:
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {name} | 0 | {seconds:.0f} | {result['final_loss']:.4f} | {result['images_per_second']:.0f} |")
        else:
            why = next((line for line in reversed(done.stderr.splitlines()) if "error" in line.lower()), "?")
            print(f"| {name} | {done.returncode} | {seconds:.0f} | {why[:120]} | – |")


if __name__ == "__main__":
    main()
