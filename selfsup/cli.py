"""The ``selfsup`` command: thin over the library.

Contract (README, "Command line"): every command takes ``--config FILE`` (YAML; defaults, then
the file, then flags) and ``--json`` (one JSON object on stdout's last line; logs and progress
on stderr). Exit codes: 0 success, 2 usage or config error, 1 runtime error (one line
``selfsup: error: ...``), 3 stopped on a non-finite loss, 143 / 130 stopped by SIGTERM / SIGINT after
the step in flight and a checkpoint.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any, Sequence

from .config import (EvalConfig, ExportConfig, FinetuneConfig, PredictConfig, PretrainConfig, SemisupConfig, StudyConfig,
                     TrainConfig, build_config)
from .utils.errors import ConfigError, SelfSupError
from .utils.stop import SIGNALS, Stopped, stop_on_signals

log = logging.getLogger("selfsup")
S = argparse.SUPPRESS  # flags not given stay absent, so the config file's values survive
NOT_SETTINGS = ("command", "config", "json", "quiet", "protocol", "devices", "nodes")  # flags that are no config key


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML file of settings (flags override it)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout's last line")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _data_flags(p: argparse.ArgumentParser, config: type) -> None:
    """The data flags of the settings ``config`` has."""
    import dataclasses

    has = {f.name for f in dataclasses.fields(config)}
    if "data" in has:
        p.add_argument("--data", default=S, metavar="PATH", help="unlabeled pool: folder, .zip/.tar, .npy/.npz, digits, cifar10")
    if "labeled" in has:
        p.add_argument("--labeled", default=S, metavar="PATH", help="labeled training set (class subfolders or labels)")
    p.add_argument("--test", default=S, metavar="PATH", help="held-out test set (default: the source's test/ or a saved 80/20 split)")
    if "image_size" in has:
        p.add_argument("--image-size", type=int, default=S, help="view side in pixels (default: native up to 64 px, else 224)")
    if "num_workers" in has:
        p.add_argument("--num-workers", type=int, default=S, help="DataLoader workers for streamed (large) images")
    p.add_argument("--strict", action="store_true", default=S, help="fail on the first unreadable image instead of skipping it")
    p.add_argument("--device", default=S, help="auto, cpu, cuda, cuda:1 ... (under torchrun: cuda means each rank's GPU)")


def _generated_flags(p: argparse.ArgumentParser, config: type) -> None:
    """A flag for every setting of ``config`` that has no hand-written one above (dicts stay YAML-only):
    adding a field to a config dataclass adds its flag, typed and helped by the field itself."""
    import dataclasses
    import typing

    from .config import setting_help

    taken = {a.dest for a in p._actions}
    hints, helps = typing.get_type_hints(config), setting_help(config)
    for action in p._actions:  # a hand-written flag without help takes its setting's
        if action.help is None and action.dest in helps:
            action.help = helps[action.dest]
    for f in dataclasses.fields(config):
        hint = hints[f.name]
        if f.name in taken or "dict" in str(hint):
            continue
        flag = "--" + f.name.replace("_", "-")
        if hint is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=S, help=helps.get(f.name))
        else:  # read as text; the config converts it to the field's type and checks its range (exit 2)
            p.add_argument(flag, default=S, metavar=f.name.upper(), help=helps.get(f.name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfsup", description="Self-supervised pretraining, transfer and comparison.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _pretrain_command(sub)
    _eval_command(sub)
    _finetune_command(sub)
    _train_command(sub)
    _predict_command(sub)
    _export_command(sub)
    _study_command(sub)
    _semisup_command(sub)
    _demo_command(sub)
    _methods_command(sub)
    _words_command(sub)
    return parser


def _pretrain_command(sub: Any) -> None:
    """The `pretrain` command and its flags."""
    p = sub.add_parser("pretrain", help="pretrain an encoder on unlabeled data",
                       description="Pretrain an encoder with a self-supervised method.")
    _common(p)
    _data_flags(p, PretrainConfig)
    p.add_argument("--method", default=S, help="method name (see `selfsup methods`)")
    p.add_argument("--backbone", default=S, help="torchvision model name, timm:NAME, small-convnet, vit-tiny, vit-small "
                   "(default: the method's, resnet18 for most)")
    p.add_argument("--stem", default=S, choices=["auto", "imagenet", "small"], help="auto: small for inputs <= 64 px")
    p.add_argument("--views", default=S, help="view preset (default: the method's)")
    p.add_argument("--method-arg", action="append", default=S, metavar="KEY=VALUE", dest="method_args",
                   help="a method hyper-parameter, e.g. temperature=0.2 (repeatable; see `selfsup methods`)")
    p.add_argument("--view-arg", action="append", default=S, metavar="KEY=VALUE", dest="view_args",
                   help="a view override, e.g. local_crops=4 or crop_scale=[0.2,1] (repeatable)")
    p.add_argument("--max-length", type=int, default=S, help="text: tokens per text, [CLS] and [SEP] included (default 64)")
    p.add_argument("--vocab-size", type=int, default=S, help="text: the tokenizer's vocabulary (default 8000, word2vec 20000)")
    p.add_argument("--frames", type=int, default=S, help="video: frames per clip (default 16)")
    p.add_argument("--frame-stride", type=int, default=S, help="video: a clip takes every n-th frame (default 2)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=float, default=S)
    budget.add_argument("--steps", type=int, default=S)
    budget.add_argument("--time-limit", type=float, default=S, metavar="SECONDS",
                        help="turned into a step count from a short timed warm-up, re-planned once early; "
                             "given with no method, backbone, stem, image size, views or init, it trains the "
                             "measured best for that time on this device type")
    p.add_argument("--batch-size", type=int, default=S)
    p.add_argument("--lr", type=float, default=S, help="base learning rate, scaled by batch/256")
    p.add_argument("--optimizer", default=S, choices=["sgd", "adamw", "lars"])
    p.add_argument("--weight-decay", type=float, default=S)
    p.add_argument("--warmup-fraction", type=float, default=S, metavar="F",
                   help="share of the steps that warm the lr up linearly, in [0, 1) (default: the method's)")
    p.add_argument("--grad-clip", type=float, default=S, help="clip the gradient norm to this value")
    p.add_argument("--lars-eta", type=float, default=S, metavar="ETA", help="LARS trust coefficient (default: the method's, 0.001)")
    p.add_argument("--lars-clip", action=argparse.BooleanOptionalAction, default=S,
                   help="LARS steps a layer by min(η‖w‖, lr‖g‖): η alone sets the relative step, capped at plain SGD's")
    p.add_argument("--precision", default=S, choices=["auto", "fp32", "bf16"])
    p.add_argument("--compile", action="store_true", default=S, help="torch.compile the backbone (GPUs, long runs)")
    p.add_argument("--seed", type=int, default=S)
    p.add_argument("--checkpoint-every", type=int, default=S, metavar="STEPS")
    p.add_argument("--show-batch", default=S, metavar="FILE.png",
                   help="draw one batch of the pretext task (views, rotations, tiles, masks and reconstructions)")
    p.add_argument("--out", default=S, metavar="DIR")
    p.add_argument("--resume", action="store_true", default=S, help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", default=S, help="replace a non-empty --out")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="data-parallel processes on this machine (one per GPU, or CPU processes with gloo): "
                        "shorthand for torchrun --nproc-per-node N -m selfsup pretrain ...; --batch-size is global")
    p.add_argument("--nodes", type=int, default=1, metavar="M",
                   help="machines in the run (with --devices; needs MASTER_ADDR, MASTER_PORT and NODE_RANK set)")

    _generated_flags(p, PretrainConfig)


def _eval_command(sub: Any) -> None:
    """The `eval` command and its flags."""
    p = sub.add_parser("eval", help="score frozen features: knn or linear",
                       description="Frozen-feature evaluation of a pretrained encoder on labeled data.")
    p.add_argument("protocol", choices=["knn", "linear"], help="weighted kNN or a linear probe on frozen features")
    _common(p)
    p.add_argument("--checkpoint", default=S, metavar="PATH", help="run folder or encoder/checkpoint file")
    _data_flags(p, EvalConfig)
    p.add_argument("--k", type=int, default=S, help="neighbours (default 200, capped at the labeled count)")
    p.add_argument("--temperature", type=float, default=S, help="kNN vote temperature (default 0.1)")
    p.add_argument("--layer", default=S, metavar="MODULE",
                   help="probe this inner module's output, averaged over space, e.g. layer3 (default: the final features)")
    p.add_argument("--patch-grid", type=int, default=S, metavar="N",
                   help="cut each image into N x N cells, read each alone, average their features "
                        "(for patch-based pretext tasks; default: the whole image)")
    p.add_argument("--batch-size", type=int, default=S)
    p.add_argument("--seed", type=int, default=S)

    _generated_flags(p, EvalConfig)


def _finetune_command(sub: Any) -> None:
    """The `finetune` command and its flags."""
    p = sub.add_parser("finetune", help="fine-tune vs scratch on few labels",
                       description="Fine-tune the pretrained encoder and the same model from scratch on labeled subsets.")
    _common(p)
    p.add_argument("--checkpoint", default=S, metavar="PATH", help="the pretrained run folder or encoder file")
    _data_flags(p, FinetuneConfig)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--labels-per-class", default=S, metavar="LIST", help="e.g. 1,10,all (default 1,10)")
    group.add_argument("--label-fraction", type=float, default=S, help="e.g. 0.01 for 1%% of the labels")
    p.add_argument("--seeds", type=int, default=S, help="N runs with seeds 0..N-1 (default 3)")
    p.add_argument("--steps", type=int, default=S, help="optimizer steps per downstream training")
    p.add_argument("--batch-size", type=int, default=S)
    p.add_argument("--out", default=S, metavar="DIR", help="default: CHECKPOINT/finetune (replaced each run)")
    p.add_argument("--overwrite", action="store_true", default=S, help="replace a non-empty --out")

    _generated_flags(p, FinetuneConfig)


def _train_command(sub: Any) -> None:
    """The `train` command and its flags."""
    p = sub.add_parser("train", help="train one downstream model on the labels and save it",
                       description="Fine-tune an encoder (a pretrained --checkpoint, or --init random|imagenet|PATH) "
                                   "with a linear head on the labels, the learning rate picked on a validation split, "
                                   "or fit a linear head on the frozen encoder (--freeze); scores it on the test set "
                                   "and saves OUT/model.safetensors and OUT/model.json for predict and export.")
    _common(p)
    p.add_argument("--checkpoint", default=S, metavar="PATH", help="a pretrained run folder or encoder file")
    p.add_argument("--init", default=S, metavar="random|imagenet|PATH",
                   help="without --checkpoint: random weights, ImageNet's (torchvision/timm, downloaded once), "
                        "or a torchvision/timm-keyed state-dict file")
    _data_flags(p, TrainConfig)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--labels-per-class", default=S, metavar="N", help="N or all (default all)")
    group.add_argument("--label-fraction", type=float, default=S, help="e.g. 0.01 for 1%% of each class's labels")
    p.add_argument("--freeze", action="store_true", default=S,
                   help="keep the encoder frozen and fit a linear head on its features (for a handful of labels)")
    p.add_argument("--out", default=S, metavar="DIR", help="the model folder (default runs/train)")
    p.add_argument("--resume", action="store_true", default=S, help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", default=S, help="replace a non-empty --out")

    _generated_flags(p, TrainConfig)


def _predict_command(sub: Any) -> None:
    """The `predict` command and its flags."""
    p = sub.add_parser("predict", help="run a trained model over images: predictions.csv",
                       description="Predict every image of a folder, archive or array file with a model folder "
                                   "(selfsup train's): one CSV row per image, its predicted class and every class's "
                                   "probability; the accuracy too when the images are labeled.")
    _common(p)
    p.add_argument("--model", default=S, metavar="DIR", help="a model folder (selfsup train's --out)")
    p.add_argument("--data", default=S, metavar="PATH", help="folder, .zip/.tar, .npy/.npz or digits")
    p.add_argument("--out", default=S, metavar="FILE.csv", help="default MODEL/predictions.csv")
    p.add_argument("--strict", action="store_true", default=S, help="fail on the first unreadable image")
    p.add_argument("--device", default=S, help="auto, cpu, cuda, cuda:1 ...")
    _generated_flags(p, PredictConfig)


def _export_command(sub: Any) -> None:
    """The `export` command and its flags."""
    p = sub.add_parser("export", help="export a trained model: onnx or torchscript",
                       description="Write a model folder's classifier as ONNX (dynamic batch axis, checked with "
                                   "onnxruntime) or TorchScript, and its preprocessing as preprocessing.json beside it.")
    _common(p)
    p.add_argument("--model", default=S, metavar="DIR", help="a model folder (selfsup train's --out)")
    p.add_argument("--format", default=S, choices=["onnx", "torchscript"], help="default onnx")
    p.add_argument("--out", default=S, metavar="FILE", help="default MODEL/model.onnx or MODEL/model.torchscript.pt")
    _generated_flags(p, ExportConfig)


def _study_command(sub: Any) -> None:
    """The `study` command and its flags."""
    p = sub.add_parser("study", help="label-efficiency study: methods x label budgets x seeds, with a report",
                       description="Pretrain each method (or reuse --checkpoint), then scratch, fine-tuning, linear "
                                   "probe and kNN at every label budget and seed on the same subsets; writes "
                                   "results.csv/json, label_efficiency.png, embedding_map.png and report.html. "
                                   "Re-run to continue an interrupted study.")
    _common(p)
    _data_flags(p, StudyConfig)
    p.add_argument("--methods", default=S, metavar="LIST", help="methods to pretrain, e.g. simclr,byol,rotation")
    p.add_argument("--checkpoint", action="append", default=S, dest="checkpoints", metavar="[NAME=]PATH",
                   help="reuse a pretrained run folder or encoder file instead of pretraining (repeatable)")
    p.add_argument("--labels-per-class", default=S, metavar="LIST", help="label budgets (default 1,10,100,all)")
    p.add_argument("--seeds", type=int, default=S, help="labeled subsets per budget, seeds 0..N-1 (default 3; 1 at all)")
    p.add_argument("--evaluations", default=S, metavar="LIST", help="of scratch,finetune,linear,knn (default all four)")
    p.add_argument("--backbone", default=S, help="backbone of every pretraining (default: each method's)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=float, default=S, dest="pretrain_epochs", help="pretraining epochs per method")
    budget.add_argument("--steps", type=int, default=S, dest="pretrain_steps", help="pretraining steps per method")
    p.add_argument("--batch-size", type=int, default=S, dest="pretrain_batch_size", help="pretraining batch size")
    p.add_argument("--finetune-steps", type=int, default=S, help="steps of every scratch and fine-tuning run (default 200)")
    p.add_argument("--seed", type=int, default=S)
    p.add_argument("--out", default=S, metavar="DIR", help="study folder (default study/); re-run to continue it")
    p.add_argument("--overwrite", action="store_true", default=S, help="replace a non-empty --out")

    _generated_flags(p, StudyConfig)


def _semisup_command(sub: Any) -> None:
    """The `semisup` command and its flags."""
    p = sub.add_parser("semisup", help="semi-supervised training on few labels and the unlabeled pool: uda or fixmatch",
                       description="Train a classifier on a class-balanced labeled subset and the unlabeled pool together "
                                   "with a consistency loss (UDA or FixMatch), from random weights or a --checkpoint; "
                                   "reports test accuracy.")
    _common(p)
    _data_flags(p, SemisupConfig)
    p.add_argument("--method", default=S, choices=["uda", "fixmatch"], help="the consistency method")
    p.add_argument("--method-arg", action="append", default=S, metavar="KEY=VALUE", dest="method_args",
                   help="e.g. threshold=0.95, weight=1, temperature=0.4 (UDA), tsa=exp|log|linear|null (UDA)")
    p.add_argument("--checkpoint", default=S, metavar="PATH", help="start from this encoder (default: random weights)")
    p.add_argument("--backbone", default=S, help="backbone when there is no checkpoint (default resnet18)")
    p.add_argument("--stem", default=S, choices=["auto", "imagenet", "small"], help="auto: small for inputs <= 64 px")
    p.add_argument("--labels-per-class", default=S, metavar="N", help="one budget: N or all (default 10)")
    p.add_argument("--seed", type=int, default=S, help="picks the labeled subset (the study's for that seed)")
    p.add_argument("--steps", type=int, default=S, help="optimizer steps (default 1000)")
    p.add_argument("--time-limit", type=float, default=S, metavar="SECONDS",
                   help="instead of --steps: as many steps as fit, timed up front (equal CPU budgets)")
    p.add_argument("--batch-size", type=int, default=S, help="labeled images per step (default 64)")
    p.add_argument("--unlabeled-ratio", type=int, default=S,
                   help="unlabeled images per labeled one, μ (default: FixMatch 7, UDA 5; 0: the supervised baseline)")
    p.add_argument("--lr", type=float, default=S, help="peak learning rate (cosine decay lr·cos(7πk/16K))")
    p.add_argument("--checkpoint-every", type=int, default=S, metavar="STEPS")
    p.add_argument("--out", default=S, metavar="DIR")
    p.add_argument("--resume", action="store_true", default=S, help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", default=S, help="replace a non-empty --out")

    _generated_flags(p, SemisupConfig)


def _demo_command(sub: Any) -> None:
    """The `demo` command and its flags."""
    p = sub.add_parser("demo", help="the main job on an embedded default: pretrain, transfer, compare",
                       description="SimCLR on scikit-learn's digits, then fine-tune vs scratch at 1 and 10 labels per class.")
    _common(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the demo writes (replaced each run; default selfsup-demo, or selfsup-study with --study)")
    p.add_argument("--study", action="store_true",
                   help="the label-efficiency study instead: SimCLR, BYOL and rotation on digits, 1/10/100/all labels")


def _methods_command(sub: Any) -> None:
    """The `methods` command and its flags."""
    p = sub.add_parser("methods", help="list the methods with their papers and defaults")
    _common(p)


def _words_command(sub: Any) -> None:
    """The `words` command and its flags."""
    p = sub.add_parser("words", help="query a text run's word vectors: nearest neighbours, analogies, export",
                       description="Nearest neighbours (cosine) of words, A:B::C analogies (3CosAdd) and an export "
                                   "in word2vec's text format, from a text run's embedding table (word2vec's above all).")
    p.add_argument("words", nargs="*", help="words whose nearest neighbours to list")
    _common(p)
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="a text run folder")
    p.add_argument("--analogy", action="append", default=[], metavar="A:B::C", help="a is to b as c is to ? (repeatable)")
    p.add_argument("-k", type=int, default=10, help="answers per query (default 10)")
    p.add_argument("--export", metavar="FILE.txt", help="write every word vector in word2vec's text format")


def _split(args: argparse.Namespace, skip: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from .config import load_yaml

    file_values = load_yaml(args.config) if getattr(args, "config", None) else {}
    flags = {k: v for k, v in vars(args).items() if k not in skip}
    if "checkpoints" in flags:  # a bare PATH is named after the method that made it
        from .study.run import checkpoint_name

        flags["checkpoints"] = [c if "=" in c else f"{checkpoint_name(c)}={c}" for c in flags["checkpoints"]]
    for key in ("method_args", "view_args", "checkpoints"):  # KEY=VALUE flags update the file's mapping key by key
        if key in flags:
            flags[key] = {**(file_values.get(key) or {}), **_key_values(flags[key], key)}
    return file_values, flags


def _key_values(pairs: list[str], flag: str) -> dict:
    import yaml

    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--{flag.replace('_', '-')[:-1]}: expected KEY=VALUE, got {pair!r}")
        if flag == "checkpoints":  # paths stay text (YAML would read '1e3' as a number)
            values[key.strip()] = raw
            continue
        try:
            values[key.strip()] = yaml.safe_load(raw)  # numbers, lists, null parse as YAML
        except yaml.YAMLError:
            raise ConfigError(f"--{flag.replace('_', '-')[:-1]}: cannot parse the value of {pair!r}") from None
    return values


def _print_rows(rows: list[dict]) -> None:
    print(f"{'labels/class':>12} {'n':>6} {'scratch':>15} {'pretrained':>15} {'linear':>15} {'kNN':>15}")
    for r in rows:
        cells = [f"{100 * r[k]:6.1f} ± {100 * r[k + '_std']:4.1f}" for k in
                 ("scratch_accuracy", "pretrained_accuracy", "linear_accuracy", "knn_accuracy")]
        label = r["labels_per_class"] if r["labels_per_class"] is not None else f"{r['label_fraction']:.0%}"
        print(f"{str(label):>12} {r['n_labels']:>6} " + " ".join(f"{c:>15}" for c in cells))


def _print_summary(result: dict) -> None:
    """The study's summary: accuracy (mean ± std over seeds) per method, evaluation and budget."""
    budgets = sorted({(s["n_labels"], s["budget"]) for s in result["summary"]})
    print(f"{'method':<24} {'evaluation':<10} " + " ".join(f"{b + ' (' + str(n) + ')':>16}" for n, b in budgets))
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for s in result["summary"]:
        cells.setdefault((s["method"], s["evaluation"]), {})[s["budget"]] = f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
    for (method, evaluation), row in cells.items():
        print(f"{method:<24} {evaluation:<10} " + " ".join(f"{row.get(b, '-'):>16}" for _, b in budgets))
    if result.get("task") == "segmentation":
        print("test mean IoU (%); budgets in labeled images")
    for m in result.get("label_multipliers", []):
        if m["evaluation"] == "finetune" or "finetune" not in {x["evaluation"] for x in result["label_multipliers"]}:
            rel = "" if m["relation"] == "=" else m["relation"]
            per = " image(s)" if result.get("task") == "segmentation" else "/class"
            print(f"{m['method']} ({m['evaluation']}) at {m['budget']}{per}: scratch needs {rel}{m['multiplier']:.2f}x the labels")
    print(f"study took {result['seconds']:.0f} s; report: {result['report']}")


