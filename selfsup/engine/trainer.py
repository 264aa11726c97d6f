"""The pretraining loop: one visible loop in a fixed order, with nothing method-specific.

schedule -> batch -> views + forward + loss (inside the method) -> finite check -> backward
-> clip -> step -> method.after_step (momentum updates) -> log -> checkpoint.
"""
from __future__ import annotations

import copy
import inspect
import logging
import json
import os
import signal
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..backbones import build_backbone
from ..backbones.io import save_encoder
from ..backbones.text import build_text_backbone
from ..config import PretrainConfig, resumed_config, save_yaml, to_dict
from ..data.images import ImageSpec, Prepared, probe_spec, spec_from_shape
from ..data.shards import ShardedPool, is_shard_spec
from ..data.sources import Collection
from ..data.text import TOKENIZER_FILE, TextPool, TokenSpec, is_text_source, open_text_pool, read_texts
from ..data.pool import DecodedPool, decoded_pool
from ..data.video import ClipSpec, is_video_source, probe_clip_spec
from ..data.volume import VolumeSpec, probe_volume_spec
from ..data.splits import stratified_split, train_test
from ..distributed import (DistContext, barrier, init_distributed, local_batch, mean_over_ranks, share_plan,
                           shutdown, wrap_data_parallel)
from ..errors import ConfigError, NonFiniteLossError, SelfSupError
from ..evaluate.features import extract_pool_features
from ..methods import METHODS, ONE_PROCESS_ONLY, EpochContext, Method, Recipe
from ..methods.text_base import bucketed_order
from ..views import VIEW_CLASSES, Normalization, estimate_normalization
from . import checkpoint as ckpt
from .logger import COLUMNS, MetricsLogger
from .monitor import CollapseWatch
from .optim import TurnOptimizers, build_method_optimizer
from .runtime import prepare_out, seed_everything, step_generator
from .schedule import due, set_learning_rates, warmup_cosine

log = logging.getLogger("selfsup")
KILL_ENV = "SELFSUP_KILL_AT_STEP"  # test hook: SIGKILL this process right after that step


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The data order of one epoch: a permutation fixed by (seed, epoch), so resuming replays it."""
    return torch.randperm(n, generator=step_generator(seed, 1, epoch)).numpy()


def step_indices(n: int, batch: int, seed: int, step: int) -> np.ndarray:
    epoch, k = divmod(step, n // batch)
    return epoch_order(n, seed, epoch)[k * batch:(k + 1) * batch]


class _Indexed(torch.utils.data.Dataset):
    """A streamed dataset whose items carry their pool index, so memory banks find their rows."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def __len__(self) -> int:
        return len(self.stream)

    def __getitem__(self, index: int):
        return index, self.stream[index]


def _collate_indexed(items: list) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    from ..data.images import collate_good

    images, bad = collate_good([item for _, item in items])
    good = torch.tensor([i for i, item in items if isinstance(item, torch.Tensor)], dtype=torch.long)
    return good, images, bad


def resident_images(data: Prepared, device: torch.device, share: float = 0.25) -> torch.Tensor | None:
    """The decoded uint8 pool copied once to the GPU when it takes under ``share`` of the free memory
    (CIFAR-10: 150 MB), so a batch is an index into device memory: no host copy, no loader."""
    if data.array is None or device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    if data.array.nbytes > share * free:
        log.info("pool of %.1f GB stays in host memory (%.1f GB free on %s)", data.array.nbytes / 1e9, free / 1e9, device)
        return None
    log.info("pool resident on %s as uint8 (%.0f MB)", device, data.array.nbytes / 1e6)
    return torch.from_numpy(np.ascontiguousarray(data.array)).to(device)


