"""SimCLR in your own training loop, using selfsup's parts only (about a minute on a CPU).

    python examples/simclr_own_loop.py
"""
import torch
from sklearn.datasets import load_digits

import selfsup
from selfsup.backbones import build_backbone
from selfsup.heads import projection_head
from selfsup.losses import NTXentLoss
from selfsup.views import Views, estimate_normalization, eval_transform

images = torch.from_numpy(load_digits().images * (255 / 16)).round().to(torch.uint8)[:, None]  # N x 1 x 8 x 8
views = Views.preset("small-gray", size=8, normalization=estimate_normalization(images))
backbone = build_backbone("small-convnet", in_channels=1, image_size=8)
projector = projection_head(backbone.feature_dim, 256, 64)
criterion = NTXentLoss(temperature=0.5)
params = list(backbone.parameters()) + list(projector.parameters())
optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)

for step in range(60):
    batch = images[torch.randint(len(images), (128,))]
    view1, view2 = views(batch, torch.Generator().manual_seed(step))  # batched, seeded augmentation
    loss = criterion(projector(backbone(view1)), projector(backbone(view2)))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 10 == 0:
        print(f"step {step:3d}  NT-Xent {loss.item():.3f}")
with torch.no_grad():  # frozen features: eval mode, unaugmented images
    features = backbone.eval()(eval_transform(images[:4], 8, views.normalization))
print("features:", tuple(features.shape), "| selfsup", selfsup.__version__)
