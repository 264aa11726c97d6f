"""Pieces the text methods share: the language-model head tied to the input embeddings."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import Backbone
from .base import Recipe

# The Transformer methods' shared recipe: AdamW with BERT's weight decay and 10% warm-up; BERT's
# lr is 1e-4 at batch 256 for 1M steps, a CPU-sized model and budget trains faster at 1e-3.
TRANSFORMER_RECIPE = Recipe(optimizer="adamw", base_lr=1e-3, weight_decay=0.01, warmup_fraction=0.1, views="text",
                            backbone="text-transformer")


def sequence_encoder(backbone: Backbone, method: str) -> nn.Module:
    """The backbone's Transformer (which gives per-token states), or a clear error."""
    if not hasattr(backbone.model, "sequence"):
        raise ValueError(f"{method} needs a token-sequence encoder such as text-transformer, not {backbone.spec.name}")
    return backbone.model


class TiedLanguageModelHead(nn.Module):
    """BERT's output head (Devlin et al. 2019, Appendix A.2; GPT's too): dense + GELU + LayerNorm, then
    a product with the input token embeddings (weights tied, so the vocabulary is learned once) plus
    a per-token bias. Tied functionally, not by sharing a parameter, so checkpoints hold each tensor once."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        width = embedding.embedding_dim
        self.embedding = [embedding]  # a reference, not a submodule: its weight belongs to the backbone
        self.transform = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width))
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(states), self.embedding[0].weight, self.bias)
