"""The tokenizer trained on the corpus (Hugging Face ``tokenizers``: byte-pair encoding, or a word-level
vocabulary for word2vec), its special tokens, and the token settings an encoder is trained with."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...utils.errors import ConfigError, SelfSupError

log = logging.getLogger("selfsup")

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 in every vocabulary
PAD, UNK, CLS, SEP, MASK = range(len(SPECIAL_TOKENS))
IGNORE = -100  # a target position no loss reads (cross-entropy's ignore_index)
FIRST_WORD = MASK + 1  # ids from here on are words (or word pieces); below are the special tokens
DEFAULT_VOCAB_SIZE = {"bpe": 8000, "word": 20000}
DEFAULT_MAX_LENGTH = 64
TOKENIZER_FILE = "tokenizer.json"


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
