"""lightly's documented SimCLR recipe, timed on CIFAR-10; run in a separate virtualenv with lightly.

Follows lightly's SimCLR example (examples/pytorch/simclr.py, lightly 1.6): stock
torchvision ResNet-18 without its fc, SimCLRProjectionHead(512, 512, 128), NTXentLoss()
(temperature 0.5), SGD lr 0.06, SimCLRTransform(input_size=32), batch 256, drop_last,
two forward passes. Images are read from the same zip, decoded with PIL per item in
DataLoader workers. Trains for --seconds of wall time (or --steps), on --device, then saves the
backbone weights.

    /path/to/lightly-venv/bin/python benchmarks/lightly_simclr.py ZIP --seconds 600 --out DIR
"""
from __future__ import annotations

import argparse
import io
import json
import time
import zipfile
from pathlib import Path

import torch
import torchvision
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from PIL import Image
from safetensors.torch import save_file


class ZipImages(torch.utils.data.Dataset):
    def __init__(self, path: str, transform) -> None:
        self.path, self.transform, self.zip = path, transform, None
        with zipfile.ZipFile(path) as z:
            self.names = sorted(n for n in z.namelist() if n.startswith("train/") and n.endswith(".jpg"))

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        if self.zip is None:
            self.zip = zipfile.ZipFile(self.path)
        image = Image.open(io.BytesIO(self.zip.read(self.names[i]))).convert("RGB")
        return self.transform(image)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zip")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps instead")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    resnet.fc = torch.nn.Identity()  # keep torchvision's keys; same as children()[:-1] + flatten
    head = SimCLRProjectionHead(512, 512, 128)
    model = torch.nn.ModuleDict({"backbone": resnet, "head": head}).to(args.device)
    criterion = NTXentLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
    dataset = ZipImages(args.zip, SimCLRTransform(input_size=32))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers, persistent_workers=True)
    start = time.perf_counter()
    steps = images = 0
    done = False
    while not done:
        for x0, x1 in loader:
            x0, x1 = x0.to(args.device, non_blocking=True), x1.to(args.device, non_blocking=True)
            z0, z1 = head(resnet(x0)), head(resnet(x1))
            loss = criterion(z0, z1)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps += 1
            images += len(x0)
            if (steps >= args.steps) if args.steps else (time.perf_counter() - start >= args.seconds):
                done = True
                break
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in resnet.state_dict().items()}, str(out / "backbone.safetensors"))
    result = {"steps": steps, "seconds": seconds, "images_per_second": images / seconds, "final_loss": float(loss)}
    (out / "result.json").write_text(json.dumps(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