def batches(data: Prepared | ShardedPool, batch: int, order_of: Callable[[int], np.ndarray], start: int, stop: int,
            workers: int, part: DistContext = DistContext(), resident: torch.Tensor | None = None,
            seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(pool indices, uint8 images) for steps start..stop-1: drop-last epochs in ``order_of(epoch)``.

    Each epoch's order is asked for only when that epoch begins, so a method may base it on
    the weights trained so far (DeepCluster samples uniformly over its latest clusters).
    ``batch`` is the global batch; rank r of ``part`` takes its r-th contiguous 1/world of every
    one (DistributedSampler's disjoint shares, but of the engine's own per-epoch order, so a resumed
    or method-planned epoch splits the same way), and loads only those images. With ``resident``
    (the pool already on the device) a batch is gathered there. A sharded pool streams each rank's
    share of every epoch itself, fixed by ``seed`` (see ``selfsup.data.shards``).
    """
    per_epoch = len(data) // batch
    share = batch // part.world_size
    mine = slice(part.rank * share, (part.rank + 1) * share)
    step = start
    while step < stop:
        epoch, first = divmod(step, per_epoch)
        last = min(stop, (epoch + 1) * per_epoch)
        if isinstance(data, ShardedPool):
            yield from data.epoch_batches(epoch, seed, share, last - epoch * per_epoch, first, part.rank,
                                          part.world_size, workers)
            step = last
            continue
        order = order_of(epoch)
        slices = [order[k * batch:(k + 1) * batch][mine] for k in range(first, first + last - step)]
        if resident is not None:
            for idx in slices:
                rows = torch.from_numpy(idx)
                yield rows, resident[rows.to(resident.device, non_blocking=True)]
        elif data.array is not None:
            for idx in slices:
                yield torch.from_numpy(idx), torch.from_numpy(np.ascontiguousarray(data.array[idx]))
        else:
            loader = torch.utils.data.DataLoader(_Indexed(data.stream), batch_sampler=[s.tolist() for s in slices],
                                                 num_workers=workers, collate_fn=_collate_indexed,
                                                 pin_memory=torch.cuda.is_available())
            for good, images, bad in loader:
                data.report_bad(bad)
                yield good, images
        step = last


def _setting(cfg: PretrainConfig, recipe: Recipe, name: str, recipe_name: str | None = None) -> Any:
    """A training setting of the run: the config's (flag or file) when given, else the method's recipe's."""
    value = getattr(cfg, name)
    return value if value is not None else getattr(recipe, recipe_name or name)


def _resolve_budget(cfg: PretrainConfig, steps_per_epoch: int) -> int | None:
    given = [x for x in (cfg.steps, cfg.epochs, cfg.time_limit) if x is not None]
    if len(given) > 1:
        raise ConfigError("give one budget: --epochs, --steps or --time-limit")
    if cfg.steps is not None:
        if cfg.steps < 1:
            raise ConfigError("--steps must be at least 1")
        return cfg.steps
    if cfg.time_limit is not None:
        if cfg.time_limit <= 0:
            raise ConfigError("--time-limit must be positive")
        return None  # measured later
    epochs = 100.0 if cfg.epochs is None else cfg.epochs
    if epochs <= 0:
        raise ConfigError("--epochs must be positive")
    return max(1, round(epochs * steps_per_epoch))


def _method_args(cls: type[Method], cfg: PretrainConfig, n_images: int) -> dict:
    args = {**cls.recipe.args, **(cfg.method_args or {})}
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "backbone", "views"}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise ConfigError(f"method {cls.name} has no argument {', '.join(unknown)} (it takes: {', '.join(sorted(accepted))})")
    if "dataset_size" in accepted and args.get("dataset_size") is None:
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
    method_args = _method_args(method_cls, cfg, n_images)
    try:
        method = method_cls(backbone, views, **method_args)
    except ValueError as exc:  # a method's own check of its arguments or of the data
        raise ConfigError(f"{cfg.method}: {exc}") from None
    return method, method_args


