"""Ranks for a fleet evaluation: `--workers N` processes here, or `torchrun` on many machines.

Either way every rank evaluates its share of the drives on its own device and the ranks meet
over torch.distributed with the gloo backend (CPU tensors, works on any machine and across
machines): rank 0 shares out the plan, the confusion matrices are all-reduced, rank 0 gathers
the per-drive records and writes the outputs.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bisenet_core.inference.backends import cpu_threads

# Ranks wait for each other in the collectives while the slowest one evaluates its share.
COLLECTIVE_TIMEOUT = timedelta(hours=12)


class RankError(RuntimeError):
    """A rank started by --workers failed (its last error line)."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def torchrun_world() -> World:
    """The world torchrun describes in the environment (one rank when not under torchrun)."""
    size = int(os.environ.get('WORLD_SIZE', '1'))
    return World(int(os.environ.get('RANK', '0')), size,
                 int(os.environ.get('LOCAL_RANK', '0')),
                 int(os.environ.get('LOCAL_WORLD_SIZE', str(size))))


def join(world: World, init_method: str = 'env://') -> None:
    if world.distributed and not dist.is_initialized():
        dist.init_process_group('gloo', init_method=init_method, rank=world.rank,
                                world_size=world.size, timeout=COLLECTIVE_TIMEOUT)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(obj: Any, world: World) -> Any:
    """Rank 0's object on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, world: World) -> list:
    """Every rank's object, in rank order (on every rank)."""
    if not world.distributed:
        return [obj]
    boxes: list = [None] * world.size
    dist.all_gather_object(boxes, obj)
    return boxes


def all_reduce_sum(array: np.ndarray, world: World) -> np.ndarray:
    """Sum an int64 array over the ranks (exact: integer counts)."""
    if not world.distributed:
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, np.int64))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.numpy()


def share_out(costs: Sequence[float], ranks: int) -> list[list[int]]:
    """Indices of the items each rank gets: biggest first onto the least loaded rank.

    Deterministic for given costs, so every rank could compute it; rank 0 does and
    broadcasts it anyway.
    """
    loads = [0.0] * ranks
    shares: list[list[int]] = [[] for _ in range(ranks)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(ranks), key=lambda r: (loads[r], r))
        shares[rank].append(index)
        loads[rank] += costs[index]
    return [sorted(share) for share in shares]


def rank_threads(world: World) -> int:
    """CPU threads per rank: the machine's cores split between the ranks on it."""
    return max(1, cpu_threads() // max(1, world.local_size))


def rank_device(device: str, world: World) -> str:
    """'auto'/'cuda' -> this rank's own GPU (cuda:LOCAL_RANK) where there is one."""
    if device in ('auto', 'cuda'):
        if torch.cuda.is_available():
            return f'cuda:{world.local_rank % torch.cuda.device_count()}'
        return 'cpu' if device == 'auto' else device
    return device


def spawn(fn: Callable[..., Any], workers: int, *args: Any) -> None:
    """Run fn(world, *args) in `workers` new processes on this machine, joined by gloo.

    The ranks meet through a file in a private temporary folder (no port to pick). A rank
    that fails makes the others stop and raises here.
    """
    folder = tempfile.mkdtemp(prefix='bisenet_drives_')
    try:
        init = f'file://{Path(folder) / "rendezvous"}'
        mp.spawn(_spawned, args=(fn, workers, init, args), nprocs=workers, join=True)
    except mp.ProcessRaisedException as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise RankError(f'a worker failed: {lines[-1] if lines else exc}') from None
    except mp.ProcessExitedException as exc:
        raise RankError(f'a worker died: {exc}') from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _spawned(rank: int, fn: Callable[..., Any], workers: int, init: str, args: tuple) -> None:
    # Values torchrun may have left in the environment would describe another world.
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE'):
        os.environ.pop(key, None)
    world = World(rank, workers, rank, workers)
    join(world, init)
    try:
        fn(world, *args)
    finally:
        leave()
