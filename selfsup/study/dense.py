"""``selfsup study --task segmentation``: what self-supervision buys when labels are masks.

For each method: pretrain on the pool (a segmentation source's training and unlabeled images, never a
mask or a test image; or reuse ``--checkpoint``), then for every budget of labeled images
(``--labeled-images 1,2,5,all``) and seed, train a new U-Net decoder (``heads.unet``) over

- ``scratch``: the encoder's architecture from random weights (once per architecture),
- each pretrained encoder (evaluation ``finetune``),
- ``imagenet`` or a weights file when ``--baselines`` names them (fine-tuned like the others),

all on the same labeled images (picked by seed), with one recipe (``evaluate.segment``): the learning
rate picked on held-out labeled images (with one image: the grid's smallest), IoU on the test images,
whole, through sliding windows. Every finished training is appended to OUT/results.jsonl (a re-run
continues), and the report shows mean IoU against labeled images, per-class IoU, and for a few test
slices the image, its true mask and each row's predicted mask at the smallest budget (seed 0).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..backbones import Backbone
from ..backbones.io import build_like, load_backbone
from ..backbones.pretrained import imagenet_normalization
from ..config import StudyConfig, save_yaml, to_dict
from ..data.segmentation import MaskedImages
from ..data.splits import save_subset
from ..downstream.model import DensePreprocessing
from ..evaluate.finetune import best_lr
from ..evaluate.segment import SEGMENTATION_LR_GRID, DenseDownstream, trained_scores, validation_scores
from ..evaluate.train_dense import (DEFAULT_CROP, INFERENCE_WINDOW, converted, labeled_images, segmentation_budgets,
                                    segmentation_split)
from ..methods import METHODS
from ..utils.checkpoint import atomic_write_text
from ..utils.errors import ConfigError
from ..utils.runtime import resolve_device
from ..utils.segmetrics import confusion, scores
from ..views import Normalization
from .plots import plot_label_efficiency, plot_overlays, source_name
from .report import environment, write_report
from .results import ResultLog, budget_name, summarize, write_tables
from .run import Encoder, _baseline_weights, _guard_out, _names, _pretrained, check_baselines, row_name

log = logging.getLogger("selfsup")
OVERLAY_SLICES = 3  # test images shown in the report's overlays
ROW_FIELDS = ("method", "evaluation", "budget", "n_labels", "seed", "mean_iou", "mean_dice", "pixel_accuracy",
              "lr", "seconds", "backbone")


def run_segmentation_study(cfg: StudyConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or continue) the segmentation study in ``cfg.out``; returns what results.json holds, plus paths."""
    started = time.perf_counter()
    names, checkpoints, baselines, budgets = _plan(cfg)
    check_baselines(cfg, baselines, names, checkpoints)
    out = Path(cfg.out)
    _guard_out(out, cfg)
    save_yaml(to_dict(cfg), out / "config.yaml")
    timings_path = out / "timings.json"
    timings: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    device = resolve_device(cfg.device)
    encoders = _encoders(cfg, names, checkpoints, out, progress, timings)
    labeled = cfg.labeled or cfg.data
    train, test = segmentation_split(labeled, cfg.test, cfg.strict, out)  # type: ignore[arg-type]
    smallest = min(min(m.shape) for m in [*train.masks, *test.masks])
    crop = min(cfg.crop_size or DEFAULT_CROP, smallest)
    window = max(crop, min(INFERENCE_WINDOW, smallest))
    shown = np.arange(min(OVERLAY_SLICES, len(test)))
    results = ResultLog(out / "results.jsonl")
    units = _units(encoders, baselines, budgets, cfg.seeds)
    todo = [u for u in units if (*row_name(encoders, *u[:2]), budget_name(u[2]), u[3]) not in results]
    bar = tqdm(total=len(units), initial=len(units) - len(todo), desc="study", file=sys.stderr, disable=not progress)
    data_of: dict[int, tuple[MaskedImages, MaskedImages]] = {}  # channels -> the pairs with that many
    for enc, evaluation, budget, seed in todo:
        channels = enc.spec.in_channels
        if channels not in data_of:
            if channels != train.channels:
                log.warning("the images have %d channel(s), %s reads %d: converted", train.channels, enc.name, channels)
            data_of[channels] = (converted(train, channels), converted(test, channels))
        pairs = data_of[channels]
        subset = labeled_images(budget_name(budget), seed, len(pairs[0]))
        save_subset(out, f"images{budget_name(budget)}-seed{seed}", [train.keys[int(i)] for i in subset])
        method, row_evaluation = row_name(encoders, enc, evaluation)
        t0 = time.perf_counter()
        smallest_budget = budget == min(b or len(train) for b in budgets) and seed == 0
        key = f"images{budget_name(budget)}-seed{seed}/{_slug(method)}"  # its folder under OUT/trainings
        row = _trained_row(cfg, out, key, enc, evaluation, pairs, subset, seed, (crop, window), device,
                           shown if smallest_budget else ())
        results.add({"method": method, "evaluation": row_evaluation, "budget": budget_name(budget),
                     "n_labels": int(len(subset)), "seed": seed, **row, "seconds": round(time.perf_counter() - t0, 3),
                     "backbone": enc.info["backbone"]["name"]})
        timings[f"{row_evaluation} (all runs)"] = timings.get(f"{row_evaluation} (all runs)", 0.0) + time.perf_counter() - t0
        atomic_timings(out, timings)
        bar.update(1)
    bar.close()
    scratch_of = {row_name(encoders, enc, e)[0]: enc.scratch for enc in encoders
                  for e in ["finetune", *(f"baseline:{b}" for b in baselines if b != "scratch")]}
    return _report(cfg, out, list(results.rows.values()), train, test, scratch_of, timings, device, started)


