"""Reading texts: plain-text files, folders of .txt files (class subfolders give labels), TSV/CSV tables."""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...utils.errors import ConfigError, SelfSupError
from ..sources import IMAGE_SUFFIXES

log = logging.getLogger("selfsup")

TEXT_SUFFIXES = (".txt", ".tsv", ".csv")
TEXT_COLUMNS = ("text", "sentence", "content", "review", "document")


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
