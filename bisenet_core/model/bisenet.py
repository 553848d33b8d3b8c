"""BiSeNet: Bilateral Segmentation Network (Yu et al., ECCV 2018, arXiv:1808.00897).

Module names follow the paper's Figure 2: a Spatial Path (three stride-2 convs, 1/8) and a
Context Path (light backbone + global average pooling + Attention Refinement Modules,
U-shape fused to 1/8) meet in the Feature Fusion Module; the head predicts at 1/8. Two
auxiliary heads supervise the Context Path at 1/16 and 1/32 during training only.
Where the paper leaves a choice open we follow the authors' TorchSeg code (docs/model.md).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bisenet_core.model.layers import ConvBNReLU, init_weights
from bisenet_core.model.resnet import resnet18, resnet101
from bisenet_core.model.xception39 import Xception39
from bisenet_core.spec import BACKBONES, OUTPUT_STRIDE, SIZE_DIVISOR

# Backbone name -> builder; the names are those of spec.BACKBONES.
_BACKBONE_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    'xception39': Xception39,
    'resnet18': resnet18,
    'resnet101': resnet101,
}


class BiSeNetOutput(NamedTuple):
    """Network outputs.

    logits: N x C x ceil(H/8) x ceil(W/8). aux: (1/16 logits, 1/32 logits) in training, ()
    in eval mode.
    """

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]


class SpatialPath(nn.Sequential):
    """Three conv(stride 2)-BN-ReLU layers: a wide, shallow path that keeps detail at 1/8.

    Args:
        channels: output channels of the three layers; the last is the path's width.
        kernel_sizes: the first layer is 7x7 (as in the authors' code: a large field on raw
            pixels, like a ResNet stem), the other two 3x3.
    """

    def __init__(self, channels: tuple[int, int, int] = (64, 64, 128),
                 kernel_sizes: tuple[int, int, int] = (7, 3, 3)):
        super().__init__()
        in_channels = 3
        for i, (out_channels, k) in enumerate(zip(channels, kernel_sizes), start=1):
            self.add_module(f'conv{i}', ConvBNReLU(in_channels, out_channels, k, stride=2))
            in_channels = out_channels
        self.out_channels = in_channels


class AttentionRefinementModule(nn.Module):
    """ARM (Fig. 2b): reweight a stage's channels by an attention vector from its global pool.

    A 3x3 conv-BN-ReLU first brings the stage to the Context Path width (the paper does not
    say how stages of 128/256 or 1024/2048 channels meet; this is the authors' code).

    Args:
        in_channels: channels of the backbone stage.
        out_channels: Context Path width.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels, 3)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x * self.attention(x)


