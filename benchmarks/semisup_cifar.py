"""Semi-supervised rows at an equal compute budget: the issue-8 table on CIFAR-10.

Five rows, each `selfsup semisup` on the same class-balanced labeled subsets (the study's, per
seed), the 50,000 training images (labels unused) as the unlabeled pool, evaluated once on test/:

- supervised only: FixMatch's recipe with μ = 0 (weak flip-and-shift views, SGD with Nesterov
  momentum, cosine decay, EMA of the weights), random weights;
- UDA (μ = 5) and FixMatch (μ = 7), random weights;
- SimCLR fine-tune: the supervised recipe from a SimCLR encoder;
- SimCLR + FixMatch: FixMatch from the same encoder.

The budget is the same number of image passes for every row (each image in a step's batch is one
forward and backward pass: B labeled + 2μB unlabeled per step), so the step count is
``images / (B (1 + 2μ))``: the supervised rows take 15× FixMatch's steps. Image passes rather than
seconds make the rows comparable when the CPU is shared; the seconds are reported beside them.
A re-run skips finished runs (OUT/ROW-seedS/result.json).

    python benchmarks/semisup_cifar.py ../shared/datasets/cifar10-jpeg.zip \
        --checkpoint bench-out/zoo/simclr --images 36000 --seeds 3 --out bench-out/semisup-cifar
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from selfsup.config import SemisupConfig
from selfsup.semisup import run_semisup

# row: (method, μ, starts from the checkpoint)
ROWS = {"supervised only": ("fixmatch", 0, False), "UDA": ("uda", 5, False), "FixMatch": ("fixmatch", 7, False),
        "SimCLR fine-tune": ("fixmatch", 0, True), "SimCLR + FixMatch": ("fixmatch", 7, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("labeled", help="a labeled dataset with a test split (CIFAR-10's JPEG zip)")
    parser.add_argument("--checkpoint", required=True, help="the SimCLR encoder (a run folder)")
    parser.add_argument("--images", type=int, default=36000, help="image passes per run")
    parser.add_argument("--batch-size", type=int, default=16, help="labeled images per step")
    parser.add_argument("--labels-per-class", default="10")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of the rows")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="bench-out/semisup-cifar")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [r.strip() for r in args.rows.split(",") if r.strip()]
    # Random-weight rows train the checkpoint's architecture (ResNet-18 with its stem), so the rows
    # differ only in their starting weights and their unlabeled term.
    spec = json.loads((Path(args.checkpoint) / "encoder.json").read_text())["backbone"]
    results: dict[str, list[dict]] = {}
    for seed in range(args.seeds):
        for name in names:
            method, ratio, pretrained = ROWS[name]
            out = Path(args.out) / f"{name.replace(' ', '_').replace('+', 'plus')}-{args.images}-seed{seed}"
            if not (out / "result.json").exists():
                steps = max(1, args.images // (args.batch_size * (1 + 2 * ratio)))
                cfg = SemisupConfig(method=method, labeled=args.labeled, data=args.labeled,
                                    checkpoint=args.checkpoint if pretrained else None, backbone=spec["name"],
                                    stem=spec["stem"],
                                    labels_per_class=args.labels_per_class, seed=seed, steps=steps,
                                    batch_size=args.batch_size, unlabeled_ratio=ratio, out=str(out), overwrite=True,
                                    checkpoint_every=10 ** 9)
                run_semisup(cfg, progress=False)
            result = json.loads((out / "result.json").read_text())
            results.setdefault(name, []).append(result)
            print(f"{name} seed {seed}: {100 * result['test_accuracy']:.1f} % in {result['steps']} steps, "
                  f"{result['train_seconds']:.0f} s", flush=True)

    print(f"\n{args.labels_per_class} labels per class, {args.images} image passes per run, batch {args.batch_size}\n")
    print("| row | steps | test top-1 (mean ± std) | seeds | seconds per run |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        acc = 100 * np.array([r["test_accuracy"] for r in runs])
        print(f"| {name} | {runs[0]['steps']} | {acc.mean():.1f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.1f} | "
              f"{len(runs)} | {np.mean([r['train_seconds'] for r in runs]):.0f} |")


if __name__ == "__main__":
    main()
