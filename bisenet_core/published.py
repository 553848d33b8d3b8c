"""Published BiSeNet weights -> model files: CoinCheung/BiSeNet's BiSeNetV1 checkpoints.

CoinCheung/BiSeNet (MIT), the most used BiSeNet port, publishes BiSeNetV1 weights (ResNet-18
Context Path) trained on Cityscapes, COCO-Stuff and ADE20k as plain state dicts of its
`BiSeNetV1(n_classes, aux_mode='train')`. `import_coincheung` maps every key onto our
'coincheung' architecture (bisenet_core.model.coincheung), checks every tensor's shape,
refuses a file with missing or unexpected keys by name, and writes a normal model file with
the data set's classes, palette, CoinCheung's normalisation and a network input size.

The accuracy figures stored with the model (`info['reported_miou']`) are CoinCheung's own
(his README, single scale), not measured here.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import torch

from bisenet_core.model import bisenet
from bisenet_core.model.architectures import COINCHEUNG
from bisenet_core.model.pretrained import WeightsFileError, read_state_dict, state_dict_mismatch
from bisenet_core.modelfile import save_model
from bisenet_core.spec import ModelSpec, spec_for_dataset

SOURCE = 'CoinCheung/BiSeNet BiSeNetV1'
BACKBONE = 'resnet18'
# The network's output layer in CoinCheung's names: its first dimension is the class count.
CLASSIFIER_KEY = 'conv_out.conv_out.weight'


class PublishedDataset(NamedTuple):
    """What CoinCheung's weights for one data set need besides the tensors.

    mean, std: his RGB normalisation of [0, 1] images (lib/data/*.py, 'rgb' order).
    input_size: network input (width, height) we default to: the size his single-scale
        figure was measured at (multiples of 32, as his code needs).
    reported_miou: his README's single-scale val mIoU of the published file.
    url: where he publishes the file (the user downloads it; nothing here downloads).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int]
    reported_miou: float
    url: str


_RELEASES = 'https://github.com/CoinCheung/BiSeNet/releases/download/0.0.0/'
COINCHEUNG_DATASETS = {
    # Full-resolution frames; single-scale evaluation at 2048x1024.
    'cityscapes': PublishedDataset((0.3257, 0.3690, 0.3223), (0.2112, 0.2148, 0.2115),
                                   (2048, 1024), 0.7544, _RELEASES + 'model_final_v1_city_new.pth'),
    # COCO images are at most 640 px a side, mostly 640x480; evaluated at their own size.
    'cocostuff': PublishedDataset((0.46962251, 0.4464104, 0.40718787),
                                  (0.27469736, 0.27012361, 0.28515933),
                                  (640, 480), 0.3149, _RELEASES + 'model_final_v1_coco_new.pth'),
    # Evaluated with the short side at 512, the long side rounded up to a multiple of 32
    # (704 for the typical 4:3 image).
    'ade20k': PublishedDataset((0.49343230, 0.46819794, 0.43106043),
                               (0.25680755, 0.25506608, 0.27422913),
                               (704, 512), 0.3615, _RELEASES + 'model_final_v1_ade20k.pth'),
}

# CoinCheung's module names -> ours, as prefix pairs (longest prefix wins; both directions).
KEY_PREFIXES = (
    ('cp.resnet.', 'context_path.backbone.'),
    ('cp.arm16.conv.', 'context_path.arm16.conv.'),
    ('cp.arm16.conv_atten.', 'context_path.arm16.attention.1.'),
    ('cp.arm16.bn_atten.', 'context_path.arm16.attention.2.'),
    ('cp.arm32.conv.', 'context_path.arm32.conv.'),
    ('cp.arm32.conv_atten.', 'context_path.arm32.attention.1.'),
    ('cp.arm32.bn_atten.', 'context_path.arm32.attention.2.'),
    ('cp.conv_avg.', 'context_path.global_context.1.'),
    ('cp.conv_head32.', 'context_path.refine32.'),  # refines the 1/32 branch, at 1/16
    ('cp.conv_head16.', 'context_path.refine16.'),  # refines the 1/16 branch, at 1/8
    ('sp.conv_out.', 'spatial_path.conv4.'),
    ('sp.', 'spatial_path.'),
    ('ffm.convblk.', 'ffm.fuse.'),
    ('ffm.conv.', 'ffm.attention.1.conv.'),
    ('ffm.bn.', 'ffm.attention.1.bn.'),
    ('conv_out.conv.', 'head.conv.'),
    ('conv_out.conv_out.', 'head.classifier.'),
    ('conv_out16.conv.', 'aux_head16.conv.'),  # the aux head of the 1/16-stage branch
    ('conv_out16.conv_out.', 'aux_head16.classifier.'),
    ('conv_out32.conv.', 'aux_head32.conv.'),
    ('conv_out32.conv_out.', 'aux_head32.classifier.'),
)


class CheckpointMismatchError(WeightsFileError):
    """The checkpoint is not CoinCheung's BiSeNetV1 for that data set (names the keys)."""


def _rename(key: str, pairs) -> str | None:
    """`key` with its longest matching prefix replaced, or None when no prefix matches."""
    matches = [(old, new) for old, new in pairs if key.startswith(old)]
    if not matches:
        return None
    old, new = max(matches, key=lambda pair: len(pair[0]))
    return new + key[len(old):]


_OUR_PREFIXES = tuple((ours, theirs) for theirs, ours in KEY_PREFIXES)


def ours_to_coincheung(key: str) -> str | None:
    """The key CoinCheung gives one of ours (to name missing keys in the file's terms)."""
    return _rename(key, _OUR_PREFIXES)


def convert_state_dict(source: dict[str, torch.Tensor], model: torch.nn.Module,
                       path: str | os.PathLike = 'checkpoint') -> dict[str, torch.Tensor]:
    """The checkpoint's state dict in our names, float32, checked against `model` key by key.

    Raises CheckpointMismatchError naming (in CoinCheung's terms) every missing key,
    every unexpected key and every tensor of the wrong shape.
    """
    state = model.state_dict()
    ours_by_theirs = {ours_to_coincheung(k): k for k in state}
    if None in ours_by_theirs:  # our model has a part the map does not cover: a bug here
        raise AssertionError(f'no CoinCheung name for {ours_by_theirs[None]}')
    # Compared in his names, so every message names keys as his file has them.
    target = {theirs: state[ours] for theirs, ours in ours_by_theirs.items()}
    missing, unexpected, wrong_shape = state_dict_mismatch(source, target)
    problems = [f'{what} {", ".join(items[:8])}{" ..." if len(items) > 8 else ""}'
                for what, items in (('missing', missing), ('unexpected', unexpected),
                                    ('wrong shape (file vs model)', wrong_shape)) if items]
    if problems:
        raise CheckpointMismatchError(
            f'checkpoint {path}: not a {SOURCE} state dict with {model.num_classes} classes: '
            + '; '.join(problems))
    return {ours_by_theirs[k]: (v.float() if v.is_floating_point() else v)
            for k, v in source.items()}


def import_coincheung(checkpoint: str | os.PathLike, dataset: str, out: str | os.PathLike,
                      input_size: tuple[int, int] | None = None) -> tuple[Path, ModelSpec]:
    """Convert CoinCheung's BiSeNetV1 checkpoint for `dataset` into a model file at `out`.

    Args:
        checkpoint: his .pth (a state dict; 'module.' prefixes and {'state_dict': ...}
            wrappers are accepted).
        dataset: 'cityscapes', 'cocostuff' or 'ade20k' (class list, palette, normalisation).
        out: model file to write (atomically).
        input_size: network (width, height); default the size his figure was measured at.
    Returns (path written, spec). Raises WeightsFileError / CheckpointMismatchError (one
    line, naming the file) and ValueError for an unknown dataset.
    """
    try:
        published = COINCHEUNG_DATASETS[dataset]
    except KeyError:
        raise ValueError(f'unknown dataset {dataset!r}; CoinCheung publishes '
                         f'{sorted(COINCHEUNG_DATASETS)}') from None
    path = Path(checkpoint)
    source = read_state_dict(path, 'checkpoint', prefixes=('module.',))
    spec = spec_for_dataset(dataset, backbone=BACKBONE, architecture=COINCHEUNG,
                            input_size=input_size or published.input_size,
                            mean=published.mean, std=published.std)
    if CLASSIFIER_KEY in source and source[CLASSIFIER_KEY].shape[0] != spec.num_classes:
        raise CheckpointMismatchError(
            f'checkpoint {path}: {source[CLASSIFIER_KEY].shape[0]} classes '
            f'({CLASSIFIER_KEY}), but {dataset} has {spec.num_classes}: wrong --dataset?')
    model = bisenet(spec.num_classes, BACKBONE, COINCHEUNG)
    model.load_state_dict(convert_state_dict(source, model, path), strict=False)
    spec = spec.replace(info={
        'source': SOURCE, 'checkpoint': path.name, 'sha256': _sha256(path),
        'reported_miou': published.reported_miou,
        'note': "reported_miou is CoinCheung's single-scale val figure, not measured here",
    })
    return save_model(out, model.eval(), spec), spec


def _sha256(path: Path) -> str:
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()
