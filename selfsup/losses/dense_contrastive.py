"""Dense contrastive learning's positives: for each location of one view's feature map, the other view's
location whose backbone feature is most alike (Wang et al. 2021, section 3.3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def matched_locations(query_features: torch.Tensor, key_features: torch.Tensor) -> torch.Tensor:
    """B x S_q: for each location of ``query_features`` (B x C x S_q, the backbone's map flattened), the
    location of ``key_features`` (B x C x S_k) of the highest cosine similarity (eq. 3's argmax over j of
    sim(f_i, f'_j)). Read from the backbone's features, not the dense head's: the paper's choice, as the
    backbone's correspondences are the more reliable early in training."""
    q = F.normalize(query_features.float(), dim=1)
    k = F.normalize(key_features.float(), dim=1)
    return torch.einsum("bcq,bck->bqk", q, k).argmax(dim=2)


def matched_keys(dense_keys: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """B x D x S_q: the dense key vectors (B x D x S_k) at the matched ``locations`` (B x S_q)."""
    return torch.gather(dense_keys, 2, locations.unsqueeze(1).expand(-1, dense_keys.shape[1], -1))


__all__ = ["matched_locations", "matched_keys"]
