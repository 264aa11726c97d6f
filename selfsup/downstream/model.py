"""The downstream model, the product of a run: an encoder, a linear classifier and the preprocessing
that feeds them, saved as OUT/model.safetensors + OUT/model.json and loaded back by ``load_model``."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..backbones import Backbone, BackboneSpec, build_from_spec
from ..heads.unet import UNet
from ..data.decode import DecodeError, decode_bytes, fit_square, match_channels
from ..utils.checkpoint import atomic_save_tensors, atomic_write_text
from ..utils.errors import SelfSupError
from ..views import Normalization, eval_transform

FORMAT = "selfsup-model/1"
WEIGHTS, INFO = "model.safetensors", "model.json"


class Classifier(nn.Module):
    """A backbone's pooled features through one linear layer: logits over the classes."""

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@dataclass
class Preprocessing:
    """Image -> model input, as at training's evaluation: channels converted, the shorter side resized to
    ``load_size`` (antialiased) and centre-cropped square, then centre-cropped to ``image_size``, scaled
    to [0, 1] and normalized per channel with ``mean`` and ``std``."""

    channels: int
    load_size: int
    image_size: int
    mean: list[float]
    std: list[float]

    @property
    def normalization(self) -> Normalization:
        return Normalization(list(self.mean), list(self.std))

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        """A uint8 batch at ``load_size`` (as the data pipeline decodes it) -> the normalized input."""
        return eval_transform(images, self.image_size, self.normalization)

    def __call__(self, image: Any) -> torch.Tensor:
        """One image (a file path, encoded bytes, a PIL image, an H x W [x C] uint8 array or a C x H x W
        uint8 tensor) -> the C x S x S float input the model reads."""
        return self.batch(self.load(image)[None])[0]

    def load(self, image: Any, fit: bool = True) -> torch.Tensor:
        """One image as uint8 C x L x L at ``load_size`` (``fit``; else at its own size), decoded and
        converted as the data pipeline does."""
        if isinstance(image, (str, Path)):
            image = Path(image).read_bytes()
        if isinstance(image, (bytes, bytearray)):
            tensor = decode_bytes(bytes(image), self.channels)
        elif isinstance(image, torch.Tensor):
            tensor = image if image.ndim == 3 else image[None]
        else:  # PIL or numpy
            array = np.asarray(image.convert("RGB") if hasattr(image, "mode") and image.mode not in ("L", "RGB")
                               else image)
            tensor = torch.from_numpy(np.ascontiguousarray(array[..., None] if array.ndim == 2 else array)).permute(2, 0, 1)
        if tensor.dtype != torch.uint8:
            raise SelfSupError(f"preprocess takes uint8 images (0-255), got {tensor.dtype}")
        try:
            tensor = match_channels(tensor, self.channels)
            return fit_square(tensor, self.load_size) if fit else tensor
        except DecodeError as exc:
            raise SelfSupError(f"an image that {exc}") from None

    def describe(self) -> dict[str, Any]:
        """model.json's and preprocessing.json's record: the steps in words and their numbers."""
        return {**asdict(self), "steps": [f"convert to {self.channels} channel(s)",
                                          f"resize the shorter side to {self.load_size} px (bilinear, antialiased)",
                                          f"centre-crop {self.load_size} x {self.load_size}",
                                          f"centre-crop {self.image_size} x {self.image_size}",
                                          "scale to [0, 1] (divide by 255)", "subtract mean, divide by std per channel"],
                "layout": "N x C x H x W float32"}


class DownstreamModel(Classifier):
    """A trained classifier in eval mode: ``model(batch)`` maps a preprocessed batch to logits (the function
    an exported file computes); ``preprocess`` makes that input from one image, ``classes`` names the
    logits in order and ``predict(images)`` returns the predicted names and every class's probability."""

    def __init__(self, backbone: Backbone, classes: Sequence[str], preprocess: Preprocessing,
                 info: dict[str, Any] | None = None) -> None:
        super().__init__(backbone, len(classes))
        self.classes, self.preprocess, self.info = list(classes), preprocess, info or {}

    @torch.no_grad()
    def predict(self, images: Sequence[Any] | torch.Tensor) -> tuple[list[str], torch.Tensor]:
        """Names and class probabilities (N x K) of ``images``: a list of anything ``preprocess`` takes, or a
        uint8 N x C x H x W batch."""
        batch = torch.stack([self.preprocess(image) for image in images])
        device = next(self.parameters()).device
        probabilities = self(batch.to(device)).softmax(1).cpu()
        return [self.classes[i] for i in probabilities.argmax(1).tolist()], probabilities


