"""Every method on CIFAR-10 at one fixed step budget: the method-zoo table.

Each row: `selfsup pretrain --method NAME` on train/ of the JPEG zip (labels unused), stock
torchvision ResNet-18 (ImageNet stem, as shipped; MAE: its ViT-Tiny), batch 256, the same --steps
for every method, the method's own recipe otherwise (optimizer, lr, views, heads). Then, on frozen
features (bank/fit = train/ with labels, queries = test/):
- kNN top-1 (k=200, T=0.1, cosine), and the L-BFGS linear probe's top-1 (decay picked on 20%
  of train/);
- images/s of the training loop, peak resident memory of the pretraining process;
- the final embedding std·sqrt(d) (healthy ≈ 1, collapsed ≈ 0) and effective rank;
- for the classic pretext tasks, the task's own accuracy (or loss) on test/.
A random-weights row (mean of 3 initializations) is the bar: every method must beat its kNN
by 2 points (`random` for ResNet-18, `random-vit` for MAE's ViT-Tiny, `random-dcgan` for the GANs'
DCGAN discriminator).

``--stem small`` pretrains and scores with ResNet's CIFAR stem instead (and its own random bar);
``--layer MODULE`` scores rows at an inner module instead (e.g. ``layer3``, its output averaged over
space), beside a random row at the same module: the per-layer probes of Zhang et al. 2016 and Goyal et
al. 2019, where a pretext task's last layer, specialized to the task, is often not its best.
``--patch-grid N`` scores rows on N x N cells of each image, each read alone, their features averaged
(Kolesnikov et al. 2019's evaluation of jigsaw and relative patch location), beside a random row
scored the same way.

Rows are written to OUT/rows.json as they finish; a re-run skips finished rows, so the table
can be built across several sittings. Run it alone on the machine (timings are shared-CPU
sensitive).

    python benchmarks/cifar_method_table.py ../shared/datasets/cifar10-jpeg.zip --steps 450 \
        --methods simclr,byol --out bench-out/zoo

``--method-arg KEY=VALUE`` runs a variant of a method's hyper-parameters and ``--setting KEY=VALUE``
one of its training settings (`selfsup pretrain`'s ``--KEY VALUE``: lr, weight_decay, lars_eta,
lars_clip, ...), each in its own row ``NAME@STEPS+KEY=VALUE``:

    python benchmarks/cifar_method_table.py ../shared/datasets/cifar10-jpeg.zip --steps 1350 --methods byol \
        --setting lr=1.0 --setting lars_eta=0.02 --setting lars_clip=true --out bench-out/zoo-3x

With ``--devices N`` each pretraining runs data-parallel (`selfsup pretrain --devices N`, the same
global batch of 256), in its own row ``NAME@STEPSxN``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from selfsup.backbones import build_backbone, probed_features
from selfsup.backbones.io import load_backbone
from selfsup.data.images import Prepared, probe_spec
from selfsup.data.sources import open_source
from selfsup.backbones.features import extract_features
from selfsup.utils.knn import knn_predict, topk_accuracy
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.pretext import pretext_score
from selfsup.methods import METHODS
from selfsup.views import Normalization, estimate_normalization

# The classic pretext tasks (issue 5): their own task is scored on test/ too.
PRETEXT = ("rotation", "relative_patch", "jigsaw", "colorization", "inpainting", "autoencoder", "denoising_autoencoder",
           "mae", "corruption")
# Every row runs its method's default command: the recipe resolves what depends on the run (SwAV's and
# DINO's first-epoch freezes, SwAV's queue, the CIFAR-sized projector and prototype widths; see
# ``Method.for_budget``). A variant row (``method:arg=value``) adds its own arguments.

# The bar of a method whose recipe trains another encoder than ResNet-18: random weights of that encoder.
RANDOM_BARS = {"random-vit": "vit-tiny", "random-dcgan": "dcgan"}


def bar_of(method: str) -> str:
    """The random-weights row a method is compared with (``random``: ResNet-18)."""
    backbone = METHODS.get(method).recipe.backbone
    return next((key for key, arch in RANDOM_BARS.items() if backbone == arch), "random")


def score(backbone, train: Prepared, test: Prepared, norm: Normalization, layer: str | None = None,
          patch_grid: int | None = None) -> tuple[float, float]:
    device = torch.device("cpu")
    backbone = probed_features(backbone, 32, layer, patch_grid)
    bank, bank_pos = extract_features(backbone, train, norm, 32, device, batch_size=512)
    query, query_pos = extract_features(backbone, test, norm, 32, device, batch_size=512)
    train_y, test_y = torch.from_numpy(train.labels[bank_pos]), torch.from_numpy(test.labels[query_pos])
    knn = topk_accuracy(knn_predict(bank, train_y, query, 10, k=200, temperature=0.1), test_y, (1,))[1]
    scores, _ = linear_probe(bank, train_y, query, 10)
    linear = float((scores.argmax(1) == test_y).float().mean())
    return knn, linear


def protocol_suffix(stem: str, layer: str | None, patch_grid: int | None = None) -> str:
    """How a row's key names a scoring protocol other than the table's (the stock stem, the final
    features of the whole image)."""
    return (("/small-stem" if stem == "small" else "") + (f"/{layer}" if layer else "")
            + (f"/grid{patch_grid}" if patch_grid else ""))


def setting_flags(settings: tuple[str, ...]) -> list[str]:
    """``KEY=VALUE`` training settings as `selfsup pretrain` flags (``lars_clip=true``: ``--lars-clip``)."""
    flags = []
    for kv in settings:
        key, _, value = kv.partition("=")
        flag = key.replace("_", "-")
        flags += ([f"--{flag}"] if value.lower() == "true" else [f"--no-{flag}"] if value.lower() == "false"
                  else [f"--{flag}", value])
    return flags


def pretrain(method: str, zip_path: str, steps: int, out: Path, devices: int = 1,
             variant: tuple[str, ...] = (), settings: tuple[str, ...] = (), stem: str = "imagenet") -> tuple[dict, float]:
    extra = [a for kv in variant for a in ("--method-arg", kv)] + ["--devices", str(devices)]
    extra += setting_flags(settings)
    cmd = [sys.executable, "-m", "selfsup", "pretrain", "--method", method, "--data", zip_path, "--backbone",
           METHODS.get(method).recipe.backbone, "--stem", stem, "--batch-size", "256", "--steps", str(steps), "--out", str(out),
           "--quiet", "--num-workers", "2", "--show-batch", str(out / "show-batch.png"), *extra]
    if (out / "checkpoints" / "latest.json").exists() and not (out / "result.json").exists():
        cmd = [sys.executable, "-m", "selfsup", "pretrain", "--resume", "--out", str(out), "--quiet", "--devices",
               str(devices)]
    elif not (out / "result.json").exists():
        cmd.append("--overwrite")
    peak_gb = float("nan")
    if not (out / "result.json").exists():
        proc = subprocess.Popen(cmd)
        _, status, usage = os.wait4(proc.pid, 0)  # this run's own peak, not the benchmark's
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"pretraining {method} failed with exit code {proc.returncode}")
        peak_gb = usage.ru_maxrss / 2**20
        (out / "peak_gb.txt").write_text(f"{peak_gb:.3f}")
    elif (out / "peak_gb.txt").exists():
        peak_gb = float((out / "peak_gb.txt").read_text())
    return json.loads((out / "result.json").read_text()), peak_gb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zip")
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--methods", default=",".join(["random", *RANDOM_BARS] + METHODS.names()))
    parser.add_argument("--out", default="bench-out/zoo")
    parser.add_argument("--devices", type=int, default=1,
                        help="data-parallel processes per pretraining (rows are then 'NAME@STEPSxN', same global batch)")
    parser.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a variant of every method named (beside its resolved recipe): rows 'NAME@STEPS+KEY=VALUE'")
    parser.add_argument("--layer", metavar="MODULE",
                        help="score every row (random ones too) at this inner module's pooled output, e.g. layer3: "
                             "rows 'NAME@STEPS/MODULE', compared with 'random/MODULE'; pretraining is reused")
    parser.add_argument("--patch-grid", type=int, metavar="N",
                        help="score every row (random ones too) on N x N cells of each image, their features "
                             "averaged (Kolesnikov et al. 2019's evaluation of patch-based tasks): rows "
                             "'NAME@STEPS/gridN', compared with 'random/gridN'; pretraining is reused")
    parser.add_argument("--stem", choices=["imagenet", "small"], default="imagenet",
                        help="small: ResNet's CIFAR stem (3x3 stride-1 conv, no max-pool) for pretraining and the "
                             "random bar, about 16x the FLOPs: rows 'NAME@STEPS/small-stem' against 'random/small-stem'")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a training setting of every method named (`selfsup pretrain --KEY VALUE`, e.g. "
                             "lars_eta=0.02): rows 'NAME@STEPS+KEY=VALUE'")
    args = parser.parse_args()
    variant, settings = tuple(args.method_arg), tuple(args.setting)
    suffix = "".join(f"+{kv}" for kv in (*variant, *settings))
    protocol = protocol_suffix(args.stem, args.layer, args.patch_grid)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.json"
    rows = json.loads(rows_path.read_text()) if rows_path.exists() else {}

    opened = open_source(args.zip)
    spec = probe_spec(opened["train"])
    train, test = Prepared(opened["train"], spec), Prepared(opened["test"], spec)
    for method in args.methods.split(","):
        key = f"{method}@{args.steps}" if not method.startswith("random") else method
        key += f"x{args.devices}" if args.devices > 1 and not method.startswith("random") else ""
        key += suffix if not method.startswith("random") else ""
        key += protocol
        run = out / ((method if args.devices == 1 else f"{method}-x{args.devices}") + suffix
                     + ("-small-stem" if args.stem == "small" else ""))
        if key in rows:
            continue
        t0 = time.perf_counter()
        if method.startswith("random"):
            norm = estimate_normalization(torch.from_numpy(np.asarray(train.array[:10000])))
            arch = RANDOM_BARS.get(method, "resnet18")
            scores = []
            for seed in range(3):
                torch.manual_seed(seed)
                scores.append(score(build_backbone(arch, 3, args.stem, 32), train, test, norm, args.layer, args.patch_grid))
            rows[key] = {"method": f"random {arch} (3 inits)", "stem": args.stem, "layer": args.layer,
                         "patch_grid": args.patch_grid,
                         "knn": float(np.mean([s[0] for s in scores])), "linear": float(np.mean([s[1] for s in scores])),
                         "knn_each": [s[0] for s in scores]}
        else:
            result, peak_gb = pretrain(method, args.zip, args.steps, run, args.devices, variant, settings, args.stem)
            t_scored = time.perf_counter()
            backbone, info = load_backbone(run)
            knn, linear = score(backbone, train, test, Normalization(**info["normalization"]), args.layer,
                                args.patch_grid)
            pretext = pretext_score(run, test) if method in PRETEXT else {}
            rows[key] = {"method": method, "stem": args.stem, "layer": args.layer, "patch_grid": args.patch_grid,
                         "steps": result["steps"],
                         "knn": knn, "linear": linear,
                         "processes": result.get("processes", 1),
                         "images_per_second": result["images_per_second"], "peak_gb": round(peak_gb, 2),
                         "train_seconds": result["train_seconds"],
                         "embedding_std_x_sqrt_d": result.get("embedding_std_x_sqrt_d"),
                         "effective_rank": result.get("effective_rank"),
                         "collapse_warning": result.get("collapse_warning"), "overrides": list(variant),
                         "settings": list(settings),
                         **pretext, "score_seconds": round(time.perf_counter() - t_scored, 1)}
        rows[key]["row_seconds"] = round(time.perf_counter() - t0, 1)  # pretraining (if any) and scoring
        rows_path.write_text(json.dumps(rows, indent=1))
        print(f"{key}: {rows[key]}", file=sys.stderr, flush=True)

    print("| method | steps | kNN top-1 | linear top-1 | vs random kNN | images/s | peak GB | emb. std·√d | eff. rank "
          "| pretext task on test/ |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, r in rows.items():
        at = ((" (small stem)" if r.get("stem") == "small" else "") + (f" at {r['layer']}" if r.get("layer") else "")
              + (f" on {r['patch_grid']}x{r['patch_grid']} cells" if r.get("patch_grid") else ""))
        if key.startswith("random"):
            print(f"| {r['method']}{at} | 0 | {100 * r['knn']:.2f}% | {100 * r['linear']:.2f}% | | | | | | |")
            continue
        bar = rows.get(bar_of(r["method"]) + protocol_suffix(r.get("stem", "imagenet"), r.get("layer"),
                                                            r.get("patch_grid")), {}).get("knn")
        gain = f"{100 * (r['knn'] - bar):+.2f}" if bar is not None else "n/a"
        task = (f"accuracy {100 * r['pretext_accuracy']:.1f}%" if "pretext_accuracy" in r
                else f"loss {r['pretext_loss']:.4f}" if "pretext_loss" in r else "")
        name = r["method"] + at + (f" ({r['processes']} processes)" if r.get("processes", 1) > 1 else "")
        name += "".join(f" +{kv}" for kv in [*r.get("overrides", []), *r.get("settings", [])])
        print(f"| {name} | {r['steps']} | {100 * r['knn']:.2f}% | {100 * r['linear']:.2f}% | {gain} | "
              f"{r['images_per_second']:.1f} | {r['peak_gb']:.2f} | {r['embedding_std_x_sqrt_d']} | {r['effective_rank']} "
              f"| {task} |")


if __name__ == "__main__":
    main()
