"""Linear probe on frozen features: multinomial logistic regression, decay picked on validation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.splits import stratified_split

WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2)


def _fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, iterations: int = 200) -> torch.nn.Linear:
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], num_classes)
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=iterations, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y) + 0.5 * weight_decay * model.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return model


def fit_head(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float = WEIGHT_DECAYS[-1]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a logistic-regression head on raw features (fitted standardized)."""
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp(min=1e-6)
    model = _fit((x - mean) / std, y, num_classes, weight_decay)
    weight = model.weight.detach() / std
    return weight, model.bias.detach() - weight @ mean


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, num_classes: int,
                 seed: int = 0) -> tuple[torch.Tensor, float]:
    """Fit on standardized training features; returns test scores and the chosen decay.

    The weight decay is chosen on a stratified 20% of the training features when every class
    has at least two examples (otherwise the smallest non-zero decay is used), then the probe
    is refitted on all training features. The test set is never looked at before scoring.
    """
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    tx, sx = (train_x - mean) / std, (test_x - mean) / std
    counts = torch.bincount(train_y, minlength=num_classes)
    chosen = WEIGHT_DECAYS[1]
    if int(counts[counts > 0].min()) >= 2:
        fit_idx, val_idx = stratified_split(train_y.numpy(), 0.2, seed)
        best = -1.0
        for wd in WEIGHT_DECAYS:
            model = _fit(tx[fit_idx], train_y[fit_idx], num_classes, wd)
            with torch.no_grad():
                acc = float((model(tx[val_idx]).argmax(1) == train_y[val_idx]).float().mean())
            if acc > best:
                best, chosen = acc, wd
    model = _fit(tx, train_y, num_classes, chosen)
    with torch.no_grad():
        return model(sx), chosen


__all__ = ["linear_probe", "WEIGHT_DECAYS"]
