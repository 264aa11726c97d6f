"""word2vec: skip-gram with negative sampling, the word vectors as a mean-pooled text encoder."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..backbones import Backbone
from ..backbones.text import WordEmbedding
from ..data.text import TokenSpec, trim_padding
from ..losses.language import negative_sampling_loss
from ..views.text import keep_probability, noise_distribution, skipgram_pairs
from .base import Recipe, register_method
from .text_base import TextMethod


@register_method
class Word2Vec(TextMethod):
    """Skip-gram with negative sampling (SGNS).

    - [0] Mikolov, Chen, Corrado & Dean, 2013a, https://arxiv.org/abs/1301.3781
    - [1] Mikolov, Sutskever, Chen, Corrado & Dean, 2013b, https://arxiv.org/abs/1310.4546

    Each word w_I predicts the words around it (window b ~ U{1..window}); the loss per pair is
    -log sigma(v'_O . v_I) - sum_k log sigma(-v'_{n_k} . v_I) with K noise words n_k drawn from the
    unigram distribution to the 3/4 power ([1] Eq. 4); frequent words are sub-sampled, each occurrence
    kept with probability min(1, sqrt(t / f(w))) ([1] Eq. 5; t = 1e-3, gensim's default for small
    corpora). The input vectors v are the encoder (a text is the mean of its words' vectors); the
    output vectors v' start at zero, as in the reference code. A word-level vocabulary (min count 2).
    Plain SGD as in the reference, which steps once per pair at lr 0.025 (decaying): on the mean loss
    of a batch of thousands of pairs the equivalent rate is large (25 x batch/256, momentum 0.9,
    cosine decay). AdamW instead gave vectors sharing one direction (cosines 0.85-0.98) and 63% kNN
    against SGD's 73% on SST-2.
    """

    name = "word2vec"
    family = "text"
    paper = "Mikolov et al. 2013, Distributed Representations of Words and Phrases (skip-gram, negative sampling)"
    tokenizer = "word"
    recipe = Recipe(optimizer="sgd", base_lr=25.0, weight_decay=0.0, warmup_fraction=0.0, views="text",
                    backbone="word-embedding")

    def __init__(self, backbone: Backbone, views: TokenSpec, window: int = 5, negatives: int = 5,
                 subsample: float = 1e-3) -> None:
        super().__init__(backbone, views)
        if not isinstance(backbone.model, WordEmbedding):
            raise ValueError(f"word2vec trains word vectors: use --backbone word-embedding, not {backbone.spec.name}")
        counts = torch.ones(views.vocab_size) if views.counts is None else torch.as_tensor(views.counts)
        self.register_buffer("keep", keep_probability(counts, subsample), persistent=False)
        self.register_buffer("noise", noise_distribution(counts), persistent=False)
        self.output = nn.Embedding(views.vocab_size, backbone.feature_dim)
        nn.init.zeros_(self.output.weight)
        self.window, self.negatives = window, negatives

    def forward(self, ids: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        ids = trim_padding(ids)
        centres, contexts = skipgram_pairs(ids, self.keep, self.window, generator)
        words = self.backbone.model.tokens
        if len(centres) == 0:  # every text a single (kept) word: nothing to predict this step
            return {"loss": words.weight.sum() * 0.0 + self.output.weight.sum() * 0.0, "embedding": self.backbone(ids)}
        noise = torch.multinomial(self.noise.cpu(), len(centres) * self.negatives, replacement=True,
                                  generator=generator).view(len(centres), self.negatives)
        device = ids.device
        loss = negative_sampling_loss(words(centres.to(device)), self.output(contexts.to(device)),
                                      self.output(noise.to(device)))
        return {"loss": loss, "embedding": self.backbone(ids)}
