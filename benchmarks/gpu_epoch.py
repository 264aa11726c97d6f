"""One CIFAR-10 epoch of SimCLR and BYOL on one GPU: speed, utilisation, FLOPs and share of peak.

Times selfsup's own engine (the pool resident on the GPU as uint8, views made there in batch,
channels_last, bf16 autocast, fused or multi-tensor optimizer steps, optionally torch.compile):
ResNet-18 with the small-image stem, batch 512, on ``train/`` of the CIFAR-10 zip. Per method it
prints images per second, seconds per epoch, mean GPU utilisation (nvidia-smi, sampled every
0.2 s), the FLOPs of one training step (torch.utils.flop_counter, forward and backward), the
measured bf16 matmul peak of this GPU and the step's share of it, and the engine's kNN top-1
(on a held-out 10% of ``train/``) after the run. With ``--lightly-python`` it also times lightly's documented SimCLR pipeline
(benchmarks/lightly_simclr.py) on the same GPU for the same number of steps. Run it alone.

    python benchmarks/gpu_epoch.py ../shared/datasets/cifar10-jpeg.zip --epochs 1 [--compile]
        [--lightly-python /path/to/lightly-venv/bin/python]
    python benchmarks/gpu_epoch.py ZIP --device cpu --steps 3   # a smoke run of the same code
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from selfsup.config import PretrainConfig
from selfsup.data.images import Prepared, probe_spec
from selfsup.data.sources import open_source
from selfsup.engine.optim import build_optimizer
from selfsup.utils.runtime import step_generator
from selfsup.engine.build import build_method
from selfsup.engine.loop import Loop
from selfsup.engine.trainer import method_turns, pretrain, pretrain_forward
from selfsup.views import estimate_normalization


class Utilisation:
    """Mean GPU utilisation reported by nvidia-smi while the block runs (None without nvidia-smi)."""

    def __init__(self, device: torch.device) -> None:
        self.index = device.index or 0
        self.samples: list[float] = []
        self.active = device.type == "cuda"

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                text = subprocess.run(["nvidia-smi", f"--id={self.index}", "--query-gpu=utilization.gpu",
                                       "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                      timeout=5).stdout.strip()
                self.samples.append(float(text))
            except (OSError, ValueError, subprocess.SubprocessError):
                return
            self._stop.wait(0.2)

    def __enter__(self) -> "Utilisation":
        self._stop = threading.Event()
        if self.active:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.active:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def bf16_peak_tflops(device: torch.device, n: int = 8192, repeats: int = 20) -> float | None:
    """The best sustained bf16 matmul rate of this GPU (TFLOP/s), measured, not the datasheet's."""
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e12


def step_flops(cfg: PretrainConfig, data: Prepared, spec, device: torch.device) -> float:
    """FLOPs of one training step (forward and backward of every view) counted by PyTorch."""
    _, sample = next(data.batches(np.arange(min(len(data), 2048)), 2048))
    method, _ = build_method(cfg, spec.channels, spec.image_size, estimate_normalization(sample), len(data))
    method = method.to(device)
    optimizer = build_optimizer("sgd", method, 0.01, 0.0)
    _, images = next(data.batches(np.arange(cfg.batch_size), cfg.batch_size))
    counter = FlopCounterMode(display=False)
    with counter:
        forward = pretrain_forward(method, None, device.type == "cuda", device)
        loop = Loop(optimizer, 1, lambda step: 0.0, 0.0, turns=method_turns(method, optimizer))
        images, indices = images.to(device), torch.arange(len(images), device=device)
        loop.step(lambda step, batch, logging, player: forward(images, indices, step_generator(0, 0), player), 0)
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("zip")
    parser.add_argument("--methods", default="simclr,byol")
    parser.add_argument("--batch", type=int, default=512)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=float, default=1.0)
    budget.add_argument("--steps", type=int, default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--lightly-python", default=None, help="a Python with lightly installed")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    device = torch.device(args.device)
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu-epoch-"))
    source = open_source(args.zip)
    spec = probe_spec(source["train"], 32)
    data = Prepared(source["train"], spec)
    peak = bf16_peak_tflops(device)
    steps_per_epoch = len(data) // args.batch
    rows = []
    for name in args.methods.split(","):
        cfg = PretrainConfig(data=args.zip, method=name, backbone="resnet18", stem="small",
                             batch_size=args.batch, device=args.device, compile=args.compile,
                             steps=args.steps or max(1, round(args.epochs * steps_per_epoch)),
                             checkpoint_every=10 ** 9, out=str(out / name), overwrite=True)
        flops = step_flops(cfg, data, spec, device)
        with Utilisation(device) as util:
            result = pretrain(cfg, progress=False)
        per_step = result["train_seconds"] / result["steps"]
        rows.append({"method": name, "images_per_second": result["images_per_second"],
                     "epoch_seconds": per_step * steps_per_epoch, "gpu_utilisation": util.mean,
                     "tflop_per_step": flops / 1e12, "achieved_tflops": flops / per_step / 1e12,
                     "share_of_peak": flops / per_step / 1e12 / peak if peak else None,
                     "knn_top1": result.get("knn_top1"), "steps": result["steps"]})
    if args.lightly_python:
        steps = args.steps or max(1, round(args.epochs * steps_per_epoch))
        done = subprocess.run([args.lightly_python, str(Path(__file__).with_name("lightly_simclr.py")), args.zip,
                               "--device", args.device, "--batch", str(args.batch), "--steps", str(steps),
                               "--workers", "8", "--out", str(out / "lightly")], capture_output=True, text=True)
        if done.returncode == 0:
            lightly = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"method": "lightly simclr", "images_per_second": lightly["images_per_second"],
                         "epoch_seconds": lightly["seconds"] / lightly["steps"] * steps_per_epoch,
                         "steps": lightly["steps"]})
        else:
            print(f"lightly failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; batch {args.batch}; measured bf16 peak: "
          f"{f'{peak:.0f} TFLOP/s' if peak else 'n/a'}; compile: {args.compile}")
    print("| method | steps | img/s | s/epoch | GPU util % | TFLOP/step | TFLOP/s | share of peak | kNN top-1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
    for r in rows:
        print(f"| {r['method']} | {r['steps']} | {r['images_per_second']:.0f} | {r['epoch_seconds']:.1f} | "
              f"{fmt(r.get('gpu_utilisation'), '.0f')} | {fmt(r.get('tflop_per_step'), '.3f')} | "
              f"{fmt(r.get('achieved_tflops'), '.1f')} | {fmt(r.get('share_of_peak'), '.1%')} | "
              f"{fmt(r.get('knn_top1'), '.4f')} |")


if __name__ == "__main__":
    main()
