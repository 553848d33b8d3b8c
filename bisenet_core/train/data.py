"""Datasets and the training loader for a run config.

Formats map to their loaders in bisenet_core/data/formats.py; 'synthetic' first renders the
procedural drives into data.root (CamVid layout) when they are not there yet.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import ConcatDataset, DataLoader

from bisenet_core.atomic import atomic_write_bytes
from bisenet_core.data import TrainTransform, formats
from bisenet_core.data.synthetic import SETTINGS_FILE, make_dataset
from bisenet_core.spec import ModelSpec
from bisenet_core.train.config import ConfigError, RunConfig
from bisenet_core.train.runtime import Runtime
from bisenet_core.train.sampler import SeededDataset, StepBatchSampler


def build_datasets(config: RunConfig, runtime: Runtime | None = None,
                   spec: ModelSpec | None = None):
    """(train dataset, validation dataset) giving (uint8 RGB image, uint8 label) pairs.

    spec: the run's config.model_spec() when the caller has it (saves rebuilding it).
    """
    d = config.data
    if d.format == 'synthetic':
        prepare_synthetic(config, runtime)
    classes = (spec or config.model_spec()).num_classes
    train_set = open_dataset(d.format, d.root, d.train_split, classes)
    return train_set, open_dataset(d.format, d.root, d.val_split, classes)


class JoinedSplits(ConcatDataset):
    """Several splits of one dataset as one, with the class list of the parts.

    E.g. CamVid 'train+val', as the paper trains for its test-set numbers.
    """

    def __init__(self, parts):
        super().__init__(parts)
        self.class_names = parts[0].class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def open_dataset(data_format: str, root: str | Path, split: str,
                 num_classes: int | None = None):
    """The loader of `data_format` on root/split (synthetic drives use the CamVid layout).

    split: a split name, or several joined with '+' ('train+val').
    num_classes: the model's; a dataset with another class count is a ConfigError (its labels
    would index past the model's logits).
    """
    loader = formats.dataset_format(data_format).loader
    parts = [loader(Path(root), name) for name in split.split('+')]
    dataset = parts[0] if len(parts) == 1 else JoinedSplits(parts)
    if num_classes is not None and dataset.num_classes != num_classes:
        raise ConfigError(f'{data_format} data in {root} has {dataset.num_classes} classes but '
                          f'the model has {num_classes}; they must match (training: '
                          'model.dataset or model.classes)')
    return dataset


def prepare_synthetic(config: RunConfig, runtime: Runtime | None = None) -> None:
    """Render the synthetic drives into data.root unless a previous run already did."""
    d, s = config.data, config.data.synthetic
    root = Path(d.root)
    is_main = runtime is None or runtime.is_main
    settings = dataclasses.asdict(s)
    settings['size'] = list(s.size)
    marker = root / SETTINGS_FILE
    if is_main and marker.is_file() and json.loads(marker.read_text()) != settings:
        raise ConfigError(f'data.root {root} holds synthetic drives made with other settings '
                          f'({marker}); remove the folder or choose another data.root')
    if is_main and not marker.is_file():
        print(f'generating the synthetic drives into {root}: {len(s.train_seeds)} train x '
              f'{s.train_frames}, val {s.val_frames}, test {s.test_frames} frames at '
              f'{s.size[0]}x{s.size[1]}')
        make_dataset(root, train_seeds=s.train_seeds, train_frames=s.train_frames,
                     val_seed=s.val_seed, val_frames=s.val_frames, test_seed=s.test_seed,
                     test_frames=s.test_frames, size=tuple(s.size))
        # Written last: its presence means the drives are complete.
        atomic_write_bytes((json.dumps(settings, indent=2) + '\n').encode(), marker)
    if runtime is not None and runtime.distributed:
        dist.barrier()  # other ranks wait for rank 0 to finish writing


def build_train_loader(train_set, config: RunConfig, runtime: Runtime, micro_batch: int,
                       start_batch: int = 0, spec: ModelSpec | None = None) -> DataLoader:
    """Endless loader of augmented micro-batches.

    Yields (images N x 3 x H x W float, labels N x H x W int64), starting at micro-batch
    `start_batch` of the run's fixed sequence. spec: as for build_datasets.
    """
    d = config.data
    spec = spec or config.model_spec()
    # No private RNG: the transform draws from the global NumPy RNG, which SeededDataset
    # seeds per sample, so every crop/flip follows from (seed, epoch, image).
    transform = TrainTransform(crop_size=tuple(d.crop_size), scales=tuple(d.scales),
                               flip=d.flip, color_jitter=d.color_jitter, mean=spec.mean,
                               std=spec.std, ignore_index=spec.ignore_index)
    sampler = StepBatchSampler(len(train_set), micro_batch, start_step=start_batch,
                               seed=config.train.seed, num_replicas=runtime.world_size,
                               rank=runtime.rank)
    return DataLoader(SeededDataset(train_set, transform), batch_sampler=sampler,
                      num_workers=d.num_workers, pin_memory=runtime.device.type == 'cuda',
                      persistent_workers=d.num_workers > 0)
