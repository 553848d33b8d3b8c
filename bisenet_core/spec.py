"""ModelSpec: everything a set of weights needs to be used, stored with the weights.

Training writes it, export copies it into the ONNX metadata, the node and the replay
evaluator read it. Nothing else in the project keeps its own copy of these facts.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import Any

from bisenet_core.classes import DATASETS, IGNORE_INDEX, generated_palette
from bisenet_core.model import architectures, backbones
from bisenet_core.model.architectures import BISENET_ROS_V1, DEFAULT_ARCHITECTURE
from bisenet_core.model.bisenet import OUTPUT_STRIDE, SIZE_DIVISOR

# Largest network input side (output stride and size divisor: the model's, model/bisenet.py).
MAX_INPUT_SIDE = 8192

# ImageNet statistics, RGB order, on images scaled to [0, 1] ("mean subtraction" in the paper).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Names of the registered backbones and network layouts (bisenet_core/model/backbones.py,
# architectures.py; docs/model.md). 'torchseg' is the authors' own code and the default for
# new models; 'bisenet-ros-v1' this project's first layout (the shipped model); 'coincheung'
# CoinCheung/BiSeNet's BiSeNetV1, whose published weights training.import_weights converts.
BACKBONES = tuple(backbones.REGISTRY)
ARCHITECTURES = tuple(architectures.REGISTRY)
# What a model file, ONNX metadata or checkpoint config without the field was built with.
UNRECORDED_ARCHITECTURE = BISENET_ROS_V1


@dataclass(frozen=True)
class ModelSpec:
    """How to use a BiSeNet's weights.

    Args:
        backbone: Context Path backbone, one of BACKBONES.
        class_names: one name per output channel; the class id is the index.
        palette: one (r, g, b) per class, for colour masks.
        architecture: network layout, one of ARCHITECTURES (from_dict reads a dict without
            it as UNRECORDED_ARCHITECTURE, the layout of files written before the field).
        input_size: network input (width, height); multiples of SIZE_DIVISOR need no padding.
        aux_head_channels: hidden width of the auxiliary heads (training only, but their
            weights are in the file); 0 = the layout's own for the backbone.
        mean, std: RGB normalisation of [0, 1] images.
        ignore_index: label value that is not a class (void).
        output_stride: network output is input / output_stride.
        dataset: what it was trained on (free text, e.g. 'synthetic-camvid').
        info: provenance (iterations, held-out mIoU, config name, ...).
    """

    backbone: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    architecture: str = DEFAULT_ARCHITECTURE
    input_size: tuple[int, int] = (960, 720)
    aux_head_channels: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    ignore_index: int = IGNORE_INDEX
    output_stride: int = OUTPUT_STRIDE
    dataset: str = ''
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, 'class_names', tuple(self.class_names))
        object.__setattr__(self, 'palette', tuple(tuple(int(v) for v in c) for c in self.palette))
        object.__setattr__(self, 'input_size', tuple(int(v) for v in self.input_size))
        object.__setattr__(self, 'mean', tuple(float(v) for v in self.mean))
        object.__setattr__(self, 'std', tuple(float(v) for v in self.std))
        self.validate()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def validate(self) -> None:
        """Raise ValueError with a clear message if any field is unusable."""
        backbones.backbone_info(self.backbone)  # ValueError naming the known ones
        architectures.layout(self.architecture)
        if not isinstance(self.aux_head_channels, int) or self.aux_head_channels < 0:
            raise ValueError(f'aux_head_channels must be an integer >= 0, got '
                             f'{self.aux_head_channels!r}')
        if not 1 <= self.num_classes <= 255:
            raise ValueError(f'need 1..255 classes (labels are uint8), got {self.num_classes}')
        if len(self.palette) != self.num_classes:
            raise ValueError(f'palette has {len(self.palette)} colours for '
                             f'{self.num_classes} classes')
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.palette):
            raise ValueError('palette colours must be (r, g, b) in 0..255')
        check_input_size(*self.input_size)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError('mean and std need 3 values each, std > 0')
        if self.output_stride != OUTPUT_STRIDE:
            raise ValueError(f'output_stride must be {OUTPUT_STRIDE}, got {self.output_stride}')
        if self.ignore_index < self.num_classes:
            raise ValueError(f'ignore_index {self.ignore_index} collides with a class id')

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only (lists, str, int, float): safe for weights_only loading."""
        d = asdict(self)
        d['class_names'] = list(self.class_names)
        d['palette'] = [list(c) for c in self.palette]
        d['input_size'] = list(self.input_size)
        d['mean'] = list(self.mean)
        d['std'] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> 'ModelSpec':
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known.setdefault('architecture', UNRECORDED_ARCHITECTURE)
        return cls(**known)

    def replace(self, **changes) -> 'ModelSpec':
        return ModelSpec.from_dict({**self.to_dict(), **changes})


def check_input_size(width: int, height: int) -> None:
    """Network input sides must be SIZE_DIVISOR..MAX_INPUT_SIDE pixels (the model pads the rest)."""
    if not all(SIZE_DIVISOR <= int(v) <= MAX_INPUT_SIDE for v in (width, height)):
        raise ValueError(f'network input size {width}x{height}: each side must be '
                         f'{SIZE_DIVISOR}..{MAX_INPUT_SIDE} pixels')


def size_arg(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360), as an argparse `type=` (bad text: ArgumentTypeError)."""
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size {text!r} is not WIDTHxHEIGHT, e.g. 640x360'
                                         ) from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f'size {text!r} must be positive')
    return width, height


def spec_for_dataset(dataset: str, backbone: str = 'xception39',
                     input_size: tuple[int, int] = (960, 720), **kw) -> ModelSpec:
    """A ModelSpec with a known dataset's classes and palette ('camvid', 'cityscapes', ...)."""
    try:
        entries = DATASETS[dataset]
    except KeyError:
        raise ValueError(f'unknown dataset {dataset!r}; known: {sorted(DATASETS)}') from None
    names = [n for n, _ in entries]
    palette = [c for _, c in entries]
    return ModelSpec(backbone=backbone, class_names=names, palette=palette,
                     input_size=input_size, dataset=kw.pop('dataset_name', dataset), **kw)


def spec_for_classes(class_names, backbone: str = 'xception39',
                     input_size: tuple[int, int] = (960, 720), **kw) -> ModelSpec:
    """A ModelSpec for a user's own class list, with a generated palette."""
    names = list(class_names)
    return ModelSpec(backbone=backbone, class_names=names,
                     palette=generated_palette(len(names)), input_size=input_size, **kw)
