"""Segmentation scores from a confusion matrix: IoU and Dice per class, their means, pixel accuracy.

Summed over every pixel of every image scored (the challenge's and torchmetrics' "micro over
images" reading), so a small image weighs by its pixels. IoU_c = TP / (TP + FP + FN), Dice_c =
2 TP / (2 TP + FP + FN); a class absent from both prediction and truth has no score (NaN) and is left
out of the means.
"""
from __future__ import annotations

import torch


def confusion(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> torch.Tensor:
    """K x K counts: row = true class, column = predicted class, over all pixels given."""
    index = truth.reshape(-1).long() * num_classes + predicted.reshape(-1).long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(matrix: torch.Tensor) -> dict[str, float | list[float]]:
    """IoU and Dice per class and their means over the classes present, and pixel accuracy."""
    matrix = matrix.double()
    tp = matrix.diag()
    fp, fn = matrix.sum(0) - tp, matrix.sum(1) - tp
    iou = tp / (tp + fp + fn)
    dice = 2 * tp / (2 * tp + fp + fn)
    return {"iou": iou.tolist(), "mean_iou": float(iou.nanmean()), "dice": dice.tolist(),
            "mean_dice": float(dice.nanmean()), "pixel_accuracy": float(tp.sum() / matrix.sum())}
