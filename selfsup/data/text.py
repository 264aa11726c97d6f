"""Text data: plain-text, folder and TSV/CSV sources, a tokenizer trained on the corpus, token arrays.

A text pool is the text counterpart of the decoded image pool: an N x L array of token ids
(``[CLS] tokens [SEP]`` padded with ``[PAD]``), so the engine batches it exactly as it batches
images. The tokenizer is Hugging Face ``tokenizers`` (byte-pair encoding, or a word-level
vocabulary for word2vec), trained on the user's corpus and saved as ``tokenizer.json`` beside the run.
"""
from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import ConfigError, SelfSupError
from .sources import IMAGE_SUFFIXES

log = logging.getLogger("selfsup")

TEXT_SUFFIXES = (".txt", ".tsv", ".csv")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 in every vocabulary
PAD, UNK, CLS, SEP, MASK = range(len(SPECIAL_TOKENS))
FIRST_WORD = MASK + 1  # ids from here on are words (or word pieces); below are the special tokens
TEXT_COLUMNS = ("text", "sentence", "content", "review", "document")
DEFAULT_VOCAB_SIZE = {"bpe": 8000, "word": 20000}
DEFAULT_MAX_LENGTH = 64
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class TextCollection:
    """Texts with optional integer labels (``classes`` names them), read from ``source``."""

    texts: list[str]
    labels: np.ndarray | None
    classes: list[str] | None
    source: str
    skipped: int = 0  # empty or undecodable lines and rows

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else 0

    @property
    def name(self) -> str:
        return self.source

    @property
    def keys(self) -> list[str]:
        """What names a text in saved subsets: the text itself."""
        return self.texts

    def subset(self, indices: np.ndarray) -> "TextCollection":
        return TextCollection([self.texts[i] for i in indices], None if self.labels is None else self.labels[indices],
                              self.classes, self.source)


def is_text_source(path: str | Path | None) -> bool:
    """A .txt/.tsv/.csv file, or a folder whose files include .txt files and no images."""
    if not path:
        return False
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() in TEXT_SUFFIXES
    if p.is_dir():
        # Stop at the first image: an image folder (maybe millions of files) is decided by its first file.
        found_text = False
        for _, _, files in os.walk(p):
            for name in files:
                suffix = os.path.splitext(name)[1].lower()
                if suffix in IMAGE_SUFFIXES:
                    return False
                found_text |= suffix == ".txt" and not name.startswith(".")
        return found_text
    return False


def _decoded_lines(path: Path) -> tuple[list[str], int]:
    """The file's lines as text; lines that are not UTF-8 are dropped and counted, not fatal."""
    lines, bad = [], 0
    for raw in path.read_bytes().splitlines():
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad += 1
    if bad:
        log.warning("%s: %d lines are not UTF-8; skipped", path, bad)
    return lines, bad


def _read_table(path: Path, text_column: str | None, label_column: str | None) -> TextCollection:
    lines, skipped = _decoded_lines(path)
    if not lines:
        raise SelfSupError(f"{path}: empty file")
    # GLUE-style TSVs carry bare quote characters inside sentences, so TSV is read without quoting.
    dialect = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if path.suffix.lower() == ".tsv" else dict(delimiter=",")
    rows = list(csv.reader(lines, **dialect))
    header = [h.strip().lower() for h in rows[0]]
    if text_column is None:
        text_column = next((c for c in TEXT_COLUMNS if c in header), None)
        if text_column is None and len(header) == 2 and "label" in header:
            text_column = header[1 - header.index("label")]
    if text_column is None or text_column.lower() not in header:
        raise ConfigError(f"{path}: no text column (looked for {text_column or ', '.join(TEXT_COLUMNS)}; "
                          f"the header has {', '.join(header)})")
    t = header.index(text_column.lower())
    label_column = label_column or ("label" if "label" in header else None)
    y = header.index(label_column.lower()) if label_column and label_column.lower() in header else None
    texts, raw_labels = [], []
    for row in rows[1:]:
        if len(row) <= max(t, y if y is not None else 0) or not row[t].strip():
            skipped += 1
            continue
        texts.append(row[t].strip())
        if y is not None:
            raw_labels.append(row[y].strip())
    labels, classes = None, None
    if y is not None:
        classes = sorted(set(raw_labels), key=lambda c: (len(c), c))  # "2" before "10"
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[c] for c in raw_labels], dtype=np.int64)
    return TextCollection(texts, labels, classes, str(path), skipped)


def read_texts(path: str | Path, text_column: str | None = None, label_column: str | None = None) -> TextCollection:
    """Read a text source: a .txt file (one document or sentence per line), a folder of .txt files
    (class subfolders become labels), or a .tsv/.csv file with a header, a text column and an
    optional ``label`` column. Empty lines are skipped; non-UTF-8 lines are skipped with a warning."""
    p = Path(path)
    if not p.exists():
        raise SelfSupError(f"text data not found: {path}")
    if p.is_file() and p.suffix.lower() in (".tsv", ".csv"):
        collection = _read_table(p, text_column, label_column)
    else:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*.txt") if not f.name.startswith("."))
        if not files:
            raise SelfSupError(f"{path}: no .txt files")
        parents = {f.parent for f in files}
        labelled = p.is_dir() and len(parents) > 1 and all(f.parent.parent == p for f in files)
        classes = sorted(f.name for f in parents) if labelled else None
        texts, labels, skipped = [], [], 0
        for f in files:
            lines, bad = _decoded_lines(f)
            kept = [line.strip() for line in lines if line.strip()]
            skipped += bad + len(lines) - len(kept)
            texts += kept
            if classes:
                labels += [classes.index(f.parent.name)] * len(kept)
        collection = TextCollection(texts, np.array(labels, dtype=np.int64) if classes else None, classes, str(path),
                                    skipped)
    if not collection.texts:
        raise SelfSupError(f"{path}: no non-empty text")
    if collection.skipped:
        log.info("%s: %d empty or unreadable rows skipped", path, collection.skipped)
    return collection


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


