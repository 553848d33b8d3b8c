"""Typed training configuration, loaded from commented YAML and validated.

A run's config has three parts: `model` (what the weights are: backbone, classes, network
input size; this becomes the ModelSpec), `data` (where the images are and how they are
augmented) and `train` (the optimisation recipe and the run's bookkeeping). Every field is
read by the code it names; unknown keys are an error so a typo never silently does nothing.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bisenet_core.classes import DATASETS
from bisenet_core.data import formats
from bisenet_core.hardware import AMP_DTYPES, DEVICES, is_device
from bisenet_core.model import architectures, backbones
from bisenet_core.spec import (DEFAULT_ARCHITECTURE, IMAGENET_MEAN, IMAGENET_STD, MAX_INPUT_SIDE,
                               SIZE_DIVISOR, UNRECORDED_ARCHITECTURE, ModelSpec,
                               spec_for_classes, spec_for_dataset)
from bisenet_core.train.evaluation import PROTOCOLS
from bisenet_core.train.loss import MIN_KEPT_OF
from bisenet_core.train.optim import HEAD_PARTS


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range (one-line message naming the key)."""


@dataclass
class ModelConfig:
    """What the trained weights are; stored in the model file as its ModelSpec.

    Args:
        backbone: Context Path backbone, a name of bisenet_core/model/backbones.py REGISTRY.
        architecture: network layout, a name of bisenet_core/model/architectures.py REGISTRY
            ('torchseg': the authors').
        dataset: a known class list (bisenet_core.classes.DATASETS: 'camvid', 'cityscapes',
            ...) or '' with `classes` given (or, for a data.format whose folder holds its
            class list, such as folder, '' to use data.root/classes.txt).
        classes: your own class names (index = label id) when `dataset` has no class list.
        input_size: network input [width, height] the node runs at (32..8192 per side; the
            model zero-pads to a multiple of 32 itself, so e.g. CamVid's 960x720 needs no
            resampling).
        aux_head_channels: hidden width of the two auxiliary heads; 0 = the layout's own
            (for 'torchseg' the authors' width for the backbone).
        pretrained: optional ImageNet backbone weights (torchvision/timm ResNet state dict).
        init_from: optional model file (.pt) to fine-tune: every weight of its network is
            loaded except those whose shape differs (the classifiers, when the class list
            differs), which start fresh. Its backbone, architecture, mean and std must be
            the ones here (training.train --init-from FILE sets them from the file).
        mean, std: RGB normalisation of [0, 1] images the network learns with (ImageNet's;
            a fine-tuned network keeps the one it was trained with).
    """

    backbone: str = 'xception39'
    architecture: str = DEFAULT_ARCHITECTURE
    dataset: str = 'camvid'
    classes: list[str] = field(default_factory=list)
    input_size: tuple[int, int] = (960, 704)
    aux_head_channels: int = 0
    pretrained: str = ''
    init_from: str = ''
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass
class SyntheticConfig:
    """Procedural CamVid-layout drives (format 'synthetic'), generated once into data.root.

    Args:
        train_seeds: one training drive per seed.
        train_frames: frames per training drive.
        val_seed, val_frames: the held-out validation drive (a street never trained on).
        test_seed, test_frames: the held-out test drive.
        size: frame [width, height].
    """

    train_seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])
    train_frames: int = 100
    val_seed: int = 1001
    val_frames: int = 60
    test_seed: int = 2001
    test_frames: int = 100
    size: tuple[int, int] = (480, 360)