def atomic_timings(out: Path, timings: dict[str, float]) -> None:
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=1))


def _encoders(cfg: StudyConfig, names: list[str], checkpoints: dict[str, str], out: Path, progress: bool,
              timings: dict[str, float]) -> list[Encoder]:
    """Each method's encoder, pretrained into OUT/pretrain/NAME (resumed, reused) or given."""
    encoders = []
    for name in names:
        path = checkpoints.get(name) or _pretrained(name, cfg, out, progress, timings)
        backbone, info = load_backbone(path)
        if info.get("modality", "image") != "image":
            raise ConfigError(f"segmentation needs image encoders; {name} ({path}) is a {info['modality']} encoder")
        encoders.append(Encoder(name, path, backbone, info))
        atomic_timings(out, timings)
    if len({e.architecture for e in encoders}) > 1:
        for enc in encoders:
            enc.scratch = f"scratch ({enc.info['backbone']['name']})"
    return encoders


def _trained_row(cfg: StudyConfig, out: Path, key: str, enc: Encoder, evaluation: str,
                 pairs: tuple[MaskedImages, MaskedImages], subset: np.ndarray, seed: int, sides: tuple[int, int],
                 device: torch.device, keep: Sequence[int]) -> dict[str, Any]:
    """The learning rate picked on held-out labeled images, then the test scores of a U-Net on ``enc``'s
    ``evaluation`` weights trained on ``subset`` (kept under OUT/trainings/KEY, read back on a re-run)."""
    train, test = pairs
    crop, window = sides
    make, normalization = _initial(enc, evaluation)
    channels = enc.spec.in_channels
    ds = DenseDownstream(train=train, test=test,
                         preprocess=DensePreprocessing(channels, list(normalization.mean), list(normalization.std), window),
                         crop=crop, device=device, steps=cfg.finetune_steps, batch_size=cfg.finetune_batch_size,
                         weight_decay=cfg.finetune_weight_decay,
                         lr_grid=[float(x) for x in cfg.lr_grid] or list(SEGMENTATION_LR_GRID),
                         val_fraction=cfg.val_fraction, work=out / "trainings")
    validation = validation_scores(make, ds, subset, seed, key)
    lr = best_lr(validation, ds.lr_grid)
    result = trained_scores(make, ds, subset, lr, seed, test, np.arange(len(test)), f"{key}/final", keep)
    return {"accuracy": result["mean_iou"], **{k: result[k] for k in ("mean_iou", "iou", "mean_dice", "dice", "pixel_accuracy")},
            "lr": lr, "validation_mean_iou": validation,
            "predicted": {test.keys[int(i)]: f"trainings/{key}/final/{p}" for i, p in result.get("predicted", {}).items()}}


def _plan(cfg: StudyConfig) -> tuple[list[str], dict[str, str], list[str], list[int | None]]:
    """The methods, the given checkpoints, the baselines beyond scratch, the budgets: each checked."""
    if cfg.labels_per_class != StudyConfig.labels_per_class:
        raise ConfigError("a segmentation study counts labeled images: pass --labeled-images (not --labels-per-class)")
    checkpoints = {str(k): str(v) for k, v in (cfg.checkpoints or {}).items()}
    listed = _names(cfg.methods)
    names = listed + [n for n in checkpoints if n not in listed]
    if not names:
        raise ConfigError("study needs --methods or --checkpoint NAME=PATH")
    for name in names:
        if name not in checkpoints:
            METHODS.get(name)
    baselines = _names(cfg.baselines)
    for baseline in baselines:
        if baseline not in ("scratch", "imagenet") and not Path(baseline).is_file():
            raise ConfigError(f"--baselines: {baseline!r} is neither scratch, imagenet nor a weights file")
    if not (cfg.labeled or cfg.data):
        raise ConfigError("study needs --labeled (a folder or archive with images/ and masks/)")
    return names, checkpoints, baselines, segmentation_budgets(cfg.labeled_images)


