"""Encoders of 5-D inputs (B x C x D x H x W: video clips, D = frames; 3D volumes, D = depth), mapping
them to pooled features (B x D'): any image backbone applied per frame with temporal pooling,
torchvision's video networks, and a small 3D ConvNet.

- ``frames:NAME`` (e.g. ``frames:resnet18``): the image backbone NAME encodes every frame, the clip
  feature is the mean over frames. Its per-frame features are what the frame-level pretext tasks
  (frame order, odd-one-out, frame-between, next frame) train; the mean is order-blind, so it
  transfers what frames look like, not which way they move.
- torchvision's video models (``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ...; Tran et al. 2018,
  https://arxiv.org/abs/1711.11248) with the classifier removed: 3D convolutions see motion.
  For small frames (<= 64 px) the stem's 1x7x7 stride-2 convolution becomes 3x3x3 stride 1, as the
  CIFAR ResNet stem does for images; another channel count replaces the stem's convolution. With
  one input channel they are the 3D ResNets of medical volumes (the Rubik's cube paper's encoder
  family; Zhuang et al. 2019).
- ``small-convnet3d``: four 3x3x3 convolutions (16-32-64-128 channels, batch norm, ReLU; a stride-2
  first one, then max-pooling between them), for small volumes and quick CPU runs.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..utils.errors import ConfigError
from .registry import Backbone, BackboneSpec, build_image_backbone

FRAME_PREFIX = "frames:"


class FrameEncoder(nn.Module):
    """An image model applied to each frame; ``forward`` averages the frame features over time."""

    def __init__(self, frame_model: nn.Module) -> None:
        super().__init__()
        self.frame_model = frame_model

    def frames(self, images: torch.Tensor) -> torch.Tensor:
        """Features of single frames (B x C x H x W -> B x D)."""
        return self.frame_model(images).flatten(1)

    def per_frame(self, clips: torch.Tensor) -> torch.Tensor:
        """Features of every frame of every clip (B x C x T x H x W -> B x T x D), in one batch."""
        b, c, t, h, w = clips.shape
        feats = self.frames(clips.transpose(1, 2).reshape(b * t, c, h, w))
        return feats.reshape(b, t, -1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.per_frame(clips).mean(1)


def video_model_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models.video)


def small_convnet3d(in_channels: int) -> nn.Module:
    def block(width_in: int, width: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv3d(width_in, width, 3, stride, padding=1, bias=False), nn.BatchNorm3d(width), nn.ReLU(inplace=True)]

    # 3D convolutions cost 3x their 2D counterparts per voxel, and a 32³ volume has 32x the voxels of
    # a 32² image: a stride-2 stem (10x faster on a CPU than a stride-1 one followed by pooling) and
    # one convolution per stage keep a volume to about 0.1 GMAC.
    layers = block(in_channels, 16, stride=2)
    for i, (width_in, width) in enumerate(((16, 32), (32, 64), (64, 128))):
        layers += block(width_in, width) + ([nn.MaxPool3d(2, ceil_mode=True)] if i < 2 else [])
    layers += [nn.AdaptiveAvgPool3d(1), nn.Flatten()]
    return nn.Sequential(*layers)


OWN_3D = {"small-convnet3d": small_convnet3d}


def is_clip_backbone(name: str) -> bool:
    """Whether ``name`` is an encoder of 5-D inputs (clips or volumes)."""
    return name.startswith(FRAME_PREFIX) or name in OWN_3D or name in video_model_names()


def _video_model(name: str, in_channels: int, small: bool) -> nn.Module:
    import torchvision

    model = torchvision.models.get_model(name, weights=None)
    if not isinstance(getattr(model, "fc", None), nn.Linear) or not isinstance(model.stem[0], nn.Conv3d):
        raise ConfigError(f"video backbone {name!r} is not a torchvision video ResNet (r3d_18, mc3_18, r2plus1d_18)")
    model.fc = nn.Identity()
    conv = model.stem[0]
    if small:
        # R(2+1)D's stem is two convolutions (1x7x7 then 3x1x1): only the spatial stride is removed there.
        kernel = (3, 3, 3) if conv.kernel_size[0] == 3 else conv.kernel_size
        stride = (conv.stride[0], 1, 1) if kernel != (3, 3, 3) else (1, 1, 1)
        model.stem[0] = nn.Conv3d(in_channels, conv.out_channels, kernel, stride, tuple(k // 2 for k in kernel),
                                  bias=False)
    elif in_channels != conv.in_channels:
        model.stem[0] = nn.Conv3d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                  bias=False)
    return model


def build_clip_backbone(spec: BackboneSpec, image_size: int) -> Backbone:
    """An encoder of ``spec`` (``frames:NAME``, ``small-convnet3d`` or a torchvision video model), random weights."""
    if spec.name.startswith(FRAME_PREFIX):
        frame = build_image_backbone(BackboneSpec(spec.name[len(FRAME_PREFIX):], spec.in_channels, spec.stem), image_size)
        return Backbone(FrameEncoder(frame.model), spec, frame.feature_dim)
    if spec.name in OWN_3D:
        model = OWN_3D[spec.name](spec.in_channels)
    else:
        model = _video_model(spec.name, spec.in_channels, spec.stem == "small")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        dim = model(torch.zeros(1, spec.in_channels, 4, max(image_size, 16), max(image_size, 16))).flatten(1).shape[1]
    model.train(was_training)
    return Backbone(model, spec, int(dim))


def frame_encoder(backbone: Backbone, method: str) -> FrameEncoder:
    """The backbone's per-frame encoder, or a clear error for a 3D network."""
    if not isinstance(backbone.model, FrameEncoder):
        raise ConfigError(f"{method} compares single frames: use a frame backbone such as frames:resnet18 "
                          f"(not {backbone.spec.name}, a 3D network over whole clips)")
    return backbone.model