@dataclass
class DataConfig:
    """Where the images are and how training crops are augmented (paper section 4.1).

    Args:
        format: a name of bisenet_core/data/formats.py REGISTRY (cityscapes, camvid, ...).
        root: dataset folder.
        train_split, val_split: split names of the loader.
        crop_size: random crop [width, height] for training.
        scales: one is drawn per image to rescale it before cropping
            (paper: 0.75, 1.0, 1.5, 1.75, 2.0).
        flip: random horizontal flips (probability 0.5, paper).
        color_jitter: brightness/contrast/saturation strength (0 = off).
        num_workers: data loader processes per rank.
        synthetic: generator settings for format 'synthetic'.
    """

    format: str = 'camvid'
    root: str = 'data/camvid'
    train_split: str = 'train'
    val_split: str = 'val'
    crop_size: tuple[int, int] = (960, 720)
    scales: list[float] = field(default_factory=lambda: [0.75, 1.0, 1.5, 1.75, 2.0])
    flip: bool = True
    color_jitter: float = 0.0
    num_workers: int = 4
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class TrainConfig:
    """The optimisation recipe (paper section 4.1 + TorchSeg's OHEM) and run bookkeeping.

    Args:
        batch_size: images per optimiser step over all ranks and accumulation steps (paper: 16).
        grad_accum: micro-batches per optimiser step (memory relief; same recipe).
        iterations: optimiser steps.
        lr: base learning rate (paper: 2.5e-2).
        momentum, weight_decay: SGD (paper: 0.9, 1e-4; no decay on BatchNorm and biases).
        warmup_iters: linear warm-up steps before the poly decay.
        warmup_factor: lr fraction at step 0 of the warm-up.
        poly_power: lr = base * (1 - t)^power (paper: 0.9).
        head_lr_multiplier: lr multiplier for the parts in head_lr_parts (TorchSeg: 10).
        head_lr_parts: the parts that get head_lr_multiplier x lr, of 'spatial_path',
            'context' (global context, ARMs, refine convs), 'ffm', 'heads' (main + aux);
            the backbone always trains at lr. TorchSeg: all four for ResNets, ffm and heads
            for Xception39.
        ohem_thresh: keep pixels whose true-class probability is below this.
        ohem_min_fraction: but at least this fraction of the pixels (the hardest).
        ohem_min_fraction_of: 'valid' (labelled pixels) or 'all' (every pixel of the batch,
            as TorchSeg counts min_kept; if that exceeds the labelled pixels, all labelled
            pixels count).
        label_downsample: 1 = the loss sees full-resolution labels (logits upsampled);
            8 = labels nearest-downsampled to the 1/8 output (TorchSeg's ".speed" recipes,
            gt_down_sampling = 8).
        aux_weight: alpha, weight of each of the two auxiliary losses (paper: 1).
        freeze_bn: keep BatchNorm in eval mode while training (running statistics frozen,
            affine weights still learn): for fine-tuning with small batches.
        amp_dtype: auto | bf16 | fp16 | none; mixed precision is used on CUDA only.
        device: auto | cpu | cuda | cuda:N (bisenet_core.hardware).
        sync_bn: SyncBatchNorm when training on several processes.
        eval_interval: validate every N steps (and at the end); 0 = only at the end.
        eval_protocol: how validation predicts, one of evaluation.PROTOCOLS (training.evaluate
            --protocol; 'full' = the model's input size, scored at full label resolution).
        eval_max_images: cap validation images (0 = all) for quick checks.
        log_interval: console/CSV log every N steps.
        checkpoint_interval: write last.ckpt every N steps (and at the end / on Ctrl-C).
        seed: one seed for initialisation, data order and augmentation.
        threads: torch CPU threads (0 = torch default).
        output_dir: checkpoints, logs and model files go here.
    """

    batch_size: int = 16
    grad_accum: int = 1
    iterations: int = 80000
    lr: float = 2.5e-2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 1000
    warmup_factor: float = 0.1
    poly_power: float = 0.9
    head_lr_multiplier: float = 1.0
    head_lr_parts: list[str] = field(default_factory=lambda: list(HEAD_PARTS))
    ohem_thresh: float = 0.7
    ohem_min_fraction: float = 1 / 16
    ohem_min_fraction_of: str = 'valid'
    label_downsample: int = 1
    aux_weight: float = 1.0
    freeze_bn: bool = False
    amp_dtype: str = 'auto'
    device: str = 'auto'
    sync_bn: bool = True
    eval_interval: int = 2000
    eval_protocol: str = 'full'
    eval_max_images: int = 0
    log_interval: int = 20
    checkpoint_interval: int = 1000
    seed: int = 0
    threads: int = 0
    output_dir: str = 'runs/train'