@dataclass
class DensePreprocessing:
    """Image -> segmentation model input, at the image's own size: channels converted, scaled to [0, 1],
    normalized per channel. Whole images go through sliding windows of ``window`` pixels."""

    channels: int
    mean: list[float]
    std: list[float]
    window: int

    @property
    def normalization(self) -> Normalization:
        return Normalization(list(self.mean), list(self.std))

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self.normalization.tensors(images.device)
        return (images.float() / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]

    def load(self, image: Any) -> torch.Tensor:
        """One image as uint8 C x H x W at its own size."""
        return Preprocessing(self.channels, 0, 0, self.mean, self.std).load(image, fit=False)

    def __call__(self, image: Any) -> torch.Tensor:
        return self.batch(self.load(image)[None])[0]

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "steps": [f"convert to {self.channels} channel(s)", "keep the image's size",
                                          "scale to [0, 1] (divide by 255)",
                                          "subtract mean, divide by std per channel",
                                          f"whole images: overlapping {self.window}-px windows, logits averaged"],
                "layout": "N x C x H x W float32 (any H, W)"}


class SegmentationModel(UNet):
    """A trained segmentation model in eval mode: ``model(batch)`` maps a preprocessed N x C x H x W batch to
    N x K x H x W logits; ``predict(images)`` gives each image's mask (class indices, at its own size) and
    class probabilities, through overlapping sliding windows."""

    def __init__(self, backbone: Backbone, classes: Sequence[str], preprocess: DensePreprocessing,
                 info: dict[str, Any] | None = None) -> None:
        super().__init__(backbone, len(classes))
        self.classes, self.preprocess, self.info = list(classes), preprocess, info or {}

    @torch.no_grad()
    def predict(self, images: Sequence[Any]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        from .dense import sliding_window_logits

        device = next(self.parameters()).device
        masks, probabilities = [], []
        for image in images:
            logits = sliding_window_logits(self, self.preprocess(image).to(device), self.preprocess.window)
            probabilities.append(logits.softmax(0).cpu())
            masks.append(probabilities[-1].argmax(0))
        return masks, probabilities


def save_model(out: Path, model: nn.Module, classes: Sequence[str], preprocess: Preprocessing | DensePreprocessing,
               record: dict[str, Any]) -> Path:
    """OUT/model.safetensors (the classifier's weights) and OUT/model.json (classes, backbone, preprocessing,
    and ``record``: how it was trained and scored), each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / WEIGHTS
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save_tensors(weights, path, metadata={"format": FORMAT})
    backbone = model.backbone if isinstance(model, Classifier) else model.encoder.backbone  # type: ignore[union-attr]
    task = "classification" if isinstance(model, Classifier) else "segmentation"
    info = {"format": FORMAT, "task": task, "classes": list(classes),
            "backbone": asdict(backbone.spec), "feature_dim": backbone.feature_dim,
            "preprocessing": preprocess.describe(), "input_name": "images", "output_name": "logits", **record}
    atomic_write_text(out / INFO, json.dumps(info, indent=1))
    return path


def read_model_info(folder: str | Path) -> dict[str, Any]:
    """A model folder's model.json, or a SelfSupError naming what is missing."""
    path = Path(folder)
    if not path.is_dir():
        raise SelfSupError(f"model folder not found: {folder}")
    if not (path / INFO).is_file():
        raise SelfSupError(f"{folder} holds no {INFO}: not a model folder (selfsup train writes one)")
    try:
        info = json.loads((path / INFO).read_text())
    except (OSError, ValueError) as exc:
        raise SelfSupError(f"cannot read {path / INFO}: {exc}") from None
    if info.get("format") != FORMAT:
        raise SelfSupError(f"{path / INFO} is not a {FORMAT} description (format {info.get('format')!r})")
    return info


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> DownstreamModel | SegmentationModel:
    """The model ``selfsup train`` saved in ``folder``, in eval mode::

        model = selfsup.load_model("runs/train")
        names, probabilities = model.predict(["scan1.png", "scan2.png"])
        logits = model(torch.stack([model.preprocess(image) for image in images]))
    """
    from safetensors.torch import load_file

    info = read_model_info(folder)
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise SelfSupError(f"{folder} holds {INFO} but no {WEIGHTS}")
    steps = info["preprocessing"]
    model: DownstreamModel | SegmentationModel
    if info.get("task", "classification") == "segmentation":
        dense = DensePreprocessing(steps["channels"], steps["mean"], steps["std"], steps["window"])
        backbone = build_from_spec(BackboneSpec(**info["backbone"]), dense.window)
        model = SegmentationModel(backbone, info["classes"], dense, info)
    else:
        preprocess = Preprocessing(steps["channels"], steps["load_size"], steps["image_size"], steps["mean"],
                                   steps["std"])
        backbone = build_from_spec(BackboneSpec(**info["backbone"]), preprocess.image_size)
        model = DownstreamModel(backbone, info["classes"], preprocess, info)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except Exception as exc:
        raise SelfSupError(f"cannot load {path}: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval()

