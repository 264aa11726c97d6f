"""Metrics to CSV and TensorBoard; the CSV is trimmed on resume so no step appears twice."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

log = logging.getLogger("selfsup")

COLUMNS = ["step", "epoch", "loss", "lr", "images_per_second", "seconds", "embedding_std", "embedding_std_x_sqrt_d",
           "effective_rank", "pretext_accuracy"]


class MetricsLogger:
    def __init__(self, out: Path, resume_step: int = 0, columns: list[str] | None = None) -> None:
        self.path = out / "metrics.csv"
        columns = columns or COLUMNS
        rows: list[dict] = []
        if resume_step and self.path.exists():
            with open(self.path) as f:
                rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        self._file = open(self.path, "a", newline="")
        self._csv = csv.DictWriter(self._file, columns, extrasaction="ignore")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:  # tensorboard is a dependency, but keep training if it is absent
            log.warning("tensorboard is not installed: metrics go to metrics.csv only")
            self._tb = None

    def log(self, row: dict) -> None:
        self._csv.writerow(row)
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"train/{key}", value, row["step"])

    def scalar(self, name: str, value: float, step: int) -> None:
        if self._tb is not None:
            self._tb.add_scalar(name, value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
