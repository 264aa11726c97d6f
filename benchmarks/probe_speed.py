"""How fast the study's frozen evaluations are once features are cached, and what caching costs.

Times, on CIFAR-10 (train/ 50,000 labeled, test/ 10,000) with a stock torchvision ResNet-18 at
32 px (random weights, or --checkpoint ENCODER): extracting the 60,000 features once, then the
kNN (k = 200, T = 0.1) and the L-BFGS linear probe (decay by 5-fold cross-validation on at most
5,000 labels, refit on all) at 1, 10, 100 labels per class and all labels. Run it alone.

    python benchmarks/probe_speed.py ../shared/datasets/cifar10-jpeg.zip [--checkpoint RUN]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from selfsup.backbones import build_backbone
from selfsup.backbones.io import load_backbone
from selfsup.data.images import Prepared, probe_spec
from selfsup.data.sources import open_source
from selfsup.data.splits import labeled_subset
from selfsup.backbones.features import extract_features
from selfsup.utils.knn import knn_predict, topk_accuracy
from selfsup.evaluate.linear import linear_probe
from selfsup.views import Normalization, estimate_normalization


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zip")
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    device = torch.device("cpu")
    source = open_source(args.zip)
    spec = probe_spec(source["train"], 32)
    train, test = Prepared(source["train"], spec), Prepared(source["test"], spec)
    if args.checkpoint:
        backbone, info = load_backbone(args.checkpoint)
        norm = Normalization(**info["normalization"])
    else:
        torch.manual_seed(0)
        backbone = build_backbone("resnet18", 3, stem="imagenet", image_size=32)
        norm = estimate_normalization(next(train.batches(np.arange(10000), 10000))[1])
    t0 = time.perf_counter()
    train_x, train_pos = extract_features(backbone, train, norm, 32, device, batch_size=512)
    test_x, test_pos = extract_features(backbone, test, norm, 32, device, batch_size=512)
    extract_s = time.perf_counter() - t0
    train_y = torch.from_numpy(train.labels[train_pos])
    test_y = torch.from_numpy(test.labels[test_pos])
    print(f"feature extraction: {len(train_x) + len(test_x)} images, {extract_s:.1f} s "
          f"({(len(train_x) + len(test_x)) / extract_s:.0f} img/s), {torch.get_num_threads()} threads")
    print("| labels/class | labels | kNN s | kNN top-1 | linear s | linear top-1 | decay |")
    print("|---|---|---|---|---|---|---|")
    for per_class in (1, 10, 100, None):
        subset = labeled_subset(train_y.numpy(), 0, per_class=per_class)
        x, y = train_x[subset], train_y[subset]
        t0 = time.perf_counter()
        knn = topk_accuracy(knn_predict(x, y, test_x, 10), test_y, (1,))[1]
        knn_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores, decay = linear_probe(x, y, test_x, 10)
        lin_s = time.perf_counter() - t0
        lin = float((scores.argmax(1) == test_y).float().mean())
        print(f"| {per_class or 'all'} | {len(subset)} | {knn_s:.2f} | {100 * knn:.2f} % | {lin_s:.2f} | "
              f"{100 * lin:.2f} % | {decay:g} |")


if __name__ == "__main__":
    main()