RUN_FOLDERS = (PretrainConfig, TrainConfig, FinetuneConfig, SemisupConfig, StudyConfig)  # one writer each


def _configured(held: contextlib.ExitStack, cls: type, args: argparse.Namespace) -> Any:
    """The command's config (defaults, file, flags). Its image pixel limit applies before any image is read;
    a run folder it writes is locked for this process (rank 0 of a data-parallel run) until ``held`` closes."""
    cfg = build_config(cls, *_split(args, NOT_SETTINGS))
    if hasattr(cfg, "max_pixels"):
        from .data.decode import set_max_pixels

        set_max_pixels(cfg.max_pixels)
    if cls in RUN_FOLDERS and cfg.out and int(os.environ.get("RANK", "0")) == 0:
        from pathlib import Path

        from .utils.runlock import run_lock

        held.enter_context(run_lock(Path(cfg.out), args.command))
    return cfg


def run(args: argparse.Namespace) -> dict:
    """The command's result; a command that writes a run folder holds its lock (OUT/.lock) meanwhile."""
    with contextlib.ExitStack() as held:
        return _run(args, held)


def _run(args: argparse.Namespace, held: contextlib.ExitStack) -> dict:
    progress = not args.quiet
    if args.command == "pretrain":
        from .engine.trainer import pretrain

        cfg = _configured(held, PretrainConfig, args)
        from .engine.budget_choice import nothing_chosen

        file_values, flags = _split(args, NOT_SETTINGS)
        return pretrain(cfg, progress=progress, choose=nothing_chosen(set(file_values) | set(flags)))
    if args.command == "eval":
        from .evaluate.run import run_eval

        return run_eval(_configured(held, EvalConfig, args), args.protocol)
    if args.command == "finetune":
        from .evaluate.run import run_finetune

        return run_finetune(_configured(held, FinetuneConfig, args), progress=progress)
    if args.command == "train":
        from .evaluate.train import run_train

        return run_train(_configured(held, TrainConfig, args), progress=progress)
    if args.command == "predict":
        from .downstream.predict import run_predict

        return run_predict(_configured(held, PredictConfig, args), progress=progress)
    if args.command == "export":
        from .downstream.export import run_export

        return run_export(_configured(held, ExportConfig, args))
    if args.command == "study":
        cfg = _configured(held, StudyConfig, args)
        if cfg.task == "segmentation":
            from .study.dense import run_segmentation_study

            return run_segmentation_study(cfg, progress=progress)
        from .study.run import run_study

        return run_study(cfg, progress=progress)
    if args.command == "semisup":
        from .semisup import run_semisup

        return run_semisup(_configured(held, SemisupConfig, args), progress=progress)
    if args.command == "words":
        from .evaluate.words import word_queries

        return word_queries(args.checkpoint, args.words, args.analogy, args.k, args.export)
    if args.command == "demo":
        from .demo import run_demo, run_demo_study

        if args.study:
            return run_demo_study(args.out or "selfsup-study", args.config, progress=progress)
        return run_demo(args.out or "selfsup-demo", args.config, progress=progress)
    if args.command == "methods":
        from .methods import METHODS

        return {"methods": [{"name": n, "family": METHODS.get(n).family, "paper": METHODS.get(n).paper, "defaults": _recipe(METHODS.get(n))}
                            for n in METHODS.names()]}
    raise ConfigError(f"unknown command {args.command}")


