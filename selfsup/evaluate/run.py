"""The eval and finetune commands: load an encoder, resolve labeled/test data, score, report."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..backbones import probed_features
from ..backbones.io import load_backbone
from ..config import EvalConfig, FinetuneConfig, resumed_config, save_yaml, to_dict
from ..data.images import ImageSpec, Prepared
from ..data.splits import parse_labels_per_class, train_test
from ..data.text import TextPool, labeled_text_sets, load_tokenizer, phrase_groups, token_spec_of, tokenizer_beside
from ..data.decoded import decoded_pool, pool_spec
from ..utils.checkpoint import atomic_write_text
from ..utils.runtime import prepare_out, resolve_device
from ..utils.errors import ConfigError, SelfSupError
from ..views import Normalization
from ..backbones.features import extract_features
from .finetune import Downstream, compare, lr_grid_for
from .train_dense import compare_segmentation
from ..utils.knn import knn_predict, topk_accuracy
from .linear import linear_probe


def _labeled_texts(cfg, info: dict) -> tuple[TextPool, TextPool]:
    """Labeled and test texts, tokenized with the checkpoint's own tokenizer at its length."""
    train, test = labeled_text_sets(cfg.labeled, cfg.test)
    tokenizer, spec = load_tokenizer(tokenizer_beside(cfg.checkpoint, info)), token_spec_of(info)
    return TextPool(train, tokenizer, spec), TextPool(test, tokenizer, spec)


def _labeled_data(cfg, info: dict, out: Path | None) -> tuple[Prepared, Prepared]:
    if not cfg.labeled:
        raise ConfigError("this command needs --labeled (a labeled folder, archive, .npz or 'digits')")
    if info.get("modality") == "text":
        return _labeled_texts(cfg, info)  # type: ignore[return-value]
    spec = pool_spec(info)  # clips or volumes: their settings; images: None
    train, test = train_test(cfg.labeled, cfg.test, out, kind=info.get("modality", "image"))
    if test is None:
        raise ConfigError(f"{cfg.labeled} has no labels to split a test set from; pass --test")
    if not train.has_labels or not test.has_labels:
        raise ConfigError("--labeled and --test must carry labels (class subfolders or a label array)")
    if spec is not None:
        return decoded_pool(train, spec, strict=cfg.strict), decoded_pool(test, spec, strict=cfg.strict)  # type: ignore[return-value]
    image_spec = ImageSpec.of_encoder(info)
    return Prepared(train, image_spec, strict=cfg.strict), Prepared(test, image_spec, strict=cfg.strict)


def run_eval(cfg: EvalConfig, protocol: str) -> dict:
    """Frozen-feature evaluation: weighted kNN or a linear probe, scored on the test set."""
    started = time.perf_counter()
    if protocol not in ("knn", "linear"):
        raise ConfigError(f"unknown evaluation protocol {protocol!r} (knn or linear)")
    if not cfg.checkpoint:
        raise ConfigError("eval needs --checkpoint (a run folder or an encoder file)")
    device = resolve_device(cfg.device)
    backbone, info = load_backbone(cfg.checkpoint)
    backbone.to(device)
    train, test = _labeled_data(cfg, info, None)
    norm, image_size = _input(info)
    backbone = _probed(backbone, cfg, info, image_size)
    train_x, train_pos = extract_features(backbone, train, norm, image_size, device, cfg.batch_size,
                                          num_workers=cfg.num_workers)
    test_x, test_pos = extract_features(backbone, test, norm, image_size, device, cfg.batch_size,
                                        num_workers=cfg.num_workers)
    train_y = torch.from_numpy(np.asarray(train.labels)[train_pos])
    test_y = torch.from_numpy(np.asarray(test.labels)[test_pos])
    num_classes = max(train.collection.num_classes, int(train_y.max()) + 1)
    result: dict = {"protocol": protocol, "layer": cfg.layer, "patch_grid": cfg.patch_grid}
    if protocol == "knn":
        k = min(cfg.k, len(train_y))
        scores = knn_predict(train_x, train_y, test_x, num_classes, k=k, temperature=cfg.temperature)
        result.update({"k": k, "temperature": cfg.temperature})
    else:
        scores, wd = linear_probe(train_x, train_y, test_x, num_classes, cfg.seed)
        result.update({"k": None, "temperature": None, "weight_decay": wd})
    acc = topk_accuracy(scores, test_y)
    result.update({"top1": acc[1], "top5": acc[5], "n_train": len(train_y), "n_test": len(test_y),
                   "seconds": round(time.perf_counter() - started, 3)})
    return result


