"""``selfsup train``: one downstream model on the labels, saved for ``predict``, ``export`` and ``load_model``.

The encoder starts from a pretrained run (``--checkpoint``), from random weights, from ImageNet's
published weights or from a local weights file (``--init``), and is then either fine-tuned with
``finetune``'s recipe (learning rate picked from the grid on a validation split of the labels, never on
the test set; the new head at 10x the rate; then retrained on all the labels) or frozen under a linear
head fitted on its features (``--freeze``: L-BFGS logistic regression, its L2 strength by
cross-validation, the right model for a handful of labels). The test set scores the final model once.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..backbones import Backbone, build_backbone
from ..backbones.features import extract_features
from ..backbones.io import build_like, load_backbone
from ..backbones.pretrained import imagenet_normalization, load_initial_weights
from ..config import TrainConfig, resumed_config, save_yaml, to_dict
from ..data.images import ImageSpec, Prepared, probe_spec
from ..data.splits import labeled_subset, parse_labels_per_class, save_subset, train_test
from ..data.sources import Collection, open_source
from ..downstream.model import INFO, Classifier, Preprocessing, save_model
from ..utils.checkpoint import atomic_write_text
from ..utils.errors import ConfigError, SelfSupError
from ..utils.runtime import prepare_out, resolve_device, seed_everything
from ..views import Normalization, estimate_normalization
from .finetune import Downstream, accuracy, best_lr, lr_grid_for, train_classifier, validation_scores
from .linear import chosen_decay, fit_head
from .train_dense import run_train_segmentation

log = logging.getLogger("selfsup")


@dataclass
class Start:
    """Where the downstream model's encoder starts: a fresh copy per training (``make``), the input it
    reads (``spec``, ``normalization``: None until estimated from the labels, for random weights)."""

    make: Callable[[], Backbone]
    spec: ImageSpec
    normalization: Normalization | None
    name: str  # "checkpoint PATH", "random", "imagenet" or a weights file


def starting_point(cfg: TrainConfig, labeled: Collection) -> Start:
    """The encoder ``cfg`` starts from: its checkpoint's (with that encoder's sizes and normalization), or
    ``--backbone`` at the data's size with random, ImageNet or file weights."""
    if cfg.checkpoint:
        if cfg.init:
            raise ConfigError("give --checkpoint (a pretrained encoder) or --init, not both")
        if cfg.image_size:
            raise ConfigError("--image-size applies without --checkpoint; an encoder reads images at its own size")
        encoder, info = load_backbone(cfg.checkpoint)
        if info.get("modality", "image") != "image":
            raise ConfigError(f"train makes image classifiers; {cfg.checkpoint} is a {info['modality']} encoder "
                              "(score it with selfsup finetune)")
        state = {k: v.clone() for k, v in encoder.state_dict().items()}

        def pretrained() -> Backbone:
            backbone = build_like(encoder.spec, info["image_size"])
            backbone.load_state_dict(state)
            return backbone

        return Start(pretrained, ImageSpec.of_encoder(info), Normalization(**info["normalization"]),
                     f"checkpoint {cfg.checkpoint}")
    init = cfg.init or "random"
    spec = probe_spec(labeled, cfg.image_size)

    def fresh() -> Backbone:
        return build_backbone(cfg.backbone, spec.channels, cfg.stem, spec.image_size)

    if init == "random":
        return Start(fresh, spec, None, "random")
    template = fresh()
    load_initial_weights(template, init)
    weights = {k: v.clone() for k, v in template.state_dict().items()}

    def published() -> Backbone:
        backbone = fresh()
        backbone.load_state_dict(weights)
        return backbone

    return Start(published, spec, imagenet_normalization(spec.channels), init)


def _subset(cfg: TrainConfig, labels: np.ndarray) -> np.ndarray:
    """The labeled examples trained on: all, N per class or a fraction of each class, fixed by the seed."""
    if cfg.labels_per_class and cfg.label_fraction is not None:
        raise ConfigError("give --labels-per-class or --label-fraction, not both")
    budgets = parse_labels_per_class(cfg.labels_per_class or "all")
    if len(budgets) != 1:
        raise ConfigError(f"train takes one label budget (N or all), got --labels-per-class {cfg.labels_per_class}")
    return labeled_subset(labels, cfg.seed, per_class=budgets[0], fraction=cfg.label_fraction)


