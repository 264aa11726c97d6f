"""DeepCluster: k-means on the network's own features gives pseudo-labels to classify, epoch by epoch."""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import Backbone
from ..views import Views
from .base import EpochContext, Method, Recipe, register_method

log = logging.getLogger("selfsup")


def pca_whiten_normalize(features: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """PCA to ``dim`` components, whitened (unit variance each), then rows L2-normalized (section 3.2)."""
    from sklearn.decomposition import PCA

    n, d = features.shape
    k = max(1, min(dim, n - 1, d))
    reduced = PCA(n_components=k, whiten=True, random_state=seed).fit_transform(features.astype(np.float32))
    return reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)


def kmeans_labels(features: np.ndarray, k: int, seed: int, iterations: int = 20) -> np.ndarray:
    """k-means assignments with scikit-learn (k-means++ seeding). Its Lloyd iterations re-seed a
    cluster that empties on the point farthest from its centre, so all k clusters keep members."""
    from sklearn.cluster import KMeans

    k = min(k, len(features))
    return KMeans(n_clusters=k, n_init=1, max_iter=iterations, random_state=seed).fit_predict(features)


def cluster_uniform_order(labels: np.ndarray, length: int, generator: torch.Generator) -> np.ndarray:
    """An epoch of ``length`` indices drawn uniformly over the non-empty clusters (section 3.3):
    each cluster gets ceil(length / clusters) draws, without replacement when it is big enough;
    then shuffled and cut to ``length``. Rows labelled -1 (unreadable) are never drawn."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    clusters = [np.flatnonzero(labels == c) for c in np.unique(labels[labels >= 0])]
    per_cluster = math.ceil(length / len(clusters))
    drawn = np.concatenate([rng.choice(members, per_cluster, replace=len(members) < per_cluster) for members in clusters])
    return rng.permutation(drawn)[:length]


@register_method
class DeepCluster(Method):
    """Deep Clustering for Unsupervised Learning of Visual Features.

    - [0] Caron, Bojanowski, Joulin, Douze, 2018, https://arxiv.org/abs/1807.05520

    At the start of every epoch: features of the whole pool (eval mode, unaugmented) are
    PCA-reduced to 256 dimensions, whitened and L2-normalized; k-means (scikit-learn) assigns
    pseudo-labels; the classifier on top of the backbone is re-initialized (N(0, 0.01), and
    its optimizer state dropped), as the clusters' numbering is arbitrary; the epoch's images
    are sampled uniformly over clusters, so a giant cluster cannot dominate (equation 1: the
    cross-entropy of the classifier against the pseudo-labels). k: the paper's 10,000 for
    ImageNet's 1.3M images is about n/130; ``num_clusters`` defaults to n/50 (1,000 for
    CIFAR-10's 50,000), at least 2 and at most 10,000. SGD lr 0.05, momentum 0.9, weight
    decay 1e-5; random resized crops and flips. Sobel filtering (for AlexNet/VGG) is left out.
    Pseudo-labels and the epoch they belong to are buffers, so a resumed run replays the epoch.
    """

    name = "deepcluster"
    family = "clustering and distillation"
    paper = "Caron et al. 2018, Deep Clustering for Unsupervised Learning of Visual Features"
    minimum_images = 115_200
    recipe = Recipe(optimizer="sgd", base_lr=0.05, weight_decay=1e-5, warmup_fraction=0.0, views="crop-flip")
    needs_indices = True

    def __init__(self, backbone: Backbone, views: Views, num_clusters: int | None = None, pca_dim: int = 256,
                 kmeans_iterations: int = 20, dataset_size: int | None = None) -> None:
        super().__init__(backbone, views)
        n = dataset_size or 1
        self.num_clusters = num_clusters or min(10000, max(2, n // 50))
        self.pca_dim, self.kmeans_iterations = pca_dim, kmeans_iterations
        self.classifier = nn.Linear(backbone.feature_dim, self.num_clusters)
        self.register_buffer("pseudo_labels", torch.zeros(n, dtype=torch.long))
        self.register_buffer("labels_epoch", torch.full((), -1, dtype=torch.long))

    def plan_epoch(self, context: EpochContext) -> np.ndarray:
        def generator(purpose: int) -> torch.Generator:  # one stream per use, so a resume replays each
            return torch.Generator().manual_seed((context.seed * 1_000_003 + context.epoch) * 7 + purpose)

        if int(self.labels_epoch) != context.epoch:  # on resume mid-epoch the saved labels are reused
            features, positions = context.features()
            reduced = pca_whiten_normalize(features.numpy(), self.pca_dim, context.seed)
            labels = kmeans_labels(reduced, self.num_clusters, context.seed + context.epoch, self.kmeans_iterations)
            self.pseudo_labels.fill_(-1)
            self.pseudo_labels[torch.as_tensor(positions)] = torch.as_tensor(labels.astype(np.int64), device=self.pseudo_labels.device)
            self.labels_epoch.fill_(context.epoch)
            self._reset_classifier(context.optimizer, generator(0))
            sizes = np.bincount(labels, minlength=self.num_clusters)
            log.info("deepcluster epoch %d: %d clusters, sizes %d-%d", context.epoch, (sizes > 0).sum(),
                     sizes.min(), sizes.max())
        return cluster_uniform_order(self.pseudo_labels.cpu().numpy(), context.n_images, generator(1))

    @torch.no_grad()
    def _reset_classifier(self, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
        weight = torch.empty_like(self.classifier.weight, device="cpu").normal_(0, 0.01, generator=generator)
        self.classifier.weight.copy_(weight)
        self.classifier.bias.zero_()
        for p in self.classifier.parameters():
            optimizer.state.pop(p, None)  # stale momentum would point at the old clusters

    def forward(self, images: torch.Tensor, generator: torch.Generator,
                indices: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if indices is None:
            raise ValueError("DeepCluster needs the pool indices of the batch (to look up their pseudo-labels)")
        (view,) = self.views(images, generator, n=1)
        features = self.backbone(view)
        targets = self.pseudo_labels[indices]
        if bool((targets < 0).any()):
            raise ValueError("DeepCluster was given an image without a pseudo-label (unreadable at clustering time)")
        loss = F.cross_entropy(self.classifier(features), targets)
        return {"loss": loss, "embedding": features}
