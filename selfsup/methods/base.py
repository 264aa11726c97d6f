"""The one thin base of every method: it owns a backbone and a view pipeline.

A method declares its views (``default_views``), its heads and loss (built in ``__init__``),
any state it carries (momentum encoder, queue: registered buffers or modules), and a
``forward(images, generator)`` that returns a dict with the scalar ``"loss"``. The training
engine calls only ``forward`` and ``after_step``; it knows nothing method-specific.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import Backbone
from ..config import typed_arguments
from ..utils.registry import Registry


@dataclass(frozen=True)
class Recipe:
    """A method's published training defaults (overridable by config and flags). Its own
    hyper-parameters are its constructor's arguments (``method_arguments``), written once there."""

    optimizer: str = "lars"
    base_lr: float = 0.3  # scaled by batch / 256
    weight_decay: float = 1e-6
    momentum: float = 0.9
    warmup_fraction: float = 0.1
    lars_eta: float = 0.001  # LARS's trust coefficient η (You et al.; SimCLR, BYOL)
    lars_clip: bool = False  # LARS steps min(η‖w‖, lr‖g‖) (see engine.optim.LARS)
    views: str = "simclr-cifar"
    adam_betas: tuple[float, float] = (0.9, 0.999)  # AdamW's (MAE: 0.9, 0.95)
    backbone: str = "resnet18"  # used when --backbone is not given (MAE: a ViT)
    sync_batchnorm: bool = True  # batch norm over the global batch under data-parallel training (CUDA only)


@dataclass(frozen=True)
class RunBudget:
    """What a recipe may depend on: the run's length in optimizer steps, its global batch and its pool."""

    steps: int
    batch_size: int
    n_images: int

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.n_images // self.batch_size)

    @property
    def epochs(self) -> float:
        return self.steps * self.batch_size / max(1, self.n_images)

    def epochs_to_steps(self, epochs: float) -> int:
        """A schedule the papers write in epochs (of ImageNet), in this run's steps."""
        return int(round(epochs * self.steps_per_epoch))

    def short(self) -> bool:
        """Shorter than the shortest schedule the joint-embedding papers publish (100 epochs: SimSiam,
        SwAV and DINO's shortest ImageNet runs), where this project's short-run measurements apply."""
        return self.epochs < SHORT_RUN_EPOCHS


SHORT_RUN_EPOCHS = 100.0
SMALL_POOL_IMAGES = 200_000  # far below ImageNet's 1.28 M: the CIFAR-sized widths of solo-learn's configs apply


def narrower_for_small_pool(budget: RunBudget, name: str, width: int, what: str) -> list[Resolved]:
    """``name`` = ``width`` when the pool is far smaller than ImageNet, where the papers' output layers
    (8,192-wide projectors, 65,536 prototypes) cost as much as the backbone and solo-learn's CIFAR
    configs use ``width``."""
    if budget.n_images >= SMALL_POOL_IMAGES:
        return []
    return [Resolved("method", name, width, f"{what} for a pool far smaller than ImageNet's (solo-learn's CIFAR width)")]


@dataclass(frozen=True)
class Resolved:
    """One recipe value chosen for a run: a hyper-parameter (``kind`` "method"), a view argument ("view")
    or a training setting ("training": a config field such as ``lr``), and why."""

    kind: str
    name: str
    value: Any
    why: str


@dataclass
class EpochContext:
    """What a method may use when an epoch begins (see ``Method.plan_epoch``)."""

    epoch: int
    n_images: int
    seed: int
    optimizer: torch.optim.Optimizer
    device: torch.device
    features: Callable[[], tuple[torch.Tensor, np.ndarray]]  # eval-mode backbone features of the pool, positions
    batch_size: int = 0  # the global batch the plan is cut into
    lengths: np.ndarray | None = None  # text pools: tokens per text


@dataclass
class Panel:
    """One row of ``--show-batch``'s picture: images in [0, 1] (N x C x h x w) and their captions."""

    title: str
    images: torch.Tensor
    captions: list[str] | None = None