def _recipe(cls) -> dict:
    """A method's training defaults, its hyper-parameters' defaults (``args``) and their types."""
    from dataclasses import asdict

    from .methods.base import RunBudget, method_arguments, method_defaults

    cifar = RunBudget(steps=1350, batch_size=256, n_images=50_000)  # the budget the minimums were measured at
    return {**asdict(cls.recipe), "args": method_defaults(cls),
            "arguments": [a.describe() for a in method_arguments(cls).values()],
            "minimum_images": cls.minimum_images, "budget_note": cls.budget_note or None,
            "cifar10_1350_steps": {f"{r.kind}:{r.name}": r.value for r in cls.for_budget(cifar)}}


def _print_dense_rows(result: dict) -> None:
    """finetune --task segmentation: mean IoU (and the first class's IoU) of scratch and pretrained per budget."""
    first = result["classes"][0]
    print(f"{'images':>7} {'scratch mIoU':>15} {'pretrained mIoU':>16} {'scratch IoU ' + first:>18} {'pretrained IoU ' + first:>20}")
    for r in result["rows"]:
        cells = [f"{100 * r[k]:5.1f} ± {100 * r[k + '_std']:4.1f}" for k in ("scratch_mean_iou", "pretrained_mean_iou")]
        cells += [f"{100 * r[k][0]:5.1f} ± {100 * r[k + '_std'][0]:4.1f}" for k in ("scratch_iou", "pretrained_iou")]
        print(f"{str(r['labeled_images']):>7} {cells[0]:>15} {cells[1]:>16} {cells[2]:>18} {cells[3]:>20}")


