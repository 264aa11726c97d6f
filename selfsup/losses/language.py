"""Language-modelling losses: token cross-entropy (BERT's masked LM, GPT's next token) and
word2vec's negative sampling."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.text import IGNORE


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of -log p(target_t | context) over the positions whose target is not ``IGNORE``.

    Masked LM (Devlin et al. 2019, Sec. 3.1): the positions are the selected 15%; next-token
    prediction (Radford et al. 2018, Eq. 1): L = -sum_t log P(u_t | u_<t), averaged over tokens.
    ``logits``: B x L x V, ``targets``: B x L. A batch with no target position gives 0, not NaN.
    """
    picked = targets != IGNORE
    if not bool(picked.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[picked].float(), targets[picked])


def negative_sampling_loss(centres: torch.Tensor, contexts: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Skip-gram with negative sampling (Mikolov et al. 2013b, Eq. 4), averaged over pairs:

        -log sigma(v'_O . v_I) - sum_{k=1..K} log sigma(-v'_{n_k} . v_I),  n_k ~ P_n(w)

    ``centres`` (P x D): input vectors v_I; ``contexts`` (P x D): output vectors v'_O of the true
    context words; ``noise`` (P x K x D): output vectors of K noise words per pair.
    """
    positive = F.logsigmoid((centres * contexts).sum(-1))
    negative = F.logsigmoid(-torch.einsum("pd,pkd->pk", centres, noise)).sum(-1)
    return -(positive + negative).mean()


__all__ = ["IGNORE", "negative_sampling_loss", "token_cross_entropy"]
