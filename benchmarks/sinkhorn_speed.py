"""Sinkhorn-Knopp's cost per call at SwAV's sizes: the batch alone (256 x 3,000) and the batch with
the small-batch recipe's queue (4,096 x 3,000), 3 iterations, float64 inside. Prints a table.

    python benchmarks/sinkhorn_speed.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from selfsup.losses import sinkhorn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    prototypes = F.normalize(torch.randn(3000, 128, generator=g), dim=1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| rows x prototypes | ε | ms per call |\n|---|---|---|")
    for rows in (256, 4096):
        scores = F.normalize(torch.randn(rows, 128, generator=g), dim=1) @ prototypes.T
        for epsilon in (0.05, 0.02):
            sinkhorn(scores, epsilon, 3)  # warm-up
            start = time.perf_counter()
            for _ in range(args.repeats):
                sinkhorn(scores, epsilon, 3)
            print(f"| {rows} x 3000 | {epsilon} | {(time.perf_counter() - start) / args.repeats * 1000:.1f} |")


if __name__ == "__main__":
    main()
