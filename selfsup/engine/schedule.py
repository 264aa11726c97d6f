"""Learning-rate schedule: linear warm-up, then cosine decay, as a pure function of the step."""
from __future__ import annotations

import math

from torch.optim import Optimizer


def warmup_cosine(step: int, total_steps: int, base: float, warmup_steps: int, final: float = 0.0) -> float:
    """Value at ``step`` (0-based) of a schedule that rises linearly over ``warmup_steps``
    to ``base`` and then follows a half cosine down to ``final`` at ``total_steps``."""
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rates(optimizer: Optimizer, peak: float, scheduled: float) -> None:
    """Every group's lr for this step: the schedule's value, or the peak for a group marked
    ``constant_lr`` (SimSiam's predictor), times the group's ``lr_scale`` (BYOL's predictor)."""
    for group in optimizer.param_groups:
        group["lr"] = (peak if group.get("constant_lr") else scheduled) * group.get("lr_scale", 1.0)


def due(done: int, every: int, total: int) -> bool:
    """Whether step ``done`` (1-based) logs or checkpoints: every ``every`` steps, and always the last,
    so a run's final state is on disk whatever its length."""
    return done % every == 0 or done == total
