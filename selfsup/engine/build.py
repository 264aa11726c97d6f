"""A pretraining run's parts from its config: the method (views, backbone, arguments) and its training
settings, each the config's when given, else the method's recipe's."""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from ..backbones import build_backbone
from ..backbones.pretrained import load_initial_weights
from ..backbones.text import build_text_backbone
from ..config import PretrainConfig
from ..data.text import TokenSpec
from ..methods import METHODS, Method, Recipe
from ..methods.base import RunBudget, method_args
from ..utils.errors import ConfigError
from ..views import VIEW_CLASSES, Normalization

log = logging.getLogger("selfsup")
# Config field -> the recipe field it defaults to.
RECIPE_SETTINGS = {"optimizer": "optimizer", "lr": "base_lr", "weight_decay": "weight_decay", "momentum": "momentum",
                   "warmup_fraction": "warmup_fraction", "lars_eta": "lars_eta", "lars_clip": "lars_clip",
                   "views": "views"}


def training_settings(cfg: PretrainConfig, recipe: Recipe) -> dict[str, Any]:
    """The run's optimizer, base learning rate, weight decay, momentum, warm-up, LARS settings and views:
    the config's (flag or file) where given, else the method's recipe's."""
    return {name: getattr(cfg, name) if getattr(cfg, name) is not None else getattr(recipe, field)
            for name, field in RECIPE_SETTINGS.items()}


def resolve_recipe(cfg: PretrainConfig, budget: RunBudget) -> tuple[PretrainConfig, list[str]]:
    """``cfg`` with the values the method's recipe sets for this run (``Method.for_budget``) filled in
    where the config leaves them unset, and one line for each value filled in or given otherwise."""
    method_cls = METHODS.get(cfg.method)
    method_args, view_args, training = dict(cfg.method_args or {}), dict(cfg.view_args or {}), {}
    filled: dict[str, list[str]] = {}  # why -> the values it set
    lines = []
    for value in method_cls.for_budget(budget):
        where = {"method": method_args, "view": view_args}.get(value.kind)
        given = where.get(value.name) if where is not None else getattr(cfg, value.name)
        label = {"method": "", "view": "view_arg "}.get(value.kind, "--")
        if given is None:
            if where is None:
                training[value.name] = value.value
            else:
                where[value.name] = value.value
            filled.setdefault(value.why, []).append(f"{label}{value.name}={value.value}")
        elif given != value.value:
            lines.append(f"{label}{value.name}={given} as given (the recipe's {value.value} for this run: {value.why})")
    lines = [f"{', '.join(names)}: {why}" for why, names in filled.items()] + lines
    resolved = replace(cfg, method_args=method_args or cfg.method_args, view_args=view_args or cfg.view_args, **training)
    return resolved, lines


def budget_warning(method: str, budget: RunBudget) -> str | None:
    """One line when the run is shorter than the method was measured to need (``Method.minimum_images``)."""
    cls = METHODS.get(method)
    seen = budget.steps * budget.batch_size
    if cls.minimum_images is not None and seen < cls.minimum_images:
        return (f"{method} was measured to beat random weights only from {cls.minimum_images:,} images seen "
                f"(CIFAR-10, ResNet-18, batch 256); this run sees {seen:,}")
    return f"{method}: {cls.budget_note}" if cls.minimum_images is None and cls.budget_note else None


def _method_args(cls: type[Method], cfg: PretrainConfig, n_images: int) -> dict:
    args = method_args(cls, cfg.method_args or {})
    if "dataset_size" in args and args["dataset_size"] is None:
        args["dataset_size"] = n_images  # memory banks and pseudo-labels hold one row per image
    if args.get("dataset_size") is not None and args["dataset_size"] < n_images:
        raise ConfigError(f"method_args.dataset_size={args['dataset_size']} is smaller than the {n_images} images")
    return args


def build_method(cfg: PretrainConfig, data_channels: int, image_size: int, normalization: Normalization,
                 n_images: int) -> tuple[Method, dict]:
    """The method of ``cfg`` with fresh weights, and the arguments it was built with (views, backbone
    and arguments resolved; also used to rebuild a finished run around a checkpoint)."""
    method_cls = METHODS.get(cfg.method)
    recipe = method_cls.recipe
    view_args = {k: tuple(v) if isinstance(v, list) else v for k, v in (cfg.view_args or {}).items()}
    view_class = VIEW_CLASSES[method_cls.modality]
    try:
        views = view_class.preset(cfg.views or recipe.views, image_size, normalization, **view_args)
    except TypeError as exc:
        raise ConfigError(f"view_args: {exc}") from None
    if views.n_local and not method_cls.multi_crop:
        raise ConfigError(f"method {cfg.method} does not use multi-crop's local crops; drop view_args.local_crops "
                          f"(methods that do: {', '.join(n for n in METHODS.names() if METHODS.get(n).multi_crop)})")
    backbone = build_backbone(cfg.backbone or recipe.backbone, method_cls.input_channels or data_channels, cfg.stem,
                              image_size)
    if cfg.init:  # domain-adaptive pretraining: continue from published (ImageNet) or saved weights
        log.info("starting from %s", load_initial_weights(backbone, cfg.init))
    method_args = _method_args(method_cls, cfg, n_images)
    try:
        method = method_cls(backbone, views, **method_args)
    except ValueError as exc:  # a method's own check of its arguments or of the data
        raise ConfigError(f"{cfg.method}: {exc}") from None
    return method, method_args


def build_text_method(cfg: PretrainConfig, tokens: TokenSpec, n_texts: int) -> tuple[Method, dict]:
    """A text method of ``cfg`` with fresh weights: its encoder sized to the corpus's vocabulary."""
    method_cls = METHODS.get(cfg.method)
    if cfg.view_args or cfg.init:
        raise ConfigError(f"{cfg.method} is a text method: {'view_args' if cfg.view_args else '--init'} applies to images only")
    backbone = build_text_backbone(cfg.backbone or method_cls.recipe.backbone, tokens.vocab_size, tokens.max_length)
    method_args = _method_args(method_cls, cfg, n_texts)
    try:
        return method_cls(backbone, tokens, **method_args), method_args
    except ValueError as exc:
        raise ConfigError(f"{cfg.method}: {exc}") from None
