"""Typed run configurations; precedence: defaults, then a YAML file, then command-line flags.

Every setting is a typed field: a value is converted to its annotation (``Literal`` fields list
their choices) and checked against its range (``Range`` in the field's metadata) once, when the
config is built, so a bad value stops the command with one line naming the setting (exit 2)
instead of surfacing as a crash deep in training.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from .utils.errors import ConfigError

C = TypeVar("C")
# Settings that runs saved by earlier versions may hold: ignored when such a run is read back.
# A name here that a command's config lacks is refused with this reason (exit 2) in a config file.
RETIRED = {"knn_every": "it was never read; the kNN monitor runs at the end of pretraining",
           "labeled": "this command reads no labeled set",
           "image_size": "this command reads images at the encoder's own size",
           "num_workers": "this command decodes its images into memory"}


@dataclass(frozen=True)
class Range:
    """The values a number setting accepts: ``low`` <= x (< when ``open_low``), and likewise ``high``."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, x: float) -> bool:
        above = x > self.low if self.open_low else x >= self.low
        below = x < self.high if self.open_high else x <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            if self.low == 0 and self.open_low:
                return "positive"
            return f"{'above' if self.open_low else 'at least'} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


AT_LEAST_1 = {"range": Range(1)}
NON_NEGATIVE = {"range": Range(0)}
POSITIVE = {"range": Range(0, open_low=True)}
FRACTION = {"range": Range(0, 1, open_high=True)}  # [0, 1)
SHARE = {"range": Range(0, 1, open_low=True, open_high=True)}  # (0, 1)
Precision = Literal["auto", "fp32", "bf16"]
Stem = Literal["auto", "imagenet", "small"]


def setting(default: Any = None, meta: dict | None = None, factory: Any = None) -> Any:
    """A config field with its range (``meta``)."""
    if factory is not None:
        return field(default_factory=factory, metadata=meta or {})
    return field(default=default, metadata=meta or {})