def phrase_groups(texts: list[str], n: int = 5) -> np.ndarray:
    """A group id per text: texts sharing a run of ``n`` words are joined (union-find), so every
    phrase cut from one sentence falls in that sentence's group. On SST-2's 43k training rows of
    5+ words this gives 6.2k groups, against its ~6.9k source sentences."""
    parent = np.arange(len(texts))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first: dict[tuple[str, ...], int] = {}
    for i, text in enumerate(texts):
        words = normalize_text(text).split()
        for k in range(len(words) - n + 1):
            j = first.setdefault(tuple(words[k:k + n]), i)
            a, b = root(i), root(j)
            if a != b:
                parent[a] = b
    return np.array([root(i) for i in range(len(texts))], dtype=np.int64)


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


def token_spec_of(info: dict) -> TokenSpec:
    """The token settings a text encoder was trained with (its encoder.json)."""
    tokens = info["tokens"]
    return TokenSpec(tokens["vocab_size"], tokens["max_length"], tokens["tokenizer"])


def tokenizer_beside(checkpoint: str | Path, info: dict) -> Path:
    """The tokenizer a text encoder was trained with: in its run folder (beside encoder.json, or two
    levels up from a step checkpoint)."""
    p = Path(checkpoint)
    for folder in ((p,) if p.is_dir() else (p.parent, p.parent.parent)):
        if (folder / info.get("tokenizer", TOKENIZER_FILE)).exists():
            return folder / info.get("tokenizer", TOKENIZER_FILE)
    raise SelfSupError(f"{checkpoint}: no {TOKENIZER_FILE} in its run folder; a text encoder needs the tokenizer it "
                       "was trained with")


def train_tokenizer(texts: list[str], kind: str = "bpe", vocab_size: int | None = None,
                    min_frequency: int = 2):
    """A tokenizer trained on ``texts``, with BERT's lower-cased normalization and pre-tokenization and
    the special tokens at ids 0..4: byte-pair encoding (Sennrich et al. 2016,
    https://arxiv.org/abs/1508.07909) or, for word2vec, a word-level vocabulary.

    Why BPE without a word-piece ``##`` prefix: with the prefix (WordPiece, or BPE with a suffix),
    ``tokenizers`` numbers the prefixed pieces in hash-map order, so the same corpus gives a different
    vocabulary from run to run (huggingface/tokenizers#1794); plain BPE is reproducible.
    """
    try:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    except ImportError:
        raise ConfigError("text methods need Hugging Face tokenizers: pip install tokenizers") from None
    vocab_size = vocab_size or DEFAULT_VOCAB_SIZE[kind]
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    elif kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    else:
        raise ConfigError(f"unknown tokenizer kind {kind!r} (bpe or word)")
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def load_tokenizer(path: str | Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:
        raise SelfSupError(f"cannot read tokenizer {path}: {exc}") from exc


def encode(tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """N x ``max_length`` int32 ids: ``[CLS] tokens [SEP]``, truncated, padded with ``[PAD]`` (0)."""
    if max_length < 3:
        raise ConfigError("--max-length must be at least 3 ([CLS], one token, [SEP])")
    ids = np.zeros((len(texts), max_length), dtype=np.int32)
    for row, encoding in enumerate(tokenizer.encode_batch(texts, add_special_tokens=False)):
        tokens = encoding.ids[:max_length - 2]
        ids[row, :len(tokens) + 2] = [CLS, *tokens, SEP]
    return ids


def trim_padding(ids: torch.Tensor) -> torch.Tensor:
    """Drop the padding columns every row of the batch shares: rows are padded to the corpus's
    maximum length, but a batch of short texts needs only its longest (SST-2: 5x less compute)."""
    longest = int((ids != PAD).sum(1).max()) if len(ids) else 0
    return ids[:, :max(longest, 1)]


@dataclass
class TokenSpec:
    """What text methods and encoders need to know about the tokens: the text counterpart of the
    image pipeline's sizes and normalization. ``counts``: each id's frequency in the corpus
    (word2vec's sub-sampling and noise distribution)."""

    vocab_size: int
    max_length: int
    tokenizer: str = "bpe"
    counts: np.ndarray | None = field(default=None, repr=False)
    normalization = None  # images are normalized, tokens are not (read by Method.input_normalization)

    def info(self) -> dict:
        return {"vocab_size": self.vocab_size, "max_length": self.max_length, "tokenizer": self.tokenizer}


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
        from ..engine.checkpoint import atomic_write_text

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


__all__ = ["CLS", "FIRST_WORD", "MASK", "PAD", "SEP", "SPECIAL_TOKENS", "TOKENIZER_FILE", "TextCollection", "TextPool",
           "TokenSpec", "UNK", "deduplicate", "encode", "is_text_source", "labeled_text_sets", "labeled_texts",
           "load_tokenizer", "open_text_pool", "phrase_groups", "read_texts", "token_spec_of", "tokenizer_beside",
           "train_tokenizer", "trim_padding"]