@dataclass
class RunConfig:
    """A whole training run: name + model + data + train.

    Args:
        name: run name (recorded in the model file).
        source: which published recipe the values follow (free text, e.g. "TorchSeg
            cityscapes.bisenet.R18 @99ab13df"); recorded in the model file.
    """

    name: str = 'bisenet'
    source: str = ''
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad key."""
        m, d, t = self.model, self.data, self.train
        # The registries (bisenet_core/model/, bisenet_core/data/formats.py) say what exists.
        _check(m.backbone in backbones.REGISTRY, 'model.backbone', m.backbone,
               f'one of {tuple(backbones.REGISTRY)}')
        _check(m.architecture in architectures.REGISTRY, 'model.architecture', m.architecture,
               f'one of {tuple(architectures.REGISTRY)}')
        data_format = formats.REGISTRY.get(d.format)
        if m.classes:
            _check(1 <= len(m.classes) <= 255, 'model.classes', len(m.classes), '1..255 names')
        elif m.dataset or data_format is None or data_format.read_classes is None:
            # (a format whose folder holds its class list may leave model.dataset empty)
            _check(m.dataset in DATASETS, 'model.dataset', m.dataset,
                   f'one of {sorted(DATASETS)} (or give model.classes)')
        _check(m.aux_head_channels >= 0, 'model.aux_head_channels', m.aux_head_channels,
               '>= 0 (0: the layout\'s width)')
        _check(not (m.pretrained and m.init_from), 'model.init_from', m.init_from,
               'empty when model.pretrained is given (the file holds the whole network)')
        _check(min(m.std) > 0, 'model.std', list(m.std), 'three values > 0')
        _check_size('model.input_size', m.input_size)
        _check(all(SIZE_DIVISOR <= v <= MAX_INPUT_SIDE for v in m.input_size),
               'model.input_size', list(m.input_size),
               f'{SIZE_DIVISOR}..{MAX_INPUT_SIDE} pixels per side')
        _check(data_format is not None, 'data.format', d.format,
               f'one of {tuple(formats.REGISTRY)}')
        _check(bool(d.root), 'data.root', d.root, 'a folder')
        _check_size('data.crop_size', d.crop_size)
        _check(bool(d.scales) and min(d.scales) > 0, 'data.scales', d.scales,
               'a list of positive scales')
        _check(0 <= d.color_jitter < 1, 'data.color_jitter', d.color_jitter, 'in [0, 1)')
        _check(d.num_workers >= 0, 'data.num_workers', d.num_workers, '>= 0')
        s = d.synthetic
        _check(bool(s.train_seeds), 'data.synthetic.train_seeds', s.train_seeds, 'seeds')
        for key in ('train_frames', 'val_frames'):
            _check(getattr(s, key) >= 1, f'data.synthetic.{key}', getattr(s, key), '>= 1')
        _check(s.test_frames >= 0, 'data.synthetic.test_frames', s.test_frames, '>= 0')
        held_out = {s.val_seed, s.test_seed}
        _check(len(held_out) == 2 and not held_out & set(s.train_seeds), 'data.synthetic.val_seed',
               [s.val_seed, s.test_seed], 'val and test seeds different from each other and '
               'from the train seeds')
        _check_size('data.synthetic.size', s.size)
        _check(t.batch_size >= 2, 'train.batch_size', t.batch_size, '>= 2')
        _check(t.grad_accum >= 1, 'train.grad_accum', t.grad_accum, '>= 1')
        _check(t.batch_size % t.grad_accum == 0, 'train.grad_accum', t.grad_accum,
               f'a divisor of train.batch_size ({t.batch_size})')
        _check(t.iterations >= 1, 'train.iterations', t.iterations, '>= 1')
        _check(t.lr > 0, 'train.lr', t.lr, '> 0')
        _check(0 <= t.momentum < 1, 'train.momentum', t.momentum, 'in [0, 1)')
        _check(t.weight_decay >= 0, 'train.weight_decay', t.weight_decay, '>= 0')
        _check(0 <= t.warmup_iters < t.iterations, 'train.warmup_iters', t.warmup_iters,
               f'in [0, train.iterations={t.iterations})')
        _check(0 < t.warmup_factor <= 1, 'train.warmup_factor', t.warmup_factor, 'in (0, 1]')
        _check(t.poly_power >= 0, 'train.poly_power', t.poly_power, '>= 0')
        _check(t.head_lr_multiplier > 0, 'train.head_lr_multiplier', t.head_lr_multiplier, '> 0')
        _check(set(t.head_lr_parts) <= set(HEAD_PARTS)
               and len(set(t.head_lr_parts)) == len(t.head_lr_parts),
               'train.head_lr_parts', t.head_lr_parts, f'distinct names of {HEAD_PARTS}')
        _check(0 < t.ohem_thresh <= 1, 'train.ohem_thresh', t.ohem_thresh, 'in (0, 1]')
        _check(0 <= t.ohem_min_fraction <= 1, 'train.ohem_min_fraction', t.ohem_min_fraction,
               'in [0, 1]')
        _check(t.ohem_min_fraction_of in MIN_KEPT_OF, 'train.ohem_min_fraction_of',
               t.ohem_min_fraction_of, f'one of {MIN_KEPT_OF}')
        _check(t.label_downsample >= 1 and all(v % t.label_downsample == 0 for v in d.crop_size),
               'train.label_downsample', t.label_downsample,
               f'>= 1 and a divisor of data.crop_size {list(d.crop_size)}')
        _check(t.eval_protocol in PROTOCOLS, 'train.eval_protocol', t.eval_protocol,
               f'one of {PROTOCOLS}')
        _check(t.aux_weight >= 0, 'train.aux_weight', t.aux_weight, '>= 0')
        _check(t.amp_dtype in AMP_DTYPES, 'train.amp_dtype', t.amp_dtype, f'one of {AMP_DTYPES}')
        _check(is_device(t.device), 'train.device', t.device,
               f'one of {DEVICES} or cuda:N')
        for key in ('eval_interval', 'eval_max_images', 'checkpoint_interval', 'threads'):
            _check(getattr(t, key) >= 0, f'train.{key}', getattr(t, key), '>= 0')
        _check(t.log_interval >= 1, 'train.log_interval', t.log_interval, '>= 1')
        _check(bool(t.output_dir), 'train.output_dir', t.output_dir, 'a folder')

    def model_spec(self, info: dict[str, Any] | None = None) -> ModelSpec:
        """The ModelSpec the trained weights are saved with."""
        m = self.model
        data_format = formats.REGISTRY[self.data.format]
        kw = dict(backbone=m.backbone, architecture=m.architecture,
                  input_size=tuple(m.input_size), aux_head_channels=m.aux_head_channels,
                  mean=m.mean, std=m.std, info=dict(info or {}))
        classes = m.classes
        if not classes and not m.dataset and data_format.read_classes is not None:
            classes = data_format.read_classes(Path(self.data.root))  # the data's own list
        if classes:
            return spec_for_classes(classes, dataset=m.dataset or self.data.format, **kw)
        dataset_name = data_format.spec_dataset or m.dataset
        return spec_for_dataset(m.dataset, dataset_name=dataset_name, **kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples): YAML- and weights_only-safe."""
        return _plain(dataclasses.asdict(self))


