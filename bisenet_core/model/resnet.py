"""ResNet-18 / ResNet-101 backbones (He et al., CVPR 2016) for the Context Path.

Parameter names match torchvision's ResNet (conv1, bn1, layer1.0.conv1,
layer1.0.downsample.0, ...) so ImageNet weights from torchvision or timm load by name
(see pretrained.py). The classifier (avgpool, fc) is left out: BiSeNet uses layer3 (1/16)
and layer4 (1/32). Bottleneck strides on its 3x3 conv ("ResNet v1.5"), as torchvision does.

`deep_stem=True` replaces the 7x7 stem conv by three 3x3 convs (64, 64, 128 channels), as the
authors' ResNet-101 BiSeNet does (TorchSeg furnace/base_model/resnet.py, `deep_stem=True,
stem_width=64`, ImageNet weights `resnet101_v1c.pth`); its parameter names (`conv1.0`,
`conv1.1`, `conv1.3`, ...) are TorchSeg's, so their weight file loads by name.
"""
from __future__ import annotations

import torch
from torch import nn

from bisenet_core.model.layers import init_weights


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4), with an identity or projection shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = _conv1x1(channels, channels * self.expansion)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet trunk without the classifier; forward returns (layer3, layer4) = (1/16, 1/32).

    Args:
        block: BasicBlock or Bottleneck.
        depths: blocks in layer1..layer4.
        deep_stem: three 3x3 stem convs (stem_width, stem_width, 2 x stem_width channels)
            instead of one 7x7 conv to 64.
        stem_width: width of the deep stem.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck],
                 depths: tuple[int, int, int, int], deep_stem: bool = False,
                 stem_width: int = 64):
        super().__init__()
        if deep_stem:
            stem_channels = stem_width * 2
            self.conv1 = nn.Sequential(
                _conv3x3(3, stem_width, stride=2), nn.BatchNorm2d(stem_width),
                nn.ReLU(inplace=True),
                _conv3x3(stem_width, stem_width), nn.BatchNorm2d(stem_width),
                nn.ReLU(inplace=True),
                _conv3x3(stem_width, stem_channels))
        else:
            stem_channels = 64
            self.conv1 = nn.Conv2d(3, stem_channels, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_channels = stem_channels
        self.layer1 = self._make_layer(block, 64, depths[0], stride=1)
        self.layer2 = self._make_layer(block, 128, depths[1], stride=2)
        self.layer3 = self._make_layer(block, 256, depths[2], stride=2)
        self.layer4 = self._make_layer(block, 512, depths[3], stride=2)
        # Channels of the two maps the Context Path uses (1/16, 1/32).
        self.channels = (256 * block.expansion, 512 * block.expansion)
        init_weights(self)

    def _make_layer(self, block, channels: int, depth: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_channels != channels * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._in_channels, channels * block.expansion, stride),
                nn.BatchNorm2d(channels * block.expansion))
        layers = [block(self._in_channels, channels, stride, downsample)]
        self._in_channels = channels * block.expansion
        layers += [block(self._in_channels, channels) for _ in range(depth - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        feat16 = self.layer3(x)
        feat32 = self.layer4(feat16)
        return feat16, feat32


def resnet18() -> ResNet:
    """ResNet-18 trunk (BasicBlock, [2, 2, 2, 2]); Context Path channels (256, 512)."""
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet101(deep_stem: bool = False) -> ResNet:
    """ResNet-101 trunk (Bottleneck, [3, 4, 23, 3]); Context Path channels (1024, 2048)."""
    return ResNet(Bottleneck, (3, 4, 23, 3), deep_stem=deep_stem)
