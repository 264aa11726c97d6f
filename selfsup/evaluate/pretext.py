"""The pretext task's own score on held-out images: how well the network solves what it was set."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..config import PretrainConfig, saved_config
from ..data.images import Prepared
from ..utils import checkpoint as ckpt
from ..utils.runtime import step_generator
from ..utils.errors import SelfSupError
from ..methods import METHODS
from ..views import Normalization


@torch.no_grad()
def pretext_score(run: str | Path, data: Prepared, max_images: int = 10000, batch_size: int = 256,
                  device: torch.device | str = "cpu", seed: int = 0) -> dict[str, float]:
    """Mean pretext loss (and accuracy, for the classification tasks) of a finished run on ``data``.

    The method is rebuilt from the run's config and its latest checkpoint (heads and decoders
    included), in eval mode, with seeded views. Methods that need the pool's indices (memory
    banks) have no held-out pretext score: an empty dict.
    """
    from ..engine.build import build_method

    run = Path(run)
    latest = ckpt.latest_checkpoint(run / "checkpoints")
    if latest is None or not (run / "encoder.json").exists():
        raise SelfSupError(f"{run} holds no finished run (checkpoints/ and encoder.json)")
    cfg = saved_config(PretrainConfig, run / "config.yaml")
    if METHODS.get(cfg.method).needs_indices:
        return {}
    info = json.loads((run / "encoder.json").read_text())
    n_images = int((cfg.method_args or {}).get("dataset_size") or 1)
    method, _ = build_method(cfg, data.spec.channels, info["image_size"], Normalization(**info["normalization"]),
                             n_images)
    ckpt.restore(latest, method, None)
    method.to(device).eval()
    losses, accuracies, weights = [], [], []
    positions = np.arange(min(len(data), max_images))
    for k, (_, images) in enumerate(data.batches(positions, batch_size)):
        out = method(images.to(device), step_generator(seed, 11, k))
        losses.append(float(out["loss"]))
        if "pretext_accuracy" in out:
            accuracies.append(float(out["pretext_accuracy"]))
        weights.append(len(images))
    score = {"pretext_loss": float(np.average(losses, weights=weights))}
    if accuracies:
        score["pretext_accuracy"] = float(np.average(accuracies, weights=weights))
    return score
