"""Text pretraining throughput on SST-2: tokens per second of each text method on this machine.

Each row is `selfsup pretrain --method NAME` on SST-2's train.tsv (67k rows, 66,978 after
deduplication, labels unused), batch 256, ``--steps`` steps, the method's own encoder and recipe
(`text-transformer`: 4 layers, width 256; word2vec: 128-d word vectors), fp32 on the CPU. Tokens
are the real (non-padding) tokens of the texts seen, [CLS] and [SEP] included; batches are trimmed
to their longest text. Also printed: the end-of-run kNN top-1 on a held-out 10% of train.tsv with
its labels (a sanity check at this budget, not a transfer result). Run it alone on the machine.

    python benchmarks/text_pretrain.py ../shared/datasets/sst2/train.tsv --steps 30 --out bench-out/text-speed
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

METHODS = ("mlm", "next_token", "sentence_order", "word2vec")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="a text source (SST-2's train.tsv)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default="bench-out/text-speed")
    args = parser.parse_args()
    rows = []
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        out = Path(args.out) / name
        done = subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--data", args.data, "--method", name,
                               "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--out", str(out),
                               "--overwrite", "--quiet", "--json"], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{name} failed: {done.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\n{args.steps} steps of {args.batch_size} texts\n")
    print("| method | encoder | texts/s | tokens/s | final loss | kNN top-1 (held-out 10%) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['backbone']} | {r['images_per_second']:.0f} | {r['tokens_per_second']:.0f} | "
              f"{r['final_loss']:.3f} | {100 * r['knn_top1']:.1f} % |")


if __name__ == "__main__":
    main()
