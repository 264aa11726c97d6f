"""SimCLR on CIFAR-10 for a fixed wall-clock budget, scored by kNN on test/; lightly beside it.

1. selfsup: `selfsup pretrain --method simclr` on train/ of the JPEG zip (labels unused), stock
   torchvision ResNet-18 (ImageNet stem), batch 256, --time-limit SECONDS.
2. lightly (optional, --lightly-python): its documented recipe (benchmarks/lightly_simclr.py) for
   the same seconds, same backbone and batch, in its own virtualenv.
3. The same backbone with random weights, 3 initializations.
Each is scored with selfsup's weighted kNN (k=200, T=0.1) on frozen features: bank = train/
with labels, queries = test/.

    python benchmarks/cifar_simclr_knn.py ../shared/datasets/cifar10-jpeg.zip --seconds 600 \
        --lightly-python /tmp/lightly-venv/bin/python --out bench-out/cifar
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from selfsup.backbones import build_backbone
from selfsup.backbones.io import load_backbone
from selfsup.data.images import Prepared, probe_spec
from selfsup.data.sources import open_source
from selfsup.backbones.features import extract_features
from selfsup.utils.knn import knn_predict, topk_accuracy
from selfsup.views import Normalization, estimate_normalization

IMAGENET = Normalization([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def knn_top1(backbone, train: Prepared, test: Prepared, norm: Normalization, image_size: int = 32) -> float:
    device = torch.device("cpu")
    bank, bank_pos = extract_features(backbone, train, norm, image_size, device, batch_size=512)
    query, query_pos = extract_features(backbone, test, norm, image_size, device, batch_size=512)
    scores = knn_predict(bank, torch.from_numpy(train.labels[bank_pos]), query, 10, k=200, temperature=0.1)
    return topk_accuracy(scores, torch.from_numpy(test.labels[query_pos]), (1,))[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zip")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--lightly-python", default=None)
    parser.add_argument("--out", default="bench-out/cifar")
    parser.add_argument("--skip-train", action="store_true", help="score existing runs only")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).parent
    rows = []
    if not args.skip_train:
        subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--method", "simclr", "--data", args.zip,
                        "--backbone", "resnet18", "--stem", "imagenet", "--batch-size", "256",
                        "--time-limit", str(args.seconds), "--out", str(out / "selfsup"), "--overwrite", "--quiet",
                        "--num-workers", "2"], check=True)
        if args.lightly_python:
            subprocess.run([args.lightly_python, str(here / "lightly_simclr.py"), args.zip, "--seconds",
                            str(args.seconds), "--out", str(out / "lightly")], check=True)
    opened = open_source(args.zip)
    spec = probe_spec(opened["train"])
    train, test = Prepared(opened["train"], spec), Prepared(opened["test"], spec)

    ours, info = load_backbone(out / "selfsup")
    result = json.loads((out / "selfsup" / "result.json").read_text())
    t0 = time.perf_counter()
    rows.append(("selfsup SimCLR", result["steps"], result["images_per_second"],
                 knn_top1(ours, train, test, Normalization(**info["normalization"]))))
    print(f"scored selfsup in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if (out / "lightly" / "backbone.safetensors").exists():
        lres = json.loads((out / "lightly" / "result.json").read_text())
        theirs = build_backbone("resnet18", 3, "imagenet", 32)
        theirs.model.load_state_dict(load_file(str(out / "lightly" / "backbone.safetensors")), strict=True)
        rows.append(("lightly SimCLR recipe", lres["steps"], lres["images_per_second"],
                     knn_top1(theirs, train, test, IMAGENET)))
    norm = estimate_normalization(torch.from_numpy(np.asarray(train.array[:10000])))
    randoms = []
    for seed in range(3):
        torch.manual_seed(seed)
        randoms.append(knn_top1(build_backbone("resnet18", 3, "imagenet", 32), train, test, norm))
    rows.append((f"random weights (mean of 3: {', '.join(f'{r:.4f}' for r in randoms)})", 0, float("nan"),
                 float(np.mean(randoms))))
    (out / "table.json").write_text(json.dumps(rows))
    print(f"| run ({args.seconds:.0f} s budget) | steps | images/s | kNN top-1 |\n|---|---|---|---|")
    for name, steps, ips, acc in rows:
        print(f"| {name} | {steps} | {ips:.1f} | {100 * acc:.2f}% |")


if __name__ == "__main__":
    main()
