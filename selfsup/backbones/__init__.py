"""Backbones: torchvision and timm models by name, the small-image stem, encoder save/load."""
from . import dcgan  # noqa: F401  registers dcgan, dcgan-nonorm
from .registry import (Backbone, BackboneSpec, LayerFeatures, build_backbone, build_from_spec, list_backbones,
                       resolve_stem)

__all__ = ["Backbone", "BackboneSpec", "LayerFeatures", "build_backbone", "build_from_spec", "list_backbones", "resolve_stem"]