def _probed(backbone, cfg: EvalConfig, info: dict, image_size: int):
    """What eval reads: the backbone, or an inner module (--layer), or the mean over cells (--patch-grid)."""
    if not (cfg.layer or cfg.patch_grid):
        return backbone
    if info.get("modality", "image") != "image":
        flag = "--layer" if cfg.layer else "--patch-grid"
        raise ConfigError(f"{flag} probes image encoders; this checkpoint is a {info['modality']} encoder")
    return probed_features(backbone, image_size, cfg.layer, cfg.patch_grid)


def _input(info: dict) -> tuple[Normalization | None, int]:
    """The encoder's input normalization and image size (text: none and 0)."""
    if info.get("modality") == "text":
        return None, 0
    return Normalization(**info["normalization"]), info["image_size"]


def budgets_from(cfg: FinetuneConfig) -> list[tuple[str, int | None, float | None]]:
    if cfg.labels_per_class and cfg.label_fraction is not None:
        raise ConfigError("give --labels-per-class or --label-fraction, not both")
    if cfg.label_fraction is not None:
        return [(f"fraction{cfg.label_fraction:g}", None, cfg.label_fraction)]
    per_class = parse_labels_per_class(cfg.labels_per_class or "1,10")
    return [(f"lpc{p}" if p is not None else "lpc-all", p, None) for p in per_class]


def run_finetune(cfg: FinetuneConfig, progress: bool = True) -> dict:
    started = time.perf_counter()
    if not cfg.checkpoint:
        raise ConfigError("finetune needs --checkpoint (a run folder or an encoder file)")
    # Default output: a finetune/ folder beside the checkpoint, replaced on every run unless resumed; an
    # explicit --out follows the pretrain rule (a non-empty folder needs --resume or --overwrite).
    ckpt_path = Path(cfg.checkpoint)
    out = Path(cfg.out) if cfg.out else (ckpt_path if ckpt_path.is_dir() else ckpt_path.parent) / "finetune"
    if cfg.resume:
        cfg = resumed_config(FinetuneConfig, out, {"device": cfg.device, "num_workers": cfg.num_workers})
    device = resolve_device(cfg.device)
    if cfg.task == "segmentation":
        if cfg.labels_per_class or cfg.label_fraction is not None:
            raise ConfigError("segmentation's budgets are --labeled-images 1,2,5,all (not --labels-per-class)")
        prepare_out(out, resume=cfg.resume, overwrite=cfg.overwrite or not cfg.out)
        if not cfg.resume:
            save_yaml(to_dict(replace(cfg, out=str(out))), out / "config.yaml")
        result = compare_segmentation(cfg, out, device, progress)
        atomic_write_text(out / "result.json", json.dumps(result, indent=1))
        return result
    if cfg.labeled_images or cfg.crop_size:
        raise ConfigError("--labeled-images and --crop-size are segmentation's (--task segmentation)")
    budgets = budgets_from(cfg)
    backbone, info = load_backbone(cfg.checkpoint)
    prepare_out(out, resume=cfg.resume, overwrite=cfg.overwrite or not cfg.out)
    if not cfg.resume:
        save_yaml(to_dict(replace(cfg, out=str(out))), out / "config.yaml")
    train, test = _labeled_data(cfg, info, out)
    norm, image_size = _input(info)
    groups = phrase_groups(train.collection.texts) if isinstance(train, TextPool) else None
    ds = Downstream(train=train, test=test, num_classes=train.collection.num_classes,
                    normalization=norm, image_size=image_size,
                    device=device, steps=cfg.steps, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
                    lr_grid=lr_grid_for(cfg.lr_grid, norm is None), val_fraction=cfg.val_fraction,
                    head_init=cfg.head_init, groups=groups, work=out / "trainings",
                    checkpoint_every=cfg.checkpoint_every)
    if ds.num_classes < 2:
        raise SelfSupError("the labeled set needs at least two classes")
    rows = compare(backbone, ds, budgets, cfg.seeds, out, progress)
    result = {"rows": rows, "seconds": round(time.perf_counter() - started, 3)}
    atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    return result
