"""Resumable data order and augmentation: everything random about a batch follows from the step.

Each optimiser step draws its images from a per-epoch permutation (DistributedSampler, seeded
by seed + epoch, sharded over ranks) and each image gets its own augmentation seed derived
from (seed, epoch, index). So a run resumed at step k sees exactly the batches, crops and
flips an uninterrupted run would have seen, whatever the number of loader workers.
"""
from __future__ import annotations

import random
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


class StepBatchSampler:
    """Yields, for step = start_step, start_step + 1, ..., a list of (index, sample_seed).

    Args:
        dataset_len: images in the training set.
        batch_size: images per rank per yielded batch (a micro-batch).
        start_step: first micro-batch index to yield (resume = step * grad_accum).
        seed: run seed.
        num_replicas, rank: DDP sharding (1, 0 on one process).
        num_batches: stop after this many micro-batches in total (None = endless).
    """

    def __init__(self, dataset_len: int, batch_size: int, start_step: int = 0, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, num_batches: int | None = None):
        self.sampler = DistributedSampler(range(dataset_len), num_replicas=num_replicas,
                                          rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.per_epoch = len(self.sampler) // batch_size
        if self.per_epoch == 0:
            raise ValueError(f'training set of {dataset_len} images is smaller than one batch '
                             f'of {batch_size} per process')
        self.batch_size = batch_size
        self.start_step = start_step
        self.seed = seed
        self.num_batches = num_batches

    def __len__(self) -> int:
        return max(0, (self.num_batches or 0) - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while self.num_batches is None or step < self.num_batches:
            epoch, position = divmod(step, self.per_epoch)
            self.sampler.set_epoch(epoch)
            order = list(self.sampler)
            for b in range(position, self.per_epoch):
                if self.num_batches is not None and step >= self.num_batches:
                    return
                indices = order[b * self.batch_size:(b + 1) * self.batch_size]
                yield [(i, sample_seed(self.seed, epoch, i)) for i in indices]
                step += 1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed unique to (run seed, epoch, image)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededDataset(Dataset):
    """Applies `transform` to dataset[index] with all global RNGs seeded from the sample seed.

    Indexed by (index, sample_seed) pairs from StepBatchSampler. Seeding python, NumPy and
    torch makes any transform reproducible, whichever RNG it uses.
    """

    def __init__(self, dataset, transform: Callable):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        image, label = self.dataset[index]
        return self.transform(image, label)
