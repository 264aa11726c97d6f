"""Linear probe on frozen features: multinomial logistic regression, L2 strength by cross-validation."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.splits import stratified_split

WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2)
DEFAULT_DECAY = 1e-4  # with fewer than 2 labels in some class there is nothing to validate on
CV_ITERATIONS = 100  # L-BFGS iterations of each cross-validation fit (warm-started); the final fit gets 200


def _fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, iterations: int = 200,
         start: torch.nn.Linear | None = None) -> torch.nn.Linear:
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], num_classes)
    if start is not None:  # warm start along the regularization path
        model.load_state_dict(start.state_dict())
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


def cv_folds(train_y: torch.Tensor, num_classes: int, max_folds: int = 5) -> int:
    """Folds for choosing the decay: up to 5, no more than the rarest class has examples; 0 below 2."""
    counts = torch.bincount(train_y, minlength=num_classes)
    rarest = int(counts[counts > 0].min())
    return min(max_folds, rarest) if rarest >= 2 else 0


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, num_classes: int,
                 seed: int = 0, max_cv_examples: int = 5000) -> tuple[torch.Tensor, float]:
    """Fit on standardized training features; returns test scores and the chosen decay.

    The L2 strength is chosen by stratified k-fold cross-validation inside the training features
    (k = min(5, examples in the rarest class)) when every class has at least two examples, on at
    most ``max_cv_examples`` of them (a stratified sample: with standardized features the choice
    matters little at that size, and the probe on CIFAR-10's 50,000 stays a matter of seconds),
    fits warm-started from the next stronger decay; below two per class it is the stated default
    ``DEFAULT_DECAY``. The probe is then refitted on all training features. The test set is
    never looked at before scoring.
    """
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    tx, sx = (train_x - mean) / std, (test_x - mean) / std
    chosen, _ = chosen_decay(tx, train_y, num_classes, seed, max_cv_examples)
    model = _fit(tx, train_y, num_classes, chosen)
    with torch.no_grad():
        return model(sx), chosen


def chosen_decay(x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int = 0,
                 max_cv_examples: int = 5000) -> tuple[float, float | None]:
    """The L2 strength of the best cross-validated accuracy on standardized features ``x`` (ties: the
    stronger), and that accuracy; ``DEFAULT_DECAY`` and None below two examples in some class."""
    from sklearn.model_selection import StratifiedKFold

    folds = cv_folds(y, num_classes)
    if not folds:
        return DEFAULT_DECAY, None
    labels = y.numpy()
    pool = np.arange(len(labels))
    if len(pool) > max_cv_examples:
        _, pool = stratified_split(labels, max_cv_examples / len(labels), seed)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = np.zeros(len(WEIGHT_DECAYS))
    for fit_pos, val_pos in splitter.split(pool, labels[pool]):
        fit_idx, val_idx = torch.from_numpy(pool[fit_pos]), torch.from_numpy(pool[val_pos])
        model = None
        for i in reversed(range(len(WEIGHT_DECAYS))):  # strongest first, each warm-starting the next
            model = _fit(x[fit_idx], y[fit_idx], num_classes, WEIGHT_DECAYS[i], CV_ITERATIONS, start=model)
            with torch.no_grad():
                scores[i] += float((model(x[val_idx]).argmax(1) == y[val_idx]).float().sum())
    best = len(scores) - 1 - int(np.argmax(scores[::-1]))
    return WEIGHT_DECAYS[best], float(scores[best] / len(pool))

__all__ = ["linear_probe", "chosen_decay", "fit_head", "cv_folds", "WEIGHT_DECAYS", "DEFAULT_DECAY"]
