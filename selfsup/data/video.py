"""Video data: clips decoded from video files with PyAV (or read from arrays), held as uint8 N x C x T x S x S.

A clip is ``frames`` frames taken every ``stride``-th frame from the middle of a video, each frame's
shorter side resized to ``size`` and centre-cropped (swscale inside FFmpeg does the resize while
decoding). Videos shorter than a clip repeat their last frame. The pool is decoded once into memory;
the engine batches it exactly as it batches an image pool, and the video methods cut their frames,
tuples and sub-clips from each stored clip.

PyAV (FFmpeg's maintained Python binding) is the decoder: torchvision 0.29 no longer decodes video.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..utils.errors import ConfigError, SelfSupError
from .decode import fit_square
from .pool import DecodedPool, DecodedSpec
from .sources import VIDEO_SUFFIXES, Collection

log = logging.getLogger("selfsup")

DEFAULT_FRAMES = 16
DEFAULT_STRIDE = 2
SMALL_VIDEO_MAX = 64  # native frame size up to this; larger videos are decoded at VIDEO_SIZE
VIDEO_SIZE = 112  # the clip size of torchvision's Kinetics video models


def _av():
    try:
        import av
    except ImportError:
        raise ConfigError("video data needs PyAV: pip install 'selfsup[video]'") from None
    return av


@dataclass
class ClipSpec(DecodedSpec):
    """How clips are decoded and fed: channels, frames per clip, frame stride, frame side."""

    channels: int = 3
    frames: int = DEFAULT_FRAMES
    stride: int = DEFAULT_STRIDE
    size: int = VIDEO_SIZE

    def validate(self) -> "ClipSpec":
        if self.channels not in (1, 3):
            raise ConfigError(f"clips have 1 or 3 channels, not {self.channels}")
        if self.frames < 2 or self.stride < 1 or self.size < 8:
            raise ConfigError(f"a clip needs frames >= 2, stride >= 1 and size >= 8 (got {self.frames}, "
                              f"{self.stride}, {self.size})")
        return self


def is_video_source(path: str | Path | None) -> bool:
    """A folder whose first item file met is a video (an image folder is decided by its first image,
    however many files it holds)."""
    if not path:
        return False
    p = Path(path)
    if p.is_dir():
        for child in p.rglob("*"):  # lazily: stops at the first item file
            if child.is_file() and not child.name.startswith("."):
                if child.suffix.lower() in VIDEO_SUFFIXES:
                    return True
                if child.suffix.lower() in (".jpg", ".jpeg", ".png", ".txt", ".tsv", ".csv"):
                    return False
    return False


def decode_clip(data: bytes, spec: ClipSpec) -> torch.Tensor:
    """One clip (uint8 C x T x S x S) from an encoded video: every ``stride``-th frame, the middle
    ``frames`` of them, shorter side resized to ``size`` and centre-cropped."""
    av = _av()
    fmt = "rgb24" if spec.channels == 3 else "gray"
    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        w, h = stream.codec_context.width, stream.codec_context.height
        if not w or not h:
            raise ValueError("video stream without a frame size")
        scale = spec.size / min(w, h)  # shorter side to size, aspect kept; the crop happens below
        out_w, out_h = max(spec.size, round(w * scale)), max(spec.size, round(h * scale))
        kept = []
        for i, frame in enumerate(container.decode(stream)):
            if i % spec.stride == 0:
                kept.append(frame.reformat(width=out_w, height=out_h, format=fmt).to_ndarray())
    if not kept:
        raise ValueError("no decodable frames")
    start = max(0, (len(kept) - spec.frames) // 2)
    kept = kept[start:start + spec.frames]
    kept += [kept[-1]] * (spec.frames - len(kept))
    frames = torch.from_numpy(np.stack(kept))  # T x H x W [x C]
    frames = frames[:, None] if frames.ndim == 3 else frames.permute(0, 3, 1, 2)
    return fit_square(frames, spec.size).permute(1, 0, 2, 3).contiguous()  # C x T x S x S


def fit_clips(array: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Decoded clips (uint8 N x C x T x H x W) fitted to ``spec``: channels, frames (strided from the
    middle, last frame repeated), frame side."""
    n, c, t, h, w = array.shape
    x = torch.from_numpy(array)
    if c != spec.channels:
        x = x.float().mean(1, keepdim=True).round().to(torch.uint8) if spec.channels == 1 else x.expand(-1, 3, -1, -1, -1)
    idx = np.arange(0, t, spec.stride)
    start = max(0, (len(idx) - spec.frames) // 2)
    idx = idx[start:start + spec.frames]
    idx = np.concatenate([idx, np.full(spec.frames - len(idx), idx[-1])])
    x = x[:, :, torch.from_numpy(idx)]
    if h != spec.size or w != spec.size:
        frames = x.permute(0, 2, 1, 3, 4).reshape(n * spec.frames, spec.channels, h, w)
        x = fit_square(frames, spec.size).reshape(n, spec.frames, spec.channels, spec.size, spec.size).permute(0, 2, 1, 3, 4)
    return np.ascontiguousarray(x.numpy())


def probe_clip_spec(collection: Collection, frames: int | None = None, stride: int | None = None,
                    size: int | None = None, channels: int | None = None) -> ClipSpec:
    """The clip settings: given ones, else the first readable video's channels and native size (up to
    64 px, else 112), 16 frames every 2nd."""
    if collection.array is not None:
        c, h, w = collection.array.shape[1], *collection.array.shape[3:]
    else:
        c = 3
        for key in collection.keys[:20]:
            try:
                h, w = _native_size(collection.reader.read(key))  # type: ignore[union-attr]
                break
            except Exception:  # noqa: BLE001 - any unreadable file: try the next
                continue
        else:
            raise SelfSupError(f"none of the first videos in {collection.describe()} could be decoded")
    native = min(h, w)
    return ClipSpec(channels=channels or (1 if c == 1 else 3), frames=frames or DEFAULT_FRAMES,
                    stride=stride or DEFAULT_STRIDE,
                    size=size or (native if native <= SMALL_VIDEO_MAX else VIDEO_SIZE)).validate()


def _native_size(data: bytes) -> tuple[int, int]:
    """(height, width) of a video's first decodable frame."""
    with _av().open(io.BytesIO(data), mode="r") as container:
        frame = next(container.decode(container.streams.video[0]))
        return frame.height, frame.width


class ClipPool(DecodedPool):
    """Clips ready to feed a network: decoded once into uint8 N x C x T x S x S, with the labels of
    the readable videos."""

    item_kind = "video"
    modality = "video"

    def item_shape(self) -> tuple[int, ...]:
        return (self.spec.channels, self.spec.frames, self.spec.size, self.spec.size)

    def decode(self, data: bytes, key: str) -> torch.Tensor:
        return decode_clip(data, self.spec)

    def fit_array(self, array: np.ndarray) -> np.ndarray:
        return fit_clips(array, self.spec)


def write_video(path: str | Path, frames: np.ndarray, fps: int = 10, codec: str = "libx264") -> Path:
    """Encode uint8 frames (T x H x W x 3, even H and W) to a video file with PyAV (for generated
    data and tests; H.264 in yuv420p, the format every player reads)."""
    av = _av()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18"} if codec == "libx264" else {}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
