"""Published weights as a starting point: ImageNet's (torchvision or timm) or a local state-dict file.

``--init imagenet`` takes torchvision's ``weights="DEFAULT"`` for the named model, or timm's
``pretrained=True``: downloaded once into the usual torch (``$TORCH_HOME/hub/checkpoints``) or Hugging
Face cache when online, read from there afterwards. ``--init PATH`` reads a torchvision/timm-keyed state
dict (``.pth``/``.pt`` or ``.safetensors``) and loads it strictly. Two adaptations are standard and said on
stderr: a 1-channel model gets the first convolution's RGB kernels summed over their input channels (a
gray image is R = G = B, so the summed kernel gives the RGB model's response to it), and the small-image
stem (a new 3x3 stride-1 first convolution) starts fresh while the rest is loaded. The classifier the
file carries (``fc``, ``classifier``, ``head``) is dropped: the backbone has none.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import torch

from ..utils.errors import SelfSupError
from ..views import Normalization
from .registry import CLASSIFIER_NAMES, Backbone
from .stems import first_conv

log = logging.getLogger("selfsup")

# ImageNet's per-channel statistics (torchvision's and timm's default): the input the weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")  # checkpoints that hold the weights one level down


def imagenet_normalization(channels: int) -> Normalization:
    """ImageNet's normalization, for 1-channel input the mean of the three channels' statistics."""
    if channels == 3:
        return Normalization(list(IMAGENET_MEAN), list(IMAGENET_STD))
    return Normalization([sum(IMAGENET_MEAN) / 3] * channels, [sum(IMAGENET_STD) / 3] * channels)


def published_weights(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of the backbone ``name`` (torchvision model or ``timm:NAME``), from the cache or
    downloaded; offline and uncached, a SelfSupError that names ``--init PATH``."""
    try:
        if name.startswith("timm:"):
            import timm

            return timm.create_model(name[5:], pretrained=True, num_classes=0).state_dict()
        import torchvision

        try:
            weights = torchvision.models.get_model_weights(name).DEFAULT
        except (ValueError, KeyError):
            raise SelfSupError(f"--init imagenet: torchvision publishes no weights for {name!r}; "
                               "pass --init PATH with a state-dict file") from None
        # torch.hub prints "Downloading: URL" on stdout, where --json's result goes; errors speak below
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return weights.get_state_dict(progress=False, check_hash=True)
    except SelfSupError:
        raise
    except Exception as exc:  # no network, a refused download, a corrupt cached file
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SelfSupError(f"--init imagenet: cannot get {name}'s ImageNet weights ({why}); download them where "
                           "you are online (they are cached for later) or pass --init PATH with a saved "
                           "state-dict file") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``torch.save``d one (weights only, never pickled code);
    a checkpoint that wraps it (``state_dict``/``model``) and DataParallel's ``module.`` prefix are unwrapped."""
    p = Path(path)
    if not p.is_file():
        raise SelfSupError(f"--init: weights file not found: {path}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SelfSupError(f"--init: cannot read weights from {path}: {str(exc).splitlines()[0]}") from None
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SelfSupError(f"--init: {path} holds no state dict (a mapping of parameter names to tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def adapted_weights(backbone: Backbone, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``state`` made to fit ``backbone``: its classifier dropped, the first convolution left out for the
    small-image stem (a new layer) or summed to one input channel (each said on stderr)."""
    own = backbone.model.state_dict()
    state = {k: v for k, v in state.items() if k in own or k.split(".")[0] not in CLASSIFIER_NAMES}
    stem = _first_conv_name(backbone)
    key = f"{stem}.weight"
    if backbone.spec.stem == "small":
        state = {k: v for k, v in state.items() if not k.startswith(stem + ".")}
        log.info("%s: the small-image stem's first convolution (%s) is new; the rest is loaded", source, stem)
    elif key in state and state[key].ndim == 4 and state[key].shape[1] == 3 and own[key].shape[1] == 1:
        state[key] = state[key].sum(dim=1, keepdim=True)
        log.info("%s: 1-channel input: the first convolution's RGB kernels are summed", source)
    return state


def load_initial_weights(backbone: Backbone, init: str) -> str:
    """Load ``init`` (``imagenet`` or a weights file) into ``backbone`` strictly, after the standard
    adaptations; returns where they came from. Keys that do not fit are a SelfSupError naming them."""
    source = f"{backbone.spec.name} ImageNet weights" if init == "imagenet" else str(init)
    state = adapted_weights(backbone, published_weights(backbone.spec.name) if init == "imagenet"
                            else read_state_dict(init), source)
    own = backbone.model.state_dict()
    new = _first_conv_name(backbone) + "." if backbone.spec.stem == "small" else None
    missing = sorted(k for k in set(own) - set(state) if not (new and k.startswith(new)))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:4])}{' …' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise SelfSupError(f"--init: {source} does not fit {backbone.spec.name}: {'; '.join(parts)}")
    backbone.model.load_state_dict({**own, **state}, strict=True)
    return source


def _first_conv_name(backbone: Backbone) -> str:
    """The module name of the backbone's first convolution (``conv1``; timm's ``conv_stem`` ...)."""
    _, _, conv = first_conv(backbone.model)
    return next(name for name, module in backbone.model.named_modules() if module is conv)