class Method(nn.Module):
    name: ClassVar[str]
    paper: ClassVar[str]
    family: ClassVar[str] = ""  # the docs' grouping: contrastive, non-contrastive, pretext tasks, ...
    recipe: ClassVar[Recipe]
    needs_indices: ClassVar[bool] = False  # forward also receives ``indices=`` (pool rows, for memory banks)
    multi_crop: ClassVar[bool] = False  # uses every view of its preset, local crops included
    input_channels: ClassVar[int | None] = None  # the backbone's input channels, if not the data's (colorization: 1)
    modality: ClassVar[str] = "image"  # or "text": the method's data, views and encoders
    tokenizer: ClassVar[str] = "bpe"  # text methods: the vocabulary trained on the corpus (word2vec: "word")
    # A joint-embedding loss has a constant-output optimum, so a spread that vanishes means collapse. Text
    # features are anisotropic by nature (contextual states: Ethayarajh 2019, https://arxiv.org/abs/1909.00512;
    # word vectors: Mu & Viswanath 2018, https://arxiv.org/abs/1702.01417) and the text losses have no such
    # optimum: their collapse watch warns on dimensional collapse (rank) only.
    collapse_prone: ClassVar[bool] = True
    # Adversarial methods (GANs): the players that take turns each step, each with its own optimizer over
    # ``player_modules(player)``; ``forward(..., player=NAME)`` returns that player's loss.
    players: ClassVar[tuple[str, ...]] = ()
    logged: ClassVar[tuple[str, ...]] = ()  # the method's own scalars, as metrics.csv columns (beside pretext_accuracy)
    # Submodules whose learning rate the schedule leaves at its peak (SimSiam's predictor).
    constant_lr: ClassVar[tuple[str, ...]] = ()
    # Submodule name -> factor on the scheduled learning rate (set by ``scale_lr``; BYOL's predictor).
    lr_scale: dict[str, float]
    # False on the steps whose scalars nobody reads (the engine sets it before each step from
    # ``log_every``): a method may then skip a costly ``logged`` scalar, e.g. DINO's perplexity
    # over 65,536 outputs.
    logging_step: bool

    # The fewest images seen (steps x batch) at which the method's default command was measured to beat
    # random weights by 2 kNN points on CIFAR-10 (ResNet-18, batch 256); a shorter run
    # says so when it starts. None: not measured to pass (see ``budget_note``, said at every start).
    minimum_images: ClassVar[int | None] = None
    budget_note: ClassVar[str] = ""

    # The first constructor arguments every method takes; the rest are its hyper-parameters.
    BUILT_FROM: ClassVar[tuple[str, ...]] = ("self", "backbone", "views")

    def __init__(self, backbone: Backbone, views: Any) -> None:
        """``views``: the view pipeline of the method's modality (``Views``, ``ClipViews``,
        ``VolumeViews``), or for text methods the corpus's ``TokenSpec``."""
        super().__init__()
        self.backbone = backbone
        self.views = views
        self.lr_scale = {}
        self.logging_step = True

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @classmethod
    def for_budget(cls, budget: RunBudget) -> list[Resolved]:
        """The recipe's values that depend on the run (schedules the papers give in epochs, a queue
        against the pool, what a short run was measured to need); an explicit value always wins."""
        return []

    def scale_lr(self, module: str, factor: float) -> None:
        """Train submodule ``module`` at ``factor`` times the scheduled learning rate (BYOL's and SimSiam's
        ``predictor_lr_scale``); recorded in ``lr_scale``, which the optimizer's param groups read."""
        if factor <= 0:
            raise ValueError(f"the lr scale of {module!r} must be positive, got {factor}")
        if factor != 1.0:
            self.lr_scale = {**self.lr_scale, module: factor}

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after each optimizer step (momentum-encoder updates and the like)."""

    def player_modules(self, player: str) -> nn.Module:
        """An adversarial method's modules trained by ``player``'s optimizer."""
        raise NotImplementedError

    @property
    def input_normalization(self):
        """The normalization of what the backbone is fed (saved with step checkpoints)."""
        return self.views.normalization

    def export_encoder(self) -> tuple[Backbone, Any]:
        """The encoder to save for transfer and its input normalization (colorization adapts its
        1-channel encoder to RGB here)."""
        return self.backbone, self.views.normalization

    @torch.no_grad()
    def illustrate(self, images: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        """What ``--show-batch`` draws: by default the views of the batch."""
        views = self.views(images, generator)
        return [Panel(f"view {i + 1}", self.views.denormalize(v).clamp(0, 1)) for i, v in enumerate(views)]

    def plan_epoch(self, context: EpochContext) -> np.ndarray | None:
        """Called when an epoch begins (and again on resume): the epoch's order of pool indices,
        at least steps-per-epoch x batch long, or None for the seeded shuffle."""
        return None


def classified(logits: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
    """A classification pretext task's output: cross-entropy on the free labels, the embedding for the
    collapse watch, and the batch's pretext accuracy (logged as ``pretext_accuracy``)."""
    return {"loss": F.cross_entropy(logits.float(), labels), "embedding": embedding,
            "pretext_accuracy": (logits.argmax(1) == labels).float().mean()}


@dataclass(frozen=True)
class Argument:
    """One hyper-parameter of a method: its name, annotation and default, read from the constructor."""

    name: str
    annotation: Any
    default: Any

    def describe(self) -> dict[str, Any]:
        """As ``selfsup methods --json`` lists it."""
        kind = self.annotation if isinstance(self.annotation, str) else (
            self.annotation.__name__ if isinstance(self.annotation, type) else str(self.annotation).replace("typing.", ""))
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        return {"name": self.name, "type": kind, "default": default}


def method_arguments(cls: type[Method]) -> dict[str, Argument]:
    """The hyper-parameters of ``cls``: its constructor's arguments after (backbone, views), with the
    types and defaults of its signature, the one place a method's defaults are written."""
    hints = typing.get_type_hints(cls.__init__)
    arguments = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name in cls.BUILT_FROM:
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or parameter.default is parameter.empty:
            raise TypeError(f"{cls.__name__}.__init__: every hyper-parameter needs a default and a type ({name})")
        arguments[name] = Argument(name, hints.get(name, Any), parameter.default)
    return arguments


def method_defaults(cls: type[Method]) -> dict[str, Any]:
    """The constructor's defaults of every hyper-parameter of ``cls``."""
    return {name: argument.default for name, argument in method_arguments(cls).items()}


def method_args(cls: type[Method], given: dict[str, Any]) -> dict[str, Any]:
    """Every hyper-parameter of ``cls``: the defaults, overridden by ``given`` (``--method-arg`` and
    config values), each converted to its annotation; an unknown name or an unreadable value is a
    ConfigError naming the argument and what it accepts."""
    typed = typed_arguments(cls.__init__, given, f"method {cls.name} has no argument", "method_args", cls.BUILT_FROM)
    return {**method_defaults(cls), **typed}


METHODS: Registry[type[Method]] = Registry("method")
# Said by ``selfsup pretrain --devices N`` before launching, and by each worker launched otherwise.
ONE_PROCESS_ONLY = ("adversarial methods train in one process (--devices 1): their players take turns, which "
                    "DistributedDataParallel's one backward per step does not model")


def register_method(cls: type[Method]) -> type[Method]:
    return METHODS.register(cls.name)(cls)
