"""Few-label evidence for every image method on CIFAR-10 at one budget (issue 37).

Each row is one method's *default* command at the method table's budget (1,350 steps of batch 256,
stock ResNet-18 unless the method's recipe trains another encoder), run by ``cifar_method_table.py``
(kNN and the linear probe on all 50,000 labels, images/s, collapse diagnostics), then put through
``selfsup study`` on its checkpoint: from cached frozen features, the linear probe and kNN at 1, 10
and 100 labels per class (3 seeds, the same class-balanced subsets for every row) and at all labels,
beside one scratch baseline shared by every row (ResNet-18 trained from random weights on the same
subsets: 200 steps of batch 64, learning rate picked inside the subset). The label multiplier is the
study's: the labels scratch needs for the same test accuracy, read on its curve, over the labels used.

Rows resume: the method table keeps OUT/zoo/rows.json and the study OUT/study/results.jsonl, and both
are copied to ``benchmarks/evidence/`` (committed) after every row, and back from there into an empty
OUT, so the table is built across sittings on fresh clones. Run it alone on the machine for images/s.

    python benchmarks/cifar_evidence.py ../shared/datasets/cifar10-jpeg.zip --methods simclr,byol \\
        --out bench-out/evidence
    # a variant row: NAME+KEY=VALUE (its method arguments), e.g. byol+paper_scale=true
    python benchmarks/cifar_evidence.py ../shared/datasets/cifar10-jpeg.zip --table   # the tables only

``--finetune NAME,...`` adds fine-tuning rows (the study's ``finetune`` evaluation) for those methods,
whose run folders must still be in OUT/zoo.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STORE = HERE / "evidence"
BUDGETS = (1, 10, 100)


def split_variant(entry: str) -> tuple[str, list[str]]:
    """``byol+paper_scale=true`` -> ("byol", ["paper_scale=true"])."""
    method, *variant = entry.split("+")
    return method, variant


def table_key(entry: str, steps: int) -> str:
    method, variant = split_variant(entry)
    return f"{method}@{steps}" + "".join(f"+{kv}" for kv in variant)


def run_folder(entry: str) -> str:
    method, variant = split_variant(entry)
    return method + "".join(f"+{kv}" for kv in variant)


def study_name(entry: str) -> str:
    """The study's row name: the method, or METHOD-KEY-VALUE for a variant (no '=' in a checkpoint name)."""
    return entry.replace("+", "-").replace("=", "-")


def persist(out: Path, steps: int, back: bool, zip_path: str) -> None:
    """Copy the finished rows between OUT and the committed store (``back``: store -> OUT, when OUT lacks them)."""
    pairs = [(out / "zoo" / "rows.json", STORE / f"cifar10_{steps}_rows.json"),
             (out / "study" / "results.jsonl", STORE / f"cifar10_{steps}_study.jsonl")]
    for live, kept in pairs:
        source, target = (kept, live) if back else (live, kept)
        if source.exists() and not (back and target.exists()):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    record = out / "study" / "study.json"
    if back and (out / "study" / "results.jsonl").exists() and not record.exists():  # the study continues its log
        record.write_text(json.dumps({"data": None, "labeled": zip_path, "test": None}))


def study(zip_path: str, out: Path, checkpoints: dict[str, Path], evaluations: str) -> None:
    flags = [a for name, path in checkpoints.items() for a in ("--checkpoint", f"{name}={path}")]
    cmd = [sys.executable, "-m", "selfsup", "study", "--labeled", zip_path, "--methods", "", *flags,
           "--evaluations", evaluations, "--labels-per-class", ",".join(map(str, BUDGETS)) + ",all",
           "--seeds", "3", "--finetune-steps", "200", "--out", str(out / "study"), "--quiet", "--json"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def summary(out: Path) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    """(method, evaluation, budget) -> (mean %, std %, seeds) over the study's log."""
    import numpy as np

    groups: dict[tuple[str, str, str], list[float]] = {}
    path = out / "study" / "results.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        groups.setdefault((row["method"], row["evaluation"], row["budget"]), []).append(100 * row["accuracy"])
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in groups.items()}


def multiplier(stats: dict, method: str, evaluation: str, per_class: int) -> str:
    """Labels scratch needs for this row's accuracy, over the labels used (the study's interpolation)."""
    from selfsup.study.results import labels_needed

    curve = [(10 * n, stats[("scratch", "scratch", str(n))][0]) for n in BUDGETS
             if ("scratch", "scratch", str(n)) in stats]
    curve += [(50000, stats[("scratch", "scratch", "all")][0])] if ("scratch", "scratch", "all") in stats else []
    row = stats.get((method, evaluation, str(per_class)))
    if row is None or len(curve) < 2:
        return "–"
    needed, relation = labels_needed(curve, row[0])
    mark = {"<": "≤ ", ">": "≥ ", "=": ""}[relation]
    return f"{mark}{needed / (10 * per_class):.1f}×"


