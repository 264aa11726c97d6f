"""Any backbone by name: clip and volume models (``video``) or image models (``registry``)."""
from __future__ import annotations

from .registry import Backbone, BackboneSpec, build_image_backbone, resolve_stem
from .video import build_clip_backbone, is_clip_backbone


def build_backbone(name: str, in_channels: int = 3, stem: str = "auto", image_size: int = 224) -> Backbone:
    """Build a randomly initialized backbone by name with the right stem and input channels."""
    stem = resolve_stem(stem, image_size)
    spec = BackboneSpec(name=name, in_channels=in_channels, stem=stem)
    return build_from_spec(spec, image_size)


def build_from_spec(spec: BackboneSpec, image_size: int = 224) -> Backbone:
    """The backbone ``spec`` describes, with fresh weights (also how a saved encoder is rebuilt)."""
    if is_clip_backbone(spec.name):
        return build_clip_backbone(spec, image_size)
    return build_image_backbone(spec, image_size)
