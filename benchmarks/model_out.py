"""The model out, end to end with the CLI: pretrain -> train -> predict (-> export), and what it scores.

``digits``: the README's user journey: the demo's pretraining recipe (SimCLR, small convnet, 100 epochs of
scikit-learn's digits), then ``selfsup train --labels-per-class 10`` (its defaults: 200 steps, learning rate
picked on a validation split) from that checkpoint and from ``--init random`` for each seed, each followed
by ``selfsup predict`` on the run's held-out split. The table gives both test accuracies and checks
that the accuracy recomputed from predictions.csv equals the one ``train`` reported.

    python benchmarks/model_out.py digits --seeds 3 --out bench-out/model-out/digits

``cifar``: a ResNet-18 pretrained with SimCLR as in the CIFAR method table (BENCHMARKS.md 2b: stock stem,
batch 256, 450 steps; pretrained here when --checkpoint is absent), then ``train --labels-per-class 100``
(fine-tuned; also ``--freeze`` and ``--init random`` with --also) and ``predict`` on the zip's test/ (10,000
images): accuracy and prediction throughput, then ``export`` to ONNX and TorchScript.

    python benchmarks/model_out.py cifar ../shared/datasets/cifar10-jpeg.zip \
        --checkpoint bench-out/zoo/simclr --also freeze,random --out bench-out/model-out/cifar
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

DEMO_PRETRAIN = ["--method", "simclr", "--data", "digits", "--backbone", "small-convnet", "--views", "small-gray",
                 "--epochs", "100", "--batch-size", "256", "--seed", "0"]


def selfsup(*args: str) -> dict:
    """``selfsup ARGS --json --quiet`` in a fresh process; its JSON result (exit on failure)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "selfsup", *args, "--json", "--quiet"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"selfsup {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall": time.perf_counter() - started}


def csv_accuracy(path: str) -> float:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return sum(r["label"] == r["predicted"] for r in rows) / len(rows)


def train_and_predict(out: Path, start: list[str], labeled: str, extra: list[str]) -> dict:
    trained = selfsup("train", *start, "--labeled", labeled, "--out", str(out), "--overwrite", *extra)
    predicted = selfsup("predict", "--model", str(out), "--data", labeled)
    return {"trained": trained, "predicted": predicted, "csv": csv_accuracy(predicted["predictions"])}


def digits(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if not (out / "pretrain" / "encoder.json").exists():
        selfsup("pretrain", *DEMO_PRETRAIN, "--out", str(out / "pretrain"), "--overwrite")
    print("| seed | init | lr | train: test acc. | predict: acc. from predictions.csv | equal |")
    print("|---|---|---|---|---|---|")
    for seed in range(args.seeds):
        for init, start in (("SimCLR checkpoint", ["--checkpoint", str(out / "pretrain")]),
                            ("random", ["--init", "random", "--backbone", "small-convnet"])):
            r = train_and_predict(out / f"{init.split()[0].lower()}-seed{seed}", start, "digits",
                                  ["--labels-per-class", "10", "--seed", str(seed)])
            acc = r["trained"]["test_accuracy"]
            print(f"| {seed} | {init} | {r['trained']['lr']} | {100 * acc:.2f} % | {100 * r['csv']:.2f} % | "
                  f"{'yes' if abs(acc - r['csv']) < 1e-9 else 'NO'} |", flush=True)


def cifar(args: argparse.Namespace) -> None:
    out = Path(args.out)
    checkpoint = Path(args.checkpoint) if args.checkpoint else out / "simclr"
    if not (checkpoint / "encoder.json").exists():  # the method table's SimCLR row (BENCHMARKS.md 2b)
        selfsup("pretrain", "--method", "simclr", "--data", args.zip, "--backbone", "resnet18", "--stem", "imagenet",
                "--batch-size", "256", "--steps", "450", "--num-workers", "2", "--out", str(checkpoint), "--overwrite")
    runs = [("SimCLR, fine-tuned", "simclr-finetuned", ["--checkpoint", str(checkpoint)])]
    also = [a for a in (args.also or "").split(",") if a]
    if "freeze" in also:
        runs.append(("SimCLR, frozen + linear head", "simclr-frozen", ["--checkpoint", str(checkpoint), "--freeze"]))
    if "random" in also:
        runs.append(("random init, fine-tuned", "random-finetuned", ["--init", "random", "--backbone", "resnet18",
                                                                     "--stem", "imagenet"]))
    print("| model | lr | train: test acc. | predict: acc. (CSV) | predict images/s (model) | predict wall s | train wall s |")
    print("|---|---|---|---|---|---|---|")
    for name, slug, start in runs:
        folder = out / slug
        r = train_and_predict(folder, start, args.zip, ["--labels-per-class", "100"])
        t, p = r["trained"], r["predicted"]
        print(f"| {name} | {t.get('lr')} | {100 * t['test_accuracy']:.2f} % | {100 * r['csv']:.2f} % | "
              f"{p['images_per_second']:.0f} | {p['wall']:.0f} | {t['wall']:.0f} |", flush=True)
        if start[0] == "--checkpoint" and "--freeze" not in start:
            for fmt in ("onnx", "torchscript"):
                e = selfsup("export", "--model", str(folder), "--format", fmt)
                print(f"|   export {fmt} | max |logit diff| {e['max_abs_difference']:.1e} (batch 7) | "
                      f"{Path(e['file']).stat().st_size / 2**20:.1f} MiB | | | | |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="which", required=True)
    d = sub.add_parser("digits")
    d.add_argument("--seeds", type=int, default=3)
    d.add_argument("--out", default="bench-out/model-out/digits")
    c = sub.add_parser("cifar")
    c.add_argument("zip")
    c.add_argument("--checkpoint", help="a SimCLR ResNet-18 run folder (default: pretrained into OUT/simclr)")
    c.add_argument("--also", help="freeze,random: more rows")
    c.add_argument("--out", default="bench-out/model-out/cifar")
    args = parser.parse_args()
    digits(args) if args.which == "digits" else cifar(args)


if __name__ == "__main__":
    main()
