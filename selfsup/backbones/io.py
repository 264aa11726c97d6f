"""Saving and loading encoders: weights keyed as in torchvision/timm, plus how to rebuild them."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file

from ..utils.errors import SelfSupError
from ..views import Normalization
from .build import build_from_spec
from .registry import Backbone, BackboneSpec
from .spectral import bake_spectral_norm

FORMAT = "selfsup-encoder/1"


def save_encoder(out_dir: Path, backbone: Backbone, normalization: Normalization | None, image_size: int | None,
                 load_size: int | None, extra: dict[str, Any] | None = None) -> Path:
    """OUT/encoder.safetensors and encoder.json; a text encoder (no normalization, no image sizes)
    is described by ``extra`` (its token settings and tokenizer file)."""
    from ..utils.checkpoint import atomic_save_tensors, atomic_write_text

    path = out_dir / "encoder.safetensors"
    atomic_save_tensors(backbone.model.state_dict(), path, metadata={"format": FORMAT})
    info: dict[str, Any] = {"format": FORMAT, "backbone": asdict(backbone.spec), "feature_dim": backbone.feature_dim}
    if normalization is not None:
        info.update(image_size=image_size, load_size=load_size, normalization=asdict(normalization))
    info.update(extra or {})
    atomic_write_text(out_dir / "encoder.json", json.dumps(info, indent=1))
    return path


def _resolve(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and encoder info from a run folder, an encoder file or a step checkpoint."""
    from ..utils.checkpoint import latest_checkpoint, read_checkpoint

    p = Path(path)
    if not p.exists():
        raise SelfSupError(f"checkpoint not found: {path}")
    if p.is_dir():
        if (p / "encoder.safetensors").exists():
            p = p / "encoder.safetensors"
        else:
            latest = latest_checkpoint(p / "checkpoints")
            if latest is None:
                raise SelfSupError(f"{path} holds neither encoder.safetensors nor checkpoints/")
            p = latest
    info_path = p.with_suffix(".json")
    if not info_path.exists():
        raise SelfSupError(f"{p} has no {info_path.name} beside it describing the encoder")
    if p.name.startswith("step-"):
        tensors, meta = read_checkpoint(p)
        prefix = "model/backbone.model."
        weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        info = meta.get("encoder")
        if info is None:
            raise SelfSupError(f"checkpoint {p} does not describe its encoder")
        return weights, info
    try:
        return load_file(str(p)), json.loads(info_path.read_text())
    except Exception as exc:
        raise SelfSupError(f"cannot read encoder {p}: {exc}") from exc


def build_like(spec: Any, image_size: int | None = None) -> Backbone:
    """A fresh, randomly initialized backbone of the same architecture as ``spec`` (an image
    ``BackboneSpec`` or a ``TextBackboneSpec``): the from-scratch side of every comparison."""
    from .text import build_text_backbone

    if getattr(spec, "modality", "image") == "text":
        return build_text_backbone(spec.name, spec.vocab_size, spec.max_length, getattr(spec, "config", None))
    return build_from_spec(spec, image_size or 224)


def load_backbone(path: str | Path) -> tuple[Backbone, dict[str, Any]]:
    from .text import TextBackboneSpec

    weights, info = _resolve(path)
    text = info["backbone"].get("modality") == "text"
    spec = TextBackboneSpec(**info["backbone"]) if text else BackboneSpec(**info["backbone"])
    backbone = build_like(spec, info.get("image_size"))
    try:
        backbone.model.load_state_dict(bake_spectral_norm(backbone.model, weights), strict=True)
    except RuntimeError as exc:
        raise SelfSupError(f"encoder weights in {path} do not fit {info['backbone']['name']}: "
                           f"{str(exc).splitlines()[0]}") from exc
    return backbone, info


def load_encoder(path: str | Path) -> tuple[Backbone, Callable]:
    """Load a pretrained encoder and its preprocessing, for use in your own code.

    Returns ``(encoder, preprocess)``: the encoder in eval mode maps a batch to pooled
    features (B x D); ``preprocess`` turns a PIL image or a uint8/float C x H x W tensor into the
    normalized input the encoder was trained on (resize, centre crop, scale, normalize)::

        encoder, preprocess = selfsup.load_encoder("runs/simclr")
        features = encoder(torch.stack([preprocess(img) for img in images]))
    """
    from torchvision.transforms import v2

    backbone, info = load_backbone(path)
    backbone.eval()
    norm = info["normalization"]
    steps: list = [v2.ToImage()]
    if info["backbone"]["in_channels"] == 1:
        steps.append(v2.Grayscale(1))
    steps += [v2.Resize(info["load_size"], antialias=True), v2.CenterCrop(info["image_size"]),
              v2.ToDtype(torch.float32, scale=True), v2.Normalize(norm["mean"], norm["std"])]
    return backbone, v2.Compose(steps)