def build_text_method(cfg: PretrainConfig, tokens: TokenSpec, n_texts: int) -> tuple[Method, dict]:
    """A text method of ``cfg`` with fresh weights: its encoder sized to the corpus's vocabulary."""
    method_cls = METHODS.get(cfg.method)
    if cfg.view_args:
        raise ConfigError(f"{cfg.method} is a text method: view_args apply to images only")
    backbone = build_text_backbone(cfg.backbone or method_cls.recipe.backbone, tokens.vocab_size, tokens.max_length)
    method_args = _method_args(method_cls, cfg, n_texts)
    try:
        return method_cls(backbone, tokens, **method_args), method_args
    except ValueError as exc:
        raise ConfigError(f"{cfg.method}: {exc}") from None


def _train_step(method: Method, optimizer: torch.optim.Optimizer, images: torch.Tensor, indices: torch.Tensor,
                generator: torch.Generator, amp: bool, device: torch.device, grad_clip: float | None,
                model: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
    """One optimizer step; returns the loss (averaged over ranks: the global batch's), the method's
    embedding batch (for the collapse watch) and any other scalars it reports (a pretext task's
    accuracy). ``model`` is the method wrapped in DistributedDataParallel, when there are ranks."""
    if method.players:
        return _turn_step(method, optimizer, images, generator, amp, device, grad_clip)
    extra = {"indices": indices} if method.needs_indices else {}
    out, extras = _forward(model or method, images, generator, amp, device, **extra)
    loss, embedding = out["loss"], out.get("embedding")
    reported = mean_over_ranks(loss.detach())  # every rank sees the same value, so all stop together
    if not torch.isfinite(reported):
        return reported, None, extras  # the caller stops before this step touches the weights
    _descend(loss, optimizer, method.parameters(), grad_clip)
    return reported, None if embedding is None else embedding.detach(), extras


def _forward(module: torch.nn.Module, images: torch.Tensor, generator: torch.Generator, amp: bool,
             device: torch.device, **kwargs: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The method's outputs, and the scalars it reports beside its loss and embedding, detached."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        out = module(images, generator, **kwargs)
    return out, {k: v.detach() for k, v in out.items() if k not in ("loss", "embedding")}


def _descend(loss: torch.Tensor, optimizer: torch.optim.Optimizer, parameters: Iterable[torch.nn.Parameter],
             grad_clip: float | None, *step_args: str) -> None:
    """Backward, clip ``parameters``' gradients, step (``step_args``: the player, for TurnOptimizers)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    optimizer.step(*step_args)


def _turn_step(method: Method, optimizer: TurnOptimizers, images: torch.Tensor, generator: torch.Generator, amp: bool,
               device: torch.device, grad_clip: float | None) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
    """One step of an adversarial method: each player in turn computes its loss (after the previous
    player's update, as in Goodfellow et al. 2014, algorithm 1) and steps its own optimizer; the other
    players' parameters are frozen meanwhile, so no gradient is spent on them. The reported loss is the
    sum of the players' losses; each one's is among the extras (``d_loss``, ``g_loss``)."""
    total, embedding, extras = torch.zeros((), device=device), None, {}
    for player in method.players:
        others = [p for other in method.players if other != player for p in optimizer.parameters(other)]
        for p in others:
            p.requires_grad_(False)
        try:
            out, reported = _forward(method, images, generator, amp, device, player=player)
            extras.update(reported)
            loss = out["loss"]
            if not torch.isfinite(loss.detach()):
                return loss.detach(), None, extras  # the caller stops before this player's step
            _descend(loss, optimizer, optimizer.parameters(player), grad_clip, player)
        finally:
            for p in others:
                p.requires_grad_(True)
        total = total + loss.detach()
        embedding = out["embedding"].detach() if "embedding" in out else embedding
    return total, embedding, extras


def _time_steps(method: Method, cfg: PretrainConfig, data: Prepared, batch: int, optimizer_settings: dict[str, Any],
                amp: bool, device: torch.device, part: DistContext) -> float:
    """Seconds per step, measured on a throw-away copy so the real run starts untouched (averaged over
    ranks, so every rank turns the time limit into the same step count)."""
    trial = copy.deepcopy(method)
    trial.logging_step = False  # time the common step: costly logged scalars are skipped on most steps
    optimizer = build_method_optimizer(method=trial, **optimizer_settings)
    lengths = getattr(data, "lengths", None)

    def timed(steps: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
        seconds = []
        for i, (indices, images) in enumerate(steps):
            t0 = time.perf_counter()
            _train_step(trial, optimizer, images.to(device), indices.to(device), step_generator(cfg.seed, 9, i), amp,
                        device, cfg.grad_clip)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - t0)
        return seconds

    if lengths is None:
        seconds = timed(batches(data, batch, lambda epoch: epoch_order(len(data), cfg.seed, epoch), 0, 6,
                                cfg.num_workers, part, seed=cfg.seed))
        # the first steps warm up allocators and caches
        local = float(np.median(seconds[2:]) if len(seconds) > 2 else np.mean(seconds))
    else:
        # Text: the run's own length-bucketed batches, enough that the mean covers short and long ones.
        # Each new length is a new shape whose first step pays one-time set-up, which a long run pays
        # once per length: time a second pass over the same batches. Measured on SST-2 the estimate is
        # still 1.25x (mlm) to 1.7x (next_token) the steady step time, so a run ends early, never late.
        trial_batches = list(batches(data, batch, lambda epoch: bucketed_order(lengths, batch, cfg.seed, epoch), 0,
                                     10, cfg.num_workers, part, seed=cfg.seed))
        timed(trial_batches)
        local = float(np.mean(timed(trial_batches)))
    return float(mean_over_ranks(torch.tensor(local, device=device)))


def pretrain(cfg: PretrainConfig, progress: bool = True) -> dict:
    """Pretrain ``cfg.method`` on ``cfg.data``; returns the result written to OUT/result.json."""
    started = time.perf_counter()
    out = Path(cfg.out)
    if cfg.resume:
        cfg = resumed_config(PretrainConfig, out, {"device": cfg.device, "num_workers": cfg.num_workers})
    METHODS.get(cfg.method)  # unknown names fail before any work
    if not cfg.data:
        raise ConfigError("pretrain needs --data (a folder, archive, .npy/.npz, 'digits' or 'cifar10')")
    part, device = init_distributed(cfg.device)  # one process, or this rank of torchrun's group
    try:
        return _pretrain(cfg, out, part, device, started, progress and part.is_main)
    finally:
        shutdown()


def _open_text_pool(cfg: PretrainConfig, out: Path, part: DistContext) -> tuple[TextPool, TokenSpec, TextPool | None]:
    """The deduplicated, tokenized corpus (rank 0 trains OUT/tokenizer.json; the others read it) and
    any --test texts, tokenized alike."""
    kind = METHODS.get(cfg.method).tokenizer
    pool = open_text_pool(cfg.data, out, kind, cfg.vocab_size, cfg.max_length) if part.is_main else None
    barrier()
    if pool is None:
        pool = open_text_pool(cfg.data, out, kind, cfg.vocab_size, cfg.max_length, train=False)
    test = None
    if cfg.test:
        collection = read_texts(cfg.test)
        if pool.classes and collection.classes and collection.classes != pool.classes:
            raise SelfSupError(f"{cfg.test}: classes {collection.classes} differ from the training data's {pool.classes}")
        test = TextPool(collection, pool.tokenizer, pool.spec)
    return pool, pool.spec, test


def _open_decoded_pool(cfg: PretrainConfig, out: Path, part: DistContext, modality: str,
                       progress: bool) -> tuple[DecodedPool, ClipSpec | VolumeSpec, Collection | None]:
    """Video files (or clip arrays) decoded into clips, or volume files normalized and resampled; their
    settings; and any test set."""
    if is_text_source(cfg.data):
        raise ConfigError(f"{cfg.method} is a {modality} method: --data must be a folder or archive of {modality} "
                          f"files or a .npy/.npz array of them, not text ({cfg.data})")
    train, test = train_test(cfg.data, cfg.test, out, kind=modality) if part.is_main else (None, None)
    barrier()
    if not part.is_main:
        train, test = train_test(cfg.data, cfg.test, out, kind=modality)
    if modality == "video":
        spec = probe_clip_spec(train, cfg.frames, cfg.frame_stride, cfg.image_size)
    else:
        spec = probe_volume_spec(train, cfg.image_size)
    return decoded_pool(train, spec, strict=cfg.strict, progress=progress), spec, test


def _open_pool(cfg: PretrainConfig, out: Path, part: DistContext,
               progress: bool) -> tuple[Prepared | ShardedPool | TextPool | DecodedPool,
                                        ImageSpec | TokenSpec | ClipSpec | VolumeSpec, Collection | TextPool | None]:
    """The training pool (decoded, streamed, or sharded tar files; tokenized texts; decoded clips or
    volumes), its image sizes (or token, clip or volume settings) and any test set."""
    modality = METHODS.get(cfg.method).modality
    if modality in ("video", "volume"):
        return _open_decoded_pool(cfg, out, part, modality, progress)
    if is_video_source(cfg.data):
        video_methods = ", ".join(n for n in METHODS.names() if METHODS.get(n).modality == "video")
        raise ConfigError(f"{cfg.data} holds videos and {cfg.method} is not a video method (video methods: {video_methods})")
    if modality == "text":
        if not is_text_source(cfg.data):
            raise ConfigError(f"{cfg.method} is a text method: --data must be a .txt, .tsv or .csv file or a folder "
                              f"of .txt files, not {cfg.data}")
        return _open_text_pool(cfg, out, part)
    if is_text_source(cfg.data):
        text_methods = ", ".join(n for n in METHODS.names() if METHODS.get(n).modality == "text")
        raise ConfigError(f"{cfg.data} is text and {cfg.method} works on images (text methods: {text_methods})")
    if is_shard_spec(cfg.data):
        if METHODS.get(cfg.method).plan_epoch is not Method.plan_epoch:
            raise ConfigError(f"{cfg.method} plans each epoch over the whole pool, which needs random access; "
                              "sharded data is streamed: use a folder, archive or array file")
        pool = ShardedPool(cfg.data, strict=cfg.strict)
        pool.spec = spec_from_shape(pool.first_shape(), cfg.image_size)
        log.info("streaming %s", pool.describe())
        return pool, pool.spec, None
    train, test = train_test(cfg.data, cfg.test, out) if part.is_main else (None, None)
    barrier()  # rank 0 saved any split first; the others read it
    if not part.is_main:
        train, test = train_test(cfg.data, cfg.test, out)
    spec = probe_spec(train, cfg.image_size)
    return Prepared(train, spec, strict=cfg.strict, progress=progress), spec, test


def _first_images(data: Prepared | ShardedPool, n: int) -> torch.Tensor:
    if isinstance(data, ShardedPool):
        return data.head(n)
    return next(data.batches(np.arange(min(len(data), n)), n))[1]


def _pretrain(cfg: PretrainConfig, out: Path, part: DistContext, device: torch.device, started: float,
              progress: bool) -> dict:
    method_cls = METHODS.get(cfg.method)
    recipe = method_cls.recipe
    text, five_d = method_cls.modality == "text", method_cls.modality in ("video", "volume")
    if text and cfg.show_batch:
        raise ConfigError("--show-batch draws images; it does not apply to text methods")
    if method_cls.players and part.active:
        raise ConfigError(f"{cfg.method}: {ONE_PROCESS_ONLY}")
    prepare_out(out, cfg.resume, cfg.overwrite, create=part.is_main)
    barrier()  # the folder exists (rank 0 made it) before any rank reads or writes in it
    data, spec, test = _open_pool(cfg, out, part, progress)
    if len(data) < 2:
        raise SelfSupError(f"{cfg.data}: need at least 2 readable images, found {len(data)}")
    batch = cfg.batch_size
    if batch > len(data):
        log.warning("batch size %d exceeds the %d images; using %d", batch, len(data), len(data))
        batch = len(data) // part.world_size * part.world_size
    local_batch(batch, part)  # the global batch must split evenly among the ranks
    steps_per_epoch = len(data) // batch
    normalization = None
    if not text:  # normalization statistics from (a sample of) the pool, saved beside the encoder
        normalization = estimate_normalization(_first_images(data, 10000 if data.array is not None and not five_d else 512))
    seed_everything(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    if text:
        method, method_args = build_text_method(cfg, spec, len(data))
    else:
        method, method_args = build_method(cfg, spec.channels, spec.image_size, normalization, len(data))
    method = method.to(device)
    model = wrap_data_parallel(method, part, device, recipe.sync_batchnorm)
    backbone = method.backbone
    backbone_name = backbone.spec.name
    backbone.channels_last = method_cls.modality == "image" and (cfg.channels_last if cfg.channels_last is not None else device.type == "cuda")
    if backbone.channels_last:
        method.to(memory_format=torch.channels_last)
    amp = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")

    opt_name = cfg.optimizer or recipe.optimizer
    base_lr = _setting(cfg, recipe, "lr", "base_lr")
    wd, momentum = _setting(cfg, recipe, "weight_decay"), _setting(cfg, recipe, "momentum")
    lars_eta, lars_clip = _setting(cfg, recipe, "lars_eta"), _setting(cfg, recipe, "lars_clip")
    warmup_fraction = _setting(cfg, recipe, "warmup_fraction")
    if not 0 <= warmup_fraction < 1:
        raise ConfigError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    lr = base_lr * batch / 256
    optimizer_settings = dict(name=opt_name, lr=lr, weight_decay=wd, momentum=momentum, betas=recipe.adam_betas,
                              lars_eta=lars_eta, lars_clip=lars_clip)
    optimizer = build_method_optimizer(method=method, **optimizer_settings)

    total = _resolve_budget(cfg, steps_per_epoch)
    if total is None:
        per_step = _time_steps(method, cfg, data, batch, optimizer_settings, amp, device, part)
        remaining = cfg.time_limit - (time.perf_counter() - started)  # type: ignore[operator]
        total = max(1, int(remaining / per_step))
        log.info("time limit %.0f s: %.3f s per step -> %d steps", cfg.time_limit, per_step, total)
    warmup_steps = int(round(warmup_fraction * total))

    resolved = replace(cfg, backbone=backbone_name, steps=total, epochs=None, time_limit=None, batch_size=batch, lr=base_lr,
                       optimizer=opt_name, weight_decay=wd, momentum=momentum, warmup_fraction=warmup_fraction,
                       lars_eta=lars_eta, lars_clip=lars_clip,
                       views=cfg.views or recipe.views, image_size=None if text else spec.image_size,
                       max_length=spec.max_length if text else None, vocab_size=spec.vocab_size if text else None,
                       frames=getattr(spec, "frames", None), frame_stride=getattr(spec, "stride", None),
                       resume=False, overwrite=False, method_args=method_args, show_batch=None)
    # Step checkpoints hold the backbone as trained (colorization's takes 1 channel), described here.
    encoder_info = {"backbone": asdict(backbone.spec), "feature_dim": backbone.feature_dim, "method": cfg.method,
                    **(_text_info(spec) if text else
                       {"image_size": spec.image_size, "load_size": getattr(spec, "load_size", spec.image_size),
                        "normalization": asdict(method.input_normalization), **_pool_info(spec)})}
    start = 0
    folder = out / "checkpoints"
    if cfg.resume:
        latest = ckpt.latest_checkpoint(folder)
        if latest is not None:
            start = ckpt.restore(latest, method, optimizer)["step"]
            log.info("resuming %s from step %d of %d", out, start, total)
    elif part.is_main:
        save_yaml(to_dict(resolved), out / "config.yaml")
    meta = {"config": to_dict(resolved), "encoder": encoder_info, "total_steps": total}

    def order_of(epoch: int) -> np.ndarray:
        """The method's plan for this epoch (DeepCluster's cluster-uniform sampling) or a seeded shuffle."""
        context = EpochContext(epoch=epoch, n_images=len(data), seed=cfg.seed, optimizer=optimizer, device=device,
                               features=lambda: extract_pool_features(backbone, data, normalization,
                                                                      getattr(spec, "image_size", 0), device,
                                                                      num_workers=cfg.num_workers),
                               batch_size=batch, lengths=getattr(data, "lengths", None))
        plan = method.plan_epoch(context)
        return epoch_order(len(data), cfg.seed, epoch) if plan is None else share_plan(method, plan, device)

    if cfg.show_batch and part.is_main:
        _show_batch(method, data, cfg, device, f"{cfg.method}, before training" if start == 0 else f"step {start}")
    logger = MetricsLogger(out, resume_step=start, columns=COLUMNS + list(method.logged)) if part.is_main else None
    kill_at = int(os.environ.get(KILL_ENV, "-1"))
    bar = tqdm(total=total, initial=start, desc=f"{cfg.method}", unit="step", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    loop_start, last_loss, images_seen, tokens_seen = time.perf_counter(), float("nan"), 0, 0
    watch = CollapseWatch() if method.collapse_prone else CollapseWatch(std_floor=0.0)
    window_start, window_images = loop_start, 0
    try:
        pool = resident_images(data, device)
        if cfg.compile:  # in place, so parameter names (and saved weights) stay those of the plain model
            method.backbone.compile()
        for step, (indices, images) in enumerate(batches(data, batch, order_of, start, total, cfg.num_workers, part,
                                                         pool, cfg.seed), start=start):
            lr_now = warmup_cosine(step, total, lr, warmup_steps)
            set_learning_rates(optimizer, lr, lr_now)
            images = images.to(device, non_blocking=True)
            # Each rank draws its own views' randomness; one process keeps the stream it always had.
            generator = step_generator(cfg.seed, 2, step, *((part.rank,) if part.active else ()))
            # one rule for what metrics.csv records and what the method computes for it
            method.logging_step = due(step + 1, cfg.log_every, total)
            loss, embedding, extras = _train_step(method, optimizer, images, indices.to(device), generator, amp,
                                                  device, cfg.grad_clip, model)
            if not torch.isfinite(loss):
                kept = ckpt.latest_checkpoint(folder)
                where = f"last good checkpoint: {kept}" if kept else "no checkpoint was written yet"
                raise NonFiniteLossError(f"non-finite loss ({loss.item()}) at step {step}; stopped, {where}")
            method.after_step(step, total)
            done = step + 1
            images_seen += len(images) * part.world_size
            if text:
                tokens_seen += int(data.lengths[indices.numpy()].sum()) * part.world_size
            window_images += len(images) * part.world_size
            bar.update(1)
            if method.logging_step and logger is not None:
                last_loss = float(loss)
                now = time.perf_counter()
                ips = window_images / max(now - window_start, 1e-9)
                window_start, window_images = now, 0
                health = watch.check(embedding, done) if embedding is not None else {}
                logger.log({"step": done, "epoch": round(done / steps_per_epoch, 4), "loss": last_loss, "lr": lr_now,
                            "images_per_second": round(ips, 2), "seconds": round(now - loop_start, 3), **health,
                            **{k: round(float(v), 5) for k, v in extras.items()}})
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr_now:.3g}", img_s=f"{ips:.0f}")
            if due(done, cfg.checkpoint_every, total) and part.is_main:
                ckpt.save_checkpoint(folder, done, method, optimizer, meta)
            if done == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    train_seconds = time.perf_counter() - loop_start
    barrier()
    if not part.is_main:  # rank 0 alone exports the encoder and scores it
        return {"rank": part.rank, "steps": total}
    shutdown()
    encoder, encoder_normalization = method.export_encoder()
    if text:
        save_encoder(out, encoder, None, None, None, {**_text_info(spec), "method": cfg.method, "steps": total})
    else:
        save_encoder(out, encoder, encoder_normalization, spec.image_size, getattr(spec, "load_size", spec.image_size),
                     {"method": cfg.method, "steps": total, **_pool_info(spec)})
    if cfg.show_batch:
        _show_batch(method, data, cfg, device, f"{cfg.method}, after {total} steps")

    result = {"method": cfg.method, "backbone": backbone_name, "steps": total, "epochs": round(total / steps_per_epoch, 3),
              "batch_size": batch, "processes": part.world_size, "n_images": len(data), "skipped_images": data.skipped + len(data.reported),
              "final_loss": last_loss, "train_seconds": round(train_seconds, 3),
              "images_per_second": round(images_seen / max(train_seconds, 1e-9), 2),
              **({"tokens_per_second": round(tokens_seen / max(train_seconds, 1e-9), 1)} if text else {}), **watch.last,
              "collapse_warning": watch.warned, "out": str(out)}
    if data.labels is not None and len(np.unique(data.labels)) > 1:
        result.update(_monitor_knn(encoder.to(device), data, test if cfg.test else None, spec, encoder_normalization,
                                   device, cfg))
    result["seconds"] = round(time.perf_counter() - started, 3)
    ckpt.atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    return result


def _text_info(tokens: TokenSpec) -> dict:
    """How a text encoder reads its input (encoder.json): the token settings and the tokenizer file."""
    return {"modality": "text", "tokens": tokens.info(), "tokenizer": TOKENIZER_FILE}


def _pool_info(spec) -> dict:
    """How a clip or volume encoder reads its input (encoder.json): its settings; nothing for images."""
    if isinstance(spec, ClipSpec):
        return {"modality": "video", "clip": spec.info()}
    if isinstance(spec, VolumeSpec):
        return {"modality": "volume", "volume": spec.info()}
    return {}


def _show_batch(method: Method, data: Prepared, cfg: PretrainConfig, device: torch.device, title: str) -> None:
    """Draw the method's pretext task on the first 8 images of the pool to ``cfg.show_batch``."""
    from .show import render_panels

    images = _first_images(data, 8)
    was_training = method.training
    method.eval()
    try:
        panels = method.illustrate(images.to(device), step_generator(cfg.seed, 7, 0))
    finally:
        method.train(was_training)
    render_panels(panels, Path(cfg.show_batch), title)
    log.info("wrote %s", cfg.show_batch)


def _monitor_knn(backbone, data: Prepared, test, spec, normalization, device, cfg: PretrainConfig) -> dict:
    """kNN top-1 on a held-out 10% of the training data (or on --test when the user passed it)."""
    from ..evaluate.features import extract_features
    from ..evaluate.knn import knn_predict, topk_accuracy

    labels = np.asarray(data.labels)
    if test is not None and test.has_labels:
        if isinstance(test, TextPool):
            test_data = test
        elif isinstance(spec, (ClipSpec, VolumeSpec)):
            test_data = decoded_pool(test, spec, strict=cfg.strict, progress=False)
        else:
            test_data = Prepared(test, spec, strict=cfg.strict, progress=False)
        bank_idx, query_source, query_idx = np.arange(len(data)), test_data, np.arange(len(test_data))
        query_labels = np.asarray(test_data.labels)
        name = "test"
    else:
        bank_idx, query_idx = stratified_split(labels, 0.1, 0)
        query_source, query_labels, name = data, labels, "held-out 10% of the training data"
    image_size = getattr(spec, "image_size", 0)
    bank, bank_pos = extract_features(backbone, data, normalization, image_size, device, indices=bank_idx)
    query, query_pos = extract_features(backbone, query_source, normalization, image_size, device, indices=query_idx)
    n_classes = int(labels.max()) + 1
    scores = knn_predict(bank, torch.from_numpy(labels[bank_idx[bank_pos]]), query, n_classes)
    acc = topk_accuracy(scores, torch.from_numpy(query_labels[query_idx[query_pos]]))
    return {"knn_top1": acc[1], "knn_on": name}


__all__ = ["pretrain", "epoch_order", "step_indices"]
