"""Backbones: torchvision and timm models by name, the small-image stem, encoder save/load."""
from . import dcgan  # noqa: F401  registers dcgan, dcgan-nonorm
from .build import build_backbone, build_from_spec
from .registry import (Backbone, BackboneSpec, LayerFeatures, PatchGridFeatures, list_backbones, probed_features,
                       resolve_stem)

__all__ = ["Backbone", "BackboneSpec", "LayerFeatures", "PatchGridFeatures", "build_backbone", "build_from_spec",
           "list_backbones", "probed_features", "resolve_stem"]
