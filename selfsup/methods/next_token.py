"""Next-token prediction (GPT): a causal Transformer predicts each token from the ones before it."""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..backbones.pooling import masked_mean
from ..data.text import PAD, TokenSpec, trim_padding
from ..losses.language import IGNORE, token_cross_entropy
from ..views.text import next_token_targets
from .base import register_method
from .text_base import TRANSFORMER_RECIPE, TextMethod, TiedLanguageModelHead, sequence_encoder


@register_method
class NextToken(TextMethod):
    """Generative pre-training: a left-to-right language model.

    - [0] Radford, Narasimhan, Salimans & Sutskever, 2018, "Improving Language Understanding by
      Generative Pre-Training", https://cdn.openai.com/research-covers/language-unsupervised/language_understanding_paper.pdf

    L_1 = sum_i log P(u_i | u_{i-k}, ..., u_{i-1}) (Eq. 1), maximized: the cross-entropy of every
    next token under a causal mask (position t attends to positions <= t only), averaged over the
    real (non-padding) tokens. Output layer tied to the input embeddings, as in GPT. For transfer,
    the encoder's features are its states mean-pooled over the text, computed without the causal
    mask like every other text encoder's.
    """

    name = "next_token"
    family = "text"
    paper = "Radford et al. 2018, Improving Language Understanding by Generative Pre-Training (GPT)"
    recipe = TRANSFORMER_RECIPE

    def __init__(self, backbone: Backbone, views: TokenSpec) -> None:
        super().__init__(backbone, views)
        self.encoder = [sequence_encoder(backbone, self.name)]
        self.head = TiedLanguageModelHead(self.encoder[0].tokens, backbone.feature_dim)

    def forward(self, ids: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        ids = trim_padding(ids).long()
        targets = next_token_targets(ids)
        states = self.encoder[0].sequence(ids, causal=True)
        picked = targets != IGNORE
        logits = self.head(states[picked])
        return {"loss": token_cross_entropy(logits, targets[picked]), "embedding": masked_mean(states, ids != PAD),
                "pretext_accuracy": (logits.argmax(-1) == targets[picked]).float().mean()}