def load_config(path: str | os.PathLike | None = None,
                overrides: list[str] | tuple[str, ...] = (),
                base: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (or `base`, or the defaults), apply overrides, validate.

    Overrides are `section.key=value` strings.

    Override values are parsed as YAML, so `train.lr=0.01`, `data.scales=[0.5,1.5]` and
    `train.sync_bn=false` all work.
    """
    raw: dict[str, Any] = copy.deepcopy(base) if base is not None else {}
    source = 'checkpoint' if base is not None else 'defaults'
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f'config {path}: cannot read: {exc.strerror or exc}') from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            first_line = str(exc).splitlines()[0]
            raise ConfigError(f'config {path}: not valid YAML: {first_line}') from None
        if not isinstance(raw, dict):
            raise ConfigError(f'config {path}: expected a mapping at the top level')
    for item in overrides:
        key, sep, value = item.partition('=')
        if not sep or not key.strip():
            raise ConfigError(f'override {item!r}: expected section.key=value, e.g. train.lr=0.01')
        try:
            parsed = yaml.safe_load(value) if value.strip() else ''
        except yaml.YAMLError:
            parsed = value
        node = raw
        parts = key.strip().split('.')
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f'override {item!r}: {part} is not a section')
        node[parts[-1]] = parsed
    try:
        config = _build(RunConfig, raw, '')
        config.validate()
    except ConfigError as exc:
        raise ConfigError(f'config {source}: {exc}') from None
    return config


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Rebuild a validated RunConfig from `RunConfig.to_dict()` (e.g. from a checkpoint).

    A config saved before `model.architecture` existed describes a 'bisenet-ros-v1' network.
    """
    raw = copy.deepcopy(raw)
    raw.setdefault('model', {}).setdefault('architecture', UNRECORDED_ARCHITECTURE)
    config = _build(RunConfig, raw, '')
    config.validate()
    return config


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f'{key}: got {value!r}, expected {expected}')


def _check_size(key: str, size) -> None:
    ok = len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
    _check(ok, key, list(size), '[width, height], positive integers')


def _build(cls, raw: Any, prefix: str):
    """Turn a nested dict into dataclass `cls`, type-checking every leaf."""
    if not isinstance(raw, dict):
        raise ConfigError(f'{prefix or "config"}: expected a mapping, got {raw!r}')
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f'{prefix}{unknown[0]}: unknown key (known: {", ".join(sorted(names))})')
    kwargs = {}
    for name, value in raw.items():
        key = f'{prefix}{name}'
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f'{key}.')
        else:
            kwargs[name] = _coerce(hint, value, key)
    return cls(**kwargs)


def _coerce(hint, value: Any, key: str) -> Any:
    """Check a YAML value against a field's type (int -> float allowed; lists -> tuples)."""
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{key}: got {value!r}, expected a list')
        args = typing.get_args(hint)
        if origin is tuple:
            if len(value) != len(args):
                raise ConfigError(f'{key}: got {value!r}, expected {len(args)} values')
            return tuple(_coerce(a, v, key) for a, v in zip(args, value))
        return [_coerce(args[0], v, key) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f'{key}: got {value!r}, expected true or false')
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f'{key}: got {value!r}, expected an integer')
        return value
    if hint is float:
        if isinstance(value, str):
            # YAML 1.1 reads '1e-4' (no dot) as a string; accept it as the number it is.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f'{key}: got {value!r}, expected a number')
        return float(value)
    if hint is str:
        if value is None:
            return ''
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f'{key}: got {value!r}, expected a string')
        return str(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
