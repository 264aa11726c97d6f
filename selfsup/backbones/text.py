"""Text encoders: token ids (B x L, ``[PAD]`` = 0) to pooled features (B x D), like image backbones.

- ``text-transformer`` (and ``-tiny``): a pre-norm Transformer encoder from PyTorch's own
  ``nn.TransformerEncoder`` with learned positions, sized for a CPU (BERT's design, Devlin et al.
  2019, https://arxiv.org/abs/1810.04805, at 4 layers of width 256); ``sequence(ids, causal=True)``
  gives GPT's left-to-right states from the same weights.
- ``word-embedding``: a table of word vectors, mean-pooled over a text's words (word2vec's
  input vectors, Mikolov et al. 2013, https://arxiv.org/abs/1310.4546).
- ``hf:MODEL_TYPE[:key=value,...]``: any Hugging Face ``transformers`` architecture (``hf.py``).

Dropout is off: on a CPU-sized corpus and budget it costs accuracy per step, and it would
draw from the global random stream, which resumed runs do not replay.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..data.text import FIRST_WORD, PAD
from ..utils.errors import ConfigError
from .pooling import masked_mean
from .registry import Backbone


@dataclass
class TextBackboneSpec:
    """Everything needed to rebuild a text encoder (saved in encoder.json)."""

    name: str
    vocab_size: int
    max_length: int
    modality: str = "text"
    config: dict | None = None  # hf:... backbones: the resolved Hugging Face config


class TextTransformer(nn.Module):
    def __init__(self, vocab_size: int, max_length: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, width, padding_idx=PAD)
        self.positions = nn.Parameter(torch.zeros(1, max_length, width))
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.trunc_normal_(self.positions, std=0.02)
        with torch.no_grad():
            self.tokens.weight[PAD].zero_()
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.width = width

    def sequence(self, ids: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """B x L x D token states; ``causal``: position t sees positions <= t only."""
        ids = ids.long()
        length = ids.shape[1]
        if length > self.positions.shape[1]:
            raise ConfigError(f"{length} tokens exceed the encoder's {self.positions.shape[1]} positions")
        x = self.tokens(ids) + self.positions[:, :length]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=ids.device, dtype=x.dtype) if causal else None
        # Padding is masked as keys; with right padding every real token still sees itself and its past.
        x = self.encoder(x, mask=mask, src_key_padding_mask=None if causal else ids == PAD, is_causal=causal)
        return self.norm(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return masked_mean(self.sequence(ids), ids.long() != PAD)


class WordEmbedding(nn.Module):
    """word2vec's input vectors; a text's feature is the mean of its words' vectors."""

    def __init__(self, vocab_size: int, width: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, width)
        # word2vec's initialization: uniform in [-0.5, 0.5] / dim (output vectors start at zero).
        nn.init.uniform_(self.tokens.weight, -0.5 / width, 0.5 / width)
        self.width = width

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        return masked_mean(self.tokens(ids), ids >= FIRST_WORD)


TEXT_BACKBONES = {
    # name: (builder of (vocab_size, max_length), description)
    "text-transformer": (lambda v, n: TextTransformer(v, n, 256, 4, 4), "4 layers, width 256, 4 heads"),
    "text-transformer-tiny": (lambda v, n: TextTransformer(v, n, 128, 2, 2), "2 layers, width 128, 2 heads"),
    "word-embedding": (lambda v, n: WordEmbedding(v, 128), "128-d word vectors, mean-pooled"),
}


def build_text_backbone(name: str, vocab_size: int, max_length: int, config: dict | None = None) -> Backbone:
    """A randomly initialized text encoder wrapped like an image backbone (``Backbone``); ``hf:...``
    names build a Hugging Face model (``config``: its saved config, when rebuilding a checkpoint)."""
    from .hf import HFTextEncoder, hf_config, is_hf_backbone

    if is_hf_backbone(name):
        config = config or hf_config(name, vocab_size, max_length)
        encoder = HFTextEncoder(config, name)
        return Backbone(encoder, TextBackboneSpec(name, vocab_size, max_length, config=config), encoder.width)
    if name not in TEXT_BACKBONES:
        raise ConfigError(f"unknown text backbone {name!r} (known: {', '.join(TEXT_BACKBONES)}, "
                          "or hf:MODEL_TYPE[:key=value,...] with transformers installed)")
    model = TEXT_BACKBONES[name][0](vocab_size, max_length)
    return Backbone(model, TextBackboneSpec(name, vocab_size, max_length), model.width)


__all__ = ["TEXT_BACKBONES", "TextBackboneSpec", "TextTransformer", "WordEmbedding", "build_text_backbone"]
