"""Text pretext tasks' free labels: pure functions of a batch of token ids and a seeded generator.

Each takes ``ids`` (B x L, ``[CLS] tokens [SEP]`` then ``[PAD]``) and returns the network's input
and its targets; randomness comes only from ``generator`` (a CPU ``torch.Generator``), so a
replayed step draws the same labels.
"""
from __future__ import annotations

import torch

from ..data.text import CLS, FIRST_WORD, IGNORE, MASK, PAD, SEP


def _rand(shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator).to(device)


def mask_tokens(ids: torch.Tensor, vocab_size: int, generator: torch.Generator, rate: float = 0.15,
                mask_share: float = 0.8, random_share: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption (Devlin et al. 2019, Sec. 3.1): ``rate`` of the word tokens are
    selected; of those, ``mask_share`` become ``[MASK]``, ``random_share`` a random word token and the
    rest stay unchanged. Returns (inputs, targets): targets hold the original id at selected
    positions and ``IGNORE`` elsewhere, so the loss is on selected positions only."""
    ids = ids.long()
    words = ids >= FIRST_WORD
    selected = (_rand(ids.shape, generator, ids.device) < rate) & words
    action = _rand(ids.shape, generator, ids.device)
    random_ids = torch.randint(FIRST_WORD, vocab_size, ids.shape, generator=generator).to(ids.device)
    inputs = torch.where(selected & (action < mask_share), torch.full_like(ids, MASK), ids)
    inputs = torch.where(selected & (action >= mask_share) & (action < mask_share + random_share), random_ids, inputs)
    return inputs, torch.where(selected, ids, torch.full_like(ids, IGNORE))


def next_token_targets(ids: torch.Tensor) -> torch.Tensor:
    """GPT's targets: position t predicts token t + 1; padding (and the step after the last) is ignored."""
    ids = ids.long()
    targets = torch.full_like(ids, IGNORE)
    targets[:, :-1] = ids[:, 1:]
    return targets.masked_fill(targets == PAD, IGNORE)


def sentence_order_pairs(ids: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """ALBERT's sentence-order prediction (Lan et al. 2020, Sec. 3.1) on single-sentence rows: each
    text is cut into two halves at its middle +/- a sixth of its length, and the pair is
    ``[CLS] A [SEP] B [SEP]`` (in order, label 1) or ``[CLS] B [SEP] A [SEP]`` (swapped, label 0).
    Exactly half the usable rows of a batch are swapped (one more or less when odd), at random.
    Rows with fewer than 2 word tokens cannot be cut: their label is ``IGNORE``."""
    ids = ids.long()
    batch, length = ids.shape
    # [CLS] A [SEP] B [SEP] must fit the batch's width: a text that fills it loses its last word.
    words = [row[(row != PAD) & (row != CLS) & (row != SEP)][:length - 3] for row in ids]
    usable = torch.tensor([len(w) >= 2 for w in words])
    order = torch.randperm(batch, generator=generator)
    n_usable = int(usable.sum())
    # Among usable rows in a random order, alternate in order / swapped; a random start balances odd counts.
    first = int(torch.randint(2, (1,), generator=generator))
    rank = torch.empty(batch, dtype=torch.long)
    rank[order[usable[order]]] = torch.arange(n_usable)
    in_order = ((rank + first) % 2 == 0) & usable
    jitter = _rand((batch,), generator, torch.device("cpu"))
    pairs = torch.full_like(ids, PAD)
    for i, w in enumerate(words):
        if not usable[i]:
            pairs[i, :len(w) + 2] = torch.cat([ids.new_tensor([CLS]), w, ids.new_tensor([SEP])])
            continue
        n = len(w)
        cut = min(n - 1, max(1, round(n / 2 + (jitter[i].item() - 0.5) * n / 3)))
        a, b = w[:cut], w[cut:]
        first_seg, second_seg = (a, b) if in_order[i] else (b, a)
        row = torch.cat([ids.new_tensor([CLS]), first_seg, ids.new_tensor([SEP]), second_seg, ids.new_tensor([SEP])])
        pairs[i, :len(row)] = row
    labels = torch.where(usable, in_order.long(), torch.full((batch,), IGNORE))
    return pairs, labels.to(ids.device)


def keep_probability(counts: torch.Tensor, threshold: float = 1e-3) -> torch.Tensor:
    """word2vec's sub-sampling of frequent words (Mikolov et al. 2013b, Eq. 5): a word of corpus
    frequency f is discarded with probability 1 - sqrt(t / f), i.e. kept with min(1, sqrt(t / f))."""
    frequency = counts.double() / counts.sum().clamp_min(1)
    return torch.sqrt(threshold / frequency.clamp_min(1e-30)).clamp(max=1.0).float()


def noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """word2vec's negative-sampling noise: the unigram distribution raised to 3/4, renormalized;
    special tokens get no mass."""
    weights = counts.double().clone()
    weights[:FIRST_WORD] = 0
    weights = weights ** power
    return (weights / weights.sum()).float()


def skipgram_pairs(ids: torch.Tensor, keep: torch.Tensor, window: int, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Skip-gram (centre, context) word pairs (Mikolov et al. 2013a): frequent words are first
    sub-sampled with ``keep`` (per-id keep probability); each centre then takes a window of
    b ~ U{1..window} words on each side, as in the reference implementation, so near words are
    paired more often than far ones. Special tokens are never paired."""
    ids = ids.long().cpu()
    words = ids >= FIRST_WORD
    kept = words & (torch.rand(ids.shape, generator=generator) < keep.cpu()[ids])
    # Compact each row's kept words to the left, preserving order, so windows skip discarded words.
    position = torch.cumsum(kept.long(), 1) - 1
    compact = torch.full_like(ids, PAD)
    rows = torch.arange(len(ids)).unsqueeze(1).expand_as(ids)
    compact[rows[kept], position[kept]] = ids[kept]
    valid = compact != PAD
    reach = torch.randint(1, window + 1, ids.shape, generator=generator)
    centres, contexts = [], []
    length = ids.shape[1]
    for offset in range(1, min(window, length - 1) + 1):  # a batch of short texts has no pairs that far apart
        for sign in (1, -1):
            shift = sign * offset
            lo, hi = max(0, -shift), min(length, length - shift)
            c_valid = valid[:, lo:hi] & valid[:, lo + shift:hi + shift] & (reach[:, lo:hi] >= offset)
            centres.append(compact[:, lo:hi][c_valid])
            contexts.append(compact[:, lo + shift:hi + shift][c_valid])
    return torch.cat(centres), torch.cat(contexts)


__all__ = ["IGNORE", "keep_probability", "mask_tokens", "next_token_targets", "noise_distribution",
           "sentence_order_pairs", "skipgram_pairs"]
