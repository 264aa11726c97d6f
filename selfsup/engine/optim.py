"""Optimizers (SGD, AdamW, LARS) with biases and norm parameters kept out of weight decay."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.optim import Optimizer

from ..utils.errors import ConfigError


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling.

    - [0] Large Batch Training of Convolutional Networks, 2017, You et al., https://arxiv.org/abs/1708.03888

    Per parameter tensor w with gradient g: g' = g + λw, then g' is scaled by the trust ratio
    η‖w‖/‖g'‖ (1 when either norm is 0), and the momentum update v = μv + g', w -= lr·v.
    Groups with ``lars_exclude=True`` (biases, norm layers) get neither decay nor scaling,
    as in SimCLR and BYOL.

    ``clip=True`` turns the ratio into min(ratio/lr, 1), so a layer's step is min(η‖w‖, lr‖g'‖): η sets
    the relative step by itself, and no layer steps further than plain SGD would. Small-batch
    recipes use it with η = 0.02 (solo-learn's CIFAR configs, ``clip_lr: True``), where the
    large-batch papers' η = 0.001 at lr ≈ 0.3 moves a layer by about 0.03 % of its norm per step.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, eps: float = 1e-8, clip: bool = False) -> None:
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, eps=eps, lars_exclude=False, clip=clip)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every tensor of a group at once (``torch._foreach_*``: a few multi-tensor
        kernels per group instead of several per tensor, which dominates small models on GPUs)."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            updates = [p.grad for p in params]
            if not group["lars_exclude"]:
                updates = torch._foreach_add(updates, params, alpha=group["weight_decay"])
                w_norms = torch.stack(torch._foreach_norm(params))
                u_norms = torch.stack(torch._foreach_norm(updates))
                ratio = group["trust_coefficient"] * w_norms / (u_norms + group["eps"])
                if group.get("clip") and group["lr"] > 0:  # .get: checkpoints from before the option
                    ratio = torch.clamp(ratio / group["lr"], max=1.0)
                trust = torch.where((w_norms > 0) & (u_norms > 0), ratio, torch.ones_like(w_norms))
                torch._foreach_mul_(updates, list(trust.unbind()))
            buffers = []
            for p in params:  # a new buffer starts at zero, so its first value is the update itself
                buffers.append(self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)))
            torch._foreach_mul_(buffers, group["momentum"])
            torch._foreach_add_(buffers, updates)
            torch._foreach_add_(params, buffers, alpha=-group["lr"])
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights (decayed, LARS-adapted) and biases/norm parameters (neither). Submodules a
    model names in ``constant_lr`` (SimSiam's predictor) or in ``lr_scale`` (name -> factor: BYOL's
    ``predictor_lr_scale``) get two groups more per setting, marked ``constant_lr`` (the schedule
    leaves them at the peak learning rate) or carrying their ``lr_scale`` (the schedule's value
    times it). The plain groups come first, so a model without either gets the same two groups."""
    constant = {id(p) for name in getattr(model, "constant_lr", ()) for p in getattr(model, name).parameters()}
    scale = {id(p): s for name, s in getattr(model, "lr_scale", {}).items() for p in getattr(model, name).parameters()}
    by_setting: dict[tuple[bool, float], list[nn.Parameter]] = {(False, 1.0): []}
    for p in model.parameters():
        if p.requires_grad:
            by_setting.setdefault((id(p) in constant, scale.get(id(p), 1.0)), []).append(p)
    groups = []
    for (fixed, factor), params in by_setting.items():
        mark = {**({"constant_lr": True} if fixed else {}), **({"lr_scale": factor} if factor != 1.0 else {})}
        groups += [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay, "lars_exclude": False,
                    **mark},
                   {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lars_exclude": True, **mark}]
    return groups


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float, momentum: float = 0.9,
                    betas: tuple[float, float] = (0.9, 0.999), lars_eta: float = 0.001,
                    lars_clip: bool = False) -> Optimizer:
    """SGD and AdamW use PyTorch's fused kernels when the weights are on CUDA (one kernel per step);
    ``lars_eta`` and ``lars_clip`` are LARS's trust coefficient and clipping (ignored by the others)."""
    groups = param_groups(model, weight_decay)
    fused = {"fused": True} if any(p.is_cuda for g in groups for p in g["params"]) else {}
    if name == "sgd":
        for g in groups:
            g.pop("lars_exclude")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0, **fused)
    if name == "adamw":
        for g in groups:
            g.pop("lars_exclude")
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), **fused)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, trust_coefficient=lars_eta, clip=lars_clip)
    raise ConfigError(f"unknown optimizer {name!r} (known: sgd, adamw, lars)")


class TurnOptimizers:
    """One optimizer per player of an adversarial method (a GAN's discriminator and generator), seen
    by the engine as one: ``param_groups`` is every player's groups (the lr schedule sets them all),
    and ``state_dict`` is a single optimizer's layout with the players' parameters numbered in turn,
    so checkpoints and ``--resume`` treat it like any other optimizer."""

    def __init__(self, by_player: dict[str, Optimizer]) -> None:
        self.by_player = by_player

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.by_player.values() for g in opt.param_groups]

    def parameters(self, player: str) -> list[torch.Tensor]:
        return [p for g in self.by_player[player].param_groups for p in g["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.by_player.values():
            opt.zero_grad(set_to_none=set_to_none)

    def step(self, player: str) -> None:
        self.by_player[player].step()

    def state_dict(self) -> dict:
        state, groups, offset = {}, [], 0
        for opt in self.by_player.values():
            part = opt.state_dict()
            state.update({index + offset: slots for index, slots in part["state"].items()})
            groups += [{**g, "params": [i + offset for i in g["params"]]} for g in part["param_groups"]]
            offset += sum(len(g["params"]) for g in part["param_groups"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups, offset = list(state_dict["param_groups"]), 0
        for opt in self.by_player.values():
            mine, groups = groups[:len(opt.param_groups)], groups[len(opt.param_groups):]
            count = sum(len(g["params"]) for g in opt.param_groups)
            state = {int(i) - offset: slots for i, slots in state_dict["state"].items() if offset <= int(i) < offset + count}
            opt.load_state_dict({"state": state, "param_groups": [{**g, "params": [i - offset for i in g["params"]]}
                                                                    for g in mine]})
            offset += count


def build_method_optimizer(name: str, method: nn.Module, lr: float, weight_decay: float,
                           **settings: Any) -> Optimizer | TurnOptimizers:
    """The method's optimizer: one over all its parameters, or, for an adversarial method (``players``),
    one per player over that player's modules. ``settings``: `build_optimizer`'s keyword arguments."""
    players = method.players
    if not players:
        return build_optimizer(name, method, lr, weight_decay, **settings)
    return TurnOptimizers({player: build_optimizer(name, method.player_modules(player), lr, weight_decay, **settings)
                           for player in players})