def _human(command: str, result: dict) -> None:
    if command == "finetune" and result.get("task") == "segmentation":
        _print_dense_rows(result)
    elif command in ("finetune", "demo") and "rows" in result and "summary" not in result:
        _print_rows(result["rows"])
        if "pretrain" in result:
            p = result["pretrain"]
            print(f"pretrained {p['method']} for {p['steps']} steps in {p['train_seconds']:.0f} s; "
                  f"demo took {result['seconds']:.0f} s; outputs in {result.get('out', '')}")
    elif command in ("study",) or (command == "demo" and "summary" in result):
        _print_summary(result)
    elif command == "words":
        for word, near in result["neighbours"].items():
            print(f"{word}: " + ", ".join(f"{w} {s:.2f}" for w, s in near))
        for query, near in result["analogies"].items():
            print(f"{query} ? " + ", ".join(f"{w} {s:.2f}" for w, s in near))
        if "exported" in result:
            print(f"wrote {result['exported']}")
    elif command == "methods":
        for m in result["methods"]:
            d = m["defaults"]
            args = ", ".join(f"{k}={v}" for k, v in d["args"].items())
            print(f"{m['name']:<22} {m['paper']}\n{'':<22} {d['backbone']}, {d['optimizer']} lr {d['base_lr']} x "
                  f"batch/256, weight decay {d['weight_decay']}, views {d['views']}; {args}")
            short = ", ".join(f"{k.split(':')[1]}={v}" for k, v in d["cifar10_1350_steps"].items())
            minimum = (f"beats random weights from {d['minimum_images']:,} images seen" if d["minimum_images"]
                       else d["budget_note"] or "minimum budget not measured")
            print(f"{'':<22} {minimum}" + (f"; at 1,350 steps of 256 on CIFAR-10: {short}" if short else ""))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def torchrun_command(argv: Sequence[str], devices: int, nodes: int) -> list[str]:
    """``selfsup pretrain --devices N [--nodes M] ...`` as the torchrun command it stands for."""
    if devices < 1 or nodes < 1:
        raise ConfigError("--devices and --nodes must be at least 1")
    rest, skip = [], False
    for arg in argv:  # drop the launcher's own flags; the workers get everything else
        if skip:
            skip = False
        elif arg in ("--devices", "--nodes"):
            skip = True
        elif not arg.startswith(("--devices=", "--nodes=")):
            rest.append(arg)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(devices)]
    if nodes == 1:
        launcher.append("--standalone")
    else:
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK") if v not in os.environ]
        if missing:
            raise ConfigError(f"--nodes {nodes}: set {', '.join(missing)} on every machine (or call torchrun yourself)")
        launcher += ["--nnodes", str(nodes), "--node-rank", os.environ["NODE_RANK"], "--master-addr",
                     os.environ["MASTER_ADDR"], "--master-port", os.environ["MASTER_PORT"]]
    return launcher + ["-m", "selfsup", *rest]


