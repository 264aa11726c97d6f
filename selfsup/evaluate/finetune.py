"""Fine-tune vs scratch on few labels, and the frozen-feature probes beside them.

The same downstream model (backbone + linear classifier) is trained twice on the same
labeled subset, from the pretrained encoder and from random initialization, with the same
architecture, augmentation and number of steps; each picks its learning rate from the same
grid on a validation part of the subset and is then retrained on the whole subset. With
fewer than two labels in some class there is nothing to validate on, and both use the
grid's smallest value. The test set is only ever used for the final score.

Images train with SGD + Nesterov momentum; texts with AdamW, the optimizer Transformers are
fine-tuned with (Devlin et al. 2019, Sec. 4; SGD is known to fit attention models poorly, Zhang
et al. 2020, https://arxiv.org/abs/1912.03194), each with its own default learning-rate grid.
"""
from __future__ import annotations

import functools
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..backbones import Backbone
from ..backbones.io import build_like
from ..data.images import Prepared
from ..downstream.model import Classifier
from ..data.splits import labeled_subset, save_subset, stratified_split
from ..engine.logger import COLUMNS, MetricsLogger
from ..engine.loop import Loop, StepResult
from ..engine.optim import param_groups
from ..engine.schedule import warmup_cosine
from ..utils.checkpoint import atomic_write_text
from ..utils.runtime import seed_everything, step_generator
from ..data.order import bucketed_order
from ..views import VIEW_CLASSES, Normalization, Views, ViewSettings, VolumeViews
from ..backbones.features import extract_features, model_input
from ..utils.knn import knn_predict, topk_accuracy
from .linear import fit_head, linear_probe

log = logging.getLogger("selfsup")

IMAGE_LR_GRID = (0.001, 0.003, 0.01)  # SGD, backbone (the new head x10)
TEXT_LR_GRID = (1e-4, 3e-4, 1e-3)  # AdamW; BERT-base uses 2e-5..5e-5, a small model trained briefly takes larger steps


def lr_grid_for(grid: list[float] | tuple[float, ...] | None, text: bool) -> list[float]:
    """The configured learning-rate grid, or (when empty) the modality's default."""
    return [float(x) for x in grid] if grid else list(TEXT_LR_GRID if text else IMAGE_LR_GRID)


@dataclass
class Downstream:
    """What every downstream training shares."""

    train: Prepared  # or a TextPool (token ids): then normalization is None and there is no augmentation
    test: Prepared
    num_classes: int
    normalization: Normalization | None
    image_size: int
    device: torch.device
    steps: int
    batch_size: int
    weight_decay: float
    lr_grid: list[float]
    val_fraction: float
    head_init: str = "random"  # "probe": LP-FT, the head starts as a linear probe; "random"
    warmup_fraction: float = 0.1
    head_lr_scale: float = 10.0  # the new classifier learns faster than the (pretrained) backbone
    groups: np.ndarray | None = None  # texts cut from one sentence share a group: one per tiny labeled subset
    # Where each training keeps its result (and, every ``checkpoint_every`` steps, its checkpoints), so a
    # re-run with --resume skips finished trainings and resumes an interrupted one; None: nothing kept.
    work: Path | None = None
    checkpoint_every: int = 0

    @property
    def text(self) -> bool:
        """Token ids (no normalization, no augmentation; AdamW) rather than images."""
        return self.normalization is None


def augmentation(channels: int) -> ViewSettings:
    """Light training augmentation: random resized crop (scale 0.5-1) and, for colour images, flips."""
    return ViewSettings(crop_scale=(0.5, 1.0), flip_p=0.5 if channels == 3 else 0.0, jitter_p=0.0, grayscale_p=0.0)


def augmentation_views(modality: str, channels: int, size: int, normalization: Normalization) -> Views | VolumeViews:
    """The light training augmentation of a modality: ``augmentation`` for images and (one crop and flip
    per clip) for clips; a mild crop, flips and intensity jitter for volumes."""
    if modality == "volume":
        return VolumeViews.preset("volume-light", size, normalization)
    return VIEW_CLASSES[modality]([augmentation(channels)], size, normalization)