class Checked:
    """Checks every field's value against its type's choices and its range on construction (so also
    on ``dataclasses.replace`` and when a saved run's config is read back)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None:
                continue
            choices = _literal_choices(hints[f.name])
            if choices and value not in choices:
                raise _not_a_choice(f.name, value, choices)
            bounds = f.metadata.get("range")
            if bounds is not None:
                for item in value if isinstance(value, list) else [value]:
                    if item not in bounds:
                        raise ConfigError(f"{f.name} must be {bounds}, got {item!r}")


@dataclass
class DataConfig(Checked):
    """The data settings every command shares; each command adds the ones it reads."""

    test: str | None = None  # held-out set
    strict: bool = False  # fail on the first unreadable file instead of skipping it
    max_pixels: int = setting(89_478_485, NON_NEGATIVE)  # images declaring more (width x height) are skipped unread; 0: no limit


@dataclass
class PretrainConfig(DataConfig):
    data: str | None = None  # unlabeled pool
    image_size: int | None = setting(None, AT_LEAST_1)  # views' side; default: native for small images, 224 otherwise
    num_workers: int = setting(2, NON_NEGATIVE)  # DataLoader workers for streamed (large) images
    method: str = "simclr"
    backbone: str | None = None  # default: the method's (resnet18; a ViT for MAE)
    stem: Stem = "auto"
    views: str | None = None  # view preset; default: the method's
    view_args: dict[str, Any] = field(default_factory=dict)  # overrides of the preset, e.g. crop_scale
    init: str | None = None  # imagenet or a torchvision/timm-keyed weights file: pretraining continues from them
    max_length: int | None = setting(None, {"range": Range(3)})  # text: tokens per text, [CLS] and [SEP] included (default 64)
    vocab_size: int | None = setting(None, {"range": Range(6)})  # text: the tokenizer's vocabulary (default 8000; word2vec's words: 20000)
    frames: int | None = setting(None, AT_LEAST_1)  # video: frames per clip (default 16)
    frame_stride: int | None = setting(None, AT_LEAST_1)  # video: a clip takes every n-th frame (default 2)
    epochs: float | None = setting(None, POSITIVE)  # passes over the pool (one of epochs, steps, time limit; default 100 epochs)
    steps: int | None = setting(None, AT_LEAST_1)  # optimizer steps (one of epochs, steps, time limit)
    time_limit: float | None = setting(None, POSITIVE)  # seconds, turned into a step count up front
    batch_size: int = setting(256, AT_LEAST_1)  # images per step (the global batch under torchrun)
    lr: float | None = setting(None, NON_NEGATIVE)  # base learning rate (x batch/256); default: the method's
    optimizer: Literal["sgd", "adamw", "lars"] | None = None  # default: the method's
    weight_decay: float | None = setting(None, NON_NEGATIVE)  # default: the method's
    momentum: float | None = setting(None, FRACTION)  # SGD and LARS momentum (default: the method's, 0.9)
    warmup_fraction: float | None = setting(None, FRACTION)
    grad_clip: float | None = setting(None, POSITIVE)
    lars_eta: float | None = setting(None, POSITIVE)  # LARS's trust coefficient; default: the method's (0.001)
    lars_clip: bool | None = None  # LARS steps min(η‖w‖, lr‖g‖); default: the method's (off)
    method_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0  # seeds data order, views and initialization
    device: str = "auto"
    precision: Precision = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool | None = None  # NHWC tensors; default: on for convolutional image backbones (faster on CPUs and CUDA)
    compile: bool = False  # torch.compile the backbone (pays on GPUs for long runs; slow first steps)
    checkpoint_every: int = setting(500, AT_LEAST_1)  # steps between checkpoints
    log_every: int = setting(10, AT_LEAST_1)  # steps between metrics.csv rows
    out: str = "runs/pretrain"  # the run folder
    show_batch: str | None = None  # PNG of one batch of the pretext task (written at the start and the end)
    resume: bool = False
    overwrite: bool = False


@dataclass
class EvalConfig(DataConfig):
    labeled: str | None = None  # labeled training set
    num_workers: int = setting(2, NON_NEGATIVE)  # DataLoader workers for streamed (large) images
    checkpoint: str | None = None
    k: int = setting(200, AT_LEAST_1)
    temperature: float = setting(0.1, POSITIVE)
    batch_size: int = setting(256, AT_LEAST_1)  # images per forward pass
    device: str = "auto"
    seed: int = 0  # seeds data order, views and initialization
    layer: str | None = None  # probe this inner module's pooled output (e.g. layer3) instead of the final features
    patch_grid: int | None = setting(None, AT_LEAST_1)  # features averaged over a grid x grid of cells, each read alone


@dataclass
class FinetuneConfig(DataConfig):
    task: Literal["classification", "segmentation"] = "classification"  # the downstream task
    labeled: str | None = None  # labeled training set
    labeled_images: str | None = None  # segmentation: budgets in labeled images, e.g. 1,2,5,all (default 1,2,5)
    crop_size: int | None = setting(None, {"range": Range(8)})  # segmentation: the side of training crops and inference windows (default 256, at most the smallest image)
    num_workers: int = setting(2, NON_NEGATIVE)  # DataLoader workers for streamed (large) images
    checkpoint: str | None = None
    labels_per_class: str | None = None
    label_fraction: float | None = setting(None, {"range": Range(0, 1, open_low=True)})
    seeds: int = setting(3, AT_LEAST_1)
    steps: int = setting(200, AT_LEAST_1)  # optimizer steps of each downstream training
    batch_size: int = setting(64, AT_LEAST_1)  # labeled images per step
    lr_grid: list[float] = setting(meta=POSITIVE, factory=list)  # backbone, head x10; empty: images 0.001,0.003,0.01 (SGD), text 1e-4,3e-4,1e-3 (AdamW)
    weight_decay: float = setting(5e-4, NON_NEGATIVE)  # SGD weight decay of each training
    val_fraction: float = setting(0.2, SHARE)  # of the labeled subset, for picking the learning rate
    head_init: Literal["random", "probe"] = "random"  # random, or probe (LP-FT: the head starts as a fitted linear probe)
    device: str = "auto"
    checkpoint_every: int = setting(0, NON_NEGATIVE)  # steps between checkpoints of each training (0: none)
    out: str | None = None  # default: CHECKPOINT/finetune (replaced each run unless resumed)
    resume: bool = False  # continue the run in --out: finished trainings are read back, a killed one resumes
    overwrite: bool = False


@dataclass
class TrainConfig(DataConfig):
    """``selfsup train``: one downstream model, fine-tuned (or a linear head on the frozen encoder)."""

    task: Literal["classification", "segmentation"] = "classification"  # the downstream task
    labeled: str | None = None  # labeled training set
    image_size: int | None = setting(None, AT_LEAST_1)  # classification without --checkpoint: input side (default: native up to 64 px, else 224)
    crop_size: int | None = setting(None, {"range": Range(8)})  # segmentation: the side of training crops and inference windows (default 256, at most the smallest image)
    num_workers: int = setting(2, NON_NEGATIVE)  # DataLoader workers for streamed (large) images
    checkpoint: str | None = None  # start from this pretrained encoder (a run folder or encoder file)
    init: str | None = None  # without --checkpoint: random, imagenet, or a torchvision/timm-keyed weights file
    labeled_images: str | None = None  # segmentation: N or all (default all) labeled images, picked by --seed
    backbone: str = "resnet18"  # without --checkpoint
    stem: Stem = "auto"  # without --checkpoint; auto: small for inputs <= 64 px
    freeze: bool = False  # frozen encoder, linear head fitted on its features (for a handful of labels)
    labels_per_class: str | None = None  # N or all (default all): the study's balanced subset for --seed
    label_fraction: float | None = setting(None, {"range": Range(0, 1, open_low=True)})
    seed: int = 0  # the labeled subset, the validation split and the training's randomness
    steps: int = setting(200, AT_LEAST_1)  # optimizer steps of each training
    batch_size: int = setting(64, AT_LEAST_1)  # labeled images per step
    lr_grid: list[float] = setting(meta=POSITIVE, factory=list)  # backbone, head x10; empty: 0.001,0.003,0.01 (SGD)
    weight_decay: float = setting(5e-4, NON_NEGATIVE)  # SGD weight decay of each training
    val_fraction: float = setting(0.2, SHARE)  # of the labeled subset, for picking the learning rate
    head_init: Literal["random", "probe"] = "random"  # random, or probe (LP-FT: the head starts as a fitted linear probe)
    device: str = "auto"
    checkpoint_every: int = setting(100, NON_NEGATIVE)  # steps between checkpoints of each training (0: none)
    out: str = "runs/train"
    resume: bool = False  # continue the run in --out: finished trainings are read back, a killed one resumes
    overwrite: bool = False


@dataclass
class PredictConfig(Checked):
    """``selfsup predict``: a saved model over a folder, archive or array file."""

    model: str | None = None  # a model folder (selfsup train's --out)
    data: str | None = None  # images to predict: folder, .zip/.tar, .npy/.npz, digits
    split: Literal["auto", "test", "train", "all"] = "auto"  # auto: a source's test part when it has one (or the model's held-out split), else all
    out: str | None = None  # the CSV (default MODEL/predictions.csv); segmentation: the folder of masks (default MODEL/predictions/)
    probabilities: bool = False  # segmentation: also each image's class probabilities (NAME.npy, K x H x W float16)
    batch_size: int = setting(256, AT_LEAST_1)  # images per forward pass
    num_workers: int = setting(2, NON_NEGATIVE)  # DataLoader workers for streamed (large) images
    strict: bool = False  # fail on the first unreadable file instead of skipping it
    max_pixels: int = setting(89_478_485, NON_NEGATIVE)  # images declaring more (width x height) are skipped unread; 0: no limit
    device: str = "auto"


@dataclass
class ExportConfig(Checked):
    """``selfsup export``: a saved model as a file a serving stack loads without selfsup."""

    model: str | None = None  # a model folder (selfsup train's --out)
    format: Literal["onnx", "torchscript"] = "onnx"
    out: str | None = None  # the file (default MODEL/model.onnx or MODEL/model.torchscript.pt)
    opset: int | None = setting(None, {"range": Range(14)})  # ONNX opset (default: the exporter's)


@dataclass
class SemisupConfig(DataConfig):
    """``selfsup semisup``: UDA or FixMatch on a labeled subset and the unlabeled pool."""

    data: str | None = None  # unlabeled pool (default: the labeled images, labels unused)
    labeled: str | None = None  # labeled training set
    image_size: int | None = setting(None, AT_LEAST_1)  # views' side; default: native for small images, 224 otherwise
    method: str = "fixmatch"
    method_args: dict[str, Any] = field(default_factory=dict)  # e.g. {threshold: 0.95, weight: 1.0}
    checkpoint: str | None = None  # start from this selfsup encoder; default: random weights
    backbone: str = "resnet18"  # when there is no checkpoint
    stem: Stem = "auto"
    labels_per_class: str = "10"  # one budget; the study's balanced subset for --seed
    seed: int = 0  # seeds data order, views and initialization
    steps: int | None = setting(None, AT_LEAST_1)  # default 1000, or as many as --time-limit allows
    time_limit: float | None = setting(None, POSITIVE)  # seconds of the whole run, turned into a step count up front
    batch_size: int = setting(64, AT_LEAST_1)  # labeled images per step (FixMatch: 64)
    unlabeled_ratio: int | None = setting(None, NON_NEGATIVE)  # μ, unlabeled images per labeled one; default the method's (7, UDA 5); 0: supervised only
    lr: float = setting(0.03, NON_NEGATIVE)
    momentum: float = setting(0.9, FRACTION)  # SGD momentum
    weight_decay: float = setting(5e-4, NON_NEGATIVE)  # SGD weight decay of each training
    ema_decay: float | None = setting(None, FRACTION)  # default: the method's (FixMatch 0.999, UDA none)
    checkpoint_every: int = setting(500, AT_LEAST_1)  # steps between checkpoints
    log_every: int = setting(10, AT_LEAST_1)  # steps between metrics.csv rows
    device: str = "auto"
    out: str = "runs/semisup"  # the run folder
    resume: bool = False
    overwrite: bool = False


@dataclass
class StudyConfig(DataConfig):
    """``selfsup study``: methods x label budgets x seeds x evaluations, and the report."""

    task: Literal["classification", "segmentation"] = "classification"  # the downstream task
    data: str | None = None  # unlabeled pool
    labeled: str | None = None  # labeled training set
    labeled_images: str | None = None  # segmentation: budgets in labeled images, e.g. 1,2,5,all (default 1,2,5)
    crop_size: int | None = setting(None, {"range": Range(8)})  # segmentation: the side of training crops (default 256, at most the smallest image)
    image_size: int | None = setting(None, AT_LEAST_1)  # views' side; default: native for small images, 224 otherwise
    num_workers: int = setting(2, NON_NEGATIVE)  # DataLoader workers for streamed (large) images
    methods: str = "simclr,byol,rotation"
    checkpoints: dict[str, Any] = field(default_factory=dict)  # NAME: run folder or encoder file, reused
    labels_per_class: str = "1,10,100,all"
    seeds: int = setting(3, AT_LEAST_1)  # at "all" labels one seed is enough
    evaluations: str = "scratch,finetune,linear,knn"
    baselines: str = "scratch"  # reference rows on the same subsets: scratch, imagenet (published weights fine-tuned), or a weights file
    backbone: str | None = None  # every pretraining's backbone; default: each method's
    pretrain_steps: int | None = setting(None, AT_LEAST_1)  # the pretraining budget of every method (default: pretrain's)
    pretrain_epochs: float | None = setting(None, POSITIVE)  # the pretraining epochs of every method
    pretrain_batch_size: int | None = setting(None, AT_LEAST_1)  # the pretraining batch size of every method
    pretrain: dict[str, Any] = field(default_factory=dict)  # other pretrain keys shared by every method
    per_method: dict[str, Any] = field(default_factory=dict)  # METHOD: {pretrain keys}, e.g. views
    finetune_steps: int = setting(200, AT_LEAST_1)  # optimizer steps of every scratch and fine-tuning run
    semisup_steps: int | None = setting(None, AT_LEAST_1)  # steps of every semi-supervised run (uda, fixmatch, NAME+fixmatch); default finetune_steps
    semisup_batch_size: int | None = setting(None, AT_LEAST_1)  # labeled images per semi-supervised step; default finetune_batch_size
    semisup_labels_per_class: str | None = None  # the budgets with semi-supervised rows; default every budget
    finetune_batch_size: int = setting(64, AT_LEAST_1)  # labeled images per step of every scratch and fine-tuning run
    lr_grid: list[float] = setting(meta=POSITIVE, factory=list)  # backbone, head x10; empty: images 0.001,0.003,0.01 (SGD), text 1e-4,3e-4,1e-3 (AdamW)
    finetune_weight_decay: float = setting(5e-4, NON_NEGATIVE)  # SGD weight decay of every scratch and fine-tuning run
    val_fraction: float = setting(0.2, SHARE)  # of the labeled subset, for picking the learning rate
    knn_k: int = setting(200, AT_LEAST_1)  # neighbours of the kNN evaluation (at most the labels)
    knn_temperature: float = setting(0.1, POSITIVE)  # temperature of the kNN votes, exp(cos/T)
    map_points: int = setting(2000, AT_LEAST_1)  # test points in each t-SNE map
    seed: int = 0  # pretraining seed (the subsets' seeds are 0..seeds-1)
    device: str = "auto"
    out: str = "study"  # the study folder
    overwrite: bool = False


def _not_a_choice(name: str, value: Any, choices: tuple) -> ConfigError:
    return ConfigError(f"{name}: {value!r} is not one of {', '.join(map(str, choices))}")


def _literal_choices(hint: Any) -> tuple | None:
    """The choices of a ``Literal[...]`` (or ``Literal[...] | None``) annotation, else None."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType):
        for arg in typing.get_args(hint):
            if typing.get_origin(arg) is Literal:
                return typing.get_args(arg)
    return None


