"""Backbones by name: any torchvision classification model, ``timm:NAME``, and selfsup's own.

A backbone maps images (B x C x H x W) to pooled features (B x D) before any projection head.
The classifier is replaced by ``nn.Identity`` (timm: ``num_classes=0``), module names are kept,
so the saved weights load into the library's own model with ``strict=True``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from ..utils.errors import ConfigError
from ..utils.registry import Registry
from .stems import adapt_input

OWN_BACKBONES: Registry[Callable[[int, int], nn.Module]] = Registry("backbone")  # (in_channels, image_size)
CLASSIFIER_NAMES = ("fc", "classifier", "heads", "head")


@dataclass
class BackboneSpec:
    """Everything needed to rebuild a backbone (saved in encoder.json)."""

    name: str
    in_channels: int = 3
    stem: str = "imagenet"  # "imagenet" or "small" (resolved from "auto")


def resolve_stem(stem: str, image_size: int) -> str:
    if stem == "auto":
        return "small" if image_size <= 64 else "imagenet"
    if stem not in ("imagenet", "small"):
        raise ConfigError(f"--stem must be auto, imagenet or small, not {stem!r}")
    return stem


class Backbone(nn.Module):
    """Wraps a feature extractor; ``model`` keeps the library's module names."""

    channels_last = False  # set by the trainer where convolutions run faster in NHWC (``prefers_channels_last``)

    def __init__(self, model: nn.Module, spec: BackboneSpec, feature_dim: int) -> None:
        super().__init__()
        self.model, self.spec, self.feature_dim = model, spec, feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images).flatten(1)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The last B x C x h x w map before global pooling, for dense pretext tasks (colorization,
        inpainting): timm's ``forward_features``, or the input of the model's last adaptive pooling."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if hasattr(self.model, "forward_features"):
            out = self.model.forward_features(images)
            if out.ndim == 4:
                return out
        pools = [m for m in self.model.modules() if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
        if not pools:
            raise ConfigError(f"backbone {self.spec.name} has no global pooling layer to take a feature map from; "
                              "dense pretext tasks need a convolutional backbone (e.g. resnet18)")
        return self._captured(pools[-1], images, its_input=True)

    def _captured(self, module: nn.Module, images: torch.Tensor, its_input: bool,
                  reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> torch.Tensor:
        """``reduce`` of what ``module`` reads (``its_input``) or writes in a forward pass on ``images``,
        applied at once: a later in-place op (ReLU(inplace=True)) must not change what was captured."""
        captured: list[torch.Tensor] = []
        handle = (module.register_forward_pre_hook(lambda m, args: captured.append(reduce(args[0]))) if its_input
                  else module.register_forward_hook(lambda m, args, out: captured.append(reduce(out))))
        try:
            self.model(images)
        finally:
            handle.remove()
        return captured[-1]

    def pooled_at(self, layer: str, images: torch.Tensor) -> torch.Tensor:
        """B x C features of the inner module ``layer`` (e.g. ResNet's ``layer3``): its output map
        averaged over space (B x C x h x w ...) or over tokens (B x T x C)."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self._captured(self.model.get_submodule(layer), images, its_input=False, reduce=_average_positions)

    def feature_map_shape(self, image_size: int) -> tuple[int, int]:
        """(channels, side) of ``feature_map`` for square inputs of ``image_size`` (decoders are sized from it)."""
        out = _probe(self, self.feature_map, self.spec.in_channels, image_size)
        return int(out.shape[1]), int(out.shape[2])


def prefers_channels_last(backbone: Backbone) -> bool:
    """Whether the backbone is convolutional, and so trains faster with channels_last (NHWC) tensors.

    Measured by ``benchmarks/cpu_ceiling.py`` (SimCLR's step on tensors in memory, batch 256, 32 px, fp32)
    on a 2-core AVX2 CPU: ResNet-18 1.30x (ImageNet stem) and 1.39x (small stem), the small convnet 1.34x
    faster than in NCHW; on CUDA NHWC is what cuDNN's tensor-core convolutions read. A ViT has one
    convolution (its patch embedding) and gains nothing, so it keeps NCHW.
    """
    return sum(isinstance(m, nn.Conv2d) for m in backbone.modules()) > 1


@torch.no_grad()
def _probe(module: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], in_channels: int,
           side: int) -> torch.Tensor:
    """``forward`` of one zero image (in_channels x side x side) with ``module`` in eval mode (batch norm
    refuses a training batch of one 1x1 map), each submodule's own mode restored after (a wrapper's
    flag need not be its backbone's): how output shapes are read."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        return forward(torch.zeros(1, in_channels, side, side))
    finally:
        for m, was_training in modes:
            m.training = was_training


def _average_positions(out: torch.Tensor) -> torch.Tensor:
    """B x C from a channels-first map (B x C x h x w ...), a token sequence (B x T x C) or B x C itself."""
    if out.ndim > 3:
        return out.mean(dim=tuple(range(2, out.ndim)))
    return out.mean(dim=1) if out.ndim == 3 else out.flatten(1)


class LayerFeatures(nn.Module):
    """A backbone read at an inner module: the per-layer probes of Zhang et al. 2016 (colorization,
    "Colorful Image Colorization", section 3.2) and Goyal et al. 2019 ("Scaling and Benchmarking
    Self-Supervised Visual Representation Learning", section 4), who score every method at each layer.
    A pretext task's last layer specializes to that task; an earlier one may transfer better."""

    def __init__(self, backbone: Backbone, layer: str, image_size: int) -> None:
        super().__init__()
        try:
            backbone.model.get_submodule(layer)
        except AttributeError:
            names = [name for name, _ in backbone.model.named_children()]
            raise ConfigError(f"backbone {backbone.spec.name} has no module {layer!r} to probe; "
                              f"its top-level modules: {', '.join(names)}") from None
        self.backbone, self.layer = backbone, layer
        self.feature_dim = int(_probe(backbone, self.forward, backbone.spec.in_channels, max(image_size, 8)).shape[1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.pooled_at(self.layer, images)


class PatchGridFeatures(nn.Module):
    """An image's features as the mean of its patches' features: the centre crop cut into a
    ``grid`` x ``grid`` grid of equal cells, each cell read by ``features`` at its own size.

    - [0] Kolesnikov, Zhai & Beyer, 2019, Revisiting Self-Supervised Visual Representation Learning,
      https://arxiv.org/abs/1901.09005 (section 3; their evaluation of jigsaw and relative patch
      location: a 3 x 3 grid, no jitter, patch representations average-pooled)

    Patch-based pretext tasks train the encoder on patches a fraction of the image's size; read at
    the whole image it sees a scale and context it never trained on. ``features``: a backbone or a
    :class:`LayerFeatures` (both read B x C x s x s images, return B x D)."""

    def __init__(self, features: nn.Module, grid: int, image_size: int, in_channels: int = 3) -> None:
        super().__init__()
        if grid < 1 or image_size // grid < 2:
            raise ConfigError(f"patch grid {grid} must be at least 1 and leave cells of 2 px or more "
                              f"of a {image_size}-px image")
        self.features, self.grid, self.cell = features, grid, image_size // grid
        try:
            self.feature_dim = int(_probe(features, features, in_channels, self.cell).shape[1])
        except (RuntimeError, ValueError, AssertionError) as err:
            raise ConfigError(f"this encoder cannot read {self.cell}-px patch-grid cells: {err}".splitlines()[0]) from None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, c, height, width = images.shape
        g, s = self.grid, self.cell
        top, left = (height - g * s) // 2, (width - g * s) // 2  # the centre crop the cells tile
        crop = images[:, :, top:top + g * s, left:left + g * s]
        cells = crop.reshape(b, c, g, s, g, s).permute(0, 2, 4, 1, 3, 5).reshape(b * g * g, c, s, s)
        return self.features(cells).reshape(b, g * g, -1).mean(1)


def probed_features(backbone: Backbone, image_size: int, layer: str | None = None,
                    patch_grid: int | None = None) -> nn.Module:
    """What a frozen-feature probe reads: the backbone's features, or an inner module's (``layer``),
    either one averaged over a ``patch_grid`` x ``patch_grid`` grid of cells."""
    features = LayerFeatures(backbone, layer, image_size) if layer else backbone
    return PatchGridFeatures(features, patch_grid, image_size, backbone.spec.in_channels) if patch_grid else features


def _torchvision_model(name: str) -> nn.Module:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(f"unknown backbone {name!r}: not a torchvision classification model "
                          "(use timm:NAME for timm models, or one of: " + ", ".join(OWN_BACKBONES.names()) + ")")
    model = torchvision.models.get_model(name, weights=None)
    for attr in CLASSIFIER_NAMES:
        if isinstance(getattr(model, attr, None), nn.Module):
            setattr(model, attr, nn.Identity())
            return model
    raise ConfigError(f"backbone {name!r}: cannot find its classifier to remove")


def _timm_model(name: str, in_channels: int) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ConfigError("timm backbones need timm: pip install 'selfsup[timm]'") from None
    if name not in timm.list_models():
        raise ConfigError(f"unknown timm model {name!r}")
    return timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels)


def build_image_backbone(spec: BackboneSpec, image_size: int = 224) -> Backbone:
    """An image backbone (torchvision, ``timm:NAME`` or selfsup's own) with fresh weights."""
    if spec.name in OWN_BACKBONES:
        model = OWN_BACKBONES.get(spec.name)(spec.in_channels, image_size)
    elif spec.name.startswith("timm:"):
        model = _timm_model(spec.name[5:], spec.in_channels)
        adapt_input(model, spec.in_channels, small=spec.stem == "small")
    else:
        model = _torchvision_model(spec.name)
        adapt_input(model, spec.in_channels, small=spec.stem == "small")
    feature_dim = _feature_dim(model, spec.in_channels, image_size)
    return Backbone(model, spec, feature_dim)


def _feature_dim(model: nn.Module, in_channels: int, image_size: int) -> int:
    return int(_probe(model, model, in_channels, max(image_size, 8)).flatten(1).shape[1])


@OWN_BACKBONES.register("small-convnet")
def small_convnet(in_channels: int, image_size: int = 32) -> nn.Module:
    """A four-stage VGG-style ConvNet (32-64-128-256 channels) for tiny images and quick demos."""
    layers: list[nn.Module] = []
    width_in = in_channels
    for i, width in enumerate((32, 64, 128, 256)):
        layers += [nn.Conv2d(width_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                   nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        if i < 3:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        width_in = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def _vit(in_channels: int, image_size: int, width: int, heads: int) -> nn.Module:
    """torchvision's VisionTransformer (12 blocks, MLP 4x) with 8 x 8 patches' grid on small images
    (4 px patches at 32 px, as in MAE's CIFAR re-implementations) and 16 px patches otherwise;
    the class token is the feature."""
    from torchvision.models.vision_transformer import VisionTransformer

    patch = max(1, image_size // 8) if image_size <= 64 else 16
    if image_size % patch:
        raise ConfigError(f"a ViT needs the image size ({image_size}) to be a multiple of its patch size ({patch})")
    model = VisionTransformer(image_size=image_size, patch_size=patch, num_layers=12, num_heads=heads,
                              hidden_dim=width, mlp_dim=4 * width)
    if in_channels != 3:
        model.conv_proj = nn.Conv2d(in_channels, width, patch, patch)
    model.heads = nn.Identity()
    return model


@OWN_BACKBONES.register("vit-tiny")
def vit_tiny(in_channels: int, image_size: int = 32) -> nn.Module:
    """ViT-Tiny (width 192, 3 heads; Touvron et al. 2021's DeiT-Ti), torchvision's implementation."""
    return _vit(in_channels, image_size, 192, 3)


@OWN_BACKBONES.register("vit-small")
def vit_small(in_channels: int, image_size: int = 32) -> nn.Module:
    """ViT-Small (width 384, 6 heads), torchvision's implementation."""
    return _vit(in_channels, image_size, 384, 6)


def list_backbones() -> list[str]:
    import torchvision

    return OWN_BACKBONES.names() + torchvision.models.list_models(module=torchvision.models)
