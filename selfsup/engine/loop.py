"""The one training loop: pretraining, semi-supervised training and every downstream fine-tuning run it.

Each step, in a fixed order (nanoGPT's): learning-rate schedule -> the caller's forward (its batch,
views and loss) -> finite check -> backward -> gradient clipping -> optimizer step -> after-step hooks
(momentum encoders, weight averages) -> log -> checkpoint. An adversarial method's step is one such
forward-to-optimizer-step turn per player, each after the previous player's update (Goodfellow et
al. 2014, algorithm 1). The caller gives a forward function, its optimizer and the module its
checkpoints hold; the loop owns everything else, so resume, the non-finite stop and the kill hook
behave alike in every command.

Exact resume: a checkpoint holds the module's state and the optimizer's; a caller's batches and
randomness are functions of (seed, step), so the steps after a restore are the ones an uninterrupted
run takes.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn
from tqdm import tqdm

from ..utils import checkpoint as ckpt
from ..utils import stop
from ..utils.distributed import max_over_ranks
from ..utils.errors import ConfigError, NonFiniteLossError
from .logger import MetricsLogger
from .schedule import due, set_learning_rates

log = logging.getLogger("selfsup")
KILL_ENV = "SELFSUP_KILL_AT_STEP"  # test hook: SIGKILL this process right after that step of a loop


@dataclass
class StepResult:
    """What a forward returns: the loss to descend, the value reported for it (a data-parallel run's
    mean over ranks, so every rank stops together), any scalars logged beside it, and the embedding
    batch the collapse watch reads."""

    loss: torch.Tensor
    reported: torch.Tensor | None = None  # default: the loss, detached
    scalars: dict[str, torch.Tensor] = field(default_factory=dict)
    embedding: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.reported is None:
            self.reported = self.loss.detach()


@dataclass
class Turn:
    """One forward-to-optimizer-step pass of a step: ``player`` names an adversarial method's player
    (None for every other method), ``parameters`` are the ones it clips and steps, ``frozen`` the other
    players' (no gradient is spent on them meanwhile)."""

    player: str | None
    parameters: Sequence[nn.Parameter]
    frozen: Sequence[nn.Parameter] = ()


@contextlib.contextmanager
def _frozen(parameters: Sequence[nn.Parameter]) -> Iterator[None]:
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in parameters:
            p.requires_grad_(True)


