"""Building blocks shared by the backbones and the BiSeNet heads."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv (no bias, 'same' padding) -> optional BatchNorm -> optional ReLU.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: square kernel; padding is kernel_size // 2, so stride 2 halves even sizes.
        stride: convolution stride.
        groups: convolution groups (in_channels for a depthwise conv).
        relu: append a ReLU (off for the last conv of a residual branch).
        bn: BatchNorm after the conv (TorchSeg's Xception39 has none after its depthwise convs).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1, relu: bool = True, bn: bool = True):
        layers = [
            ('conv', nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                               groups=groups, bias=False)),
        ]
        if bn:
            layers.append(('bn', nn.BatchNorm2d(out_channels)))
        if relu:
            layers.append(('relu', nn.ReLU(inplace=True)))
        super().__init__(OrderedDict(layers))


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions (zero bias), BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
