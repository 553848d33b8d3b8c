"""The Context Path backbones: one registry line each (name -> how to build it, what it gives).

A backbone is a module whose forward returns the (1/16, 1/32) feature maps and whose
`channels` attribute says their widths. Adding one: write its module (like resnet.py), then
add one `Backbone(...)` line to REGISTRY; ModelSpec, the training config, `bisenet()` and the
command lines read the names from here (docs/design.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from bisenet_core.model.resnet import resnet18, resnet101
from bisenet_core.model.xception39 import Xception39


@dataclass(frozen=True)
class Backbone:
    """What the layouts and the tools need to know about one backbone.

    Args:
        build: build(depthwise_bn) -> a randomly initialised backbone; depthwise_bn adds a
            BatchNorm after each depthwise conv ('bisenet-ros-v1'), where there are any.
        channels: widths of the (1/16, 1/32) maps (the module's `channels`).
        torchseg_heads: hidden widths of the authors' (main head, auxiliary heads) around
            this backbone (TorchSeg model/bisenet/cityscapes.bisenet.*/network.py).
        imagenet_weights: a weights file name that fits `load_backbone_weights` ('' = none
            known); nothing is downloaded, the training presets name it.
    """

    build: Callable[[bool], nn.Module]
    channels: tuple[int, int]
    torchseg_heads: tuple[int, int]
    imagenet_weights: str = ''


REGISTRY: dict[str, Backbone] = {
    # TorchSeg cityscapes.bisenet.X39/network.py: heads 64, aux 128; trained from scratch
    # (X39 config.py: pretrained_model None).
    'xception39': Backbone(lambda depthwise_bn: Xception39(depthwise_bn=depthwise_bn),
                           (128, 256), (64, 128)),
    # TorchSeg cityscapes.bisenet.R18/network.py: heads 64, aux 256 (R18.speed: aux 128, set
    # by its preset, config/train/cityscapes_resnet18_speed.yaml); torchvision's file fits.
    'resnet18': Backbone(lambda depthwise_bn: resnet18(), (256, 512), (64, 256),
                         'resnet18-f37072fd.pth'),
    # TorchSeg cityscapes.bisenet.R101/network.py: 256 for all three heads.
    'resnet101': Backbone(lambda depthwise_bn: resnet101(), (1024, 2048), (256, 256),
                          'resnet101-63fe2227.pth'),
    # ResNet-101 with TorchSeg's three-conv stem (furnace/base_model/resnet.py deep_stem).
    'resnet101_deepstem': Backbone(lambda depthwise_bn: resnet101(deep_stem=True),
                                   (1024, 2048), (256, 256), 'resnet101_v1c.pth'),
}


def build_backbone(name: str, depthwise_bn: bool = False) -> nn.Module:
    """The named backbone, randomly initialised (ValueError naming the choices if unknown)."""
    return backbone_info(name).build(depthwise_bn)


def backbone_info(name: str) -> Backbone:
    """The registry entry of `name`, or ValueError naming the known backbones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f'unknown backbone {name!r}; choose one of {tuple(REGISTRY)}') from None