def descend(loss: torch.Tensor, optimizer: torch.optim.Optimizer, parameters: Iterable[nn.Parameter],
            grad_clip: float | None, *step_args: str) -> None:
    """Backward, clip ``parameters``' gradient norm to ``grad_clip``, step (``step_args``: the player,
    for a per-player optimizer). The one place any optimizer of selfsup steps."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    optimizer.step(*step_args)


def budget_steps(steps: int | None, epochs: float | None, time_limit: float | None, steps_per_epoch: int,
                 default_steps: int | None = None, default_epochs: float | None = None) -> int | None:
    """The run's step count from its budget: ``steps``, or ``epochs`` x ``steps_per_epoch``, or None for a
    ``time_limit`` (the caller times a few steps, then calls ``steps_in_time``); without any, the
    default (steps, else epochs). Ranges are checked where the config is built."""
    if sum(x is not None for x in (steps, epochs, time_limit)) > 1:
        raise ConfigError("give one budget: --epochs, --steps or --time-limit")
    if steps is not None:
        return steps
    if time_limit is not None:
        return None
    if epochs is None and default_steps is not None:
        return default_steps
    epochs = default_epochs if epochs is None else epochs
    return max(1, round(epochs * steps_per_epoch))


def steps_in_time(time_limit: float, started: float, seconds_per_step: float) -> int:
    """How many steps of ``seconds_per_step`` fit in what is left of ``time_limit`` since ``started``."""
    return max(1, int((time_limit - (time.perf_counter() - started)) / seconds_per_step))


def seconds_per_step(run_steps: Callable[[Callable[[int], None]], None], device: torch.device,
                     skip: int = 2, mean: bool = False) -> float:
    """The median (or ``mean``) seconds of the steps ``run_steps(after_step)`` takes (``after_step`` is
    called at each step's end), without the first ``skip``, which warm up allocators and caches."""
    marks = [time.perf_counter()]

    def mark(_: int) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        marks.append(time.perf_counter())

    run_steps(mark)
    seconds = [b - a for a, b in zip(marks, marks[1:])]
    kept = seconds[skip:] if len(seconds) > skip else seconds  # too few steps to leave any out: their mean
    if mean or len(seconds) <= skip:
        return statistics.fmean(kept)
    return statistics.median(kept)  # of an even count: the mean of the middle two


Forward = Callable[[int, Any, bool, "str | None"], StepResult]


@dataclass
class Loop:
    """One training run: its optimizer and schedule, what its checkpoints hold, how it logs.

    ``lr_at(step)`` is the scheduled learning rate of the step, ``peak_lr`` the value groups marked
    ``constant_lr`` keep. ``state`` is saved every ``checkpoint_every`` steps (and at the last) into
    ``folder``, with ``meta`` in the JSON record; without a folder the run writes none. ``log_every``
    steps (and the last) a row goes to ``logger``: step, loss, lr, images per second (``items_per_step``
    images a step) and seconds, plus the caller's ``row(done, result)``.
    """

    optimizer: torch.optim.Optimizer
    total_steps: int
    lr_at: Callable[[int], float]
    peak_lr: float
    state: nn.Module | None = None
    folder: Path | None = None
    checkpoint_every: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    log_every: int = 0
    logger: MetricsLogger | None = None
    row: Callable[[int, StepResult], dict[str, Any]] | None = None
    items_per_step: int = 0
    grad_clip: float | None = None
    turns: Sequence[Turn] = ()  # default (set on construction): one turn over every parameter the optimizer holds
    after_step: list[Callable[[int], None]] = field(default_factory=list)
    is_main: bool = True  # rank 0 alone writes checkpoints and logs
    description: str = ""
    progress: bool = False

    def __post_init__(self) -> None:
        if not self.turns:  # one turn over every parameter the optimizer holds, listed once
            self.turns = [Turn(None, [p for g in self.optimizer.param_groups for p in g["params"]])]

    def restore(self) -> int:
        """Restore the newest checkpoint in ``folder`` (state and optimizer); the step to start from."""
        latest = ckpt.readable_checkpoint(self.folder) if self.folder is not None and self.folder.exists() else None
        if latest is None or self.state is None:
            return 0
        start = int(ckpt.restore(latest, self.state, self.optimizer)["step"])
        log.info("resuming %s from step %d of %d", self.folder.parent, start, self.total_steps)
        return start

    def run(self, forward: Forward, batches: Iterable[Any] | None = None, start: int = 0) -> StepResult | None:
        """Steps ``start`` .. ``total_steps - 1``: ``forward(step, batch, logging, player)`` gives each turn's
        loss (``batches``: one item a step, or None when the forward draws its own); returns the last
        step's result. ``logging`` tells the forward whether this step's scalars are read."""
        kill_at = int(os.environ.get(KILL_ENV, "-1"))
        bar = tqdm(total=self.total_steps, initial=start, desc=self.description, unit="step", file=sys.stderr,
                   disable=not self.progress, dynamic_ncols=True)
        started = window = time.perf_counter()
        window_from, result = start, None
        items = iter(batches) if batches is not None else None
        with stop.deferred():
            try:
                step = start
                while step < self.total_steps:  # the count may be re-planned by an after-step hook
                    batch = next(items) if items is not None else None
                    lr_now = self.lr_at(step)
                    set_learning_rates(self.optimizer, self.peak_lr, lr_now)
                    logging = bool(self.log_every) and due(step + 1, self.log_every, self.total_steps)
                    result = self.step(forward, step, batch, logging)
                    for hook in self.after_step:
                        hook(step)
                    done = step + 1
                    bar.total = self.total_steps
                    bar.update(1)
                    if logging and self.logger is not None:
                        now = time.perf_counter()
                        ips = (done - window_from) * self.items_per_step / max(now - window, 1e-9)
                        window, window_from = now, done
                        loss = float(result.reported)
                        self.logger.log({"step": done, "loss": loss, "lr": lr_now, "images_per_second": round(ips, 2),
                                         "seconds": round(now - started, 3), **(self.row(done, result) if self.row else {})})
                        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr_now:.3g}", img_s=f"{ips:.0f}")
                    self._checkpoint_or_stop(done, kill_at)
                    step = done
            finally:
                bar.close()
                if self.logger is not None:
                    self.logger.close()
        return result

    def _checkpoint_or_stop(self, done: int, kill_at: int) -> None:
        """After step ``done``: a checkpoint when due; on a stop request (SIGTERM, SIGINT) a checkpoint now,
        then ``Stopped``. Ranks agree on the request, so a signal that reached one rank stops them all
        after the same step."""
        device = next((p.device for g in self.optimizer.param_groups for p in g["params"]), torch.device("cpu"))
        stopping = max_over_ranks(stop.requested() or 0, device)
        saving = self.folder is not None and (self._checkpoint_due(done) or bool(stopping))
        if saving and self.is_main:
            ckpt.save_checkpoint(self.folder, done, self.state, self.optimizer, self.meta)
        if done == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if stopping:
            raise stop.Stopped(stopping, done, saved=saving)

    def step(self, forward: Forward, step: int, batch: Any = None, logging: bool = False) -> StepResult:
        """One step at the optimizer's current learning rates: each turn forward -> finite check ->
        backward -> clip -> optimizer step. With several turns (players) the reported loss is their sum
        and the scalars their union."""
        total, scalars, embedding = None, {}, None
        for turn in self.turns:
            with _frozen(turn.frozen):
                out = forward(step, batch, logging, turn.player)
                if not torch.isfinite(out.reported):
                    raise self._non_finite(out.reported, step)  # before this turn touches the weights
                descend(out.loss, self.optimizer, turn.parameters, self.grad_clip,
                        *(() if turn.player is None else (turn.player,)))
            total = out.reported if total is None else total + out.reported
            scalars.update(out.scalars)
            embedding = out.embedding if out.embedding is not None else embedding
        return StepResult(total, total, scalars, embedding)

    def _checkpoint_due(self, done: int) -> bool:
        """Every ``checkpoint_every`` steps and at the last (only the last when it is 0)."""
        return due(done, self.checkpoint_every, self.total_steps) if self.checkpoint_every else done == self.total_steps

    def _non_finite(self, loss: torch.Tensor, step: int) -> NonFiniteLossError:
        kept = ckpt.latest_checkpoint(self.folder) if self.folder is not None else None
        where = f"last good checkpoint: {kept}" if kept else "no checkpoint was written yet"
        return NonFiniteLossError(f"non-finite loss ({loss.item()}) at step {step}; stopped, {where}")


__all__ = ["KILL_ENV", "Loop", "StepResult", "Turn", "budget_steps", "descend", "seconds_per_step", "steps_in_time"]