def print_tables(out: Path, steps: int) -> None:
    rows_path = out / "zoo" / "rows.json"
    rows = json.loads(rows_path.read_text()) if rows_path.exists() else {}
    stats = summary(out)
    bar = {key: r["knn"] for key, r in rows.items() if key.startswith("random")}
    print("| method | kNN, all labels | linear, all | kNN vs random | kNN 1 / 10 / 100 per class "
          "| linear 1 / 10 / 100 per class | label multiplier at 10 / class (linear, kNN) |")
    print("|---|---|---|---|---|---|---|")

    def cell(name: str, evaluation: str) -> str:
        parts = [stats.get((name, evaluation, str(n))) for n in BUDGETS]
        return " / ".join(f"{p[0]:.1f} ± {p[1]:.1f}" if p else "–" for p in parts)

    if any(k[0] == "scratch" for k in stats):
        all_labels = stats.get(("scratch", "scratch", "all"))
        print(f"| scratch (ResNet-18 from random weights, trained) | {all_labels[0]:.1f} (trained) |" if all_labels
              else "| scratch (ResNet-18 from random weights, trained) | – |",
              f" | | {cell('scratch', 'scratch')} (trained) | | 1.0× |")
    for key, r in rows.items():
        if key.startswith("random"):
            print(f"| {r['method']} | {100 * r['knn']:.2f} | {100 * r['linear']:.2f} | | | | |")
            continue
        entry = key.split("@")[0] + "".join(f"+{kv}" for kv in r.get("overrides", []))
        name = study_name(entry)
        from cifar_method_table import bar_of  # noqa: E402  (the table's own bar per encoder)

        reference = bar.get(bar_of(r["method"]))
        gain = f"{100 * (r['knn'] - reference):+.2f}" if reference is not None else "–"
        print(f"| {name} | {100 * r['knn']:.2f} | {100 * r['linear']:.2f} | {gain} | {cell(name, 'knn')} "
              f"| {cell(name, 'linear')} | {multiplier(stats, name, 'linear', 10)}, {multiplier(stats, name, 'knn', 10)} |")
    fine = sorted({k[0] for k in stats if k[1] == "finetune"})
    if fine:
        print("\n| method | fine-tuned 1 / 10 / 100 per class | multiplier at 1 / 10 / 100 |")
        print("|---|---|---|")
        for name in fine:
            mults = " / ".join(multiplier(stats, name, "finetune", n) for n in BUDGETS)
            print(f"| {name} | {cell(name, 'finetune')} | {mults} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip")
    parser.add_argument("--methods", default="", help="comma-separated; NAME+KEY=VALUE for a variant row")
    parser.add_argument("--steps", type=int, default=1350)
    parser.add_argument("--out", default="bench-out/evidence")
    parser.add_argument("--finetune", default="", help="methods (already in the table) to fine-tune at 1/10/100 per class")
    parser.add_argument("--table", action="store_true", help="print the tables of the finished rows and stop")
    parser.add_argument("--figure", default="", help="also draw the stored rows' label-efficiency curves into this PNG")
    args = parser.parse_args()
    out = Path(args.out)
    persist(out, args.steps, back=True, zip_path=args.zip)
    if not args.table:
        rows_path = out / "zoo" / "rows.json"
        for entry in ["random", *[m for m in args.methods.split(",") if m]]:
            rows = json.loads(rows_path.read_text()) if rows_path.exists() else {}
            method, variant = split_variant(entry)
            if (entry if entry == "random" else table_key(entry, args.steps)) not in rows:
                cmd = [sys.executable, str(HERE / "cifar_method_table.py"), args.zip, "--steps", str(args.steps),
                       "--methods", method, "--out", str(out / "zoo"), *[a for kv in variant for a in ("--method-arg", kv)]]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                persist(out, args.steps, back=False, zip_path=args.zip)
            if entry != "random":
                done = summary(out)
                if not all((study_name(entry), e, str(n)) in done for e in ("knn", "linear") for n in BUDGETS):
                    study(args.zip, out, {study_name(entry): out / "zoo" / run_folder(entry)}, "scratch,linear,knn")
                    persist(out, args.steps, back=False, zip_path=args.zip)
        for entry in [m for m in args.finetune.split(",") if m]:
            study(args.zip, out, {study_name(entry): out / "zoo" / run_folder(entry)}, "scratch,finetune")
            persist(out, args.steps, back=False, zip_path=args.zip)
    print_tables(out, args.steps)
    if args.figure:
        draw(out, args.steps, Path(args.figure))


def draw(out: Path, steps: int, path: Path) -> None:
    """The study's label-efficiency figure over every stored row: linear probe and kNN beside scratch."""
    from selfsup.study.plots import plot_label_efficiency, source_name
    from selfsup.study.results import summarize

    rows = [json.loads(line) for line in (out / "study" / "results.jsonl").read_text().splitlines() if line.strip()]
    zip_name = source_name(json.loads((out / "study" / "study.json").read_text())["labeled"])
    plot_label_efficiency(summarize(rows), path, f"{zip_name}, {steps:,} pretraining steps: test accuracy against labels")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
