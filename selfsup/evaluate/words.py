"""Word vectors of a text encoder: nearest neighbours, analogies and export (word2vec's queries).

Any text run's input embedding table can be queried; word2vec's (a word-level vocabulary) is the
one made for it. Similarity is the cosine; an analogy a : b :: c : ? is answered by the word
nearest to b - a + c among the others (3CosAdd, Mikolov, Yih & Zweig 2013,
https://aclanthology.org/N13-1090/).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.text import FIRST_WORD
from ..utils.errors import SelfSupError


class WordVectors:
    """The rows of an encoder's token-embedding table, with their tokens."""

    def __init__(self, vectors: torch.Tensor, tokens: list[str]) -> None:
        self.vectors, self.tokens = vectors.float(), tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        self.unit = F.normalize(self.vectors, dim=1)

    @classmethod
    def load(cls, run: str | Path) -> "WordVectors":
        """From a text run folder (encoder.json, encoder.safetensors and tokenizer.json)."""
        from ..backbones.io import load_backbone
        from ..data.text import load_tokenizer

        folder = Path(run)
        backbone, info = load_backbone(folder)
        if info.get("modality") != "text":
            raise SelfSupError(f"{run} holds an image encoder; word vectors come from text runs")
        root = folder if folder.is_dir() else folder.parent
        vocab = load_tokenizer(root / info["tokenizer"]).get_vocab()
        tokens = [""] * len(vocab)
        for token, i in vocab.items():
            tokens[i] = token
        return cls(backbone.model.tokens.weight.detach(), tokens)

    def _id(self, word: str) -> int:
        i = self.index.get(word.lower())
        if i is None or i < FIRST_WORD:
            raise SelfSupError(f"{word!r} is not in the vocabulary")
        return i

    def _nearest_to(self, query: torch.Tensor, k: int, exclude: set[int]) -> list[tuple[str, float]]:
        scores = self.unit @ F.normalize(query, dim=0)
        scores[:FIRST_WORD] = -2.0
        for i in exclude:
            scores[i] = -2.0
        top = torch.topk(scores, min(k, len(scores) - len(exclude) - FIRST_WORD))
        return [(self.tokens[i], round(float(s), 4)) for s, i in zip(top.values, top.indices.tolist())]

    def nearest(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words of highest cosine similarity to ``word``, with it."""
        i = self._id(word)
        return self._nearest_to(self.unit[i], k, {i})

    def analogy(self, a: str, b: str, c: str, k: int = 5) -> list[tuple[str, float]]:
        """a : b :: c : ? by 3CosAdd: nearest to b - a + c (unit vectors), the three excluded."""
        ia, ib, ic = self._id(a), self._id(b), self._id(c)
        return self._nearest_to(self.unit[ib] - self.unit[ia] + self.unit[ic], k, {ia, ib, ic})

    def export(self, path: str | Path) -> Path:
        """word2vec's text format: a "count dim" line, then "token v1 v2 ..." per word."""
        rows = [(t, v) for t, v in zip(self.tokens, self.vectors.tolist()) if self.index[t] >= FIRST_WORD]
        lines = [f"{len(rows)} {self.vectors.shape[1]}"] + [t + " " + " ".join(f"{x:.6f}" for x in v) for t, v in rows]
        Path(path).write_text("\n".join(lines) + "\n")
        return Path(path)


def word_queries(run: str, words: list[str], analogies: list[str], k: int, export: str | None) -> dict:
    """``selfsup words``: neighbours of each word, answers to A:B::C analogies, optional export."""
    vectors = WordVectors.load(run)
    result: dict = {"neighbours": {w: vectors.nearest(w, k) for w in words}, "analogies": {}}
    for query in analogies:
        parts = query.replace("::", ":").split(":")
        if len(parts) != 3:
            raise SelfSupError(f"--analogy expects A:B::C (a is to b as c is to ?), got {query!r}")
        result["analogies"][query] = vectors.analogy(*parts, k=k)
    if export:
        result["exported"] = str(vectors.export(export))
    return json.loads(json.dumps(result))
