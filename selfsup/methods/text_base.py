"""What the text methods share: their base class (length-bucketed epochs), the Transformer recipe
and the language-model head tied to the input embeddings."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import Backbone
from ..data.order import bucketed_order
from .base import EpochContext, Method, Recipe

# The Transformer methods' shared recipe: AdamW with BERT's weight decay and 10% warm-up; BERT's
# lr is 1e-4 at batch 256 for 1M steps, a CPU-sized model and budget trains faster at 1e-3.
TRANSFORMER_RECIPE = Recipe(optimizer="adamw", base_lr=1e-3, weight_decay=0.01, warmup_fraction=0.1, views="text",
                            backbone="text-transformer")


class TextMethod(Method):
    """A method on token ids (``modality = "text"``) whose epochs are length-bucketed."""

    modality = "text"
    collapse_prone = False  # pooled token states and word vectors share a dominant direction by nature (Method.collapse_prone)

    def plan_epoch(self, context: EpochContext) -> np.ndarray | None:
        if context.lengths is None or not context.batch_size:
            return None
        return bucketed_order(context.lengths, context.batch_size, context.seed, context.epoch)


def sequence_encoder(backbone: Backbone, method: str) -> nn.Module:
    """The backbone's Transformer (which gives per-token states), or a clear error."""
    if not hasattr(backbone.model, "sequence"):
        raise ValueError(f"{method} needs a token-sequence encoder such as text-transformer, not {backbone.spec.name}")
    return backbone.model


class TiedLanguageModelHead(nn.Module):
    """BERT's output head (Devlin et al. 2019, Appendix A.2; GPT's too): dense + GELU + LayerNorm, then
    a product with the input token embeddings (weights tied, so the vocabulary is learned once) plus
    a per-token bias. Tied functionally, not by sharing a parameter, so checkpoints hold each tensor once."""

    def __init__(self, embedding: nn.Embedding, hidden: int | None = None) -> None:
        super().__init__()
        width = embedding.embedding_dim
        self.embedding = [embedding]  # a reference, not a submodule: its weight belongs to the backbone
        # states may be wider than the embedding (ALBERT's factorized embedding): project down to it
        self.transform = nn.Sequential(nn.Linear(hidden or width, width), nn.GELU(), nn.LayerNorm(width))
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(states), self.embedding[0].weight, self.bias)
