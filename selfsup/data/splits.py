"""Train/test splits and labeled subsets: stratified, fixed by seed, saved beside the run."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..utils.errors import ConfigError, SelfSupError
from .sources import Collection, open_source

log = logging.getLogger("selfsup")

TEST_FRACTION = 0.2


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with ``fraction`` of every class held out (at least one each)."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_held = max(1, int(round(fraction * len(idx)))) if len(idx) > 1 else 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def _remap_labels(test: Collection, classes: list[str] | None) -> Collection:
    """Give a separately passed test set the label ids of the training classes, by class name."""
    if not test.has_labels or not classes or test.classes == classes:
        return test
    index = {c: i for i, c in enumerate(classes)}
    missing = sorted(set(test.classes or []) - set(index))
    if missing:
        raise SelfSupError(f"test classes not among the training classes: {', '.join(missing[:5])}")
    mapping = np.array([index[c] for c in test.classes or []], dtype=np.int64)
    test.labels, test.classes = mapping[test.labels], classes
    return test


def train_test(spec: str, test_spec: str | None = None, out_dir: Path | None = None,
               seed: int = 0, kind: str = "image") -> tuple[Collection, Collection | None]:
    """Resolve a data flag (and optional --test) into a training and a held-out collection.

    A source with train/ and test/ is split by them; a labeled source without them is split
    80/20, stratified, once: the split is saved to OUT/splits.json and reused from there.
    """
    opened = open_source(spec, kind)
    if test_spec:
        test_opened = open_source(test_spec, kind)
        train = opened.get("train", opened.get("all"))
        test = test_opened.get("test", test_opened.get("all"))
        assert train is not None and test is not None
        return train, _remap_labels(test, train.classes)
    if "train" in opened:
        return opened["train"], opened.get("test")
    pool = opened["all"]
    if not pool.has_labels:
        return pool, None
    saved = out_dir / "splits.json" if out_dir else None
    if saved and saved.exists():
        record = json.loads(saved.read_text())
        if record.get("source") == spec:
            where = {k: i for i, k in enumerate(pool.keys)}
            try:
                train_idx = [where[k] for k in record["train"]]
                test_idx = [where[k] for k in record["test"]]
                return pool.subset(train_idx, f"{pool.name}:train"), pool.subset(test_idx, f"{pool.name}:test")
            except KeyError:
                log.warning("%s no longer matches %s; making a new split", saved, spec)
    train_idx, test_idx = stratified_split(pool.labels, TEST_FRACTION, seed)  # type: ignore[arg-type]
    train, test = pool.subset(train_idx, f"{pool.name}:train"), pool.subset(test_idx, f"{pool.name}:test")
    if saved:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"source": spec, "seed": seed, "test_fraction": TEST_FRACTION,
                                     "train": train.keys, "test": test.keys}))
    return train, test


def parse_labels_per_class(text: str | list | int | None) -> list[int | None]:
    """'1,10,all' -> [1, 10, None] (None = every label)."""
    if text is None:
        return []
    parts = text if isinstance(text, list) else str(text).split(",")
    out: list[int | None] = []
    for part in parts:
        part = str(part).strip().lower()
        if part == "all":
            out.append(None)
            continue
        try:
            value = int(part)
        except ValueError:
            raise ConfigError(f"--labels-per-class: {part!r} is not a whole number or 'all'") from None
        if value < 1:
            raise ConfigError(f"--labels-per-class: {value} must be at least 1")
        out.append(value)
    return out


def labeled_subset(labels: np.ndarray, seed: int, per_class: int | None = None,
                   fraction: float | None = None, groups: np.ndarray | None = None) -> np.ndarray:
    """Indices of a class-balanced subset fixed by seed: ``per_class`` each, or ``fraction`` of each.

    ``groups`` (one id per example, e.g. the sentence a text phrase was cut from): a ``per_class``
    subset takes at most one example of a group, so a tiny subset is not a few sentences repeated.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    used: set[int] = set()
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if per_class is not None and groups is not None:
            distinct = []
            for i in idx:
                if groups[i] not in used:
                    used.add(int(groups[i]))
                    distinct.append(i)
                    if len(distinct) == per_class:
                        break
            idx = np.array(distinct, dtype=np.int64)
        if per_class is not None:
            n = per_class
        elif fraction is not None:
            n = max(1, int(round(fraction * len(idx))))
        else:
            n = len(idx)
        if n > len(idx):
            log.warning("class %s has only %d labeled examples (asked for %d)", c, len(idx), n)
        chosen.append(idx[:n])
    return np.sort(np.concatenate(chosen))


def save_subset(out_dir: Path, name: str, keys: list[str]) -> Path:
    path = out_dir / "subsets" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(keys) + "\n")
    return path
