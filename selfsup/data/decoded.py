"""Clip and volume pools by their spec: which reader a saved encoder's modality needs."""
from __future__ import annotations

from typing import Any

from .pool import DecodedPool
from .sources import Collection
from .video import ClipPool, ClipSpec
from .volume import VolumePool, VolumeSpec


def pool_spec(info: dict) -> Any:
    """The clip or volume settings a saved encoder reads (its encoder.json), or None for images and text."""
    if info.get("modality") == "video":
        return ClipSpec(**info["clip"])
    if info.get("modality") == "volume":
        return VolumeSpec(**info["volume"])
    return None


def decoded_pool(collection: Collection, spec: Any, strict: bool = False, progress: bool = True) -> DecodedPool:
    """The pool of ``collection`` for a clip or volume ``spec``."""
    return (ClipPool if isinstance(spec, ClipSpec) else VolumePool)(collection, spec, strict=strict, progress=progress)
