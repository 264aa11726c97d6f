"""Typed run configurations; precedence: defaults, then a YAML file, then command-line flags."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

C = TypeVar("C")


@dataclass
class DataConfig:
    data: str | None = None  # unlabeled pool
    labeled: str | None = None  # labeled training set
    test: str | None = None  # held-out set
    image_size: int | None = None  # views' side; default: native for small images, 224 otherwise
    num_workers: int = 2
    strict: bool = False  # fail on the first unreadable file instead of skipping it


@dataclass
class PretrainConfig(DataConfig):
    method: str = "simclr"
    backbone: str | None = None  # default: the method's (resnet18; a ViT for MAE)
    stem: str = "auto"
    views: str | None = None  # view preset; default: the method's
    view_args: dict[str, Any] = field(default_factory=dict)  # overrides of the preset, e.g. crop_scale
    max_length: int | None = None  # text: tokens per text, [CLS] and [SEP] included (default 64)
    vocab_size: int | None = None  # text: the tokenizer's vocabulary (default 8000; word2vec's words: 20000)
    frames: int | None = None  # video: frames per clip (default 16)
    frame_stride: int | None = None  # video: a clip takes every n-th frame (default 2)
    epochs: float | None = None
    steps: int | None = None
    time_limit: float | None = None  # seconds, turned into a step count up front
    batch_size: int = 256
    lr: float | None = None  # base learning rate (x batch/256); default: the method's
    optimizer: str | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    warmup_fraction: float | None = None
    grad_clip: float | None = None
    lars_eta: float | None = None  # LARS's trust coefficient; default: the method's (0.001)
    lars_clip: bool | None = None  # LARS steps min(η‖w‖, lr‖g‖); default: the method's (off)
    method_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool | None = None  # default: on for CUDA
    compile: bool = False  # torch.compile the backbone (pays on GPUs for long runs; slow first steps)
    checkpoint_every: int = 500
    log_every: int = 10
    knn_every: int = 0  # steps between kNN monitors (0: only at the end, when labels exist)
    out: str = "runs/pretrain"
    show_batch: str | None = None  # PNG of one batch of the pretext task (written at the start and the end)
    resume: bool = False
    overwrite: bool = False


@dataclass
class EvalConfig(DataConfig):
    checkpoint: str | None = None
    k: int = 200
    temperature: float = 0.1
    batch_size: int = 256
    device: str = "auto"
    seed: int = 0
    layer: str | None = None  # probe this inner module's pooled output (e.g. layer3) instead of the final features
    patch_grid: int | None = None  # features averaged over a grid x grid of cells, each read alone


@dataclass
class FinetuneConfig(DataConfig):
    checkpoint: str | None = None
    labels_per_class: str | None = None
    label_fraction: float | None = None
    seeds: int = 3
    steps: int = 200  # optimizer steps of each downstream training
    batch_size: int = 64
    lr_grid: list[float] = field(default_factory=list)  # backbone, head x10; empty: images 0.001,0.003,0.01 (SGD), text 1e-4,3e-4,1e-3 (AdamW)
    weight_decay: float = 5e-4
    val_fraction: float = 0.2  # of the labeled subset, for picking the learning rate
    head_init: str = "random"  # random, or probe (LP-FT: the head starts as a fitted linear probe)
    device: str = "auto"
    out: str | None = None  # default: CHECKPOINT/finetune (replaced each run)
    overwrite: bool = False


@dataclass
class SemisupConfig(DataConfig):
    """``selfsup semisup``: UDA or FixMatch on a labeled subset and the unlabeled pool."""

    method: str = "fixmatch"
    method_args: dict[str, Any] = field(default_factory=dict)  # e.g. {threshold: 0.95, weight: 1.0}
    checkpoint: str | None = None  # start from this selfsup encoder; default: random weights
    backbone: str = "resnet18"  # when there is no checkpoint
    stem: str = "auto"
    labels_per_class: str = "10"  # one budget; the study's balanced subset for --seed
    seed: int = 0
    steps: int | None = None  # default 1000, or as many as --time-limit allows
    time_limit: float | None = None  # seconds of the whole run, turned into a step count up front
    batch_size: int = 64  # labeled images per step (FixMatch: 64)
    unlabeled_ratio: int | None = None  # μ, unlabeled images per labeled one; default the method's (7, UDA 5); 0: supervised only
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 5e-4
    ema_decay: float | None = None  # default: the method's (FixMatch 0.999, UDA none)
    checkpoint_every: int = 500
    log_every: int = 10
    device: str = "auto"
    out: str = "runs/semisup"
    resume: bool = False
    overwrite: bool = False


@dataclass
class StudyConfig(DataConfig):
    """``selfsup study``: methods x label budgets x seeds x evaluations, and the report."""

    methods: str = "simclr,byol,rotation"
    checkpoints: dict[str, Any] = field(default_factory=dict)  # NAME: run folder or encoder file, reused
    labels_per_class: str = "1,10,100,all"
    seeds: int = 3  # at "all" labels one seed is enough
    evaluations: str = "scratch,finetune,linear,knn"
    backbone: str | None = None  # every pretraining's backbone; default: each method's
    pretrain_steps: int | None = None  # the pretraining budget of every method (default: pretrain's)
    pretrain_epochs: float | None = None
    pretrain_batch_size: int | None = None
    pretrain: dict[str, Any] = field(default_factory=dict)  # other pretrain keys shared by every method
    per_method: dict[str, Any] = field(default_factory=dict)  # METHOD: {pretrain keys}, e.g. views
    finetune_steps: int = 200  # optimizer steps of every scratch and fine-tuning run
    semisup_steps: int | None = None  # steps of every semi-supervised run (uda, fixmatch, NAME+fixmatch); default finetune_steps
    semisup_batch_size: int | None = None  # labeled images per semi-supervised step; default finetune_batch_size
    semisup_labels_per_class: str | None = None  # the budgets with semi-supervised rows; default every budget
    finetune_batch_size: int = 64
    lr_grid: list[float] = field(default_factory=list)  # backbone, head x10; empty: images 0.001,0.003,0.01 (SGD), text 1e-4,3e-4,1e-3 (AdamW)
    finetune_weight_decay: float = 5e-4
    val_fraction: float = 0.2  # of the labeled subset, for picking the learning rate
    knn_k: int = 200
    knn_temperature: float = 0.1
    map_points: int = 2000  # test points in each t-SNE map
    seed: int = 0  # pretraining seed (the subsets' seeds are 0..seeds-1)
    device: str = "auto"
    out: str = "study"
    overwrite: bool = False


def _coerce(value: Any, type_text: str, name: str) -> Any:
    """Turn a YAML or flag value into the field's declared type (annotations are strings here)."""
    if value is None:
        return None
    kind = str(type_text).split("|")[0].strip()
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "str":
            return ",".join(map(str, value)) if isinstance(value, list) else str(value)
        if kind.startswith("list"):
            items = value if isinstance(value, list) else str(value).split(",")
            return [float(v) for v in items]
        if kind.startswith("dict") and not isinstance(value, dict):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot read {value!r} as {kind}") from None
    return value


def build_config(cls: type[C], file_values: dict[str, Any], flag_values: dict[str, Any]) -> C:
    """Defaults, overridden by the config file's values, overridden by flags given."""
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    merged: dict[str, Any] = {}
    for source, values in (("config file", file_values), ("flag", flag_values)):
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigError(f"unknown {source} key {key!r} for this command")
            merged[name] = _coerce(value, known[name].type, name)
    return cls(**merged)


def resumed_config(cls: type[C], out: Path, keep: dict[str, Any]) -> C:
    """The saved config of the run in ``out`` for ``--resume``, with ``keep`` (this call's settings of the
    machine rather than of the run: device, workers) taking precedence."""
    if not (out / "config.yaml").exists():
        raise ConfigError(f"--resume: {out} holds no run to resume (no config.yaml)")
    return build_config(cls, load_yaml(out / "config.yaml"), {"resume": True, **keep})


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return values


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_yaml(values: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
