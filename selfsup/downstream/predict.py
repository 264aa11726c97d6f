"""``selfsup predict``: a saved model over a folder, archive or array file, one CSV row per item."""
from __future__ import annotations

import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import PredictConfig
from ..data.images import ImageSpec, Prepared, probe_spec
from ..data.sources import Collection, open_source
from ..utils.errors import ConfigError, SelfSupError
from ..utils.runtime import resolve_device
from .model import DownstreamModel, SegmentationModel, load_model

log = logging.getLogger("selfsup")


def predicted_items(cfg: PredictConfig, model_folder: Path) -> tuple[Collection, str]:
    """The items ``cfg`` asks for and which part of the source they are: with ``--split auto`` a source's
    test/ part, or the model's own held-out split when the source is the one it was trained on, else all."""
    opened = open_source(str(cfg.data))
    split = cfg.split
    if split == "auto":
        split = "test" if "test" in opened or _saved_split(cfg, model_folder) else "all"
    if split in opened:
        return opened[split], split
    if "all" in opened:
        record = _saved_split(cfg, model_folder)
        if split == "all" or record is None:
            if split != "all":
                raise ConfigError(f"--split {split}: {cfg.data} has no {split}/ part and the model holds no split of it")
            return opened["all"], "all"
        pool = opened["all"]
        where = {key: i for i, key in enumerate(pool.keys)}
        try:
            return pool.subset([where[k] for k in record[split]], f"{pool.name}:{split}"), f"{split} (the model's split)"
        except KeyError:
            raise SelfSupError(f"{cfg.data} no longer holds every item of {model_folder / 'splits.json'}") from None
    parts = [opened[name] for name in ("train", "test") if name in opened]  # --split all of a train/test source
    return _joined(parts), "all"


def _saved_split(cfg: PredictConfig, model_folder: Path) -> dict | None:
    """The train/test split the model's run saved of this very source (splits.json), if any."""
    path = model_folder / "splits.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("source") == cfg.data else None


def _joined(parts: list[Collection]) -> Collection:
    first = parts[0]
    labels = None if any(p.labels is None for p in parts) else np.concatenate([p.labels for p in parts])  # type: ignore[misc]
    arrays = None if any(p.array is None for p in parts) else np.concatenate([p.array for p in parts])  # type: ignore[misc]
    return Collection(first.name, [k for p in parts for k in p.keys], labels, first.classes, first.reader, arrays,
                      first.kind)


def _model_labels(items: Collection, classes: list[str]) -> tuple[np.ndarray, list[str]] | None:
    """Each item's class as the model's class index (-1: a class the model does not know, predicted but
    not scored) and the source's class names; None for an unlabeled source."""
    if not items.has_labels:
        return None
    names = items.classes or [str(i) for i in range(int(items.labels.max()) + 1)]  # type: ignore[union-attr]
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(names[i] for i in np.unique(items.labels)) - set(index))  # type: ignore[arg-type]
    if unknown:
        log.warning("classes the model does not know: %s (their items are predicted but not scored)",
                    ", ".join(unknown[:5]))
    return np.array([index.get(names[label], -1) for label in items.labels]), names  # type: ignore[union-attr]


def run_predict(cfg: PredictConfig, progress: bool = True) -> dict:
    """Predict every readable item of ``cfg.data`` into ``cfg.out`` (CSV); accuracy when it is labeled."""
    if not cfg.model or not cfg.data:
        raise ConfigError("predict needs --model (a model folder) and --data (the images to predict)")
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    model = load_model(cfg.model, device)
    if isinstance(model, SegmentationModel):
        return run_predict_masks(cfg, model, device, started)
    folder = Path(cfg.model)
    items, split = predicted_items(cfg, folder)
    if not len(items):
        raise SelfSupError(f"{cfg.data} holds no images to predict")
    p = model.preprocess
    found = probe_spec(items).channels
    if found != p.channels:
        log.warning("%s: images have %d channel(s), the model reads %d: converted", cfg.data, found, p.channels)
    data = Prepared(items, ImageSpec(p.channels, p.load_size, p.image_size), strict=cfg.strict, progress=progress)
    labeled = _model_labels(data.collection, model.classes)
    out = Path(cfg.out) if cfg.out else folder / "predictions.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    counted = _write_predictions(model, data, labeled, out, cfg, device, progress)
    skipped = data.skipped + len(data.reported)
    result = {"predictions": str(out), "split": split, "n": counted["n"], "skipped": skipped,
              "accuracy": counted["correct"] / counted["scored"] if counted["scored"] else None,
              "n_scored": counted["scored"], "images_per_second": round(counted["n"] / max(counted["seconds"], 1e-9), 1),
              "seconds": round(time.perf_counter() - started, 3)}
    return result