def convert(value: Any, hint: Any, name: str) -> Any:
    """``value`` (from YAML or a flag) as the type ``hint`` declares, or a ConfigError naming ``name``.

    Handles what settings and method arguments are annotated with: bool, int, float, str, Literal,
    tuples and lists of numbers, dicts, and unions of these with None (tried in order).
    """
    if value is None or hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return convert(value, option, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name}: cannot read {value!r} as {_type_name(hint)}")
    try:
        if origin is Literal:
            if value not in args:
                raise _not_a_choice(name, value, args)
            return value
        if origin in (list, tuple):
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(items) != len(args):
                    raise ValueError
                return tuple(convert(v, a, name) for v, a in zip(items, args))
            converted = [convert(v, args[0] if args else Any, name) for v in items]
            return tuple(converted) if origin is tuple else converted
        if origin is dict or hint is dict:
            if not isinstance(value, dict):
                raise ValueError
            return value
        return _scalar(value, hint)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot read {value!r} as {_type_name(hint)}") from None


def _scalar(value: Any, hint: Any) -> Any:
    """``value`` as a bool, int, float or str (a ValueError when it is none); other hints pass it on."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError
    if hint is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
            raise ValueError
        return int(value)
    if hint is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if hint is str:
        if isinstance(value, (dict, bool)):
            raise ValueError
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return value


def typed_arguments(function: Any, given: dict[str, Any], unknown: str, prefix: str,
                    skip: tuple[str, ...] = ("self",)) -> dict[str, Any]:
    """``given`` keyword arguments of ``function``, each converted to its parameter's annotation; a name
    the function does not take is a ConfigError (``unknown`` + the names, and what it takes)."""
    hints = typing.get_type_hints(function)
    accepted = [n for n in inspect.signature(function).parameters if n not in skip]
    extra = sorted(set(given) - set(accepted))
    if extra:
        raise ConfigError(f"{unknown} {', '.join(extra)} (it takes: {', '.join(sorted(accepted))})")
    return {name: convert(value, hints.get(name, Any), f"{prefix}.{name}") for name, value in given.items()}


def _type_name(hint: Any) -> str:
    """An annotation as a user reads it: ``int``, ``float | None``, ``one of a, b``."""
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def build_config(cls: type[C], file_values: dict[str, Any], flag_values: dict[str, Any]) -> C:
    """Defaults, overridden by the config file's values, overridden by flags given."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    merged: dict[str, Any] = {}
    for source, values in (("config file", file_values), ("flag", flag_values)):
        for key, value in values.items():
            name = key.replace("-", "_")
            if name in RETIRED and name not in known:
                raise ConfigError(f"{key} is no longer a setting: {RETIRED[name]}")
            if name not in known:
                raise ConfigError(f"unknown {source} key {key!r} for this command")
            merged[name] = convert(value, hints[name], name)
    return cls(**merged)


