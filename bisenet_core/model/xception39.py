"""Xception39: the light Context Path backbone of BiSeNet (Yu et al., ECCV 2018).

The paper calls it "a modified Xception model"; the layout follows the authors' own
TorchSeg code (furnace/base_model/xception.py, `xception39`): a 3x3/2 stem (8 channels) and
a 3x3/2 max-pool, then three stages of [4, 8, 4] residual blocks of three
depthwise-separable convs, each stage opening with a stride-2 block. Outputs are 1/8 (64 ch),
1/16 (128 ch) and 1/32 (256 ch) of the input. TorchSeg's separable conv has no BatchNorm
between the depthwise and the pointwise conv; `depthwise_bn=True` adds one (this project's
first layout, 'bisenet-ros-v1': 6,816 more parameters).
"""
from __future__ import annotations

import torch
from torch import nn

from bisenet_core.model.layers import ConvBNReLU, init_weights


class SeparableConvBN(nn.Sequential):
    """Depthwise 3x3 conv (+ BN), then pointwise 1x1 conv + BN (+ ReLU).

    Args:
        in_channels, out_channels: channel counts.
        stride: stride of the depthwise conv.
        relu: ReLU after the pointwise BN (off for the last conv of a residual branch).
        depthwise_bn: BatchNorm after the depthwise conv (TorchSeg: none).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, relu: bool = True,
                 depthwise_bn: bool = False):
        super().__init__()
        self.depthwise = ConvBNReLU(in_channels, in_channels, 3, stride, groups=in_channels,
                                    relu=False, bn=depthwise_bn)
        self.pointwise = ConvBNReLU(in_channels, out_channels, 1, relu=relu)


class XceptionBlock(nn.Module):
    """Residual block: three separable convs, ReLU after the residual add.

    Args:
        in_channels: input channels.
        mid_channels: width of the branch; the block outputs mid_channels * expansion.
        stride: stride of the first conv; a stride-2 (or widening) block gets a projection
            shortcut (a separable conv, as in the authors' code) instead of the identity.
        depthwise_bn: see SeparableConvBN.
    """

    expansion = 4

    def __init__(self, in_channels: int, mid_channels: int, stride: int = 1,
                 depthwise_bn: bool = False):
        super().__init__()
        out_channels = mid_channels * self.expansion
        dw_bn = {'depthwise_bn': depthwise_bn}
        self.residual = nn.Sequential(
            SeparableConvBN(in_channels, mid_channels, stride, **dw_bn),
            SeparableConvBN(mid_channels, mid_channels, **dw_bn),
            SeparableConvBN(mid_channels, out_channels, relu=False, **dw_bn),
        )
        if stride != 1 or in_channels != out_channels:
            self.shortcut = SeparableConvBN(in_channels, out_channels, stride, relu=False,
                                            **dw_bn)
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class Xception39(nn.Module):
    """Xception39 backbone; forward returns the (1/16, 1/32) feature maps.

    Args:
        stem_channels: output channels of the 3x3/2 stem conv.
        depths: blocks per stage.
        mid_channels: branch width per stage (stage output = 4x this).
        depthwise_bn: BatchNorm after each depthwise conv (TorchSeg: none).
    """

    def __init__(self, stem_channels: int = 8, depths: tuple[int, ...] = (4, 8, 4),
                 mid_channels: tuple[int, ...] = (16, 32, 64), depthwise_bn: bool = False):
        super().__init__()
        if len(depths) != 3 or len(mid_channels) != 3:
            raise ValueError('Xception39 has three stages: give three depths and mid_channels')
        self.stem = ConvBNReLU(3, stem_channels, 3, stride=2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = stem_channels
        stages = []
        for depth, mid in zip(depths, mid_channels):
            blocks = [XceptionBlock(in_channels, mid, stride=2, depthwise_bn=depthwise_bn)]
            in_channels = mid * XceptionBlock.expansion
            blocks += [XceptionBlock(in_channels, mid, depthwise_bn=depthwise_bn)
                       for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages  # 1/8, 1/16, 1/32
        # Channels of the two maps the Context Path uses (1/16, 1/32).
        self.channels = tuple(m * XceptionBlock.expansion for m in mid_channels[1:])
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.stem(x))
        x = self.layer1(x)
        feat16 = self.layer2(x)
        feat32 = self.layer3(feat16)
        return feat16, feat32
