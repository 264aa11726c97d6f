"""The study's two figures: accuracy against labels, and 2-D maps of test embeddings."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .results import Summary

EVALUATION_TITLES = {"finetune": "fine-tuned from the pretrained encoder", "linear": "linear probe (frozen)",
                     "knn": "kNN (frozen)", "semisup": "semi-supervised (labeled + unlabeled)"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers or in CI
    import matplotlib.pyplot as plt

    return plt


def source_name(source: str) -> str:
    """A data source as a figure names it: the file or folder's own name, never the machine's path to it."""
    return Path(str(source).rstrip("/")).name or str(source)


def plot_label_efficiency(summary: list[Summary], path: Path, title: str = "", ylabel: str = "test accuracy (%)",
                          xlabel: str = "labeled examples") -> Path:
    """Test accuracy (or another score) against labels (log axis): one panel per evaluation, one line per
    method, scratch in every panel; bands are ± one std over seeds."""
    plt = _pyplot()
    evaluations = [e for e in EVALUATION_TITLES if any(s.evaluation == e for s in summary)]
    scratch = [s for s in summary if s.evaluation == "scratch"]
    if not evaluations:
        evaluations = ["scratch"] if scratch else []
    methods = sorted({s.method for s in summary if s.evaluation != "scratch"})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, max(1, len(evaluations)), figsize=(5.2 * max(1, len(evaluations)), 4.2),
                             squeeze=False, sharey=True)
    for ax, evaluation in zip(axes[0], evaluations):
        lines = [(m, [s for s in summary if s.method == m and s.evaluation == evaluation], colours[m], "-o")
                 for m in methods]
        for name in sorted({s.method for s in scratch}):
            lines.append((name, [s for s in scratch if s.method == name], "black", "--s"))
        for label, points, colour, style in lines:
            points = sorted(points, key=lambda s: s.n_labels)
            if not points:
                continue
            n = np.array([s.n_labels for s in points], dtype=float)
            mean = np.array([100 * s.mean for s in points])
            std = np.array([100 * s.std for s in points])
            ax.plot(n, mean, style, color=colour, label=label, markersize=4)
            ax.fill_between(n, mean - std, mean + std, color=colour, alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        budgets = sorted({s.n_labels for s in summary})
        ax.set_xticks(budgets, [str(n) for n in budgets])  # the budgets run, not powers of ten
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_title(EVALUATION_TITLES.get(evaluation, evaluation), fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def tsne_2d(features: torch.Tensor, seed: int = 0) -> np.ndarray:
    """t-SNE (van der Maaten & Hinton 2008, scikit-learn's) of L2-normalized features, after PCA to 50."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = torch.nn.functional.normalize(features.double(), dim=1).numpy()
    if x.shape[1] > 50 and x.shape[0] > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (x.shape[0] - 1) / 3.5)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot_embedding_maps(maps: dict[str, tuple[np.ndarray, np.ndarray]], class_names: list[str] | None,
                        path: Path) -> Path:
    """One scatter per checkpoint (name -> (N x 2 points, N labels)), coloured by class."""
    plt = _pyplot()
    names = list(maps)
    cols = min(4, max(1, len(names)))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10" if max((int(l.max()) for _, l in maps.values()), default=0) < 10 else "tab20")
    for ax in axes.flat:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        points, labels = maps[name]
        ax.scatter(points[:, 0], points[:, 1], c=labels, cmap=cmap, s=4, alpha=0.8, vmin=0, vmax=cmap.N - 1)
        ax.set_title(name, fontsize=10)
    if class_names:
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=cmap(i), label=str(c))
                   for i, c in enumerate(class_names[:cmap.N])]
        fig.legend(handles=handles, loc="lower center", ncol=min(10, len(handles)), fontsize=8, frameon=False)
    fig.suptitle("t-SNE of test-set embeddings, coloured by class", fontsize=11)
    fig.tight_layout(rect=(0, 0.05 if class_names else 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_overlays(keys: list[str], images: list[np.ndarray], truths: list[np.ndarray],
                  predicted: dict[str, list[np.ndarray]], ious: dict[str, list[float]], background: int,
                  classes: list[str], path: Path) -> Path:
    """One row per test image: the image, its true mask and each model's predicted mask, every class but
    ``background`` painted over the image (C x H x W uint8 images; H x W class-index masks)."""
    plt = _pyplot()
    columns = 2 + len(predicted)
    fig, axes = plt.subplots(len(keys), columns, figsize=(3.3 * columns, 3.9 * len(keys)), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for row, (key, image, truth) in enumerate(zip(keys, images, truths)):
        gray = image.mean(0) if image.shape[0] != 3 else None
        panels = [("image", None, None), ("true mask", truth, None)]
        panels += [(name, masks[row], ious[name][row]) for name, masks in predicted.items()]
        for ax, (name, mask, iou) in zip(axes[row], panels):
            if gray is not None:
                ax.imshow(gray, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(image.transpose(1, 2, 0), interpolation="nearest")
            if mask is not None:
                paint = np.zeros((*mask.shape, 4))
                for c in range(len(classes)):
                    if c != background:
                        paint[mask == c] = (*cmap(c % 10)[:3], 0.5)
                ax.imshow(paint, interpolation="nearest")
            ax.set_title(f"{name}" + (f"\nmIoU {100 * iou:.1f}" if iou is not None else f"\n{key.rsplit('/', 1)[-1]}"), fontsize=9)
            ax.axis("off")
    painted = ", ".join(f"{c}" for i, c in enumerate(classes) if i != background)
    fig.suptitle(f"test images: painted class(es) {painted} (mask value)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97), h_pad=1.5)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["plot_label_efficiency", "plot_embedding_maps", "plot_overlays", "tsne_2d"]