def saved_config(cls: type[C], path: Path, flag_values: dict[str, Any] | None = None) -> C:
    """The config a run saved in ``path`` (its config.yaml), read back with ``flag_values`` on top; the
    settings earlier versions saved and this one no longer has are dropped."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in load_yaml(path).items() if k in known or k not in RETIRED}
    return build_config(cls, values, flag_values or {})


def resumed_config(cls: type[C], out: Path, keep: dict[str, Any]) -> C:
    """The saved config of the run in ``out`` for ``--resume``, with ``keep`` (this call's settings of the
    machine rather than of the run: device, workers) taking precedence."""
    if not (out / "config.yaml").exists():
        raise ConfigError(f"--resume: {out} holds no run to resume (no config.yaml)")
    return saved_config(cls, out / "config.yaml", {"resume": True, **keep})


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


def setting_help(cls: type) -> dict[str, str]:
    """Each field's trailing comment in its class's source: the help of the flag the CLI generates for it,
    so a setting is written, typed and documented in one place."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            for line in inspect.getsource(klass).splitlines():
                match = re.match(r"\s+(\w+): [^#]+#\s*(.+)$", line)
                if match:
                    helps[match.group(1)] = match.group(2).strip()
    return helps


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: YAML's safe dumper writes only plain types."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_yaml(values: dict[str, Any], path: Path) -> None:
    from .utils.checkpoint import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(_plain(values), sort_keys=False))
