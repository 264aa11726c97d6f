"""LARS optimizer step: multi-tensor (``torch._foreach_*``) against one tensor at a time.

Times ``LARS.step`` on the parameters of a ResNet-18 and SimCLR's
projection head in place of its classifier (66 tensors, 11.5 M weights), against the per-tensor loop selfsup used before (kept below as the
baseline), after checking that both give the same weights. On a GPU the per-tensor loop launches
several kernels per tensor, which is where the multi-tensor update pays most; the table also runs
on the CPU.

    python benchmarks/lars_step.py [--device cuda] [--steps 50]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
import torchvision

from selfsup.engine.optim import LARS, param_groups


class LoopLARS(LARS):
    """The previous update, tensor by tensor (the baseline)."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if not group["lars_exclude"]:
                    update = update.add(p, alpha=group["weight_decay"])
                    w_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    trust = torch.where((w_norm > 0) & (u_norm > 0),
                                        group["trust_coefficient"] * w_norm / (u_norm + group["eps"]),
                                        torch.ones_like(w_norm))
                    update = update.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(update).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])


def timed(optimizer_cls, model: torch.nn.Module, grads: list[torch.Tensor], steps: int, device: torch.device) -> tuple[float, torch.nn.Module]:
    model = copy.deepcopy(model)
    optimizer = optimizer_cls(param_groups(model, 1e-6), lr=0.3, momentum=0.9)
    for p, g in zip(model.parameters(), grads):
        p.grad = g.clone()
    for _ in range(3):
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps, model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    resnet.fc = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(),
                                    torch.nn.Linear(512, 128))  # SimCLR's projection head in its place
    resnet = resnet.to(device)
    grads = [torch.randn_like(p) * 1e-2 for p in resnet.parameters()]
    loop_s, loop_model = timed(LoopLARS, resnet, grads, args.steps, device)
    multi_s, multi_model = timed(LARS, resnet, grads, args.steps, device)
    gap = max((a - b).abs().max().item() for a, b in zip(loop_model.parameters(), multi_model.parameters()))
    tensors = sum(1 for _ in resnet.parameters())
    print(f"device: {device}; {tensors} tensors, {sum(p.numel() for p in resnet.parameters()) / 1e6:.1f} M weights; "
          f"{torch.get_num_threads()} threads; largest weight difference after {args.steps + 3} steps: {gap:.1e}")
    print("| LARS step | ms per step | speed-up |")
    print("|---|---|---|")
    print(f"| per tensor (before) | {1000 * loop_s:.2f} | 1.00× |")
    print(f"| multi-tensor (now) | {1000 * multi_s:.2f} | {loop_s / multi_s:.2f}× |")


if __name__ == "__main__":
    main()
