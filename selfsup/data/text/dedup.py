"""Deduplicated texts: the pretraining corpus and the labeled pool of a text evaluation."""
from __future__ import annotations

import logging
import re

import numpy as np

from ...utils.errors import ConfigError, SelfSupError
from .tables import TextCollection, read_texts

log = logging.getLogger("selfsup")


def normalize_text(text: str) -> str:
    """The key duplicates share: lower case, single spaces."""
    return re.sub(r"\s+", " ", text.strip().lower())


def deduplicate(collection: TextCollection) -> TextCollection:
    """Keep the first of each group of texts equal after ``normalize_text`` (SST-2's training rows
    repeat phrases: a pretraining corpus should not weigh a phrase by how often it was cut out)."""
    seen: set[str] = set()
    keep = []
    for i, text in enumerate(collection.texts):
        key = normalize_text(text)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    out = collection.subset(np.array(keep, dtype=np.int64))
    out.skipped = collection.skipped
    if len(keep) < len(collection):
        log.info("%s: %d duplicate texts dropped, %d kept", collection.source, len(collection) - len(keep), len(keep))
    return out


def labeled_texts(collection: TextCollection, min_words: int = 5) -> TextCollection:
    """The labeled pool for downstream training: deduplicated, and texts of at least ``min_words``
    words (SST-2's training rows include every sub-phrase of every sentence, down to single words
    and punctuation whose labels say little about a review)."""
    pool = deduplicate(collection)
    keep = np.array([i for i, t in enumerate(pool.texts) if len(t.split()) >= min_words], dtype=np.int64)
    if len(keep) == 0:
        raise SelfSupError(f"{collection.source}: no labeled text has {min_words} or more words")
    out = pool.subset(keep)
    log.info("%s: %d labeled texts of %d+ words (of %d distinct)", collection.source, len(out), min_words, len(pool))
    return out


def labeled_text_sets(labeled: str, test: str | None) -> tuple[TextCollection, TextCollection]:
    """The labeled pool (``labeled_texts``) and the test texts of a text evaluation, both labeled with
    the same classes; text has no saved 80/20 split, so ``test`` is required."""
    if not test:
        raise ConfigError("text evaluation needs --test (a labeled .tsv/.csv or folder of .txt; SST-2: dev.tsv)")
    train_c, test_c = labeled_texts(read_texts(labeled)), read_texts(test)
    if not train_c.has_labels or not test_c.has_labels:
        raise ConfigError("--labeled and --test must carry labels (a label column, or class subfolders)")
    if test_c.classes != train_c.classes:
        raise SelfSupError(f"{test}: classes {test_c.classes} differ from {labeled}'s {train_c.classes}")
    return train_c, test_c
