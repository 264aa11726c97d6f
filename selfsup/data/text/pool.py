"""A text pool: the text counterpart of the decoded image pool, an N x L array of token ids
(``[CLS] tokens [SEP]`` padded with ``[PAD]``), so the engine batches it exactly as it batches images."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ...utils.errors import SelfSupError
from .dedup import deduplicate
from .tables import TextCollection, read_texts
from .tokenizer import (DEFAULT_MAX_LENGTH, PAD, TOKENIZER_FILE, TokenSpec, encode, load_tokenizer, train_tokenizer,
                        trim_padding)

log = logging.getLogger("selfsup")


class TextPool:
    """Tokenized texts ready for training: ``array`` (N x L int32 ids) and optional labels."""

    modality = "text"

    def __init__(self, collection: TextCollection, tokenizer, spec: TokenSpec) -> None:
        self.collection, self.tokenizer, self.spec = collection, tokenizer, spec
        self.array = encode(tokenizer, collection.texts, spec.max_length)
        self.lengths = (self.array != PAD).sum(1)
        self.labels = collection.labels
        self.classes = collection.classes
        self.skipped, self.reported = collection.skipped, []

    def __len__(self) -> int:
        return len(self.array)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def report_bad(self, bad) -> None:  # the engine's hook for unreadable streamed images; texts are read up front
        pass

    def batches(self, indices: np.ndarray, batch_size: int, num_workers: int = 0
                ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(positions in ``indices``, token ids) in order, as ``Prepared.batches`` yields images."""
        for start in range(0, len(indices), batch_size):
            pos = np.arange(start, min(start + batch_size, len(indices)))
            yield pos, trim_padding(torch.from_numpy(np.ascontiguousarray(self.array[indices[pos]])))

    def describe(self) -> str:
        labels = f", {len(self.classes)} classes" if self.classes else ", unlabeled"
        return f"{self.collection.source} ({len(self)} texts{labels})"


def token_counts(array: np.ndarray, vocab_size: int) -> np.ndarray:
    return np.bincount(array.ravel(), minlength=vocab_size).astype(np.int64)


def open_text_pool(source: str, out: Path, kind: str, vocab_size: int | None, max_length: int | None,
                   train: bool = True) -> TextPool:
    """The deduplicated corpus of ``source`` tokenized with OUT/tokenizer.json, which is trained on the
    corpus first unless it exists (a resumed run, or data-parallel ranks after rank 0) or ``train`` is off."""
    collection = deduplicate(read_texts(source))
    path = out / TOKENIZER_FILE
    if path.exists():
        tokenizer = load_tokenizer(path)
    elif train:
        from ...utils.checkpoint import atomic_write_text

        tokenizer = train_tokenizer(collection.texts, kind, vocab_size)
        atomic_write_text(path, tokenizer.to_str())
    else:
        raise SelfSupError(f"{path} not found")
    spec = TokenSpec(tokenizer.get_vocab_size(), max_length or DEFAULT_MAX_LENGTH, kind)
    pool = TextPool(collection, tokenizer, spec)
    spec.counts = token_counts(pool.array, spec.vocab_size)
    log.info("%s: %d texts, vocabulary %d, %.1f tokens per text on average", source, len(pool), spec.vocab_size,
             float(pool.lengths.mean()) - 2)
    return pool
