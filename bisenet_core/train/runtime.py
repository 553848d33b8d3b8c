"""Device, mixed precision and multi-process set-up: the one place that knows about hardware.

The training loop calls these and is otherwise the same on CPU, one GPU, or N processes
started by `torchrun` (gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bisenet_core.hardware import device_index, resolve_amp, resolve_device


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: device, rank/world size, autocast dtype (None = fp32)."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        """Mixed-precision context on CUDA; a no-op on CPU or with amp_dtype 'none'."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 needs loss scaling; bf16 and fp32 do not."""
        if self.amp_dtype == torch.float16:
            return torch.amp.GradScaler(self.device.type)
        return None


def setup_runtime(device: str = 'auto', amp_dtype: str = 'auto') -> Runtime:
    """Pick the device, join the process group if started by torchrun, resolve AMP.

    device and amp_dtype: bisenet_core.hardware's names ('auto', 'cpu', 'cuda', 'cuda:N';
    AMP_DTYPES). Under torchrun each process takes the GPU of its LOCAL_RANK.
    """
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    try:
        device = resolve_device(device, 'torch', warn=False)
    except RuntimeError as exc:
        raise RuntimeError(f'train.device: {exc} (use train.device=cpu or auto)') from None
    on_gpu = device.startswith('cuda')
    if on_gpu:
        if world_size > 1 and device != 'cuda':
            raise ValueError(f'train.device={device}: under torchrun each process takes the GPU '
                             'of its LOCAL_RANK; use train.device=cuda')
        index = local_rank if world_size > 1 else device_index(device)
        torch.cuda.set_device(index)
        torch_device = torch.device('cuda', index)
    else:
        torch_device = torch.device('cpu')
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend='nccl' if on_gpu else 'gloo')
    return Runtime(torch_device, rank, local_rank, world_size, resolve_amp(amp_dtype, torch_device))


def teardown_runtime() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Sum a tensor over ranks in place (no-op on one process)."""
    if runtime.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
