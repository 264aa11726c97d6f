"""``selfsup pretrain``: build a run from its config, train it in the engine's loop, export and score it.

The loop (``engine.loop``) is the one every command trains in; this module adds pretraining's parts:
the pool and its batches, the method and its optimizer, the collapse watch, the exported encoder and
a kNN monitor on labeled pools.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..backbones.features import extract_features, extract_pool_features
from ..backbones.io import save_encoder
from ..backbones.pretrained import imagenet_normalization
from ..backbones.registry import prefers_channels_last
from ..config import PretrainConfig, resumed_config, save_yaml, to_dict
from ..data.decoded import decoded_pool
from ..data.images import Prepared
from ..data.order import bucketed_order, epoch_order
from ..data.splits import stratified_split
from ..data.text import TOKENIZER_FILE, TextPool, TokenSpec
from ..data.video import ClipSpec
from ..data.volume import VolumeSpec
from ..methods import METHODS, ONE_PROCESS_ONLY, EpochContext, Method
from ..methods.base import RunBudget
from ..utils import checkpoint as ckpt
from ..utils.distributed import (DistContext, barrier, init_distributed, local_batch, max_over_ranks, mean_over_ranks,
                                 share_plan, shutdown, wrap_data_parallel)
from ..utils.errors import ConfigError, SelfSupError
from ..utils.knn import knn_predict, topk_accuracy
from ..utils.monitor import CollapseWatch
from ..utils.runtime import prepare_out, seed_everything, step_generator
from ..views import Normalization, estimate_normalization
from .batches import batches, first_images, resident_images
from .budget_choice import choose_for_time
from .build import budget_warning, build_method, build_text_method, resolve_recipe, training_settings
from .logger import COLUMNS, MetricsLogger
from .loop import Loop, StepResult, Turn, budget_steps, seconds_per_step, steps_in_time
from .optim import TurnOptimizers, build_method_optimizer
from .pools import Pool, PoolSpec, open_pool
from .schedule import warmup_cosine

log = logging.getLogger("selfsup")
# The random streams of step_generator(seed, STREAM, step): the run's views, and the timed warm-up's.
VIEWS_STREAM, TIMING_STREAM = 2, 9
REPLAN_AT, REPLAN_MAX = 25, 4  # a time limit's count is re-planned after at most 25 steps, to at most 4x the estimate


def method_turns(method: Method, optimizer: torch.optim.Optimizer | TurnOptimizers) -> list[Turn]:
    """A step's turns: one over every parameter, or an adversarial method's one per player (the other
    players' parameters frozen meanwhile)."""
    if not method.players:
        return [Turn(None, list(method.parameters()))]
    return [Turn(player, list(optimizer.parameters(player)),
                 [p for other in method.players if other != player for p in optimizer.parameters(other)])
            for player in method.players]


def pretrain_forward(method: Method, model: torch.nn.Module | None, amp: bool, device: torch.device
                     ) -> Callable[[torch.Tensor, torch.Tensor, torch.Generator, str | None], StepResult]:
    """One turn's forward of ``method`` (through ``model``, its DistributedDataParallel wrapper, when there
    are ranks) on a batch: its loss, the loss averaged over ranks (the global batch's), its embedding
    batch and the other scalars it reports (a pretext task's accuracy), detached."""

    def forward(images: torch.Tensor, indices: torch.Tensor, generator: torch.Generator,
                player: str | None) -> StepResult:
        kwargs: dict[str, Any] = {"player": player} if player is not None else (
            {"indices": indices} if method.needs_indices else {})
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = (model if player is None and model is not None else method)(images, generator, **kwargs)
        loss = out["loss"]
        reported = loss.detach() if player is not None else mean_over_ranks(loss.detach())
        embedding = out.get("embedding")
        return StepResult(loss, reported, {k: v.detach() for k, v in out.items() if k not in ("loss", "embedding")},
                          None if embedding is None else embedding.detach())

    return forward


def pretrain(cfg: PretrainConfig, progress: bool = True, choose: bool = False) -> dict:
    """Pretrain ``cfg.method`` on ``cfg.data``; returns the result written to OUT/result.json. With ``choose``
    (the command gave a time limit and no method, encoder or other budget), the method, backbone, stem and
    input side are the measured best for that time on this device type (``budget_choice``)."""
    started = time.perf_counter()
    out = Path(cfg.out)
    if cfg.resume:
        cfg = resumed_config(PretrainConfig, out, {"device": cfg.device, "num_workers": cfg.num_workers})
    METHODS.get(cfg.method)  # unknown names fail before any work
    if not cfg.data:
        raise ConfigError("pretrain needs --data (a folder, archive, .npy/.npz, 'digits' or 'cifar10')")
    part, device = init_distributed(cfg.device)  # one process, or this rank of torchrun's group
    picked = choose_for_time(cfg.time_limit, device.type) if choose and cfg.time_limit and not cfg.resume else None
    if picked is not None:
        cfg = replace(cfg, method=picked.method, backbone=picked.backbone, stem=picked.stem,
                      image_size=picked.image_size)
        if part.is_main:
            log.info("no method given: %s; --method, --backbone, --stem or --image-size choose otherwise",
                     picked.describe())
    elif choose and part.is_main:
        log.info("no method given and no measured choice for a %s: the defaults (%s)", device.type, cfg.method)
    try:
        run = PretrainRun.build(cfg, out, part, device, started, progress and part.is_main)
        run.picked = None if picked is None else picked.as_dict()
        run.train()
        return run.finish()
    finally:
        shutdown()


@dataclass
class PretrainRun:
    """A pretraining run, built from its config: the pool, the method and its optimizer, the budget."""

    cfg: PretrainConfig  # as resolved: the budget in steps, every recipe default filled in
    out: Path
    part: DistContext
    device: torch.device
    started: float
    progress: bool
    data: Pool
    spec: PoolSpec
    test: Any
    normalization: Normalization | None
    method: Method
    model: torch.nn.Module  # the method, wrapped in DistributedDataParallel when there are ranks
    optimizer: torch.optim.Optimizer | TurnOptimizers
    peak_lr: float
    amp: bool
    meta: dict[str, Any]
    resuming: bool = False  # with --resume: restore the newest checkpoint
    show_batch: str | None = None  # --show-batch's file (the saved config leaves it out)
    time_limit: float | None = None  # --time-limit: the step count is re-planned once from the run's own steps
    train_seconds: float = 0.0
    images_seen: int = 0
    tokens_seen: int = 0
    last: StepResult | None = None
    watch: CollapseWatch | None = None
    picked: dict | None = None  # the measured choice for a time budget, when the command made none

    @property
    def text(self) -> bool:
        return self.method.modality == "text"

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data) // self.cfg.batch_size

    @classmethod
    def build(cls, cfg: PretrainConfig, out: Path, part: DistContext, device: torch.device, started: float,
              progress: bool) -> "PretrainRun":
        """Open the pool, build the method and its optimizer, and turn the budget into steps."""
        method_cls = METHODS.get(cfg.method)
        if method_cls.modality == "text" and cfg.show_batch:
            raise ConfigError("--show-batch draws images; it does not apply to text methods")
        if method_cls.players and part.active:
            raise ConfigError(f"{cfg.method}: {ONE_PROCESS_ONLY}")
        prepare_out(out, cfg.resume, cfg.overwrite, create=part.is_main)
        barrier()  # the folder exists (rank 0 made it) before any rank reads or writes in it
        data, spec, test = open_pool(cfg, out, part, progress)
        if len(data) < 2:
            raise SelfSupError(f"{cfg.data}: need at least 2 readable images, found {len(data)}")
        batch = _global_batch(cfg.batch_size, len(data), part)
        # Published weights expect the input they were trained on: ImageNet's statistics.
        normalization = (imagenet_normalization(spec.channels) if cfg.init and method_cls.modality == "image"
                         else _pool_normalization(data, method_cls.modality))
        total = budget_steps(cfg.steps, cfg.epochs, cfg.time_limit, max(1, len(data) // batch), default_epochs=100.0)
        # A time limit's step count needs a built method to time: it is built for the shortest run first
        # and rebuilt if the recipe differs at the step count the timing gives.
        recipe_cfg, lines = resolve_recipe(cfg, RunBudget(total or 1, batch, len(data)))
        run = cls.assemble(recipe_cfg, out, part, device, started, progress, data, spec, test, normalization, batch)
        if total is None:
            per_step = run.seconds_per_step()
            total = steps_in_time(cfg.time_limit, started, per_step)  # type: ignore[arg-type]
            log.info("time limit %.0f s: %.3f s per step -> %d steps", cfg.time_limit, per_step, total)
            timed_cfg, lines = resolve_recipe(cfg, RunBudget(total, batch, len(data)))
            if timed_cfg != recipe_cfg:
                run = cls.assemble(timed_cfg, out, part, device, started, progress, data, spec, test, normalization,
                                   batch)
        budget = RunBudget(total, batch, len(data))
        if part.is_main and not cfg.resume:
            if lines:
                log.info("%s's recipe for %d steps (%.1f epochs of %d items, batch %d):", cfg.method, total,
                         budget.epochs, len(data), batch)
            for line in lines:
                log.info("  %s", line)
            if cfg.channels_last is None and METHODS.get(cfg.method).modality == "image":
                log.info("memory format: %s (chosen for the backbone; --channels-last true|false sets it)",
                         "channels_last" if run.method.backbone.channels_last else "contiguous")
            warning = budget_warning(cfg.method, budget)
            if warning:
                log.warning("%s", warning)
        run.cfg = replace(run.cfg, steps=total, epochs=None, time_limit=None)
        run.resuming, run.show_batch = cfg.resume, cfg.show_batch
        run.time_limit = None if cfg.resume else cfg.time_limit
        run.meta = {"config": to_dict(run.cfg), "encoder": run.encoder_info(), "total_steps": total}
        return run

    @classmethod
    def assemble(cls, cfg: PretrainConfig, out: Path, part: DistContext, device: torch.device, started: float,
                 progress: bool, data: Pool, spec: PoolSpec, test: Any, normalization: Normalization | None,
                 batch: int) -> "PretrainRun":
        """The method with fresh seeded weights, its optimizer and the config as resolved (every recipe
        default filled in), over an opened pool."""
        method_cls = METHODS.get(cfg.method)
        seed_everything(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        if method_cls.modality == "text":
            method, method_args = build_text_method(cfg, spec, len(data))
        else:
            method, method_args = build_method(cfg, spec.channels, spec.image_size, normalization, len(data))
        method = method.to(device)
        channels_last = cfg.channels_last if cfg.channels_last is not None else prefers_channels_last(method.backbone)
        method.backbone.channels_last = method_cls.modality == "image" and channels_last
        if method.backbone.channels_last:
            method.to(memory_format=torch.channels_last)
        # After the layout change: DDP's gradient buckets take the parameters' strides when it wraps them.
        model = wrap_data_parallel(method, part, device, method_cls.recipe.sync_batchnorm)
        amp = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
        settings = training_settings(cfg, method_cls.recipe)
        peak_lr = settings["lr"] * batch / 256
        optimizer = build_method_optimizer(method=method, **cls.optimizer_settings(settings, peak_lr, method_cls))
        resolved = replace(cfg, **settings, batch_size=batch, backbone=method.backbone.spec.name,
                           channels_last=method.backbone.channels_last,
                           method_args=method_args, resume=False, overwrite=False, show_batch=None,
                           **_pool_settings(spec, method_cls.modality))
        return cls(resolved, out, part, device, started, progress, data, spec, test, normalization, method, model,
                   optimizer, peak_lr, amp, {})

    @staticmethod
    def optimizer_settings(settings: dict[str, Any], peak_lr: float, method_cls: type[Method]) -> dict[str, Any]:
        """``build_method_optimizer``'s keywords from the run's training settings."""
        return dict(name=settings["optimizer"], lr=peak_lr, weight_decay=settings["weight_decay"],
                    momentum=settings["momentum"], betas=method_cls.recipe.adam_betas,
                    lars_eta=settings["lars_eta"], lars_clip=settings["lars_clip"])

    def encoder_info(self) -> dict[str, Any]:
        """How step checkpoints' backbone (as trained: colorization's takes 1 channel) reads its input."""
        backbone, spec = self.method.backbone, self.spec
        return {"backbone": asdict(backbone.spec), "feature_dim": backbone.feature_dim, "method": self.cfg.method,
                **(_text_info(spec) if self.text else
                   {"image_size": spec.image_size, "load_size": getattr(spec, "load_size", spec.image_size),
                    "normalization": asdict(self.method.input_normalization), **_pool_info(spec)})}

    def order_of(self, epoch: int) -> np.ndarray:
        """The method's plan for this epoch (DeepCluster's cluster-uniform sampling) or a seeded shuffle."""
        cfg, data = self.cfg, self.data
        context = EpochContext(epoch=epoch, n_images=len(data), seed=cfg.seed, optimizer=self.optimizer,
                               device=self.device,
                               features=lambda: extract_pool_features(self.method.backbone, data, self.normalization,
                                                                      getattr(self.spec, "image_size", 0), self.device,
                                                                      num_workers=cfg.num_workers),
                               batch_size=cfg.batch_size, lengths=getattr(data, "lengths", None))
        plan = self.method.plan_epoch(context)
        return epoch_order(len(data), cfg.seed, epoch) if plan is None else share_plan(self.method, plan, self.device)

    def loop(self, method: Method, optimizer: Any, **settings: Any) -> Loop:
        """The engine's loop over ``method`` (the run's, or a throw-away copy) with warm-up and cosine decay."""
        cfg = self.cfg
        # The schedule reads the step count when it is used: a time limit's count is re-planned once, early.
        return Loop(optimizer, cfg.steps or 1, lambda step: self.lr_at(step), self.peak_lr, grad_clip=cfg.grad_clip,
                    turns=method_turns(method, optimizer),
                    after_step=[lambda step: method.after_step(step, self.cfg.steps or 1)], **settings)

    def lr_at(self, step: int) -> float:
        """Warm-up, then cosine decay over the run's steps."""
        total = self.cfg.steps or 1
        return warmup_cosine(step, total, self.peak_lr, int(round(self.cfg.warmup_fraction * total)))

    def replan_step(self) -> int:
        """After which step a time limit's count is re-planned: early, and before the warm-up ends where
        there is one, so the schedule is fixed for nearly all of the run."""
        total = self.cfg.steps or 1
        warmup = int(round(self.cfg.warmup_fraction * total))
        at = min(REPLAN_AT, max(3, warmup // 2 if warmup >= 6 else total // 20))
        return at if at < total - 1 else 0

    def replan(self, loop: Loop, done: int, marks: list[float]) -> None:
        """Re-plan the step count from the real run's step time so the loop ends when the time limit does:
        the throw-away copy's timing estimates a step from its first few, which run slower than a warm
        run's (by 14 % for a ResNet-18 on a 2-core CPU). Every rank takes the smallest count."""
        per_step = (marks[-1] - marks[1]) / max(1, len(marks) - 2)  # steps 2..done: the first pays set-up
        left = self.time_limit - (time.perf_counter() - self.started)
        planned = self.cfg.steps or 1
        total = min(REPLAN_MAX * planned, done + max(1, int(left / max(per_step, 1e-9))))
        total = -max_over_ranks(-total, self.device)
        if total == planned:
            return
        log.info("time limit %.0f s: %.3f s per step in the run -> %d steps instead of %d", self.time_limit, per_step,
                 total, planned)
        self.cfg = replace(self.cfg, steps=total)
        loop.total_steps = total
        self.meta["total_steps"], self.meta["config"] = total, to_dict(self.cfg)
        if self.part.is_main:
            save_yaml(to_dict(self.cfg), self.out / "config.yaml")

    def forward(self, method: Method, model: torch.nn.Module | None, stream: int) -> Callable:
        """The loop's forward: views and loss of the step's batch, with randomness drawn from
        (seed, ``stream``, step)."""
        turn = pretrain_forward(method, model, self.amp, self.device)
        lengths = getattr(self.data, "lengths", None)
        first_player = method.players[0] if method.players else None
        generator = torch.Generator()

        def forward(step: int, batch: tuple[torch.Tensor, torch.Tensor], logging: bool, player: str | None) -> StepResult:
            nonlocal generator
            indices, images = batch
            if player == first_player:  # one generator a step: an adversarial method's players draw from it in turn
                method.logging_step = logging  # one rule for what metrics.csv records and what the method computes
                # Each rank draws its own views' randomness; one process keeps the stream it always had.
                parts = (self.part.rank,) if self.part.active and stream == VIEWS_STREAM else ()
                generator = step_generator(self.cfg.seed, stream, step, *parts)
                if lengths is not None:
                    self.tokens_seen += int(lengths[indices.numpy()].sum()) * self.part.world_size
            return turn(images.to(self.device, non_blocking=True), indices.to(self.device), generator, player)

        return forward

    def seconds_per_step(self) -> float:
        """Seconds per step, measured on a throw-away copy so the real run starts untouched (averaged over
        ranks, so every rank turns the time limit into the same step count)."""
        trial = copy.deepcopy(self.method)
        optimizer = build_method_optimizer(method=trial, **self.optimizer_settings(training_settings(
            self.cfg, self.method.recipe), self.peak_lr, type(self.method)))
        loop = self.loop(trial, optimizer)
        data, batch, seed, lengths = self.data, self.cfg.batch_size, self.cfg.seed, getattr(self.data, "lengths", None)

        def run_steps(items: list, after_step: Callable[[int], None]) -> None:
            loop.total_steps, loop.after_step = len(items), [after_step]
            loop.lr_at = lambda step: self.peak_lr
            loop.run(self.forward(trial, None, TIMING_STREAM), items)

        if lengths is None:
            items = list(batches(data, batch, lambda epoch: epoch_order(len(data), seed, epoch), 0, 6,
                                 self.cfg.num_workers, self.part, seed=seed))
            local = seconds_per_step(lambda mark: run_steps(items, mark), self.device)
        else:
            # Text: the run's own length-bucketed batches, enough that the mean covers short and long ones.
            # Each new length is a new shape whose first step pays one-time set-up, which a long run pays
            # once per length: time a second pass over the same batches. Measured on SST-2 the estimate is
            # still 1.25x (mlm) to 1.7x (next_token) the steady step time, so a run ends early, never late.
            items = list(batches(data, batch, lambda epoch: bucketed_order(lengths, batch, seed, epoch), 0, 10,
                                 self.cfg.num_workers, self.part, seed=seed))
            run_steps(items, lambda step: None)
            local = seconds_per_step(lambda mark: run_steps(items, mark), self.device, skip=0, mean=True)
        self.tokens_seen = 0
        return float(mean_over_ranks(torch.tensor(local, device=self.device)))

    def train(self) -> None:
        """Restore the newest checkpoint (with --resume), then run the loop to the last step."""
        cfg, method, part = self.cfg, self.method, self.part
        self.watch = CollapseWatch() if method.collapse_prone else CollapseWatch(std_floor=0.0)
        loop = self.loop(method, self.optimizer, state=method, folder=self.out / "checkpoints",
                         checkpoint_every=cfg.checkpoint_every, meta=self.meta, log_every=cfg.log_every,
                         row=self.log_row, items_per_step=cfg.batch_size, is_main=part.is_main,
                         description=cfg.method, progress=self.progress)
        start = loop.restore() if self.resuming else 0
        if not self.resuming and part.is_main:
            save_yaml(to_dict(cfg), self.out / "config.yaml")
        if self.show_batch and part.is_main:
            _show_batch(method, self.data, self.show_batch, cfg.seed, self.device,
                        f"{cfg.method}, before training" if start == 0 else f"step {start}")
        if part.is_main:
            loop.logger = MetricsLogger(self.out, resume_step=start, columns=COLUMNS + list(method.logged))
        loop_start = time.perf_counter()
        pool = resident_images(self.data, self.device)
        if cfg.compile:  # in place, so parameter names (and saved weights) stay those of the plain model
            method.backbone.compile()
        stop = cfg.steps
        if self.time_limit and start == 0 and self.replan_step():
            at, marks = self.replan_step(), [loop_start]
            loop.after_step.append(lambda step: marks.append(time.perf_counter()) if step < at else None)
            loop.after_step.append(lambda step: self.replan(loop, at, marks) if step == at - 1 else None)
            stop = REPLAN_MAX * cfg.steps  # batches are drawn lazily: the loop ends at its (re-planned) count
        items = batches(self.data, cfg.batch_size, self.order_of, start, stop, cfg.num_workers, part, pool, cfg.seed)
        self.last = loop.run(self.forward(method, self.model, VIEWS_STREAM), items, start)
        self.train_seconds = time.perf_counter() - loop_start
        self.images_seen = (self.cfg.steps - start) * cfg.batch_size

    def log_row(self, done: int, result: StepResult) -> dict[str, Any]:
        """A log row's pretraining columns: epoch, the collapse watch's statistics, the method's scalars."""
        health = self.watch.check(result.embedding, done) if result.embedding is not None else {}
        return {"epoch": round(done / self.steps_per_epoch, 4), **health,
                **{k: round(float(v), 5) for k, v in result.scalars.items()}}

    def finish(self) -> dict:
        """Rank 0 exports the encoder, scores it with kNN on labeled pools, and writes result.json."""
        cfg, out, data, spec, total = self.cfg, self.out, self.data, self.spec, self.cfg.steps
        barrier()
        if not self.part.is_main:  # rank 0 alone exports the encoder and scores it
            return {"rank": self.part.rank, "steps": total}
        shutdown()
        encoder, encoder_normalization = self.method.export_encoder()
        if self.text:
            save_encoder(out, encoder, None, None, None, {**_text_info(spec), "method": cfg.method, "steps": total})
        else:
            save_encoder(out, encoder, encoder_normalization, spec.image_size, getattr(spec, "load_size", spec.image_size),
                         {"method": cfg.method, "steps": total, **_pool_info(spec)})
        if self.show_batch:
            _show_batch(self.method, data, self.show_batch, cfg.seed, self.device, f"{cfg.method}, after {total} steps")
        seconds = max(self.train_seconds, 1e-9)
        result = {"method": cfg.method, "backbone": cfg.backbone, "steps": total,
                  "epochs": round(total / self.steps_per_epoch, 3), "batch_size": cfg.batch_size,
                  "processes": self.part.world_size, "n_images": len(data),
                  "skipped_images": data.skipped + len(data.reported),
                  **({"crops_per_image": round(data.crops_per_image, 2)} if getattr(data, "crops_per_image", None) else {}),
                  "final_loss": float(self.last.reported) if self.last is not None else float("nan"),
                  "train_seconds": round(self.train_seconds, 3),
                  "images_per_second": round(self.images_seen / seconds, 2), "channels_last": cfg.channels_last,
                  **({"tokens_per_second": round(self.tokens_seen / seconds, 1)} if self.text else {}), **self.watch.last,
                  "collapse_warning": self.watch.warned, "out": str(out),
                  **({"picked": self.picked} if self.picked else {})}
        if data.labels is not None and len(np.unique(data.labels)) > 1:
            result.update(_monitor_knn(encoder.to(self.device), data, self.test if cfg.test else None, spec,
                                       encoder_normalization, self.device, cfg))
        result["seconds"] = round(time.perf_counter() - self.started, 3)
        ckpt.atomic_write_text(out / "result.json", json.dumps(result, indent=1))
        return result


def _global_batch(batch: int, n_items: int, part: DistContext) -> int:
    """The batch the run takes: the configured one, cut to the pool when larger, split evenly among ranks."""
    if batch > n_items:
        log.warning("batch size %d exceeds the %d images; using %d", batch, n_items, n_items)
        batch = n_items // part.world_size * part.world_size
    local_batch(batch, part)  # the global batch must split evenly among the ranks
    return batch


def _pool_normalization(data: Pool, modality: str) -> Normalization | None:
    """Normalization statistics from (a sample of) the pool, saved beside the encoder; none for text."""
    if modality == "text":
        return None
    five_d = modality in ("video", "volume")
    return estimate_normalization(first_images(data, 10000 if data.array is not None and not five_d else 512))


def _pool_settings(spec: PoolSpec, modality: str) -> dict[str, Any]:
    """The config fields the pool's spec resolves: image size, or token, or clip settings."""
    text = modality == "text"
    return {"image_size": None if text else spec.image_size, "max_length": spec.max_length if text else None,
            "vocab_size": spec.vocab_size if text else None, "frames": getattr(spec, "frames", None),
            "frame_stride": getattr(spec, "stride", None)}


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


def _show_batch(method: Method, data: Prepared, path: str, seed: int, device: torch.device, title: str) -> None:
    """Draw the method's pretext task on the first 8 images of the pool to ``path``."""
    from .show import render_panels

    images = first_images(data, 8)
    was_training = method.training
    method.eval()
    try:
        panels = method.illustrate(images.to(device), step_generator(seed, 7, 0))
    finally:
        method.train(was_training)
    render_panels(panels, Path(path), title)
    log.info("wrote %s", path)


def _monitor_knn(backbone, data: Prepared, test, spec, normalization, device, cfg: PretrainConfig) -> dict:
    """kNN top-1 on a held-out 10% of the training data (or on --test when the user passed it)."""
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


__all__ = ["pretrain", "pretrain_forward", "method_turns", "open_pool"]
