"""Spectral normalization of a backbone (Miyato et al. 2018, https://arxiv.org/abs/1802.05957) and its
removal: a spectrally normalized discriminator is saved as the plain network it computes."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

PARAMETRIZED = ".parametrizations."  # the state-dict keys torch's parametrizations add


def with_spectral_norm(module: nn.Module) -> None:
    """Every convolution and linear layer's weight divided by its largest singular value (one power
    iteration per training forward), so each layer is 1-Lipschitz."""
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            spectral_norm(layer)


@torch.no_grad()
def plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state with spectral norm baked into plain weights (as eval mode computes them: no power
    iteration), which loads into the unparametrized network. (Removing the parametrization from a deep copy
    would also strip it from the original, whose dynamically made class the copy shares.)"""
    was_training = module.training
    module.eval()
    try:
        state = {k: v for k, v in module.state_dict().items() if PARAMETRIZED not in "." + k}
        for name, layer in module.named_modules():
            if parametrize.is_parametrized(layer):
                for tensor in layer.parametrizations:
                    state[f"{name}.{tensor}" if name else tensor] = getattr(layer, tensor).detach().clone()
    finally:
        module.train(was_training)
    return state


def bake_spectral_norm(model: nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights`` of a spectrally normalized copy of ``model`` (a step checkpoint of a GAN trained with
    ``spectral_norm=true``) as the plain weights ``model`` loads; other weights are returned unchanged."""
    if not any(PARAMETRIZED in "." + key for key in weights):
        return weights
    normalized = copy.deepcopy(model)
    with_spectral_norm(normalized)
    normalized.load_state_dict(weights, strict=True)
    return plain_state(normalized)
