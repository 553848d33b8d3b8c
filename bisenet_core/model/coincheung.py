"""CoinCheung's BiSeNetV1 (github.com/CoinCheung/BiSeNet, MIT): the parts that differ.

The most used BiSeNet port publishes trained weights (ResNet-18: Cityscapes, COCO-Stuff,
ADE20k; bisenet_core/published.py imports them). Its network is the authors' 'torchseg'
layout (4-conv Spatial Path, Context Path that upsamples each branch and then refines it,
auxiliary heads on the refined 1/8 and 1/16 features) with three differences:
- nearest upsampling in the Context Path (`nn.Upsample(scale_factor=2.)`), not bilinear;
- the FFM channel attention is one 1x1 conv + BatchNorm, not two 1x1 convs with a ReLU
  ("so that tensorrt 7.2.3.4 can work for fp16", his comment);
- a 256-wide main head and 64-wide auxiliary heads (TorchSeg: 64 and 128/256).
His heads also upsample their logits to the input size; ours stop at 1/8 like every
layout here (bilinear post-processing with align_corners=False is the same operation).
Built with `bisenet(num_classes, 'resnet18', architecture='coincheung')`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bisenet_core.model.bisenet import BiSeNet, ContextPath, SpatialPath
from bisenet_core.model.layers import ConvBNReLU


class NearestContextPath(ContextPath):
    """The authors' Context Path order with nearest-neighbour upsampling (CoinCheung).

    His `nn.Upsample(scale_factor=2.)` doubles each map; the model pads its input to a
    multiple of 32, so resizing to the next stage's size is the same operation.
    """

    def upsample(self, x: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(x, size=size, mode='nearest')


def coincheung_bisenet(num_classes: int, backbone: nn.Module,
                       spatial_channels: tuple[int, int, int] = (64, 64, 64),
                       spatial_projection: int = 128, context_channels: int = 128,
                       fusion_channels: int = 256, head_channels: int = 256,
                       aux_head_channels: int = 64) -> BiSeNet:
    """The BiSeNetV1 of CoinCheung around `backbone` (his published weights: ResNet-18).

    Args:
        num_classes: output channels of the heads.
        backbone: Context Path backbone (returns the 1/16 and 1/32 maps, has `channels`).
        spatial_channels, spatial_projection: the three 7x7/3x3/3x3 stride-2 layers and the
            1x1 conv after them (his SpatialPath: 64, 64, 64 then 128).
        context_channels: Context Path width (his 128).
        fusion_channels: FFM width (his 256).
        head_channels, aux_head_channels: hidden widths of the main and auxiliary heads.
    """
    return BiSeNet(
        num_classes,
        SpatialPath(spatial_channels, (7, 3, 3), projection_channels=spatial_projection),
        NearestContextPath(backbone, context_channels),
        fusion_channels=fusion_channels,
        # His FFM: mean -> 1x1 conv (no bias) -> BatchNorm -> sigmoid.
        fusion_attention=ConvBNReLU(fusion_channels, fusion_channels, 1, relu=False),
        head_channels=head_channels, aux_head_channels=aux_head_channels)
