"""The study's records: one row per method × evaluation × label budget × seed, their summary,
and the label multiplier read off the scratch curve.

Rows are appended to ``results.jsonl`` as each finishes, so an interrupted study loses at most
the evaluation in flight; ``results.csv`` and ``results.json`` (rows + summary + multipliers)
are rewritten from it at the end.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..utils.checkpoint import WriteError, atomic_write_text

EVALUATIONS = ("scratch", "finetune", "linear", "knn")  # per checkpoint; semi-supervised rows are "semisup"
ROW_FIELDS = ("method", "evaluation", "budget", "labels_per_class", "n_labels", "seed", "accuracy", "seconds",
              "chosen", "backbone")


def budget_name(per_class: int | None) -> str:
    return "all" if per_class is None else str(per_class)


def row_key(row: dict[str, Any]) -> tuple[str, str, str, int]:
    return row["method"], row["evaluation"], row["budget"], int(row["seed"])


class ResultLog:
    """Append-only JSON-lines record of finished evaluations; a torn last line is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[tuple[str, str, str, int], dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a run killed mid-write leaves at most one torn line
                self.rows[row_key(row)] = row

    def __contains__(self, key: tuple[str, str, str, int]) -> bool:
        return key in self.rows

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row_key(row)] = row
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
        except OSError as exc:  # the rows already there stay; a torn last line is skipped when read
            raise WriteError(f"cannot write {self.path}: {exc.strerror or exc}; the finished rows are kept") from exc


@dataclass
class Summary:
    method: str
    evaluation: str
    budget: str
    n_labels: int
    mean: float
    std: float
    seeds: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarize(rows: Iterable[dict[str, Any]]) -> list[Summary]:
    """Mean ± std (population, over seeds) per method × evaluation × budget, budgets by label count."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["evaluation"], row["budget"]), []).append(row)
    out = []
    for (method, evaluation, budget), items in groups.items():
        acc = np.array([r["accuracy"] for r in items], dtype=float)
        out.append(Summary(method, evaluation, budget, int(np.mean([r["n_labels"] for r in items])),
                           float(acc.mean()), float(acc.std()), len(items)))
    order = {e: i for i, e in enumerate(EVALUATIONS + ("semisup",))}
    return sorted(out, key=lambda s: (s.method != "scratch", s.method, order.get(s.evaluation, 9), s.n_labels))


def labels_needed(curve: list[tuple[int, float]], accuracy: float) -> tuple[float, str]:
    """Labels scratch needs to reach ``accuracy``, interpolated on its curve (log labels, linear accuracy).

    ``curve`` is (n_labels, mean accuracy) of scratch. It is made monotone first (a later budget
    never counts as worse than an earlier one), then read where it crosses ``accuracy``. Returns
    (labels, relation): "=" on the curve, "<" below its first point (scratch's smallest budget
    already does as well), ">" above its best (scratch never gets there in the budgets run).
    """
    points = sorted(curve)
    ns = np.array([p[0] for p in points], dtype=float)
    accs = np.maximum.accumulate(np.array([p[1] for p in points], dtype=float))
    if accuracy <= accs[0]:
        return float(ns[0]), "<"
    if accuracy > accs[-1]:
        return float(ns[-1]), ">"
    i = int(np.argmax(accs >= accuracy))  # first point at or above; accs[i-1] < accuracy here
    a0, a1 = accs[i - 1], accs[i]
    frac = (accuracy - a0) / (a1 - a0)
    return float(math.exp(math.log(ns[i - 1]) + frac * (math.log(ns[i]) - math.log(ns[i - 1])))), "="


def label_multipliers(summary: list[Summary], scratch_of: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """For each method, evaluation and budget: the labels scratch would need, over the labels used.

    A multiplier of 4 means from-scratch training needs 4× the labels for the same test
    accuracy. ">" means at least that much (scratch never reached it), "<" at most.
    ``scratch_of`` names each method's scratch curve (its own architecture); default "scratch".
    """
    out = []
    scratch_curves: dict[str, list[tuple[int, float]]] = {}
    for s in summary:
        if s.evaluation == "scratch":
            scratch_curves.setdefault(s.method, []).append((s.n_labels, s.mean))
    for s in summary:
        if s.evaluation == "scratch":
            continue
        curve = scratch_curves.get((scratch_of or {}).get(s.method, "scratch"))
        if not curve:
            continue
        needed, relation = labels_needed(curve, s.mean)
        out.append({"method": s.method, "evaluation": s.evaluation, "budget": s.budget, "n_labels": s.n_labels,
                    "accuracy": s.mean, "scratch_labels_needed": round(needed, 1), "relation": relation,
                    "multiplier": round(needed / max(s.n_labels, 1), 3)})
    return out


def write_tables(rows: list[dict[str, Any]], out: Path, extra: dict[str, Any],
                 scratch_of: dict[str, str] | None = None, fields: tuple[str, ...] = ROW_FIELDS) -> dict[str, Any]:
    """results.csv (rows, ``fields`` of each) and results.json (rows, summary, multipliers and ``extra``)."""
    ordered = sorted(rows, key=lambda r: (r["method"], r["evaluation"], r["n_labels"], r["seed"]))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(ordered)
    summary = summarize(ordered)
    payload = {"rows": ordered, "summary": [s.as_dict() for s in summary],
               "label_multipliers": label_multipliers(summary, scratch_of), **extra}
    atomic_write_text(out / "results.json", json.dumps(payload, indent=1))
    return payload


__all__ = ["EVALUATIONS", "ResultLog", "Summary", "summarize", "labels_needed", "label_multipliers",
           "write_tables", "budget_name", "row_key"]
