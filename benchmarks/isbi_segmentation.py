"""Few-mask segmentation on the ISBI 2012 EM slices: pretrain on the pool, fine-tune on 1, 2 and 5 masks.

Pretraining reads the zip's 20 training images and 30 unlabeled slices (never a mask, never a test slice)
as overlapping native-resolution crops of --crop pixels; then ``selfsup finetune --task segmentation``
trains a U-Net decoder over the pretrained encoder and over the same encoder from random weights, on the
same 1, 2 and 5 labeled images per seed (3 seeds), with one recipe, and scores membrane IoU (class 0,
mask value 0) and mean IoU on the 10 test slices, whole, through sliding windows. Prints the table and
the times.

    python benchmarks/isbi_segmentation.py ../shared/datasets/isbi2012-em.zip --out bench-out/isbi
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def selfsup(*args: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "selfsup", *args, "--json", "--quiet"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"selfsup {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip")
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--backbone", default="small-convnet")
    parser.add_argument("--pretrain-crop", type=int, default=64, help="pretraining crop side (native pixels)")
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--pretrain-batch", type=int, default=128)
    parser.add_argument("--crop", type=int, default=128, help="fine-tuning crop side")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr-grid", default="0.003,0.01")
    parser.add_argument("--images", default="1,2,5")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="bench-out/isbi")
    args = parser.parse_args()
    out = Path(args.out)
    started = time.perf_counter()
    encoder = out / f"pretrain-{args.method}"
    if not (encoder / "encoder.json").exists():
        pre = selfsup("pretrain", "--method", args.method, "--data", args.zip, "--backbone", args.backbone,
                      "--image-size", str(args.pretrain_crop), "--steps", str(args.pretrain_steps), "--batch-size",
                      str(args.pretrain_batch), "--out", str(encoder), "--overwrite")
        print(f"pretrained {args.method} ({args.backbone}) for {pre['steps']} steps on {pre['n_images']} crops "
              f"({pre.get('crops_per_image')} per image) in {pre['wall']:.0f} s; final loss {pre['final_loss']:.3f}",
              flush=True)
    ft = selfsup("finetune", "--task", "segmentation", "--checkpoint", str(encoder), "--labeled", args.zip,
                 "--labeled-images", args.images, "--seeds", str(args.seeds), "--steps", str(args.steps),
                 "--batch-size", str(args.batch), "--crop-size", str(args.crop), "--lr-grid", args.lr_grid,
                 "--out", str(out / f"finetune-{args.method}"), "--overwrite")
    print("| labeled images | scratch membrane IoU | pretrained membrane IoU | scratch mean IoU | pretrained mean IoU |")
    print("|---|---|---|---|---|")
    for r in ft["rows"]:
        cell = lambda k, i=None: (f"{100 * (r[k][i] if i is not None else r[k]):.1f} ± "  # noqa: E731
                                  f"{100 * (r[k + '_std'][i] if i is not None else r[k + '_std']):.1f}")
        print(f"| {r['labeled_images']} | {cell('scratch_iou', 0)} | {cell('pretrained_iou', 0)} | "
              f"{cell('scratch_mean_iou')} | {cell('pretrained_mean_iou')} |")
    print(f"fine-tuning {ft['wall']:.0f} s; whole benchmark {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