def run_train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train, score and save the downstream model in ``cfg.out``; returns the result (OUT/result.json)."""
    started = time.perf_counter()
    out = Path(cfg.out)
    if cfg.resume:
        cfg = resumed_config(TrainConfig, out, {"device": cfg.device, "num_workers": cfg.num_workers})
        if (out / "result.json").exists() and (out / INFO).exists():
            log.info("%s holds a finished model; nothing to resume", out)
            return json.loads((out / "result.json").read_text())
    if not cfg.labeled:
        raise ConfigError("train needs --labeled (a labeled folder, archive, .npz or 'digits')")
    device = resolve_device(cfg.device)
    if cfg.task == "segmentation":
        return run_train_segmentation(cfg, out, device, started, progress)
    if cfg.labeled_images:
        raise ConfigError("--labeled-images is segmentation's budget; classification takes --labels-per-class")
    opened = open_source(cfg.labeled)
    start = starting_point(cfg, opened.get("train", opened.get("all")))  # before any output: bad weights write nothing
    prepare_out(out, resume=cfg.resume, overwrite=cfg.overwrite)
    if not cfg.resume:
        save_yaml(to_dict(cfg), out / "config.yaml")
    train_set, test_set = train_test(cfg.labeled, cfg.test, out)
    if test_set is None or not train_set.has_labels or not test_set.has_labels:
        raise ConfigError("--labeled (and --test) must carry labels: class subfolders or a label array")
    train, test = Prepared(train_set, start.spec, strict=cfg.strict), Prepared(test_set, start.spec, strict=cfg.strict)
    classes = list(train.collection.classes or range(int(train.labels.max()) + 1))
    if len(classes) < 2:
        raise SelfSupError("the labeled set needs at least two classes")
    normalization = start.normalization or _label_normalization(train)
    subset = _subset(cfg, np.asarray(train.labels))
    save_subset(out, "labeled", [train.collection.keys[i] for i in subset])
    ds = Downstream(train=train, test=test, num_classes=len(classes), normalization=normalization,
                    image_size=start.spec.image_size, device=device, steps=cfg.steps, batch_size=cfg.batch_size,
                    weight_decay=cfg.weight_decay, lr_grid=lr_grid_for(cfg.lr_grid, False), val_fraction=cfg.val_fraction,
                    head_init=cfg.head_init, work=out / "trainings", checkpoint_every=cfg.checkpoint_every)
    if cfg.freeze:
        model, fitted = _linear_on_frozen(start, ds, subset, cfg.seed)
    else:
        scores = validation_scores(start.make, ds, subset, cfg.seed, "validation")
        lr = best_lr(scores, ds.lr_grid)
        model = train_classifier(start.make, ds, subset, lr, cfg.seed, folder=out, metrics=out, progress=progress)
        fitted = {"lr": lr, "validation_accuracy": scores.get(lr), "validation_scores": {f"{k:g}": v for k, v in scores.items()}}
    test_accuracy = accuracy(model, test, np.arange(len(test)), ds.image_size, normalization, device)
    result = {"model": str(out), "init": start.name, "freeze": cfg.freeze, "n_labels": int(len(subset)),
              "n_test": len(test), "test_accuracy": test_accuracy, **fitted, "classes": classes}
    preprocess = Preprocessing(start.spec.channels, start.spec.load_size, start.spec.image_size,
                               list(normalization.mean), list(normalization.std))
    save_model(out, model, classes, preprocess, {**result, "config": to_dict(replace(cfg, resume=False, overwrite=False))})
    result["seconds"] = round(time.perf_counter() - started, 3)
    atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    return result


def _label_normalization(train: Prepared) -> Normalization:
    """Per-channel statistics of (up to 10,000 of) the labeled images: a random encoder's normalization."""
    _, images = next(train.batches(np.arange(min(len(train), 10000)), 10000))
    return estimate_normalization(images)


def _linear_on_frozen(start: Start, ds: Downstream, subset: np.ndarray, seed: int) -> tuple[Classifier, dict]:
    """The frozen encoder under a logistic-regression head fitted on its features of ``subset``: the L2
    strength by cross-validation (its accuracy is the validation accuracy), the features standardized
    for the fit and the head expressed on the raw features, so the model is one linear layer on top."""
    seed_everything(seed)
    model = Classifier(start.make(), ds.num_classes).to(ds.device)
    features, kept = extract_features(model.backbone, ds.train, ds.normalization, ds.image_size, ds.device, indices=subset)
    labels = torch.from_numpy(np.asarray(ds.train.labels)[subset[kept]])
    mean, std = features.mean(0), features.std(0, unbiased=False).clamp(min=1e-6)
    decay, cv_accuracy = chosen_decay((features - mean) / std, labels, ds.num_classes, seed)
    weight, bias = fit_head(features, labels, ds.num_classes, decay)
    with torch.no_grad():
        model.head.weight.copy_(weight)
        model.head.bias.copy_(bias)
    return model, {"lr": None, "weight_decay": decay, "validation_accuracy": cv_accuracy}
