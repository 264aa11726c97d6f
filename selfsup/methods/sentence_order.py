"""Sentence-order prediction (ALBERT): are the two segments in their original order or swapped?"""
from __future__ import annotations

import torch

from ..backbones import Backbone
from ..data.text import TokenSpec, trim_padding
from ..heads import classifier_head
from ..losses.language import IGNORE, token_cross_entropy
from ..views.text import sentence_order_pairs
from .base import register_method
from .text_base import TRANSFORMER_RECIPE, TextMethod, sequence_encoder


@register_method
class SentenceOrder(TextMethod):
    """ALBERT's sentence-order prediction (SOP).

    - [0] Lan, Chen, Goodman, Gimpel, Sharma & Soricut, 2020, https://arxiv.org/abs/1909.11942

    Positives are two consecutive segments in their order, negatives the same two swapped (Sec. 3.1,
    "Inter-sentence coherence loss"); binary cross-entropy of a classifier on the pair's features:
    -[y log p + (1 - y) log(1 - p)], here a 2-way softmax. Our corpora hold single sentences, so the
    segments are the two halves of a text, cut near its middle; half of every batch is swapped.
    The classifier reads the mean-pooled features that transfer uses. (ALBERT trains SOP beside
    masked LM; here it is its own pretext task, so its effect can be measured alone.)
    """

    name = "sentence_order"
    family = "text"
    paper = "Lan et al. 2020, ALBERT: A Lite BERT for Self-supervised Learning of Language Representations (SOP)"
    recipe = TRANSFORMER_RECIPE

    def __init__(self, backbone: Backbone, views: TokenSpec) -> None:
        super().__init__(backbone, views)
        sequence_encoder(backbone, self.name)  # positions matter: a bag of words cannot see the order
        self.classifier = classifier_head(backbone.feature_dim, 2)

    def forward(self, ids: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        ids = trim_padding(ids)
        pairs, labels = sentence_order_pairs(ids, generator)
        features = self.backbone(pairs)
        logits = self.classifier(features)
        picked = labels != IGNORE
        return {"loss": token_cross_entropy(logits, labels), "embedding": features,
                "pretext_accuracy": (logits[picked].argmax(-1) == labels[picked]).float().mean()}
