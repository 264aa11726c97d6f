"""Decoding encoded images to uint8 C x H x W tensors, and fitting them to a square size."""
from __future__ import annotations

import io
import logging
import warnings
import zlib

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


# Pillow's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS): about a 9,459 x 9,459 image, 268 MB as RGB.
DEFAULT_MAX_PIXELS = 89_478_485
_limit = {"pixels": DEFAULT_MAX_PIXELS}


def set_max_pixels(pixels: int) -> None:
    """Images whose header declares more than ``pixels`` are skipped before decoding (0: no limit). A
    process-wide setting (the commands set it from ``--max-pixels``), inherited by DataLoader workers."""
    _limit["pixels"] = pixels
    Image.MAX_IMAGE_PIXELS = pixels or None  # Pillow's fallback decoders then agree with it


def check_pixels(data: bytes) -> None:
    """Raise DecodeError if the image's header declares more pixels than the limit. Pillow's lazy open
    reads only the header, so a small file declaring a huge size costs nothing here; torchvision's
    decoders have no limit and would allocate the full size."""
    limit = _limit["pixels"]
    if not limit:
        return
    size = _png_or_jpeg_size(data)
    if size is not None:
        width, height = size
        if width * height > limit:
            raise DecodeError(f"declares {width:,} x {height:,} pixels, above --max-pixels {limit:,}; skipped unread")
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"{reason(exc)} (--max-pixels {limit:,})") from exc
    except Exception:  # not a header Pillow reads: the decoders below name the problem
        return
    if width * height > limit:
        raise DecodeError(f"declares {width:,} x {height:,} pixels, above --max-pixels {limit:,}; skipped unread")


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # JPEG frame headers


def _png_or_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's frame header, None for anything else. The two formats
    almost every data set uses, read in a few microseconds: Pillow's lazy open costs twice a small
    JPEG's whole decode."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF:
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png_stream(data: bytes) -> None:
    """Raise DecodeError unless the PNG is whole: every chunk up to IEND complete with its CRC, and its image
    data decodable by Pillow. torchvision 0.29's PNG decoder ends the process with SIGSEGV whenever libpng
    reports an error (a changed byte in the image data, a damaged chunk after it: tests/data/test_fuzz.py), so
    a PNG reaches it only after these checks; a PNG then costs two decodes."""
    at = 8
    while True:
        if at + 12 > len(data):
            raise DecodeError("truncated PNG (no IEND chunk)")
        length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        end = at + 12 + length
        if end > len(data):
            raise DecodeError(f"truncated PNG ({kind!r} chunk cut short)")
        if zlib.crc32(data[at + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            raise DecodeError(f"damaged PNG (CRC mismatch in its {kind!r} chunk)")
        if kind == b"IEND":
            break
        at = end
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as exc:  # noqa: BLE001 - any failure means a damaged file
        raise DecodeError(reason(exc)) from exc


def decode_bytes(data: bytes, channels: int | None = None) -> torch.Tensor:
    """Decode an encoded image to uint8 C x H x W; ``channels`` 1 or 3 converts, None keeps."""
    if not data:
        raise DecodeError("empty file")
    check_pixels(data)
    if data[:8] == PNG_SIGNATURE:
        _check_png_stream(data)
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
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
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