def _launch(argv: Sequence[str], args: argparse.Namespace) -> int:
    """Re-run this command under torchrun, after the checks that need no worker (so a bad flag, method
    or output folder still exits 2 here); rank 0 of the workers prints the result."""
    import subprocess
    from pathlib import Path

    from .utils.runlock import holder
    from .utils.runtime import prepare_out
    from .methods import METHODS, ONE_PROCESS_ONLY

    cfg = build_config(PretrainConfig, *_split(args, NOT_SETTINGS))
    if METHODS.get(cfg.method).players:
        raise ConfigError(f"{cfg.method}: {ONE_PROCESS_ONLY}")
    if not cfg.data and not cfg.resume:
        raise ConfigError("pretrain needs --data (a folder, archive, .npy/.npz, 'digits' or 'cifar10')")
    prepare_out(Path(cfg.out), cfg.resume, cfg.overwrite, create=False)
    owner = holder(Path(cfg.out))
    if owner is not None:  # rank 0 would refuse it too, after the other ranks had started
        raise ConfigError(f"{cfg.out} is in use by process {owner.get('pid')} on {owner.get('host')}: "
                          f"wait for it, or delete {Path(cfg.out) / '.lock'} if it is gone")
    command = torchrun_command(argv, args.devices, args.nodes)
    log.info("launching %d x %d processes: %s", args.nodes, args.devices, " ".join(command[1:]))
    # torchrun in a session of its own, so a terminal's Ctrl-C reaches it once, through this handler, and
    # it hands each signal to every worker once; its own exit on a signal is 128 + the signal, not a traceback.
    workers = subprocess.Popen([sys.executable, "-c", _TORCHRUN_ON_SIGNAL, *command[3:]], start_new_session=True)
    forward = {s: signal.signal(s, lambda signum, frame: workers.send_signal(signum)) for s in SIGNALS}
    try:
        return workers.wait()
    finally:
        for s, handler in forward.items():
            signal.signal(s, handler)


