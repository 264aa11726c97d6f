"""``selfsup semisup``: train a classifier on a few labels and the unlabeled pool together.

Per step: B labeled images (a class-balanced subset fixed by seed, the study's subsets), μB
unlabeled ones, both drawn by a generator seeded by (seed, step) so a resumed run replays them;
one forward pass over [labeled weak, unlabeled weak, unlabeled strong] (shared batch statistics, as
FixMatch interleaves them); the method's supervised and consistency terms; SGD with Nesterov
momentum and FixMatch's cosine decay lr·cos(7πk / 16K). The model starts from random weights or
from any selfsup checkpoint. An EMA of the weights (FixMatch) is what is evaluated and saved. The
test split is used once, at the end.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from ..backbones import Backbone, build_backbone
from ..backbones.io import load_backbone, save_encoder
from ..config import SemisupConfig, resumed_config, save_yaml, to_dict, typed_arguments
from ..data.images import ImageSpec, Prepared, probe_spec
from ..data.splits import labeled_subset, parse_labels_per_class, save_subset, train_test
from ..utils import checkpoint as ckpt
from ..engine.logger import MetricsLogger
from ..engine.optim import param_groups
from ..utils.runtime import prepare_out, resolve_device, seed_everything, step_generator
from ..engine.loop import Loop, StepResult, budget_steps, seconds_per_step, steps_in_time
from ..utils.errors import ConfigError
from ..downstream.model import Classifier, Preprocessing, save_model
from ..evaluate.finetune import accuracy
from ..views import Normalization, estimate_normalization, eval_transform
from ..views.randaugment import rand_augment
from .methods import SEMISUP_METHODS, UDA, FixMatch

log = logging.getLogger("selfsup")
DEFAULT_STEPS = 1000  # without --steps or --time-limit
COLUMNS = ["step", "loss", "supervised_loss", "unlabeled_loss", "mask_rate", "lr", "images_per_second", "seconds"]


def weak_view(images: torch.Tensor, generator: torch.Generator, shift: float = 0.125) -> torch.Tensor:
    """FixMatch's weak augmentation of a uint8 batch: a horizontal flip (colour images, p = 0.5) and a
    translation by up to ``shift`` of the side (reflect-padded, then cropped back)."""
    b, c, h, w = images.shape
    pad = int(round(shift * max(h, w)))
    flips = torch.rand(b, generator=generator) < (0.5 if c == 3 else 0.0)
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator)
    x = torch.where(flips.to(images.device)[:, None, None, None], images.flip(-1), images)
    padded = nn.functional.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(images.dtype) if pad else x
    return torch.stack([padded[i, :, int(dy):int(dy) + h, int(dx):int(dx) + w] for i, (dy, dx) in enumerate(offsets)])


def _cosine_lr(step: int, total: int, lr: float) -> float:
    return lr * math.cos(7 * math.pi * step / (16 * total))


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """ema ← d·ema + (1 − d)·model with d = min(decay, (1 + t)/(10 + t)): the average warms up over the
    first steps (as TensorFlow's ExponentialMovingAverage with num_updates), so short runs are not
    scored on weights still close to their initialization."""
    decay = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.state_dict().values(), model.state_dict().values()):
        if e.dtype.is_floating_point:
            e.mul_(decay).add_(p, alpha=1 - decay)
        else:
            e.copy_(p)


@dataclass
class SemisupRun:
    """Everything one semi-supervised training shares: the model and its EMA, the optimizer, the data."""

    method: UDA | FixMatch
    model: Classifier
    ema: Classifier
    optimizer: torch.optim.Optimizer
    labeled: Prepared
    pool: Prepared
    subset: np.ndarray
    normalization: Normalization
    steps: int
    batch_size: int
    ratio: int
    lr: float
    ema_decay: float
    seed: int
    device: torch.device

    @classmethod
    def build(cls, method: UDA | FixMatch, backbone: Backbone, labeled: Prepared, pool: Prepared, subset: np.ndarray,
              normalization: Normalization, num_classes: int, cfg: SemisupConfig,
              device: torch.device) -> "SemisupRun":
        """The run ``cfg`` describes: its steps (``DEFAULT_STEPS`` when not given), batch size, μ,
        optimizer, EMA and seed."""
        seed_everything(cfg.seed)
        model = Classifier(backbone, num_classes).to(device)
        groups = param_groups(model, cfg.weight_decay)
        for g in groups:
            g.pop("lars_exclude")
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
        ratio = cfg.unlabeled_ratio if cfg.unlabeled_ratio is not None else method.unlabeled_ratio
        ema_decay = cfg.ema_decay if cfg.ema_decay is not None else method.ema_decay
        steps = cfg.steps if cfg.steps is not None else DEFAULT_STEPS
        return cls(method, model, copy.deepcopy(model).requires_grad_(False), optimizer, labeled, pool, subset,
                   normalization, steps, cfg.batch_size, ratio, cfg.lr, ema_decay, cfg.seed, device)

    @property
    def evaluated(self) -> Classifier:
        """FixMatch's EMA of the weights, or the weights themselves."""
        return self.ema if self.ema_decay > 0 else self.model

    def forward(self, step: int, batch: None = None, logging: bool = False, player: None = None) -> StepResult:
        """The loss of one step on a labeled and an unlabeled batch drawn by (seed, step)."""
        generator = step_generator(self.seed, 11, step)
        n_unlabeled = self.batch_size * self.ratio
        pick = self.subset[torch.randint(len(self.subset), (self.batch_size,), generator=generator).numpy()]
        _, x_labeled = next(self.labeled.batches(pick, len(pick)))
        views = [weak_view(x_labeled, generator)]
        if n_unlabeled:  # μ = 0: the supervised baseline, the same views, optimizer, schedule and EMA
            drawn = torch.randint(len(self.pool), (n_unlabeled,), generator=generator).numpy()
            _, x_pool = next(self.pool.batches(drawn, len(drawn)))
            views += [weak_view(x_pool, generator), rand_augment(weak_view(x_pool, generator), generator)]
        size = self.labeled.spec.image_size
        batch_images = torch.cat([eval_transform(v.to(self.device), size, self.normalization) for v in views])
        self.model.train()
        sup_logits, weak_logits, strong_logits = self.model(batch_images).split([len(pick), n_unlabeled, n_unlabeled])
        labels = torch.from_numpy(np.asarray(self.labeled.labels)[pick]).to(self.device)
        supervised = self.method.supervised(sup_logits, labels, step, self.steps)
        if n_unlabeled:
            unlabeled, mask_rate = self.method.unlabeled(weak_logits, strong_logits)
        else:
            unlabeled = mask_rate = torch.zeros((), device=self.device)
        return StepResult(supervised + unlabeled, scalars={"supervised_loss": supervised.detach(),
                                                           "unlabeled_loss": unlabeled.detach(),
                                                           "mask_rate": mask_rate.detach()})

    def update_ema(self, step: int) -> None:
        """After each optimizer step: FixMatch's exponential moving average of the weights."""
        if self.ema_decay > 0:
            _ema_update(self.ema, self.model, self.ema_decay, step)

    def loop(self, **settings: Any) -> Loop:
        """The engine's loop over this run: FixMatch's cosine decay, the EMA after each step."""
        return Loop(self.optimizer, self.steps, lambda step: _cosine_lr(step, self.steps, self.lr), self.lr,
                    after_step=[self.update_ema], **settings)

    def seconds_per_step(self, trials: int = 6) -> float:
        """Median seconds of a training step, timed on a throw-away copy of this run (its model, EMA
        and optimizer untouched), for turning a time limit into a step count."""
        trial = copy.copy(self)
        trial.model = copy.deepcopy(self.model)
        trial.ema = copy.deepcopy(self.ema)
        trial.optimizer = type(self.optimizer)(trial.model.parameters(), **self.optimizer.defaults)

        def run_steps(after_step: Callable[[int], None]) -> None:
            loop = trial.loop()
            loop.total_steps, loop.after_step = trials, [trial.update_ema, after_step]
            loop.run(trial.forward)

        return seconds_per_step(run_steps, self.device)

    def test_accuracy(self, test: Prepared) -> float:
        return accuracy(self.evaluated, test, np.arange(len(test)), self.labeled.spec.image_size, self.normalization,
                        self.device)


def semisup_accuracy(method: UDA | FixMatch, backbone: Backbone, labeled: Prepared, pool: Prepared, test: Prepared,
                     subset: np.ndarray, normalization: Normalization, num_classes: int, steps: int, batch_size: int,
                     seed: int, device: torch.device) -> float:
    """Test accuracy after ``steps`` of ``method`` from ``backbone`` (the study's semisup rows): the
    command's defaults (``SemisupConfig``) otherwise, no checkpoints."""
    cfg = SemisupConfig(steps=steps, batch_size=batch_size, seed=seed)
    run = SemisupRun.build(method, backbone, labeled, pool, subset, normalization, num_classes, cfg, device)
    run.loop().run(run.forward)
    return run.test_accuracy(test)


def _data(cfg: SemisupConfig, out: Path, info: dict | None) -> tuple[Prepared, Prepared, Prepared]:
    """The labeled training set, the test set and the unlabeled pool, at one image spec."""
    if not cfg.labeled:
        raise ConfigError("semisup needs --labeled (a labeled folder, archive, .npz or 'digits')")
    train, test = train_test(cfg.labeled, cfg.test, out)
    if test is None or not train.has_labels:
        raise ConfigError(f"{cfg.labeled} needs labels and a test split (train/ and test/, or labels to split)")
    spec = ImageSpec.of_encoder(info) if info is not None else probe_spec(train, cfg.image_size)
    labeled, held_out = Prepared(train, spec, strict=cfg.strict), Prepared(test, spec, strict=cfg.strict)
    return labeled, held_out, unlabeled_pool(cfg.data, cfg.labeled, labeled, cfg.strict)


def unlabeled_pool(data: str | None, labeled_source: str, labeled: Prepared, strict: bool,
                   progress: bool = True) -> Prepared:
    """The unlabeled images: ``data`` at the labeled set's image spec, or, when it is not given or is the
    labeled source itself, the labeled images (their labels unused)."""
    if not data or data == labeled_source:
        return labeled
    pool_train, _ = train_test(data, None, None)
    return Prepared(pool_train, labeled.spec, strict=strict, progress=progress)


def run_semisup(cfg: SemisupConfig, progress: bool = True) -> dict:
    """Train (or resume) ``cfg.method`` in ``cfg.out``; returns what result.json holds."""
    started = time.perf_counter()
    out = Path(cfg.out)
    if cfg.resume:
        cfg = resumed_config(SemisupConfig, out, {"device": cfg.device})
    method = semisup_method(cfg.method, cfg.method_args or {})
    budget = parse_labels_per_class(str(cfg.labels_per_class))
    if len(budget) != 1:
        raise ConfigError("--labels-per-class takes one budget here, e.g. 10 or all")
    budget_steps(cfg.steps, None, cfg.time_limit, 1)  # one budget at most
    prepare_out(out, cfg.resume, cfg.overwrite)
    run, test = _build(cfg, method, budget[0], out, resolve_device(cfg.device))
    if cfg.time_limit is not None:  # the schedule needs the step count before the first step
        per_step = run.seconds_per_step()
        run.steps = steps_in_time(cfg.time_limit, started, per_step)
        log.info("time limit %.0f s: %.3f s per step -> %d steps", cfg.time_limit, per_step, run.steps)
    cfg = replace(cfg, steps=run.steps, time_limit=None)  # what config.yaml keeps: a resume replays these steps
    loop_start = time.perf_counter()
    _train(run, cfg, out, progress)
    result = {"method": cfg.method, "labels_per_class": budget[0] if budget[0] is not None else "all",
              "n_labels": len(run.subset), "seed": cfg.seed, "steps": cfg.steps, "unlabeled_ratio": run.ratio,
              "checkpoint": cfg.checkpoint, "test_accuracy": _save(run, test, cfg, out),
              "evaluated": "ema" if run.ema_decay > 0 else "model",
              "train_seconds": round(time.perf_counter() - loop_start, 3),
              "seconds": round(time.perf_counter() - started, 3), "out": str(out)}
    ckpt.atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    return result


def semisup_method(name: str, given: dict[str, Any]) -> UDA | FixMatch:
    """The semi-supervised method ``name`` with its arguments, each converted to its annotation."""
    if name not in SEMISUP_METHODS:
        raise ConfigError(f"unknown semi-supervised method {name!r} (known: {', '.join(SEMISUP_METHODS)})")
    cls = SEMISUP_METHODS[name]
    try:
        return cls(**typed_arguments(cls.__init__, given, f"{name} has no argument", "method_args"))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _build(cfg: SemisupConfig, method: UDA | FixMatch, per_class: int | None, out: Path,
           device: torch.device) -> tuple[SemisupRun, Prepared]:
    """The run: the labeled subset (saved), the pool, the backbone (a checkpoint's or fresh) and its
    classifier; and the test set."""
    info = None
    if cfg.checkpoint:
        backbone, info = load_backbone(cfg.checkpoint)
    labeled, test, pool = _data(cfg, out, info)
    all_labels = np.asarray(labeled.labels)
    subset = labeled_subset(all_labels, cfg.seed, per_class=per_class)
    save_subset(out, f"{per_class or 'all'}-seed{cfg.seed}", [labeled.collection.keys[i] for i in subset])
    if info is not None:
        normalization = Normalization(**info["normalization"])
    else:
        normalization = estimate_normalization(next(pool.batches(np.arange(min(len(pool), 10000)), 10000))[1])
        seed_everything(cfg.seed)
        backbone = build_backbone(cfg.backbone, labeled.spec.channels, cfg.stem, labeled.spec.image_size)
    num_classes = int(all_labels.max()) + 1
    return SemisupRun.build(method, backbone, labeled, pool, subset, normalization, num_classes, cfg, device), test


def _train(run: SemisupRun, cfg: SemisupConfig, out: Path, progress: bool) -> None:
    """The engine's loop over the run, checkpointing the model and its EMA; resumes with --resume."""
    loop = run.loop(state=nn.ModuleDict({"model": run.model, "ema": run.ema}), folder=out / "checkpoints",
                    checkpoint_every=cfg.checkpoint_every, meta={"config": to_dict(cfg), "total_steps": cfg.steps},
                    log_every=cfg.log_every, row=lambda done, result: {k: v.item() for k, v in result.scalars.items()},
                    items_per_step=run.batch_size * (1 + 2 * run.ratio), description=cfg.method, progress=progress)
    start = loop.restore() if cfg.resume else 0
    if not cfg.resume:
        save_yaml(to_dict(cfg), out / "config.yaml")
    loop.logger = MetricsLogger(out, resume_step=start, columns=COLUMNS)
    loop.run(run.forward, start=start)


def _save(run: SemisupRun, test: Prepared, cfg: SemisupConfig, out: Path) -> float:
    """Save the evaluated model's encoder and head; its test accuracy (the test set's one use)."""
    labeled = run.labeled
    save_encoder(out, run.evaluated.backbone, run.normalization, labeled.spec.image_size, labeled.spec.load_size,
                 {"method": cfg.method, "steps": cfg.steps})
    ckpt.atomic_save_tensors({k: v.detach().cpu().contiguous() for k, v in run.evaluated.head.state_dict().items()},
                             out / "head.safetensors")
    accuracy = run.test_accuracy(test)
    # The trained classifier as a model folder too: selfsup predict, export and load_model read it.
    classes = [str(c) for c in labeled.collection.classes or range(run.evaluated.head.out_features)]
    norm = run.normalization
    preprocess = Preprocessing(labeled.spec.channels, labeled.spec.load_size, labeled.spec.image_size,
                               list(norm.mean), list(norm.std))
    save_model(out, run.evaluated, classes, preprocess, {"init": cfg.checkpoint or "random", "method": cfg.method,
                                                         "test_accuracy": accuracy, "config": to_dict(cfg)})
    return accuracy


__all__ = ["SemisupRun", "run_semisup", "semisup_accuracy", "semisup_method", "unlabeled_pool", "weak_view"]
