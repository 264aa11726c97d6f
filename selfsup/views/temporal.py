"""Free labels from time: which frames a video pretext task looks at, and what it must answer.

Pure functions of (clip length, generator): each returns frame indices into a stored clip
(B x ... long tensors) and the labels, so every task is reproducible and tested on its own.
``take_frames`` then gathers those frames from a batch of clips.
"""
from __future__ import annotations

import itertools

import torch


def take_frames(clips: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Frames ``index`` (B x K) of each clip (B x C x T x H x W) -> B x C x K x H x W."""
    b, c, _, h, w = clips.shape
    gather = index.to(clips.device)[:, None, :, None, None].expand(b, c, index.shape[1], h, w)
    return torch.gather(clips, 2, gather)


def sorted_frames(b: int, t: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` distinct frame indices per clip, increasing (B x k), uniform over the k-subsets of 0..t-1."""
    if k > t:
        raise ValueError(f"need {k} distinct frames from clips of {t}")
    return torch.rand(b, t, generator=generator).argsort(1)[:, :k].sort(1).values


def order_tuples(b: int, t: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle and Learn's tuples (Misra et al. 2016, Sec. 3.1): from five ordered frames a<b<c<d<e,
    a positive (label 1) is (b, c, d), a negative (label 0) is (b, a, d) or (b, e, d): the middle frame
    lies outside the interval. Half of each kind is reversed, which counts as the same answer
    (the tuple is in order either way). Balanced 50/50. Returns (B x 3 indices, B labels)."""
    a, b_, c, d, e = sorted_frames(b, t, 5, generator).unbind(1)
    labels = (torch.rand(b, generator=generator) < 0.5).long()
    outside = torch.where(torch.rand(b, generator=generator) < 0.5, a, e)
    middle = torch.where(labels.bool(), c, outside)
    tuples = torch.stack([b_, middle, d], 1)
    reverse = torch.rand(b, generator=generator) < 0.5
    return torch.where(reverse[:, None], tuples.flip(1), tuples), labels


def is_monotonic(index: torch.Tensor) -> torch.Tensor:
    """Whether each row of frame indices is in temporal order, forwards or backwards (B bool)."""
    steps = index.diff(dim=-1)
    return (steps > 0).all(-1) | (steps < 0).all(-1)


def disordered_permutations(length: int) -> torch.Tensor:
    """The permutations of ``length`` frames that are in order neither forwards nor backwards
    (length 3: 4 of the 6)."""
    perms = torch.tensor(list(itertools.permutations(range(length))))
    return perms[~is_monotonic(perms)]


def odd_one_out(b: int, t: int, generator: torch.Generator, elements: int = 6,
                length: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Odd-one-out questions (Fernando et al. 2017, Sec. 3): ``elements`` sequences of ``length``
    frames of the same clip, each in temporal order except one, whose frames are permuted out of
    order (a permutation from ``disordered_permutations``). Returns (B x elements x length indices,
    B labels = the odd element's position)."""
    index = torch.stack([sorted_frames(b, t, length, generator) for _ in range(elements)], 1)
    odd = torch.randint(elements, (b,), generator=generator)
    perms = disordered_permutations(length)
    perm = perms[torch.randint(len(perms), (b,), generator=generator)]
    rows = torch.arange(b)
    index[rows, odd] = index[rows, odd].gather(1, perm)
    return index, odd


def between_triplets(b: int, t: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame-between questions: frames (i, j, k) with j exactly midway (k - j = j - i >= 1, and
    [i, k] shorter than the clip), and a candidate that is frame j (label 1) or, for label 0, a frame
    from another clip of the batch (half of the negatives, when there is another clip) or from this
    clip outside [i, k] (the other half: the answer cannot be "same video" alone). Returns
    (B x 3 indices (i, candidate frame, k), B source clip of the candidate, B labels)."""
    if t < 4:
        raise ValueError("frame-between needs clips of at least 4 frames")
    half = torch.randint(1, (t - 2) // 2 + 1, (b,), generator=generator)  # j - i: [i, k] leaves a frame out
    first = (torch.rand(b, generator=generator) * (t - 2 * half)).long()
    mid, last = first + half, first + 2 * half
    labels = (torch.rand(b, generator=generator) < 0.5).long()
    other_clip = (torch.rand(b, generator=generator) < 0.5) & (labels == 0) & (b > 1)
    shift = torch.randint(1, max(b, 2), (b,), generator=generator)
    rows = torch.arange(b)
    source = torch.where(other_clip, (rows + shift) % max(b, 1), rows)
    pick = (torch.rand(b, generator=generator) * (t - 2 * half - 1)).long()  # one of the frames outside [i, k]
    outside = torch.where(pick < first, pick, pick + 2 * half + 1)
    candidate = torch.where((labels == 1) | other_clip, mid, outside)
    return torch.stack([first, candidate, last], 1), source, labels


def two_clip_starts(b: int, t: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Start frames of two sub-clips of ``length`` frames of each clip, independent and uniform
    (two clips of the same video are the positive pair of clip contrastive learning)."""
    if length > t:
        raise ValueError(f"sub-clips of {length} frames do not fit clips of {t}")
    return (torch.randint(t - length + 1, (b,), generator=generator),
            torch.randint(t - length + 1, (b,), generator=generator))
