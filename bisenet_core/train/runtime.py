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
    """Pick the device, join the process group if started by torchrun, resolve AMP."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('train.device is cuda but torch sees no CUDA device '
                           '(use train.device=cpu or auto)')
    if device == 'cuda':
        torch.cuda.set_device(local_rank)
        torch_device = torch.device('cuda', local_rank)
    else:
        torch_device = torch.device('cpu')
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend='nccl' if device == 'cuda' else 'gloo')
    return Runtime(torch_device, rank, local_rank, world_size, resolve_amp(amp_dtype, torch_device))


def resolve_amp(amp_dtype: str, device: torch.device) -> torch.dtype | None:
    """'auto' = bf16 where the GPU supports it, else fp16; CPU always trains in fp32."""
    if device.type != 'cuda' or amp_dtype == 'none':
        return None
    if amp_dtype == 'auto':
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {'bf16': torch.bfloat16, 'fp16': torch.float16}[amp_dtype]


def teardown_runtime() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Sum a tensor over ranks in place (no-op on one process)."""
    if runtime.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