class ContextPath(nn.Module):
    """Backbone + global average pooling tail + ARMs, fused U-shape style up to 1/8.

    Args:
        backbone: module returning the (1/16, 1/32) feature maps, with a `channels` attribute.
        channels: Context Path width.
    """

    def __init__(self, backbone: nn.Module, channels: int = 128):
        super().__init__()
        channels16, channels32 = backbone.channels
        self.backbone = backbone
        # Global average pooling on the tail: the largest possible receptive field.
        self.global_context = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                            ConvBNReLU(channels32, channels, 1))
        self.arm32 = AttentionRefinementModule(channels32, channels)
        self.arm16 = AttentionRefinementModule(channels16, channels)
        self.refine32 = ConvBNReLU(channels, channels, 3)
        self.refine16 = ConvBNReLU(channels, channels, 3)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: padded input (H, W multiples of 32). Returns the context at (1/8, 1/16, 1/32)."""
        feat16, feat32 = self.backbone(x)
        # The pooled vector broadcasts over the 1/32 map (= upsampling a 1x1 map).
        context32 = self.refine32(self.arm32(feat32) + self.global_context(feat32))
        up32 = F.interpolate(context32, size=feat16.shape[-2:], mode='bilinear',
                             align_corners=False)
        context16 = self.refine16(self.arm16(feat16) + up32)
        size8 = (feat16.shape[-2] * 2, feat16.shape[-1] * 2)
        context8 = F.interpolate(context16, size=size8, mode='bilinear', align_corners=False)
        return context8, context16, context32


class FeatureFusionModule(nn.Module):
    """FFM (Fig. 2c): concat, conv-BN-ReLU, then SE-style channel reweighting x + x * w.

    Args:
        in_channels: Spatial Path + Context Path channels.
        out_channels: fused width.
        reduction: squeeze ratio of the attention (1 in the authors' code).
    """

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 1):
        super().__init__()
        self.fuse = ConvBNReLU(in_channels, out_channels, 1)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(out_channels, out_channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels // reduction, out_channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.fuse(torch.cat([spatial, context], dim=1))
        return x + x * self.attention(x)


class SegmentationHead(nn.Sequential):
    """3x3 conv-BN-ReLU then a 1x1 classifier (with bias), at the input's resolution."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels, 3)
        self.classifier = nn.Conv2d(mid_channels, num_classes, 1)


class BiSeNet(nn.Module):
    """BiSeNet (Yu et al., ECCV 2018). Build it with `bisenet(num_classes, backbone)`.

    forward(x: N x 3 x H x W normalised RGB, any H, W) -> BiSeNetOutput(logits, aux).

    Args:
        num_classes: output channels of the heads.
        backbone: Context Path backbone (returns 1/16 and 1/32 maps, has `channels`).
        spatial_channels: the three Spatial Path layer widths.
        context_channels: Context Path width.
        fusion_channels: Feature Fusion Module width.
        head_channels: hidden width of the main head.
        aux_head_channels: hidden width of the auxiliary heads (training only).
    """

    def __init__(self, num_classes: int, backbone: nn.Module,
                 spatial_channels: tuple[int, int, int] = (64, 64, 128),
                 context_channels: int = 128, fusion_channels: int = 256,
                 head_channels: int = 64, aux_head_channels: int = 256):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        self.num_classes = num_classes
        self.spatial_path = SpatialPath(spatial_channels)
        self.context_path = ContextPath(backbone, context_channels)
        self.ffm = FeatureFusionModule(spatial_channels[-1] + context_channels, fusion_channels)
        self.head = SegmentationHead(fusion_channels, head_channels, num_classes)
        self.aux_head16 = SegmentationHead(context_channels, aux_head_channels, num_classes)
        self.aux_head32 = SegmentationHead(context_channels, aux_head_channels, num_classes)
        # The backbone initialised itself; re-init only the head part (same scheme).
        for name, module in self.named_children():
            if name != 'context_path':
                init_weights(module)
        for name, module in self.context_path.named_children():
            if name != 'backbone':
                init_weights(module)

    def forward(self, x: torch.Tensor) -> BiSeNetOutput:
        # (Skipped while tracing for ONNX, where shapes are traced values, not ints.)
        if not torch.jit.is_tracing() and (x.dim() != 4 or x.shape[1] != 3
                                           or not x.is_floating_point()):
            raise ValueError(f'BiSeNet expects a float N x 3 x H x W batch of normalised RGB, '
                             f'got a {x.dtype} tensor of shape {tuple(x.shape)}')
        if self.training and x.shape[0] < 2:
            # BatchNorm on the globally pooled vectors (ARM, global context) needs > 1 value.
            raise ValueError('BiSeNet training needs a batch of at least 2 images '
                             '(BatchNorm on globally pooled features); call model.eval() '
                             'for single-image inference')
        height, width = x.shape[-2], x.shape[-1]
        # Zero-pad bottom/right to a multiple of 32 so every stage halves exactly.
        x = F.pad(x, (0, (-width) % SIZE_DIVISOR, 0, (-height) % SIZE_DIVISOR))

        spatial = self.spatial_path(x)
        context8, context16, context32 = self.context_path(x)
        logits = self.head(self.ffm(spatial, context8))
        logits = _crop(logits, height, width, OUTPUT_STRIDE)
        if not self.training:
            return BiSeNetOutput(logits, ())
        aux = (_crop(self.aux_head16(context16), height, width, OUTPUT_STRIDE * 2),
               _crop(self.aux_head32(context32), height, width, OUTPUT_STRIDE * 4))
        return BiSeNetOutput(logits, aux)


def _crop(x: torch.Tensor, height, width, stride: int) -> torch.Tensor:
    """Keep the ceil(H/stride) x ceil(W/stride) cells that cover the unpadded image."""
    return x[:, :, :(height + stride - 1) // stride, :(width + stride - 1) // stride]


def bisenet(num_classes: int, backbone: str = 'xception39') -> BiSeNet:
    """A randomly initialised BiSeNet; backbone is one of 'xception39', 'resnet18', 'resnet101'.

    For ImageNet-initialised ResNets see `bisenet_core.model.pretrained.load_backbone_weights`.
    """
    try:
        build = _BACKBONE_BUILDERS[backbone]
    except KeyError:
        raise ValueError(f'unknown backbone {backbone!r}; choose one of {BACKBONES}') from None
    return BiSeNet(num_classes, build())
