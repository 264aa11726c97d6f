"""The model alone against the whole pipeline: how close `selfsup pretrain` runs to the hardware's ceiling.

    python benchmarks/cpu_ceiling.py [--backbones resnet18:imagenet,resnet18:small,small-convnet] [--size 32]
        [--batch 256] [--steps 6] [--pipeline ZIP --pipeline-steps 25]

*Model alone*: SimCLR's step without data or views — a backbone and projection head forward and backward
on two batches of float images already in memory, NT-Xent, an SGD step — timed for each memory format
(contiguous NCHW, channels_last NHWC) and, where the CPU has native bf16 (AVX512-BF16 or AMX), bf16
autocast. *Pipeline*: `selfsup pretrain --method simclr` on the zip for the same backbone and batch, both
memory formats, its own images/s (decoding, views, model, optimizer). Share = pipeline over model alone.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selfsup.backbones.registry import BackboneSpec, build_image_backbone, resolve_stem  # noqa: E402
from selfsup.heads import projection_head  # noqa: E402
from selfsup.losses import NTXentLoss  # noqa: E402


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (else autocast emulates it, slower than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def model_alone(name: str, stem: str, size: int, batch: int, steps: int, channels_last: bool, bf16: bool) -> float:
    """Images per second of SimCLR's step on in-memory tensors (2 views an image, as the pipeline counts)."""
    torch.manual_seed(0)
    backbone = build_image_backbone(BackboneSpec(name, 3, resolve_stem(stem, size)), size)
    head = projection_head(backbone.feature_dim, backbone.feature_dim, 128)
    model = torch.nn.Sequential(backbone, head)
    criterion = NTXentLoss(0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    views = torch.randn(2 * batch, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        views = views.contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(steps + 1):  # the first step pays one-time set-up
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z1, z2 = model(views).float().chunk(2)
            loss = criterion(z1, z2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return batch / (sum(times[1:]) / steps)


def pipeline(zip_path: str, name: str, stem: str, batch: int, steps: int, channels_last: bool) -> float:
    """`selfsup pretrain`'s own images/s over ``steps`` steps (result.json)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "selfsup", "pretrain", "--method", "simclr", "--data", zip_path, "--backbone", name,
               "--stem", stem, "--batch-size", str(batch), "--steps", str(steps), "--channels-last",
               str(channels_last).lower(), "--checkpoint-every", str(steps), "--out", str(out), "--quiet", "--json"]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        return float(json.loads(done.stdout.strip().splitlines()[-1])["images_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="resnet18:imagenet,resnet18:small,small-convnet:small")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--pipeline", default="", help="a CIFAR-10 zip: also time `selfsup pretrain` on it")
    parser.add_argument("--pipeline-steps", type=int, default=25)
    args = parser.parse_args()
    precisions = [False, True] if native_bf16() else [False]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16()}; batch {args.batch}, {args.size} px")
    print("| backbone | memory format | precision | model alone, img/s | pipeline, img/s | pipeline's share |")
    print("|---|---|---|---|---|---|")
    for entry in args.backbones.split(","):
        name, stem = (entry.split(":") + ["auto"])[:2]
        for channels_last in (False, True):
            for bf16 in precisions:
                alone = model_alone(name, stem, args.size, args.batch, args.steps, channels_last, bf16)
                piped = (pipeline(args.pipeline, name, stem, args.batch, args.pipeline_steps, channels_last)
                         if args.pipeline and not bf16 else None)
                share = f"{100 * piped / alone:.0f} %" if piped else "-"
                print(f"| {name} ({stem} stem) | {'channels_last' if channels_last else 'contiguous'} | "
                      f"{'bf16' if bf16 else 'fp32'} | {alone:.1f} | {piped if piped else '-'} | {share} |", flush=True)


if __name__ == "__main__":
    main()
