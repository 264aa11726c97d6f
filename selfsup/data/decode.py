"""Decoding encoded images to uint8 C x H x W tensors, and fitting them to a square size."""
from __future__ import annotations

import io
import logging
import warnings

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

log = logging.getLogger("selfsup")
# torchvision 0.29 marks its decoders deprecated in favour of TorchCodec; they remain the
# fastest JPEG/PNG decoders installed with torchvision, so keep using them quietly.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")


class DecodeError(Exception):
    """An item could not be decoded (corrupt, truncated, empty or not an image)."""


def decode_bytes(data: bytes, channels: int | None = None) -> torch.Tensor:
    """Decode an encoded image to uint8 C x H x W; ``channels`` 1 or 3 converts, None keeps."""
    if not data:
        raise DecodeError("empty file")
    mode = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}.get(channels or 0, ImageReadMode.UNCHANGED)
    try:
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode)
    except RuntimeError:
        pass  # formats torchvision does not decode (bmp, tiff, ...) go through Pillow
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if channels == 1:
                im = im.convert("L")
            elif channels == 3 or im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGB")
            return TF.pil_to_tensor(im)
    except UnidentifiedImageError as exc:
        raise DecodeError("not a recognized image format") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(reason(exc)) from exc


def reason(exc: BaseException) -> str:
    """A short one-line reason for a failed read or decode."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def fit_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (antialiased) and centre-crop to size x size."""
    h, w = image.shape[-2:]
    if h == size and w == size:
        return image
    if min(h, w) != size:
        image = TF.resize(image, [size], antialias=True)
    return TF.center_crop(image, [size, size])


def match_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    c = image.shape[-3]
    if c == channels:
        return image
    if c == 4 and channels == 3:
        return image[..., :3, :, :]
    if c == 1:
        return image.expand(*image.shape[:-3], channels, *image.shape[-2:]).contiguous()
    if channels == 1 and c >= 3:
        return TF.rgb_to_grayscale(image[..., :3, :, :])
    raise DecodeError(f"has {c} channels, expected {channels}")
