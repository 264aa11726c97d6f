"""The encoder a time budget buys: what `pretrain --data D --time-limit S` trains when nothing else is chosen.

A measured table, not a model of cost: each row is the candidate that reached the highest kNN top-1 when
every candidate (method, backbone, stem, input side) pretrained for the same seconds on the same machine
and was scored by the same evaluator (BENCHMARKS.md section 2d, `benchmarks/ten_minutes.py`, CIFAR-10).
A budget takes the row measured nearest to it; a device kind without rows keeps the defaults. Any of
--method, --backbone, --stem, --image-size, --views, --steps or --epochs means the user chose, and no
row applies.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class BudgetChoice:
    method: str
    backbone: str
    stem: str
    image_size: int | None  # the views' side it was measured at (CIFAR-10's 32 px); None: the pool's own
    seconds: float  # the budget it was measured at
    knn_top1: float  # its kNN top-1 on CIFAR-10's test/ after that budget
    random_top1: float  # the same encoder with random weights, same evaluator
    measured_on: str

    def describe(self) -> str:
        side = "the pool's native size" if self.image_size is None else f"{self.image_size} px"
        return (f"{self.method} on {self.backbone} ({self.stem} stem) at {side}: the best of the candidates "
                f"measured for {self.seconds:.0f} s on {self.measured_on} ({100 * self.knn_top1:.1f} % kNN on "
                f"CIFAR-10 against {100 * self.random_top1:.1f} % for random weights; BENCHMARKS.md 2d)")

    def as_dict(self) -> dict:
        return asdict(self)


# device type -> rows, one per measured budget.
MEASURED: dict[str, tuple[BudgetChoice, ...]] = {
    # Triplet on the small convnet saw 106,240 images at 180 images/s; triplet on ResNet-18 41.75 %,
    # VICReg 42.19 %, SimCLR 39.25 %, rotation 30.12 % in the same 600 s.
    "cpu": (BudgetChoice("triplet", "small-convnet", "auto", 32, 600.0, 0.4832, 0.3877, "a 2-core CPU"),),
}
CHOICE_FLAGS = ("method", "backbone", "stem", "image_size", "views", "steps", "epochs", "init")


def nothing_chosen(given: set[str]) -> bool:
    """Whether a pretrain command with these settings given (flags or config file) left the choice to selfsup:
    a time limit and none of the settings that choose the method, the encoder or the budget otherwise."""
    return "time_limit" in given and not given & set(CHOICE_FLAGS) and "resume" not in given


def choose_for_time(seconds: float, device_type: str) -> BudgetChoice | None:
    """The row measured nearest to ``seconds`` (in ratio) for this device type, or None without rows."""
    rows = MEASURED.get(device_type, ())
    if not rows:
        return None
    return min(rows, key=lambda row: max(row.seconds / seconds, seconds / row.seconds))


__all__ = ["BudgetChoice", "CHOICE_FLAGS", "MEASURED", "choose_for_time", "nothing_chosen"]