_TORCHRUN_ON_SIGNAL = """import sys
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.run import main
try:
    main(sys.argv[1:])
except SignalException as exc:
    sys.exit(128 + int(exc.sigval))
"""


def _continue_hint(command: str, stopped: Stopped) -> str:
    """How to carry on after a graceful stop."""
    if command == "study":
        return "; run the same command again to continue (finished work is kept)"
    return "; continue with --resume" if stopped.saved else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)  # usage errors exit 2 here
    quiet_rank = int(os.environ.get("RANK", "0")) != 0  # under torchrun, other ranks log warnings only
    logging.basicConfig(level=logging.WARNING if quiet_rank else logging.INFO, stream=sys.stderr,
                        format=f"selfsup{'[rank ' + os.environ['RANK'] + ']' if 'RANK' in os.environ else ''}: %(message)s")
    try:
        with stop_on_signals():
            if args.command == "pretrain" and (args.devices > 1 or args.nodes > 1) and "WORLD_SIZE" not in os.environ:
                return _launch(argv, args)
            result = run(args)
    except Stopped as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"selfsup: {exc}{_continue_hint(args.command, exc)}", file=sys.stderr)
        return exc.exit_code
    except SelfSupError as exc:
        print(f"selfsup: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("selfsup: error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure still ends in one clear line
        if os.environ.get("SELFSUP_DEBUG"):
            raise
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")  # some messages start blank
        print(f"selfsup: error: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 alone reports
    if args.json:
        print(json.dumps(result))
    else:
        _human(args.command, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
