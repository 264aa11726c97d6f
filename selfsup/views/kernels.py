"""Batched, deterministic augmentation kernels: every image in the batch has its own parameters.

Each kernel takes float images (B x C x H x W, values in [0, 1]) and per-image parameter
tensors, and equals torchvision's ``transforms.v2.functional`` result for the same parameters
(tests/views/test_views.py checks each one), so batching changes speed, never the augmentation.
Random parameters are drawn elsewhere (``params.py``), as torchvision separates
``_get_params`` from its functional kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale.
LUMA = (0.2989, 0.587, 0.114)


def _aa_bilinear_weights(start: torch.Tensor, length: torch.Tensor, in_size: int,
                         out_size: int) -> torch.Tensor:
    """Per-image (B x out x in) matrices of antialiased bilinear resampling of a 1-D window.

    Row i holds the weights that PyTorch's antialiased bilinear interpolation
    (``interpolate(..., antialias=True)``, align_corners=False) gives to the input samples
    when resizing the window [start, start + length) to ``out_size`` samples: a triangle
    filter widened by the scale when downsampling, truncated to the window and renormalized.
    """
    device, f = start.device, torch.float32  # float32 weights agree with torchvision to ~1e-7
    scale = length.to(f) / out_size  # B
    support = torch.where(scale >= 1.0, scale, torch.ones_like(scale))  # B
    inv = torch.where(scale >= 1.0, 1.0 / scale, torch.ones_like(scale))
    centre = scale[:, None] * (torch.arange(out_size, device=device, dtype=f) + 0.5)  # B x out
    lo = (centre - support[:, None] + 0.5).trunc().clamp(min=0)  # first window sample, crop-relative
    hi = torch.minimum((centre + support[:, None] + 0.5).trunc(), length[:, None].to(f))
    j = torch.arange(in_size, device=device, dtype=f) - start[:, None].to(f)  # B x in
    j = j[:, None, :]  # B x 1 x in, crop-relative input index
    w = (1.0 - ((j - centre[..., None] + 0.5) * inv[:, None, None]).abs()).clamp(min=0)
    w = w * ((j >= lo[..., None]) & (j < hi[..., None]))
    return w / w.sum(-1, keepdim=True)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each image to its box (top, left, height, width) and resize it to size x size.

    Equals ``v2.functional.resized_crop(img, top, left, height, width, [size, size],
    antialias=True)`` per image; done as two batched matrix products.
    """
    _, _, h, w = images.shape
    top, left, height, width = boxes.unbind(-1)
    rows = _aa_bilinear_weights(top, height, h, size).to(images.dtype)  # B x size x H
    cols = _aa_bilinear_weights(left, width, w, size).to(images.dtype)  # B x size x W
    out = torch.einsum("bsh,bchw->bcsw", rows, images)
    return torch.einsum("bcsw,btw->bcst", out, cols)


def hflip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images where ``flip`` (bool, B) is set."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images, repeated to the input's channel count (v2 rgb_to_grayscale)."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(1)
    luma = (r * LUMA[0] + g * LUMA[1] + b * LUMA[2])[:, None]
    return luma.expand_as(images)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = ratio.to(a.dtype)[:, None, None, None]
    return (a * ratio + b * (1.0 - ratio)).clamp(0.0, 1.0)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, torch.zeros_like(images), factor)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = grayscale(images)[:, :1].mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    return _blend(images, grayscale(images), factor)


def _rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(1)
    maxc, _ = images.max(1)
    minc, _ = images.min(1)
    delta = maxc - minc
    flat = delta == 0  # grey pixels: hue and saturation are 0
    safe = torch.where(flat, torch.ones_like(delta), delta)
    s = delta / torch.where(flat, torch.ones_like(maxc), maxc)
    # Sector of the maximum channel: red (g-b), green 2 + (b-r), blue 4 + (r-g), in units of 60°.
    h = torch.where(maxc == r, g - b, torch.where(maxc == g, 2.0 * safe + b - r, 4.0 * safe + r - g)) / safe
    h = torch.where(flat, torch.zeros_like(h), h)
    h = (h / 6.0 + 1.0).fmod(1.0)
    return torch.stack((h, s, maxc), 1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV to RGB as v - v·s·clamp(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6, n = 5, 3, 1:
    the same piecewise-linear map as the six-sector table, without a gather."""
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype).view(1, 3, 1, 1)
    k = (n + h * 6.0).remainder(6.0)
    return v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def adjust_hue(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``factor`` (in [-0.5, 0.5], fraction of a turn) in HSV space."""
    if images.shape[1] == 1:
        return images
    hsv = _rgb_to_hsv(images)
    hue = (hsv[:, 0] + factor.to(images.dtype)[:, None, None]).remainder(1.0)
    return _hsv_to_rgb(torch.cat((hue[:, None], hsv[:, 1:]), 1))


COLOR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor,
                 apply: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation and hue in a per-image order, where ``apply`` is set.

    ``factors``: B x 4 (brightness, contrast, saturation, hue); ``order``: B x 4 permutations of
    0..3, as torchvision's ColorJitter draws one per call. Each step groups the images whose
    next operation is the same, so every image pays for its four operations only.
    """
    out = images.clone()
    for position in range(4):
        for op_index, op in enumerate(COLOR_OPS):
            sel = torch.nonzero(apply & (order[:, position] == op_index)).squeeze(1)
            if sel.numel():
                out[sel] = op(out[sel], factors[sel, op_index])
    return out


def gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """B x K normalized 1-D Gaussian kernels, one per sigma."""
    x = torch.arange(kernel_size, device=sigma.device, dtype=torch.float64) - (kernel_size - 1) / 2
    k = torch.exp(-0.5 * (x[None] / sigma[:, None].to(torch.float64)) ** 2)
    return k / k.sum(-1, keepdim=True)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int,
                  apply: torch.Tensor | None = None) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma and reflect padding (v2 gaussian_blur)."""
    b, c, h, w = images.shape
    k = gaussian_kernels(sigma, kernel_size).to(images.dtype)  # B x K
    weight = k.repeat_interleave(c, 0)  # (B*C) x K: one filter per image channel
    pad = kernel_size // 2
    x = F.pad(images.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, weight[:, None, None, :], groups=b * c)  # along width
    x = F.conv2d(x, weight[:, None, :, None], groups=b * c)  # along height
    out = x.reshape(b, c, h, w)
    return out if apply is None else torch.where(apply[:, None, None, None], out, images)


def solarize(images: torch.Tensor, apply: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert pixels at or above ``threshold`` where ``apply`` is set (v2 solarize)."""
    inverted = torch.where(images >= threshold, 1.0 - images, images)
    return torch.where(apply[:, None, None, None], inverted, images)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images - mean[None, :, None, None]) / std[None, :, None, None]