def train_classifier(make_backbone: Callable[[], Backbone], ds: Downstream, indices: np.ndarray, lr: float,
                     seed: int, folder: Path | None = None, metrics: Path | None = None,
                     progress: bool = False) -> Classifier:
    """A classifier trained on ``ds.train[indices]`` from ``make_backbone()`` in the engine's loop:
    ``ds.steps`` steps of cross-entropy with warm-up and cosine decay. With a ``folder`` it checkpoints
    every ``ds.checkpoint_every`` steps there and resumes from the newest checkpoint it finds; with
    ``metrics`` it logs every 10 steps to METRICS/metrics.csv and TensorBoard."""
    seed_everything(seed)
    model = Classifier(make_backbone(), ds.num_classes).to(ds.device)
    if ds.head_init == "probe":
        # LP-FT (Kumar et al. 2022, https://arxiv.org/abs/2202.10054): start from a fitted linear
        # head so early gradients do not distort the features; applied alike to both inits.
        feats, pos = extract_features(model.backbone, ds.train, ds.normalization, ds.image_size, ds.device,
                                      indices=indices)
        weight, bias = fit_head(feats, torch.from_numpy(np.asarray(ds.train.labels)[indices[pos]]), ds.num_classes)
        with torch.no_grad():
            model.head.weight.copy_(weight)
            model.head.bias.copy_(bias)
    optimizer = _optimizer(model, ds, lr)
    warmup = int(ds.warmup_fraction * ds.steps)
    checkpoints = folder / "checkpoints" if folder is not None and ds.checkpoint_every else None
    loop = Loop(optimizer, ds.steps, lambda step: warmup_cosine(step, ds.steps, lr, warmup), lr, state=model,
                folder=checkpoints, checkpoint_every=ds.checkpoint_every, meta={"lr": lr, "seed": seed},
                log_every=10 if metrics is not None else 0, items_per_step=min(ds.batch_size, len(indices)),
                description="fine-tuning", progress=progress)
    start = loop.restore()
    if metrics is not None:
        loop.logger = MetricsLogger(metrics, resume_step=start, columns=COLUMNS[:6])
    model.train()
    loop.run(_classifier_forward(model, ds, indices, seed), start=start)
    return model


def _optimizer(model: Classifier, ds: Downstream, lr: float) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum for images, AdamW for texts; the new head at ``head_lr_scale`` x lr."""
    groups = param_groups(model.backbone, ds.weight_decay)
    groups.append({"params": list(model.head.parameters()), "weight_decay": ds.weight_decay,
                   "lr_scale": ds.head_lr_scale})
    for g in groups:
        g.pop("lars_exclude", None)
    return torch.optim.AdamW(groups, lr=lr) if ds.text else torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)


def _classifier_forward(model: Classifier, ds: Downstream, indices: np.ndarray, seed: int) -> Callable:
    """The loop's forward: cross-entropy on a batch drawn by (seed, step), lightly augmented (images) or
    from length-bucketed epochs (texts, so padding stays a small part of a batch)."""
    views = None if ds.text else augmentation_views(ds.train.modality, ds.train.spec.channels, ds.image_size, ds.normalization)
    labels = torch.from_numpy(np.asarray(ds.train.labels))
    batch = min(ds.batch_size, len(indices))
    lengths = getattr(ds.train, "lengths", None)

    @functools.lru_cache(maxsize=1)
    def epoch_batches(epoch: int) -> np.ndarray:
        return indices[bucketed_order(lengths[indices], batch, seed, epoch)].reshape(-1, batch)

    def forward(step: int, _batch: None, logging: bool, player: None) -> StepResult:
        generator = step_generator(seed, 3, step)
        if lengths is None:
            pick = indices[torch.randperm(len(indices), generator=generator)[:batch].numpy()]
        else:
            per_epoch = len(indices) // batch
            pick = epoch_batches(step // per_epoch)[step % per_epoch]
        _, images = next(ds.train.batches(pick, batch))
        x = images.to(ds.device) if views is None else views.one(images.to(ds.device), views.settings[0], generator)
        return StepResult(F.cross_entropy(model(x), labels[pick].to(ds.device)))

    return forward


@torch.no_grad()
def accuracy(model: Classifier, data: Prepared, indices: np.ndarray, image_size: int,
             normalization: Normalization | None, device: torch.device) -> float:
    """Top-1 of ``model`` on ``data[indices]``, unaugmented."""
    model.eval()
    correct = total = 0
    labels = np.asarray(data.labels)
    lengths = getattr(data, "lengths", None)
    if lengths is not None:  # texts in length order: each batch is padded to little more than its own texts
        indices = indices[np.argsort(lengths[indices], kind="stable")]
    for pos, images in data.batches(indices, 512):
        pred = model(model_input(images, image_size, normalization, device)).argmax(1).cpu()
        correct += int((pred.numpy() == labels[indices[pos]]).sum())
        total += len(pos)
    return correct / max(total, 1)


def trained_accuracy(make_backbone: Callable[[], Backbone], ds: Downstream, indices: np.ndarray, lr: float, seed: int,
                     scored: Prepared, scored_indices: np.ndarray, key: str | None = None) -> float:
    """Accuracy on ``scored[scored_indices]`` of a classifier trained on ``indices`` at ``lr``. With
    ``ds.work`` and a ``key`` the training's result is kept in WORK/KEY/result.json and read back on a
    re-run instead of training again; a training killed midway resumes from WORK/KEY/checkpoints."""
    folder = ds.work / key if ds.work is not None and key else None
    if folder is not None and (folder / "result.json").exists():
        return float(json.loads((folder / "result.json").read_text())["accuracy"])
    model = train_classifier(make_backbone, ds, indices, lr, seed, folder)
    score = accuracy(model, scored, scored_indices, ds.image_size, ds.normalization, ds.device)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "result.json", json.dumps({"accuracy": score, "lr": lr, "seed": seed}))
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # the result is what a re-run needs
    return score


def validation_scores(make_backbone: Callable[[], Backbone], ds: Downstream, indices: np.ndarray, seed: int,
                      key: str | None = None) -> dict[float, float]:
    """Accuracy on a held-out part of ``indices`` of a classifier trained on the rest at each of the grid's
    learning rates; empty when some class has fewer than two labels (nothing to validate on)."""
    labels = np.asarray(ds.train.labels)[indices]
    if np.bincount(labels)[np.unique(labels)].min() < 2:
        return {}
    fit, val = stratified_split(labels, ds.val_fraction, seed)
    return {lr: trained_accuracy(make_backbone, ds, indices[fit], lr, seed, ds.train, indices[val],
                                 key and f"{key}/val-lr{lr:g}")
            for lr in ds.lr_grid}


def best_lr(scores: dict[float, float], grid: list[float]) -> float:
    """The validated learning rate with the best accuracy (the first on ties), or the grid's gentlest."""
    return max(scores, key=scores.__getitem__) if scores else min(grid)


