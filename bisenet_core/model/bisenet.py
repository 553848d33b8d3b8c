"""BiSeNet: Bilateral Segmentation Network (Yu et al., ECCV 2018, arXiv:1808.00897).

Module names follow the paper's Figure 2: a Spatial Path (stride-2 convs, 1/8) and a
Context Path (light backbone + global average pooling + Attention Refinement Modules,
U-shape fused to 1/8) meet in the Feature Fusion Module; the head predicts at 1/8. Two
auxiliary heads supervise the Context Path during training only.

Three layouts (`ModelSpec.architecture`, built in architectures.py) share every part and
differ only where the paper is silent (docs/model.md compares them):
- 'torchseg', the default: the authors' own code (TorchSeg, model/bisenet/cityscapes.bisenet.*
  /network.py): each Context Path branch is upsampled, then refined by a 3x3 conv at 1/16 and
  1/8 (bilinear, align_corners=True); the auxiliary heads read those refined features.
- 'bisenet-ros-v1': this project's first layout (the shipped model): refine at 1/32 and 1/16,
  then upsample, auxiliary heads at 1/16 and 1/32; three-conv Spatial Path, BatchNorm after
  Xception39's depthwise convs, biased FFM attention, 256-wide auxiliary heads.
- 'coincheung': CoinCheung/BiSeNet's BiSeNetV1, to run his published weights: the 'torchseg'
  layout with nearest upsampling, a conv-BN FFM attention and 256/64 heads (coincheung.py).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bisenet_core.model.layers import ConvBNReLU, init_weights

# BiSeNet predicts at 1/8 of the network input (Spatial Path: three stride-2 convs).
OUTPUT_STRIDE = 8
# The Context Path downsamples 32x: the model zero-pads its input to a multiple of this
# (and crops the output back), so any network input size works; multiples of 32 waste nothing.
SIZE_DIVISOR = 32


class BiSeNetOutput(NamedTuple):
    """Network outputs.

    logits: N x C x ceil(H/8) x ceil(W/8). aux: training: (logits of the 1/16-stage branch,
    logits of the 1/32-stage branch), at (1/8, 1/16) in 'torchseg', (1/16, 1/32) in
    'bisenet-ros-v1'; () in eval mode.
    """

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]


class SpatialPath(nn.Sequential):
    """Three conv(stride 2)-BN-ReLU layers (+ an optional 1x1 conv): detail kept at 1/8.

    Args:
        channels: output channels of the three stride-2 layers.
        kernel_sizes: the first layer is 7x7 in the authors' code (a large field on raw
            pixels, like a ResNet stem), the other two 3x3.
        projection_channels: if > 0, a fourth 1x1 conv-BN-ReLU to this width (TorchSeg's
            `conv_1x1` to 128 after three 64-channel layers).
    """

    def __init__(self, channels: tuple[int, int, int] = (64, 64, 128),
                 kernel_sizes: tuple[int, int, int] = (7, 3, 3), projection_channels: int = 0):
        super().__init__()
        in_channels = 3
        for i, (out_channels, k) in enumerate(zip(channels, kernel_sizes), start=1):
            self.add_module(f'conv{i}', ConvBNReLU(in_channels, out_channels, k, stride=2))
            in_channels = out_channels
        if projection_channels:
            self.add_module(f'conv{len(channels) + 1}',
                            ConvBNReLU(in_channels, projection_channels, 1))
            in_channels = projection_channels
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

    The authors' order (TorchSeg): the 1/32 branch (ARM + global context) is upsampled to 1/16
    and refined there (`refine32`); added to the ARM'd 1/16 stage, upsampled to 1/8 and
    refined there (`refine16`). The refined features feed the auxiliary heads.

    Args:
        backbone: module returning the (1/16, 1/32) feature maps, with a `channels` attribute.
        channels: Context Path width.
        align_corners: of the bilinear upsampling (TorchSeg: True).
    """

    # Output strides of the features forward() returns for the two auxiliary heads.
    aux_strides = (8, 16)

    def __init__(self, backbone: nn.Module, channels: int = 128, align_corners: bool = True):
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
        self.align_corners = align_corners

    def upsample(self, x: torch.Tensor, size) -> torch.Tensor:
        """Bilinear resize to `size` (from tensor shapes: ONNX-friendly)."""
        return F.interpolate(x, size=size, mode='bilinear', align_corners=self.align_corners)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: padded input (H, W multiples of 32).

        Returns (1/8 context for the FFM, feature for aux_head16, feature for aux_head32).
        """
        feat16, feat32 = self.backbone(x)
        size8 = (feat16.shape[-2] * 2, feat16.shape[-1] * 2)
        # The pooled vector broadcasts over the 1/32 map (= upsampling a 1x1 map).
        branch32 = self.arm32(feat32) + self.global_context(feat32)
        context16 = self.refine32(self.upsample(branch32, feat16.shape[-2:]))
        context8 = self.refine16(self.upsample(self.arm16(feat16) + context16, size8))
        return context8, context8, context16


class RefineFirstContextPath(ContextPath):
    """The 'bisenet-ros-v1' order: refine each branch at its own stride, then upsample.

    `refine32` works at 1/32 and `refine16` at 1/16 (4x fewer MACs than TorchSeg's order),
    the 1/16 result is upsampled to 1/8 with no learned layer there; the auxiliary heads read
    the 1/16 and 1/32 features.
    """

    aux_strides = (16, 32)

    def __init__(self, backbone: nn.Module, channels: int = 128, align_corners: bool = False):
        super().__init__(backbone, channels, align_corners)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat16, feat32 = self.backbone(x)
        size8 = (feat16.shape[-2] * 2, feat16.shape[-1] * 2)
        context32 = self.refine32(self.arm32(feat32) + self.global_context(feat32))
        up32 = self.upsample(context32, feat16.shape[-2:])
        context16 = self.refine16(self.arm16(feat16) + up32)
        return self.upsample(context16, size8), context16, context32


class FeatureFusionModule(nn.Module):
    """FFM (Fig. 2c): concat, conv-BN-ReLU, then SE-style channel reweighting x + x * w.

    Args:
        in_channels: Spatial Path + Context Path channels.
        out_channels: fused width.
        reduction: squeeze ratio of the attention (1 in the authors' code).
        bias: biases in the two attention convs (TorchSeg: none).
        attention: what maps the pooled vector to the weights before the sigmoid, instead of
            the paper's 1x1 conv, ReLU, 1x1 conv (reduction and bias then do not apply).
    """

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 1,
                 bias: bool = False, attention: nn.Module | None = None):
        super().__init__()
        self.fuse = ConvBNReLU(in_channels, out_channels, 1)
        if attention is None:
            layers = [nn.Conv2d(out_channels, out_channels // reduction, 1, bias=bias),
                      nn.ReLU(inplace=True),
                      nn.Conv2d(out_channels // reduction, out_channels, 1, bias=bias)]
        else:
            layers = [attention]
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), *layers, nn.Sigmoid())

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
    """BiSeNet (Yu et al., ECCV 2018). Build it with `bisenet(num_classes, backbone, ...)`.

    forward(x: N x 3 x H x W normalised RGB, any H, W) -> BiSeNetOutput(logits, aux).

    Args:
        num_classes: output channels of the heads.
        spatial_path: the Spatial Path (has `out_channels`).
        context_path: the Context Path with its backbone (has `out_channels`, `aux_strides`).
        fusion_channels: Feature Fusion Module width.
        fusion_bias: biases in the FFM attention convs.
        fusion_attention: replaces the FFM's attention layers (FeatureFusionModule `attention`).
        head_channels: hidden width of the main head.
        aux_head_channels: hidden width of the auxiliary heads (training only).
    """

    def __init__(self, num_classes: int, spatial_path: SpatialPath, context_path: ContextPath,
                 fusion_channels: int = 256, fusion_bias: bool = False,
                 fusion_attention: nn.Module | None = None, head_channels: int = 64,
                 aux_head_channels: int = 128):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        self.num_classes = num_classes
        self.spatial_path = spatial_path
        self.context_path = context_path
        context_channels = context_path.out_channels
        self.ffm = FeatureFusionModule(spatial_path.out_channels + context_channels,
                                       fusion_channels, bias=fusion_bias,
                                       attention=fusion_attention)
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
        context8, branch16, branch32 = self.context_path(x)
        logits = self.head(self.ffm(spatial, context8))
        logits = _crop(logits, height, width, OUTPUT_STRIDE)
        if not self.training:
            return BiSeNetOutput(logits, ())
        stride16, stride32 = self.context_path.aux_strides
        aux = (_crop(self.aux_head16(branch16), height, width, stride16),
               _crop(self.aux_head32(branch32), height, width, stride32))
        return BiSeNetOutput(logits, aux)


def _crop(x: torch.Tensor, height, width, stride: int) -> torch.Tensor:
    """Keep the ceil(H/stride) x ceil(W/stride) cells that cover the unpadded image."""
    return x[:, :, :(height + stride - 1) // stride, :(width + stride - 1) // stride]
