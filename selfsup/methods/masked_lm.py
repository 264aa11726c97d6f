"""Masked language modelling (BERT): predict the selected 15% of tokens from the corrupted text."""
from __future__ import annotations


import torch

from ..backbones import Backbone
from ..backbones.pooling import masked_mean
from ..data.text import PAD, TokenSpec, trim_padding
from ..losses.language import IGNORE, token_cross_entropy
from ..views.text import mask_tokens
from .base import register_method
from .text_base import TRANSFORMER_RECIPE, TextMethod, TiedLanguageModelHead, sequence_encoder


@register_method
class MaskedLM(TextMethod):
    """BERT's masked language model.

    - [0] Devlin, Chang, Lee & Toutanova, 2019, https://arxiv.org/abs/1810.04805

    15% of the word tokens are selected; a selected token becomes [MASK] 80% of the time, a random
    token 10% and stays unchanged 10% (Sec. 3.1, "Task #1"); the loss is the cross-entropy of the
    original token at the selected positions only: -1/|M| sum_{t in M} log p(x_t | x~). The output
    layer is tied to the input embeddings. AdamW, warm-up then decay (the paper: lr 1e-4 at batch 256,
    for 1M steps; a CPU-sized model and budget trains faster at 1e-3).
    """

    name = "mlm"
    family = "text"
    paper = "Devlin et al. 2019, BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"
    recipe = TRANSFORMER_RECIPE

    def __init__(self, backbone: Backbone, views: TokenSpec, mask_rate: float = 0.15) -> None:
        super().__init__(backbone, views)
        self.encoder = [sequence_encoder(backbone, self.name)]  # a reference: the weights are the backbone's
        self.head = TiedLanguageModelHead(self.encoder[0].tokens, backbone.feature_dim)
        self.mask_rate = mask_rate

    def forward(self, ids: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        ids = trim_padding(ids)
        inputs, targets = mask_tokens(ids, self.views.vocab_size, generator, self.mask_rate)
        states = self.encoder[0].sequence(inputs)
        picked = targets != IGNORE
        logits = self.head(states[picked])  # only the selected positions: a B x L x V product would be wasted
        loss = token_cross_entropy(logits, targets[picked])
        return {"loss": loss, "embedding": masked_mean(states, ids.long() != PAD),
                "pretext_accuracy": (logits.argmax(-1) == targets[picked]).float().mean()}
