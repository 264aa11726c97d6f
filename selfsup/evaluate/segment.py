"""Dense downstream: a U-Net over the encoder, trained on few masks in the engine's loop, scored on
whole test images.

Training reads random ``crop`` x ``crop`` windows of the labeled images at their native resolution, each
with a random horizontal and vertical flip and a rotation by a multiple of 90 degrees, the same on the
image and its mask (no elastic deformation by default), then Gaussian noise of a random strength on the
image alone (``noisy``); the loss is cross-entropy plus soft Dice
(``losses.segmentation``). The encoder trains at the learning rate, the new decoder at 10x. The test
images are read whole through overlapping sliding windows of the crop's size, and scored by IoU and
Dice per class, their means and pixel accuracy over all their pixels (``utils.segmetrics``).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..backbones import Backbone
from ..data.segmentation import MaskedImages
from ..downstream.dense import sliding_window_logits
from ..downstream.model import DensePreprocessing
from ..engine.logger import COLUMNS, MetricsLogger
from ..engine.loop import Loop, StepResult
from ..engine.optim import param_groups
from ..engine.schedule import warmup_cosine
from ..heads.unet import UNet
from ..losses.segmentation import segmentation_loss
from ..utils.checkpoint import atomic_write_text
from ..utils.runtime import seed_everything, step_generator
from ..utils.segmetrics import confusion, scores

SEGMENTATION_LR_GRID = (0.001, 0.003, 0.01)  # SGD + Nesterov, the encoder's; the decoder x10


@dataclass
class DenseDownstream:
    """What every segmentation training of a run shares."""

    train: MaskedImages
    test: MaskedImages
    preprocess: DensePreprocessing  # normalization, and the side of the inference windows
    crop: int  # the side of training crops
    device: torch.device
    steps: int
    batch_size: int
    weight_decay: float
    lr_grid: list[float]
    val_fraction: float = 0.2
    warmup_fraction: float = 0.1
    decoder_lr_scale: float = 10.0  # the new decoder learns faster than the (pretrained) encoder
    noise: float = 0.1  # the largest σ of the training crops' Gaussian noise, a fraction of the 0-255 range
    work: Path | None = None  # where each training keeps its result and checkpoints (resume); None: nothing
    checkpoint_every: int = 0


def random_crops(images: list[torch.Tensor], masks: list[torch.Tensor], picks: np.ndarray, crop: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``crop``-px windows of the picked images and the same windows of their masks, each pair flipped and
    rotated alike: uint8 B x C x crop x crop and int64 B x crop x crop."""
    views, labels = [], []
    for i in picks:
        image, mask = images[i], masks[i]
        height, width = mask.shape
        top = int(torch.randint(0, height - crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - crop + 1, (1,), generator=generator))
        x, y = image[:, top:top + crop, left:left + crop], mask[top:top + crop, left:left + crop]
        flips = torch.rand(2, generator=generator) < 0.5
        turns = int(torch.randint(0, 4, (1,), generator=generator))
        if flips[0]:
            x, y = x.flip(-1), y.flip(-1)
        if flips[1]:
            x, y = x.flip(-2), y.flip(-2)
        views.append(torch.rot90(x, turns, (-2, -1)))
        labels.append(torch.rot90(y, turns, (-2, -1)))
    return torch.stack(views), torch.stack(labels)