@torch.no_grad()
def _write_predictions(model: DownstreamModel, data: Prepared, labeled: tuple[np.ndarray, list[str]] | None, out: Path,
                       cfg: PredictConfig, device: torch.device, progress: bool) -> dict:
    """Rows of item, [label,] predicted class and every class's probability, batch by batch; the counts."""
    counts = {"n": 0, "scored": 0, "correct": 0, "seconds": 0.0}
    keys, classes, source = data.collection.keys, model.classes, data.collection.labels
    labels, names = labeled if labeled is not None else (None, [])
    header = ["item"] + (["label"] if labels is not None else []) + ["predicted"] + [f"p_{c}" for c in classes]
    bar = tqdm(total=len(data), desc="predicting", unit="img", file=sys.stderr, disable=not progress, leave=False)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        indices = np.arange(len(data))
        for pos, images in data.batches(indices, cfg.batch_size, cfg.num_workers):
            began = time.perf_counter()
            probabilities = model(model.preprocess.batch(images.to(device))).softmax(1).cpu()
            counts["seconds"] += time.perf_counter() - began
            predicted = probabilities.argmax(1).numpy()
            for row, i in enumerate(indices[pos]):
                label = [] if labels is None else [names[source[i]]]
                writer.writerow([keys[i], *label, classes[predicted[row]],
                                 *(f"{v:.6g}" for v in probabilities[row].tolist())])
            if labels is not None:
                known = labels[indices[pos]] >= 0
                counts["scored"] += int(known.sum())
                counts["correct"] += int((predicted[known] == labels[indices[pos]][known]).sum())
            counts["n"] += len(pos)
            bar.update(len(pos))
    bar.close()
    tmp.replace(out)
    return counts


def _dense_items(cfg: PredictConfig, model_folder: Path) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor] | None, str]:
    """Keys, images and (for a source of image/mask pairs) masks to segment, and which part they are."""
    from ..data.decode import DecodeError, decode_bytes, reason
    from ..data.segmentation import open_segmentation
    from ..data.sources import source_files

    try:
        pairs = open_segmentation(str(cfg.data), strict=cfg.strict)
    except SelfSupError:
        pairs = None
    if pairs is not None:
        split = cfg.split if cfg.split != "auto" else ("test" if "test" in pairs else "all")
        if split not in pairs:
            raise ConfigError(f"--split {split}: {cfg.data} has no {split}/ images and masks")
        part = pairs[split]
        return part.keys, part.images, part.masks, split
    keys, reader = source_files(str(cfg.data))
    kept, images = [], []
    for key in keys:
        try:
            images.append(decode_bytes(reader.read(key)))
            kept.append(key)
        except (DecodeError, OSError, KeyError, RuntimeError) as exc:
            if cfg.strict:
                raise SelfSupError(f"unreadable image {key}: {reason(exc)}") from exc
            log.warning("skipped unreadable image %s (%s)", key, reason(exc))
    return kept, images, None, "all"


def run_predict_masks(cfg: PredictConfig, model, device: torch.device, started: float) -> dict:
    """One mask PNG per image (the class's mask value per pixel, at the image's size) in ``cfg.out``, and with
    ``--probabilities`` its class probabilities; IoU and Dice when the source has masks."""
    from PIL import Image

    from ..data.decode import match_channels
    from ..utils.segmetrics import confusion, scores
    from .dense import sliding_window_logits

    keys, images, masks, split = _dense_items(cfg, Path(cfg.model))
    if not keys:
        raise SelfSupError(f"{cfg.data} holds no images to segment")
    out = Path(cfg.out) if cfg.out else Path(cfg.model) / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    p, k = model.preprocess, len(model.classes)
    if images[0].shape[0] != p.channels:
        log.warning("%s: images have %d channel(s), the model reads %d: converted", cfg.data, images[0].shape[0], p.channels)
    values = np.array([int(c) for c in model.classes]) if all(c.isdigit() for c in model.classes) else np.arange(k)
    matrix = torch.zeros(k, k, dtype=torch.int64)
    seconds = 0.0
    for i, (key, image) in enumerate(zip(keys, images)):
        began = time.perf_counter()
        x = p.batch(match_channels(image, p.channels)[None].to(device))[0]
        logits = sliding_window_logits(model, x, p.window).cpu()
        seconds += time.perf_counter() - began
        predicted = logits.argmax(0)
        target = out / Path(key).with_suffix(".png").name
        Image.fromarray(values[predicted.numpy()].astype(np.uint8 if values.max() < 256 else np.uint16)).save(target)
        if cfg.probabilities:
            np.save(target.with_suffix(".npy"), logits.softmax(0).numpy().astype(np.float16))
        if masks is not None:
            matrix += confusion(predicted, masks[i], k)
    result = {"predictions": str(out), "split": split, "n": len(keys), "task": "segmentation",
              "images_per_second": round(len(keys) / max(seconds, 1e-9), 2), "seconds": round(time.perf_counter() - started, 3)}
    if masks is not None:
        result["scores"] = scores(matrix)
    return result
