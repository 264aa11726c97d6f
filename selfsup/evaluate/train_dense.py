"""``selfsup train --task segmentation``: a U-Net on the encoder, trained on few masks, saved as a model folder.

The same contract as classification's ``train``: start from ``--checkpoint`` or ``--init random|imagenet|PATH``,
``--labeled-images N|all`` picked by ``--seed``, the learning rate from the grid on held-out labeled images
(with a single labeled image there is nothing to hold out: the grid's smallest rate, said on stderr),
the test images scored once, whole, through sliding windows.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..backbones import Backbone, build_backbone
from ..backbones.io import build_like, load_backbone
from ..backbones.pretrained import imagenet_normalization, load_initial_weights
from ..config import FinetuneConfig, TrainConfig, save_yaml, to_dict
from ..data.decode import match_channels
from ..data.segmentation import MaskedImages, open_segmentation
from ..downstream.model import DensePreprocessing, save_model
from ..utils.checkpoint import atomic_write_text
from ..utils.errors import ConfigError, SelfSupError
from ..utils.runtime import prepare_out
from ..views import Normalization, estimate_normalization
from .finetune import best_lr
from .segment import (SEGMENTATION_LR_GRID, DenseDownstream, segmentation_scores, trained_scores, train_segmenter,
                      validation_scores)

log = logging.getLogger("selfsup")
DEFAULT_CROP = 256
# Inference windows: a fully convolutional model reads larger windows than it trained on, with more context
# and far fewer window borders, at no cost in accuracy (batch norm is in eval mode).
INFERENCE_WINDOW = 256


def _encoder(cfg: TrainConfig, channels: int, crop: int) -> tuple[Callable[[], Backbone], Normalization | None, str, int]:
    """A fresh encoder per training, its input normalization (None: estimate from the images), where its
    weights come from, and the channels it reads."""
    if cfg.checkpoint:
        if cfg.init:
            raise ConfigError("give --checkpoint (a pretrained encoder) or --init, not both")
        encoder, info = load_backbone(cfg.checkpoint)
        if info.get("modality", "image") != "image":
            raise ConfigError(f"segmentation needs an image encoder; {cfg.checkpoint} is a {info['modality']} encoder")
        state = {k: v.clone() for k, v in encoder.state_dict().items()}

        def pretrained() -> Backbone:
            backbone = build_like(encoder.spec, info["image_size"])
            backbone.load_state_dict(state)
            return backbone

        return pretrained, Normalization(**info["normalization"]), f"checkpoint {cfg.checkpoint}", encoder.spec.in_channels

    def fresh() -> Backbone:
        return build_backbone(cfg.backbone, channels, cfg.stem, crop)

    init = cfg.init or "random"
    if init == "random":
        return fresh, None, "random", channels
    template = fresh()
    load_initial_weights(template, init)
    weights = {k: v.clone() for k, v in template.state_dict().items()}

    def published() -> Backbone:
        backbone = fresh()
        backbone.load_state_dict(weights)
        return backbone

    return published, imagenet_normalization(channels), init, channels


def segmentation_split(labeled: str, test: str | None, strict: bool, out: Path) -> tuple[MaskedImages, MaskedImages]:
    """Training and test pairs: the source's train/ and test/, --test, or 20% of the images held out once
    (by seed 0, saved to OUT/splits.json)."""
    opened = open_segmentation(labeled, strict=strict)
    if test:
        test_opened = open_segmentation(test, strict=strict)
        return opened.get("train", opened.get("all")), test_opened.get("test", test_opened.get("all"))  # type: ignore[return-value]
    if "train" in opened and "test" in opened:
        return opened["train"], opened["test"]
    pool = next(iter(opened.values()))
    if len(pool) < 2:
        raise SelfSupError(f"{labeled}: {len(pool)} labeled image; pass --test to score on other images")
    order = np.random.default_rng(0).permutation(len(pool))
    held = max(1, int(round(0.2 * len(pool))))
    train, test = pool.subset(np.sort(order[held:]), f"{pool.name}:train"), pool.subset(np.sort(order[:held]), f"{pool.name}:test")
    atomic_write_text(out / "splits.json", json.dumps({"source": labeled, "train": train.keys, "test": test.keys}))
    return train, test


def labeled_images(budget: str | None, seed: int, n: int) -> np.ndarray:
    """The labeled images a budget (N or all) takes of ``n``: N of them, picked by ``seed``."""
    text = (budget or "all").strip().lower()
    if text == "all":
        return np.arange(n)
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"--labeled-images: {budget!r} is not a whole number of images or 'all'")
    if int(text) > n:
        raise ConfigError(f"--labeled-images {text}: the training split has {n} labeled images")
    return np.sort(np.random.default_rng(seed).permutation(n)[: int(text)])


def run_train_segmentation(cfg: TrainConfig, out: Path, device, started: float, progress: bool) -> dict:
    """Train, score and save the segmentation model of ``cfg`` in ``out``."""
    if cfg.image_size:
        raise ConfigError("segmentation reads images at their own size: --crop-size sets its crops and windows")
    if cfg.labels_per_class or cfg.label_fraction is not None or cfg.freeze:
        raise ConfigError("segmentation takes --labeled-images N (not --labels-per-class, --label-fraction or --freeze)")
    probe = next(iter(open_segmentation(cfg.labeled, strict=cfg.strict).values()))  # type: ignore[arg-type]
    smallest = min(min(m.shape) for m in probe.masks)
    crop = min(cfg.crop_size or DEFAULT_CROP, smallest)
    make, normalization, init, channels = _encoder(cfg, probe.channels, crop)  # before any output is written
    prepare_out(out, resume=cfg.resume, overwrite=cfg.overwrite)
    if not cfg.resume:
        save_yaml(to_dict(cfg), out / "config.yaml")
    train, test = segmentation_split(cfg.labeled, cfg.test, cfg.strict, out)  # type: ignore[arg-type]
    if channels != train.channels:
        log.warning("the images have %d channel(s), the encoder reads %d: converted", train.channels, channels)
        train, test = converted(train, channels), converted(test, channels)
    subset = labeled_images(cfg.labeled_images, cfg.seed, len(train))
    if normalization is None:
        normalization = estimate_normalization(train.images[int(subset[0])][None])
    window = max(crop, min(INFERENCE_WINDOW, smallest))
    preprocess = DensePreprocessing(channels, list(normalization.mean), list(normalization.std), window)
    ds = DenseDownstream(train=train, test=test, preprocess=preprocess, crop=crop, device=device, steps=cfg.steps,
                         batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
                         lr_grid=[float(x) for x in cfg.lr_grid] or list(SEGMENTATION_LR_GRID),
                         val_fraction=cfg.val_fraction, work=out / "trainings", checkpoint_every=cfg.checkpoint_every)
    scores = validation_scores(make, ds, subset, cfg.seed, "validation")
    if not scores:
        log.info("one labeled image: nothing to validate on; the grid's smallest learning rate, %g", min(ds.lr_grid))
    lr = best_lr(scores, ds.lr_grid)
    model = train_segmenter(make, ds, subset, lr, cfg.seed, folder=out, metrics=out, progress=progress)
    result = {"model": str(out), "task": "segmentation", "init": init, "n_labeled_images": int(len(subset)),
              "n_test": len(test), "lr": lr, "augmentation": augmentation(ds), "validation_mean_iou": scores.get(lr),
              "validation_scores": {f"{k:g}": v for k, v in scores.items()},
              "test": segmentation_scores(model, test, np.arange(len(test)), ds), "classes": train.classes}
    save_model(out, model, train.classes, preprocess, {**result, "config": to_dict(replace(cfg, resume=False, overwrite=False))})
    result["seconds"] = round(time.perf_counter() - started, 3)
    atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    return result


def augmentation(ds: DenseDownstream) -> str:
    """The training crops' augmentation, in words (result.json)."""
    return (f"random {ds.crop}-px crops, flips, 90-degree turns (image and mask alike); Gaussian noise "
            f"σ ~ U(0, {ds.noise:g} x 255) on the image")


