"""Phrase groups: texts cut from one sentence, so a tiny labeled subset takes one text per sentence."""
from __future__ import annotations

import numpy as np

from .dedup import normalize_text



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
