"""The best encoder a time budget buys on this CPU: candidates pretrained for the same seconds, scored alike.

Each candidate is `selfsup pretrain --data ZIP --time-limit SECONDS` with its method, backbone, stem and
input size, run alone on the machine one after another; then scored with the head-to-head's evaluator
(benchmarks/cifar_simclr_knn.py: weighted kNN, k = 200, T = 0.1, bank = train/ with labels, queries =
test/), at the candidate's own input size. Random weights of each encoder give its bar. Rows are kept in
OUT/table.json, so a stopped run continues where it was; the last row runs the command with no choice
given (`--data` and `--time-limit` only), which is what the table is for.

    python benchmarks/ten_minutes.py ../shared/datasets/cifar10-jpeg.zip --seconds 600 --out bench-out/ten
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

sys.path.insert(0, str(Path(__file__).parent))
from cifar_simclr_knn import knn_top1  # noqa: E402  the head-to-head's evaluator, unchanged

from selfsup.backbones import build_backbone  # noqa: E402
from selfsup.backbones.io import load_backbone  # noqa: E402
from selfsup.data.images import Prepared, probe_spec  # noqa: E402
from selfsup.data.sources import open_source  # noqa: E402
from selfsup.views import Normalization, estimate_normalization  # noqa: E402

# name -> (method, backbone, stem, input side): the method table's fastest passing methods (BENCHMARKS 2b)
# on ResNet-18 with the ImageNet stem, then the same best method on the other encoders and a smaller input.
CANDIDATES = {
    "triplet r18": ("triplet", "resnet18", "imagenet", 32),
    "vicreg r18": ("vicreg", "resnet18", "imagenet", 32),
    "barlow_twins r18": ("barlow_twins", "resnet18", "imagenet", 32),
    "rotation r18": ("rotation", "resnet18", "imagenet", 32),
    "simclr r18": ("simclr", "resnet18", "imagenet", 32),
    "triplet r18 at 24 px": ("triplet", "resnet18", "imagenet", 24),
    "triplet small-convnet": ("triplet", "small-convnet", "auto", 32),
    "triplet r18 small stem": ("triplet", "resnet18", "small", 32),
}
RANDOM_BARS = {"random r18": ("resnet18", "imagenet"), "random small-convnet": ("small-convnet", "auto"),
               "random r18 small stem": ("resnet18", "small")}
NO_CHOICE = "no choice given"


def pretrain(zip_path: str, seconds: float, out: Path, choice: tuple | None) -> None:
    args = [sys.executable, "-m", "selfsup", "pretrain", "--data", zip_path, "--time-limit", str(seconds),
            "--out", str(out), "--overwrite", "--quiet"]
    if choice is not None:
        method, backbone, stem, side = choice
        args += ["--method", method, "--backbone", backbone, "--stem", stem, "--image-size", str(side)]
    subprocess.run(args, check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zip")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--out", default="bench-out/ten")
    parser.add_argument("--only", default=None, help="comma-separated candidate names (default: all, then the no-choice run)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "table.json"
    rows = json.loads(store.read_text()) if store.exists() else {}
    wanted = args.only.split(",") if args.only else [*CANDIDATES, *RANDOM_BARS, NO_CHOICE]

    opened = open_source(args.zip)
    spec = probe_spec(opened["train"])
    train, test = Prepared(opened["train"], spec), Prepared(opened["test"], spec)
    for name in wanted:
        if name in rows:
            continue
        if name in RANDOM_BARS:
            backbone_name, stem = RANDOM_BARS[name]
            torch.manual_seed(0)
            norm = estimate_normalization(torch.from_numpy(np.asarray(train.array[:10000])))
            acc = knn_top1(build_backbone(backbone_name, 3, stem, 32), train, test, norm)
            rows[name] = {"steps": 0, "knn_top1": acc}
        else:
            folder = out / name.replace(" ", "-")
            pretrain(args.zip, args.seconds, folder, CANDIDATES.get(name))
            result = json.loads((folder / "result.json").read_text())
            encoder, info = load_backbone(folder)
            t0 = time.perf_counter()
            acc = knn_top1(encoder, train, test, Normalization(**info["normalization"]), info["image_size"])
            rows[name] = {key: result.get(key) for key in ("method", "backbone", "steps", "train_seconds",
                                                           "images_per_second", "channels_last")}
            rows[name].update(knn_top1=acc, image_size=info["image_size"], stem=info["backbone"].get("stem"),
                              picked=result.get("picked"))
            print(f"scored {name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        store.write_text(json.dumps(rows, indent=1))

    print(f"| run ({args.seconds:.0f} s budget) | steps | loop s | images/s | kNN top-1 on test/ |\n|---|---|---|---|---|")
    for name, row in sorted(rows.items(), key=lambda item: -item[1]["knn_top1"]):
        loop = f"{row['train_seconds']:.0f}" if row.get("train_seconds") else "-"
        speed = f"{row['images_per_second']:.1f}" if row.get("images_per_second") else "-"
        print(f"| {name} | {row['steps']} | {loop} | {speed} | {100 * row['knn_top1']:.2f} % |")


if __name__ == "__main__":
    main()