def converted(data: MaskedImages, channels: int) -> MaskedImages:
    """The images with ``channels`` channels (gray <-> RGB), the masks as they are."""
    return MaskedImages(data.name, data.keys, [match_channels(x, channels) for x in data.images], data.masks, data.classes)


def segmentation_budgets(text: str | None) -> list[int | None]:
    """'1,2,5,all' -> [1, 2, 5, None] (None: every labeled image)."""
    out: list[int | None] = []
    for part in (text or "1,2,5").split(","):
        part = part.strip().lower()
        if part == "all":
            out.append(None)
        elif part.isdigit() and int(part) >= 1:
            out.append(int(part))
        else:
            raise ConfigError(f"--labeled-images: {part!r} is not a whole number of images or 'all'")
    return out


def compare_segmentation(cfg: FinetuneConfig, out: Path, device, progress: bool) -> dict:
    """``finetune --task segmentation``: scratch and the pretrained encoder, each under a new U-Net decoder,
    fine-tuned on the same labeled images (for every budget and seed) with the same recipe; test IoU."""
    started = time.perf_counter()
    encoder, info = load_backbone(cfg.checkpoint)  # type: ignore[arg-type]
    if info.get("modality", "image") != "image":
        raise ConfigError(f"segmentation needs an image encoder; {cfg.checkpoint} is a {info['modality']} encoder")
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    train, test = segmentation_split(cfg.labeled, cfg.test, cfg.strict, out)  # type: ignore[arg-type]
    channels = encoder.spec.in_channels
    if channels != train.channels:
        log.warning("the images have %d channel(s), the encoder reads %d: converted", train.channels, channels)
        train, test = converted(train, channels), converted(test, channels)
    smallest = min(min(m.shape) for m in [*train.masks, *test.masks])
    crop = min(cfg.crop_size or DEFAULT_CROP, smallest)
    norm = Normalization(**info["normalization"])
    preprocess = DensePreprocessing(channels, norm.mean, norm.std, max(crop, min(INFERENCE_WINDOW, smallest)))
    ds = DenseDownstream(train=train, test=test, preprocess=preprocess, crop=crop, device=device, steps=cfg.steps, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
                         lr_grid=[float(x) for x in cfg.lr_grid] or list(SEGMENTATION_LR_GRID),
                         val_fraction=cfg.val_fraction, work=out / "trainings", checkpoint_every=cfg.checkpoint_every)

    def make(init: str) -> Callable[[], Backbone]:
        def build() -> Backbone:
            backbone = build_like(encoder.spec, info["image_size"])
            if init == "pretrained":
                backbone.load_state_dict(state)
            return backbone
        return build

    rows = []
    for budget in segmentation_budgets(cfg.labeled_images):
        runs: dict[str, list[dict]] = {"scratch": [], "pretrained": []}
        for seed in range(1 if budget is None else cfg.seeds):
            subset = labeled_images(str(budget or "all"), seed, len(train))
            name = f"images{budget or '-all'}-seed{seed}"
            for init in runs:
                scores = validation_scores(make(init), ds, subset, seed, f"{name}/{init}")
                lr = best_lr(scores, ds.lr_grid)
                result = trained_scores(make(init), ds, subset, lr, seed, test, np.arange(len(test)), f"{name}/{init}/final")
                runs[init].append({**result, "lr": lr})
        row: dict = {"labeled_images": budget if budget is not None else "all", "n_labeled_images": int(len(subset)),
                     "seeds": len(runs["scratch"])}
        for init, results in runs.items():
            for key in ("mean_iou", "mean_dice", "pixel_accuracy"):
                values = [r[key] for r in results]
                row[f"{init}_{key}"], row[f"{init}_{key}_std"] = float(np.mean(values)), float(np.std(values))
            per_class = np.array([r["iou"] for r in results], dtype=float)
            row[f"{init}_iou"] = np.nanmean(per_class, 0).tolist()
            row[f"{init}_iou_std"] = np.nanstd(per_class, 0).tolist()
            row[f"{init}_lr"] = [r["lr"] for r in results]
        rows.append(row)
    return {"task": "segmentation", "classes": train.classes, "rows": rows, "n_test": len(test),
            "seconds": round(time.perf_counter() - started, 3)}
