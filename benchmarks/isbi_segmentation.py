"""Few-mask segmentation on the ISBI 2012 EM slices: the segmentation study, then its model out.

``selfsup study --task segmentation`` pretrains --method on the zip's pool (the 20 training and 30
unlabeled slices as overlapping native-resolution crops of --pretrain-crop pixels; never a mask, never a
test slice), then trains a U-Net decoder over the pretrained encoder and over the same encoder from random
weights on the same 1, 2 and 5 labeled slices per seed (3 seeds), one recipe, and scores membrane IoU
(mask value 0) and mean IoU on the 10 test slices, whole, through sliding windows. Then ``selfsup train``
repeats the study's 2-image seed-0 training as a model folder and ``selfsup predict`` writes the test
masks: their IoU must equal the study's row. ``--then densecl`` adds DenseCL's rows to the same study
(scratch and the first method's rows are read back); ``--variant noise_std=0.1`` pretrains --method again
with that view argument and adds its rows too. Prints the tables and the times.

    python benchmarks/isbi_segmentation.py ../shared/datasets/isbi2012-em.zip --then densecl \
        --variant noise_std=0.1 --out bench-out/isbi
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


def table(study: dict, methods: list[str]) -> None:
    """Membrane IoU (mask value 0) and mean IoU per budget, scratch and each method, mean ± std over seeds."""
    per_class = {(p["method"], p["budget"]): p for p in study["per_class_iou"]}
    mean = {(s["method"], s["budget"]): s for s in study["summary"]}
    budgets = sorted({s["budget"] for s in study["summary"]}, key=lambda b: (b == "all", int(b) if b.isdigit() else 0))
    print("| labeled images | " + " | ".join(f"{m} membrane IoU | {m} mean IoU" for m in ["scratch", *methods]) + " |")
    print("|---|" + "---|---|" * (1 + len(methods)))
    for budget in budgets:
        cells = []
        for m in ["scratch", *methods]:
            cells += [f"{100 * per_class[(m, budget)]['iou'][0]:.1f} ± {100 * per_class[(m, budget)]['iou_std'][0]:.1f}",
                      f"{100 * mean[(m, budget)]['mean']:.1f} ± {100 * mean[(m, budget)]['std']:.1f}"]
        print(f"| {budget} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip")
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--then", default="", help="methods added to the same study afterwards, e.g. densecl")
    parser.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE",
                        help="also pretrain --method with --view-arg KEY=VALUE (e.g. noise_std=0.1) and add its rows")
    parser.add_argument("--backbone", default="small-convnet")
    parser.add_argument("--pretrain-crop", type=int, default=64, help="pretraining crop side (native pixels)")
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--pretrain-batch", type=int, default=128)
    parser.add_argument("--crop", type=int, default=128, help="fine-tuning crop side")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr-grid", default="0.003,0.01")
    parser.add_argument("--images", default="1,2,5")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="bench-out/isbi")
    args = parser.parse_args()
    started = time.perf_counter()
    out = Path(args.out)
    recipe = ["--crop-size", str(args.crop), "--lr-grid", args.lr_grid]
    flags = ["study", "--task", "segmentation", "--data", args.zip, "--backbone", args.backbone, "--image-size",
             str(args.pretrain_crop), "--steps", str(args.pretrain_steps), "--batch-size", str(args.pretrain_batch),
             "--labeled-images", args.images, "--seeds", str(args.seeds), "--finetune-steps", str(args.steps),
             "--finetune-batch-size", str(args.batch), *recipe, "--out", str(out / "study")]
    study = selfsup(*flags, "--methods", args.method)
    pretrain = json.loads((out / "study" / "pretrain" / args.method / "result.json").read_text())
    print(f"pretrained {args.method} ({args.backbone}) for {pretrain['steps']} steps on {pretrain['n_images']} crops "
          f"({pretrain.get('crops_per_image')} per image); final loss {pretrain['final_loss']:.3f}")
    table(study, [args.method])
    t = study["timings"]
    print(f"study {study['wall']:.0f} s (pretraining {t.get(f'pretrain {args.method}', 0):.0f} s, scratch "
          f"{t.get('scratch (all runs)', 0):.0f} s, pretrained {t.get('finetune (all runs)', 0):.0f} s)")
    trained = selfsup("train", "--task", "segmentation", "--checkpoint", str(out / "study" / "pretrain" / args.method),
                      "--labeled", args.zip, "--labeled-images", "2", "--seed", "0", "--steps", str(args.steps),
                      "--batch-size", str(args.batch), *recipe, "--out", str(out / "model"), "--overwrite")
    predicted = selfsup("predict", "--model", str(out / "model"), "--data", args.zip, "--out", str(out / "masks"))
    row = next(r for r in study["rows"] if r["method"] == args.method and r["budget"] == "2" and r["seed"] == 0)
    print(f"2 images, seed 0: study mean IoU {100 * row['mean_iou']:.3f}, train's test {100 * trained['test']['mean_iou']:.3f}, "
          f"predict's masks {100 * predicted['scores']['mean_iou']:.3f} ({predicted['n']} masks, "
          f"train {trained['wall']:.0f} s, predict {predicted['wall']:.0f} s)")
    if args.then:
        # DenseCL's dense loss compares every location with every queued key: a 65,536 queue over a pool of
        # 11,250 crops holds each crop about six times, at 16x the cost of the 4,096 used here.
        config = out / "then.yaml"
        config.write_text("per_method:\n  densecl:\n    method_args: {queue_size: 4096}\n"
                          "  moco_v2:\n    method_args: {queue_size: 4096}\n")
        more = selfsup(*flags, "--methods", ",".join([args.method, *args.then.split(",")]), "--config", str(config))
        table(more, [args.method, *args.then.split(",")])
        print(f"adding {args.then}: {more['wall']:.0f} s")
    if args.variant:
        names, checkpoints = [], []
        for kv in args.variant:
            name = f"{args.method}_{kv.replace('=', '')}"
            run = out / "variants" / name
            if not (run / "result.json").exists():
                selfsup("pretrain", "--method", args.method, "--data", args.zip, "--backbone", args.backbone,
                        "--image-size", str(args.pretrain_crop), "--steps", str(args.pretrain_steps),
                        "--batch-size", str(args.pretrain_batch), "--view-arg", kv, "--out", str(run), "--overwrite")
            names.append(name)
            checkpoints += ["--checkpoint", f"{name}={run}"]
        methods = [args.method, *filter(None, args.then.split(","))]
        config = ["--config", str(out / "then.yaml")] if args.then else []
        more = selfsup(*flags, "--methods", ",".join(methods), *config, *checkpoints)
        table(more, [*methods, *names])
        print(f"adding {', '.join(names)}: {more['wall']:.0f} s")
    print(f"whole benchmark {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