def pick_lr(make_backbone: Callable[[], Backbone], ds: Downstream, indices: np.ndarray, seed: int,
            key: str | None = None) -> float:
    """The grid's learning rate with the best accuracy on a held-out part of ``indices``."""
    return best_lr(validation_scores(make_backbone, ds, indices, seed, key), ds.lr_grid)


def finetuned_accuracy(make_backbone: Callable[[], Backbone], ds: Downstream, indices: np.ndarray,
                       seed: int, key: str | None = None) -> tuple[float, float]:
    """Test accuracy of a classifier trained on ``indices`` from ``make_backbone()`` (random or pretrained
    weights), and the learning rate picked for it inside ``indices`` (never on the test set)."""
    lr = pick_lr(make_backbone, ds, indices, seed, key)
    score = trained_accuracy(make_backbone, ds, indices, lr, seed, ds.test, np.arange(len(ds.test)),
                             key and f"{key}/final")
    return score, lr


def compare(pretrained: Backbone, ds: Downstream, budgets: list[tuple[str, int | None, float | None]], seeds: int,
            out: Path, progress: bool = True) -> list[dict]:
    """One row per label budget: scratch and pretrained fine-tuning, linear probe and kNN (mean ± std)."""
    spec = pretrained.spec
    state = {k: v.clone() for k, v in pretrained.state_dict().items()}

    def from_scratch() -> Backbone:
        return build_like(spec, ds.image_size)

    def from_pretrained() -> Backbone:
        backbone = build_like(spec, ds.image_size)
        backbone.load_state_dict(state)
        return backbone

    pretrained = pretrained.to(ds.device)
    all_labels = np.asarray(ds.train.labels)
    test_feats, test_pos = extract_features(pretrained, ds.test, ds.normalization, ds.image_size, ds.device)
    test_labels = torch.from_numpy(np.asarray(ds.test.labels)[test_pos])
    rows = []
    bar = tqdm(total=len(budgets) * seeds, desc="fine-tune vs scratch", file=sys.stderr, disable=not progress)
    for name, per_class, fraction in budgets:
        results: dict[str, list[float]] = {"scratch": [], "pretrained": [], "linear": [], "knn": []}
        chosen: dict[str, list[float]] = {"scratch": [], "pretrained": []}
        n_labels = 0
        for seed in range(seeds):
            subset = labeled_subset(all_labels, seed, per_class=per_class, fraction=fraction, groups=ds.groups)
            n_labels = len(subset)
            save_subset(out, f"{name}-seed{seed}", [ds.train.collection.keys[i] for i in subset])
            for init, make in (("scratch", from_scratch), ("pretrained", from_pretrained)):
                score, lr = finetuned_accuracy(make, ds, subset, seed, f"{name}-seed{seed}/{init}")
                results[init].append(score)
                chosen[init].append(lr)
            feats, pos = extract_features(pretrained, ds.train, ds.normalization, ds.image_size, ds.device, indices=subset)
            sub_labels = torch.from_numpy(all_labels[subset[pos]])
            scores, _ = linear_probe(feats, sub_labels, test_feats, ds.num_classes, seed)
            results["linear"].append(topk_accuracy(scores, test_labels, (1,))[1])
            knn_scores = knn_predict(feats, sub_labels, test_feats, ds.num_classes)
            results["knn"].append(topk_accuracy(knn_scores, test_labels, (1,))[1])
            bar.update(1)
        row = {"labels_per_class": per_class if per_class is not None else ("all" if fraction is None else None),
               "label_fraction": fraction, "n_labels": n_labels, "seeds": seeds}
        for key, values in results.items():
            field = "pretrained_accuracy" if key == "pretrained" else f"{key}_accuracy"
            row[field] = float(np.mean(values))
            row[f"{field}_std"] = float(np.std(values))
        row["scratch_lr"], row["pretrained_lr"] = chosen["scratch"], chosen["pretrained"]
        rows.append(row)
    bar.close()
    return rows