def noisy(views: torch.Tensor, max_sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``views`` (uint8 B x C x H x W) with Gaussian noise of σ ~ U(0, ``max_sigma`` x 255) per crop.

    nnU-Net's default intensity augmentation (Isensee et al. 2021, Nature Methods: additive Gaussian noise,
    variance U(0, 0.1) of normalized intensities). A model fitted on one or two images otherwise learns
    their noise level, and misses structures on images of the same kind that are noisier (serial EM
    sections differ in noise from slice to slice)."""
    if max_sigma <= 0:
        return views
    sigma = torch.rand(len(views), 1, 1, 1, generator=generator) * (max_sigma * 255.0)
    noise = sigma * torch.randn(views.shape, generator=generator)
    return (views.float() + noise).round_().clamp_(0, 255).to(torch.uint8)


def train_segmenter(make_backbone: Callable[[], Backbone], ds: DenseDownstream, indices: np.ndarray, lr: float,
                    seed: int, folder: Path | None = None, metrics: Path | None = None,
                    progress: bool = False) -> UNet:
    """A U-Net on ``make_backbone()`` trained on crops of ``ds.train[indices]``: ``ds.steps`` steps with warm-up
    and cosine decay; checkpoints in FOLDER/checkpoints (resumed from), metrics to METRICS/metrics.csv."""
    seed_everything(seed)
    model = UNet(make_backbone(), len(ds.train.classes)).to(ds.device)
    groups = param_groups(model.encoder, ds.weight_decay)
    decoder = [p for name, p in model.named_parameters() if not name.startswith("encoder.")]
    groups.append({"params": decoder, "weight_decay": ds.weight_decay, "lr_scale": ds.decoder_lr_scale})
    for group in groups:
        group.pop("lars_exclude", None)
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    warmup = int(ds.warmup_fraction * ds.steps)
    checkpoints = folder / "checkpoints" if folder is not None and ds.checkpoint_every else None
    loop = Loop(optimizer, ds.steps, lambda step: warmup_cosine(step, ds.steps, lr, warmup), lr, state=model,
                folder=checkpoints, checkpoint_every=ds.checkpoint_every, meta={"lr": lr, "seed": seed},
                log_every=10 if metrics is not None else 0, items_per_step=ds.batch_size,
                description="segmentation", progress=progress)
    start = loop.restore()
    if metrics is not None:
        loop.logger = MetricsLogger(metrics, resume_step=start, columns=COLUMNS[:6])
    model.train()
    images = [ds.train.images[i] for i in indices]
    masks = [ds.train.masks[i] for i in indices]

    def forward(step: int, _batch: None, logging: bool, player: None) -> StepResult:
        generator = step_generator(seed, 3, step)
        picks = torch.randint(0, len(images), (ds.batch_size,), generator=generator).numpy()
        x, y = random_crops(images, masks, picks, ds.crop, generator)
        x = noisy(x, ds.noise, generator)
        return StepResult(segmentation_loss(model(ds.preprocess.batch(x.to(ds.device))), y.to(ds.device)))

    loop.run(forward, start=start)
    return model


@torch.no_grad()
def segmentation_scores(model: UNet, data: MaskedImages, indices: np.ndarray, ds: DenseDownstream,
                        kept: dict[int, torch.Tensor] | None = None) -> dict:
    """IoU, Dice and pixel accuracy of ``model`` on the whole images ``data[indices]`` (sliding windows);
    the predicted class maps of the indices that are keys of ``kept`` are put there."""
    model.eval()
    k = len(data.classes)
    matrix = torch.zeros(k, k, dtype=torch.int64)
    for i in indices:
        image = ds.preprocess.batch(data.images[i][None].to(ds.device))[0]
        predicted = sliding_window_logits(model, image, ds.preprocess.window).argmax(0).cpu()
        matrix += confusion(predicted, data.masks[i], k)
        if kept is not None and int(i) in kept:
            kept[int(i)] = predicted
    return scores(matrix)


def trained_scores(make_backbone: Callable[[], Backbone], ds: DenseDownstream, indices: np.ndarray, lr: float,
                   seed: int, scored: MaskedImages, scored_indices: np.ndarray, key: str | None = None,
                   keep: Sequence[int] = ()) -> dict:
    """Scores on ``scored[scored_indices]`` of a U-Net trained on ``indices`` at ``lr``, kept in WORK/KEY/result.json
    (read back on a re-run; a killed training resumes from WORK/KEY/checkpoints). The predicted class maps of
    ``scored[keep]`` are saved as WORK/KEY/predicted/I.png (class indices), listed under ``predicted``."""
    folder = ds.work / key if ds.work is not None and key else None
    if folder is not None and (folder / "result.json").exists():
        return json.loads((folder / "result.json").read_text())
    model = train_segmenter(make_backbone, ds, indices, lr, seed, folder)
    kept: dict[int, torch.Tensor] = {int(i): torch.empty(0) for i in keep}
    result = segmentation_scores(model, scored, scored_indices, ds, kept)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        if kept:
            (folder / "predicted").mkdir(exist_ok=True)
            for i, predicted in kept.items():
                Image.fromarray(predicted.numpy().astype(np.uint8)).save(folder / "predicted" / f"{i}.png")
            result["predicted"] = {str(i): f"predicted/{i}.png" for i in kept}
        atomic_write_text(folder / "result.json", json.dumps(result))
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return result


def validation_scores(make_backbone: Callable[[], Backbone], ds: DenseDownstream, indices: np.ndarray, seed: int,
                      key: str | None = None) -> dict[float, float]:
    """Mean IoU on held-out labeled images (``val_fraction`` of them, at least one) of a U-Net trained on
    the others, at each learning rate of the grid; empty with a single labeled image."""
    if len(indices) < 2:
        return {}
    order = np.random.default_rng(seed).permutation(indices)
    held = max(1, int(round(ds.val_fraction * len(order))))
    val, fit = np.sort(order[:held]), np.sort(order[held:])
    return {lr: trained_scores(make_backbone, ds, fit, lr, seed, ds.train, val,
                               key and f"{key}/val-lr{lr:g}")["mean_iou"]
            for lr in ds.lr_grid}
