"""Views per second: selfsup's batched pipeline vs per-image torchvision transforms.v2.

Both make SimCLR's CIFAR views (random resized crop 0.08-1, flip, colour jitter 0.4/0.4/0.4/0.1
with p 0.8 in random order, grayscale p 0.2) of 32 px uint8 images on the CPU. The per-image
side runs the v2 pipeline in 2 DataLoader workers, as a CPU training job would.

    python benchmarks/views_throughput.py [--images 8192] [--batch 256]
"""
from __future__ import annotations

import argparse
import time

import torch
from torchvision.transforms import v2

from selfsup.views import Normalization, Views

MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        s = 0.5
        self.transform = v2.Compose([
            v2.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.transform(self.images[i])


def per_image(images: torch.Tensor, batch: int, workers: int) -> float:
    loader = torch.utils.data.DataLoader(TwoViews(images), batch_size=batch, num_workers=workers,
                                         persistent_workers=False)
    start = time.perf_counter()
    n = sum(len(a) + len(b) for a, b in loader)
    return n / (time.perf_counter() - start)


def batched(images: torch.Tensor, batch: int) -> float:
    views = Views.preset("simclr-cifar", 32, Normalization(MEAN, STD))
    views(images[:batch], torch.Generator().manual_seed(0))  # warm-up
    start = time.perf_counter()
    n = 0
    for i, s in enumerate(range(0, len(images), batch)):
        a, b = views(images[s:s + batch], torch.Generator().manual_seed(i))
        n += len(a) + len(b)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    images = (torch.rand(args.images, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    ours = batched(images, args.batch)
    theirs = per_image(images, args.batch, args.workers)
    print("| pipeline | views/s |\n|---|---|")
    print(f"| torchvision transforms.v2, per image, {args.workers} DataLoader workers | {theirs:,.0f} |")
    print(f"| selfsup batched views, main process, {torch.get_num_threads()} threads | {ours:,.0f} |")
    print(f"| speed-up | {ours / theirs:.1f}x |")


if __name__ == "__main__":
    main()
