"""Input-side surgery: the small-image stem and a changed number of input channels."""
from __future__ import annotations

import torch.nn as nn


def first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    """The module holding the first Conv2d, the attribute name, and the conv itself."""
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Conv2d):
                return module, child_name, child
    raise ValueError(f"{type(model).__name__} has no Conv2d to adapt")


def adapt_input(model: nn.Module, in_channels: int, small: bool) -> None:
    """Replace the first conv for ``in_channels`` and, if ``small``, make it a 3x3 stride-1 stem.

    For ResNets (torchvision and timm) the small stem is the CIFAR variant of He et al. 2016:
    3x3 stride-1 conv and no max-pool. Other families keep their kernel but lose the stride.
    Module names are unchanged, so weights stay keyed as in torchvision/timm.
    """
    parent, attr, conv = first_conv(model)
    if conv.in_channels == in_channels and not small:
        return
    is_resnet_stem = hasattr(model, "maxpool") and attr == "conv1" and parent is model
    kernel = (3, 3) if small and is_resnet_stem else conv.kernel_size
    stride = (1, 1) if small else conv.stride
    padding = tuple(k // 2 for k in kernel) if small else conv.padding
    setattr(parent, attr, nn.Conv2d(in_channels, conv.out_channels, kernel, stride, padding,
                                    bias=conv.bias is not None))
    if small and is_resnet_stem:
        model.maxpool = nn.Identity()