def _units(encoders: list[Encoder], baselines: list[str], budgets: list[int | None],
           seeds: int) -> list[tuple[Encoder, str, int | None, int]]:
    """Every (encoder, evaluation, budget, seed): scratch and the baselines once per architecture."""
    units = []
    for budget in budgets:
        for seed in range(1 if budget is None else seeds):
            references = [b if b == "scratch" else f"baseline:{b}" for b in baselines]
            first_of_architecture = list({e.architecture: e for e in reversed(encoders)}.values())[::-1]
            units += [(enc, reference, budget, seed) for reference in references for enc in first_of_architecture]
            units += [(enc, "finetune", budget, seed) for enc in encoders]
    return units


def _initial(enc: Encoder, evaluation: str) -> tuple[Callable[[], Backbone], Normalization]:
    """A fresh encoder per training (random, pretrained or a baseline's weights) and its input normalization."""
    normalization = Normalization(**enc.info["normalization"])
    if evaluation == "scratch":
        state = None
    elif evaluation.startswith("baseline:"):  # published weights read the input they were trained on
        state = _baseline_weights(enc, evaluation.partition(":")[2])
        normalization = imagenet_normalization(enc.spec.in_channels)
    else:
        state = {k: v.detach().clone() for k, v in enc.backbone.state_dict().items()}

    def make() -> Backbone:
        backbone = build_like(enc.spec, enc.image_size)
        if state is not None:
            backbone.load_state_dict(state)
        return backbone

    return make, normalization


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _report(cfg: StudyConfig, out: Path, rows: list[dict[str, Any]], train: MaskedImages, test: MaskedImages,
            scratch_of: dict[str, str], timings: dict[str, float], device: torch.device,
            started: float) -> dict[str, Any]:
    """results.csv/json, the curve, the overlays and report.html."""
    summary = summarize(rows)
    plot_label_efficiency(summary, out / "label_efficiency.png", f"{source_name(cfg.labeled or cfg.data)}: test mean IoU",
                          ylabel="test mean IoU (%)", xlabel="labeled images")
    overlays = _overlays(rows, test, out)
    timings["study (this run)"] = time.perf_counter() - started
    atomic_timings(out, timings)
    extra = {"task": "segmentation", "classes": train.classes, "timings": timings,
             "environment": environment(str(device)), "metric": "mean IoU",
             "test_set": f"{test.name} ({len(test)} images)", "labeled_set": f"{train.name} ({len(train)} images)",
             "per_class_iou": _per_class(rows, train.classes)}
    per_class = [f"iou_{c}" for c in train.classes]  # one column per class, named by its mask value
    rows = [{**r, **dict(zip(per_class, r["iou"]))} for r in rows]
    payload = write_tables(rows, out, extra, scratch_of, fields=(*ROW_FIELDS, *per_class))
    report = write_report(out, payload, summary, to_dict(cfg), title=f"selfsup segmentation study: {', '.join(scratch_of)}",
                          task="segmentation", overlays=overlays)
    return {**payload, "out": str(out), "report": str(report), "seconds": round(time.perf_counter() - started, 3)}


def _per_class(rows: list[dict[str, Any]], classes: list[str]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of each class's IoU, per method, evaluation and budget."""
    groups: dict[tuple[str, str, str], list[list[float]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["evaluation"], r["budget"]), []).append(r["iou"])
    out = []
    for (method, evaluation, budget), values in groups.items():
        v = np.array(values, dtype=float)
        out.append({"method": method, "evaluation": evaluation, "budget": budget, "classes": classes,
                    "iou": np.nanmean(v, 0).tolist(), "iou_std": np.nanstd(v, 0).tolist(), "seeds": len(values)})
    return out


def _overlays(rows: list[dict[str, Any]], test: MaskedImages, out: Path) -> Path | None:
    """Image, true mask and each row's predicted mask for the report's test slices (smallest budget, seed 0)."""
    shown = [r for r in rows if r.get("predicted")]
    if not shown:
        return None
    order = sorted(shown, key=lambda r: (r["evaluation"] != "scratch", r["evaluation"] != "finetune" or
                                         r["method"] == "imagenet", r["method"]))
    keys = list(order[0]["predicted"])
    index = {k: i for i, k in enumerate(test.keys)}
    k = len(test.classes)
    columns: dict[str, list[np.ndarray]] = {}
    for r in order:
        label = f"{r['method']} ({r['n_labels']} image{'s' if r['n_labels'] != 1 else ''})"
        columns[label] = [np.asarray(Image.open(out / r["predicted"][key])) for key in keys
                          if (out / r["predicted"][key]).exists()]
    columns = {name: masks for name, masks in columns.items() if len(masks) == len(keys)}
    images = [test.images[index[key]].numpy() for key in keys]
    truths = [test.masks[index[key]].numpy() for key in keys]
    ious = {name: [scores(confusion(torch.from_numpy(p.astype(np.int64)), torch.from_numpy(t), k))["mean_iou"]
                   for p, t in zip(masks, truths)] for name, masks in columns.items()}
    background = int(np.bincount(np.concatenate([t.ravel() for t in truths]), minlength=k).argmax())
    return plot_overlays(keys, images, truths, columns, ious, background, test.classes, out / "overlays.png")


__all__ = ["run_segmentation_study"]
