"""The network layouts (`ModelSpec.architecture`) and `bisenet()`, which builds one.

Each layout assembles the parts of bisenet.py (and coincheung.py) around a backbone of
backbones.REGISTRY; docs/model.md compares them. Adding a layout: a builder here (or in its
own module, like coincheung.py) and one line in REGISTRY.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from bisenet_core.model.backbones import backbone_info, build_backbone
from bisenet_core.model.bisenet import BiSeNet, ContextPath, RefineFirstContextPath, SpatialPath
from bisenet_core.model.coincheung import coincheung_bisenet

# The authors' own code (TorchSeg): the default for new models.
TORCHSEG = 'torchseg'
# This project's first layout (the shipped model).
BISENET_ROS_V1 = 'bisenet-ros-v1'
# CoinCheung/BiSeNet's BiSeNetV1, to run his published weights (coincheung.py).
COINCHEUNG = 'coincheung'
DEFAULT_ARCHITECTURE = TORCHSEG


def _torchseg_bisenet(num_classes: int, backbone: str, aux_head_channels: int) -> BiSeNet:
    """The authors' network (TorchSeg model/bisenet/cityscapes.bisenet.{X39,R18,R101})."""
    context_path = ContextPath(build_backbone(backbone), align_corners=True)
    head_channels, default_aux = backbone_info(backbone).torchseg_heads
    model = BiSeNet(num_classes, SpatialPath((64, 64, 64), (7, 3, 3), projection_channels=128),
                    context_path, fusion_bias=False, head_channels=head_channels,
                    aux_head_channels=aux_head_channels or default_aux)
    torchseg_init(model)
    return model


def torchseg_init(model: BiSeNet) -> None:
    """Initialise like TorchSeg: PyTorch's defaults in the backbone, fan_in Kaiming outside.

    TorchSeg network.py builds the backbone with no init of its own (PyTorch's default; the
    ImageNet weights usually replace it) and calls furnace/utils/init_func.py `init_weight(
    business_layer, nn.init.kaiming_normal_, ..., mode='fan_in', nonlinearity='relu')` on the
    rest: conv weights Kaiming-normal (fan_in), conv biases left at PyTorch's default,
    BatchNorm weight 1 and bias 0.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            module.reset_parameters()  # PyTorch's default (BatchNorm: weight 1, bias 0)
    for name, part in model.named_modules():
        if name.startswith('context_path.backbone'):
            continue
        if isinstance(part, nn.Conv2d):
            nn.init.kaiming_normal_(part.weight, mode='fan_in', nonlinearity='relu')


def _bisenet_ros_v1(num_classes: int, backbone: str, aux_head_channels: int) -> BiSeNet:
    """This project's first layout, kept so the models built with it load unchanged."""
    context_path = RefineFirstContextPath(build_backbone(backbone, depthwise_bn=True))
    return BiSeNet(num_classes, SpatialPath((64, 64, 128), (7, 3, 3)), context_path,
                   fusion_bias=True, head_channels=64,
                   aux_head_channels=aux_head_channels or 256)


def _coincheung_bisenet(num_classes: int, backbone: str, aux_head_channels: int) -> BiSeNet:
    """CoinCheung/BiSeNet's BiSeNetV1 (coincheung.py), his 64-wide auxiliary heads by default."""
    return coincheung_bisenet(num_classes, build_backbone(backbone),
                              aux_head_channels=aux_head_channels or 64)


@dataclass(frozen=True)
class Layout:
    """One network layout.

    Args:
        build: build(num_classes, backbone, aux_head_channels) -> a random BiSeNet;
            aux_head_channels 0 = the layout's own width.
        loss_align_corners: how training upsamples the logits to the labels for the loss
            (bilinear), as the layout's authors train it.
    """

    build: Callable[[int, str, int], BiSeNet]
    loss_align_corners: bool


REGISTRY: dict[str, Layout] = {
    # TorchSeg network.py BiSeNetHead: F.interpolate(..., align_corners=True) before the loss.
    TORCHSEG: Layout(_torchseg_bisenet, loss_align_corners=True),
    # The shipped model was trained with align_corners=False.
    BISENET_ROS_V1: Layout(_bisenet_ros_v1, loss_align_corners=False),
    # CoinCheung's BiSeNetOutput: nn.Upsample(mode='bilinear', align_corners=False).
    COINCHEUNG: Layout(_coincheung_bisenet, loss_align_corners=False),
}


def layout(architecture: str) -> Layout:
    """The registry entry of `architecture`, or ValueError naming the known layouts."""
    try:
        return REGISTRY[architecture]
    except KeyError:
        raise ValueError(f'unknown architecture {architecture!r}; choose one of '
                         f'{tuple(REGISTRY)}') from None


def bisenet(num_classes: int, backbone: str = 'xception39',
            architecture: str = DEFAULT_ARCHITECTURE, aux_head_channels: int = 0) -> BiSeNet:
    """A randomly initialised BiSeNet.

    backbone: a name of backbones.REGISTRY; architecture: one of REGISTRY ('torchseg', the
    authors' layout, by default); aux_head_channels: hidden width of the auxiliary heads
    (0: the layout's, for 'torchseg' the authors' width for the backbone). For
    ImageNet-initialised ResNets see `bisenet_core.model.pretrained.load_backbone_weights`.
    """
    backbone_info(backbone)  # an unknown name fails before any layer is built
    if aux_head_channels < 0:
        raise ValueError(f'aux_head_channels must be >= 0, got {aux_head_channels}')
    return layout(architecture).build(num_classes, backbone, aux_head_channels)
