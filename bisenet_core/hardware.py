"""Where a model runs and in what precision: the names every part accepts, resolved in one place.

Inference (the Segmenter and its backends), training (bisenet_core.train.runtime, its config),
`training.evaluate` and `training.export` all take these names:

    DEVICES     'auto', 'cpu', 'cuda', or 'cuda:N' for the N-th GPU (check_device)
    PRECISIONS  'fp32', 'fp16': what the network computes in (inference, export)
    AMP_DTYPES  'auto', 'bf16', 'fp16', 'none': training's mixed precision (autocast)

and resolve them here: resolve_device ('auto' -> a GPU where the backend can use one),
resolve_precision (fp16 only on a GPU), resolve_amp (the autocast dtype, or None).
"""
from __future__ import annotations

import argparse
import os
import warnings

import torch

# Device names: these, or 'cuda:N' for the N-th GPU (check_device).
DEVICES = ('auto', 'cuda', 'cpu')
PRECISIONS = ('fp32', 'fp16')
AMP_DTYPES = ('auto', 'bf16', 'fp16', 'none')
TORCH_DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}

# ONNX Runtime's execution provider per provider name.
ORT_PROVIDERS = {'cpu': 'CPUExecutionProvider', 'cuda': 'CUDAExecutionProvider',
                 'tensorrt': 'TensorrtExecutionProvider'}


def ort_available() -> bool:
    """True when onnxruntime can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def ort_providers() -> list[str]:
    """Execution providers of the installed onnxruntime ([] when it is not installed)."""
    if not ort_available():
        return []
    import onnxruntime
    return list(onnxruntime.get_available_providers())


def cpu_threads() -> int:
    """Number of CPUs this process may use (taskset/cgroup affinity, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def is_device(device) -> bool:
    """True for a device name: 'auto', 'cpu', 'cuda' or 'cuda:N' (N >= 0)."""
    return isinstance(device, str) and (device in DEVICES or (
        device.startswith('cuda:') and device[5:].isdigit()))


def check_device(device: str) -> str:
    """`device` if it is a device name (is_device), else a ValueError saying which are."""
    if is_device(device):
        return device
    raise ValueError(f"device must be one of {', '.join(DEVICES)} or cuda:N (N = GPU index), "
                     f'got {device!r}')


def device_arg(text: str) -> str:
    """Parse --device (an argparse type): a device name, else a usage error listing them."""
    try:
        return check_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def device_index(device: str) -> int:
    """The GPU index of 'cuda' (0) or 'cuda:N' (N)."""
    return int(device[5:]) if device.startswith('cuda:') else 0


def _cuda_support(backend: str) -> tuple[bool, str]:
    """(can `backend` use a GPU here, why not)."""
    if backend == 'torch':
        return (torch.cuda.is_available(),
                'torch.cuda.is_available() is False (CPU-only torch build or no GPU)')
    providers = ort_providers()
    return (ORT_PROVIDERS['cuda'] in providers,
            f'onnxruntime has no CUDAExecutionProvider ({providers}); install onnxruntime-gpu')


def resolve_device(device: str, backend: str = 'torch', warn: bool = True) -> str:
    """'auto' -> 'cuda' when `backend` can use a GPU here, else 'cpu'; checks a named GPU.

    backend: 'torch' (also training and evaluation), 'onnxruntime' or 'tensorrt'.
    'cuda:N' must name an existing GPU (torch's count; ONNX Runtime's provider checks it at
    session creation). `warn`: say so (RuntimeWarning) when 'auto' falls back to the CPU,
    which is too slow for real-time inference.
    """
    check_device(device)
    if backend == 'tensorrt':
        if device == 'cpu':
            raise ValueError("backend 'tensorrt' runs on the GPU; use device 'cuda' or 'auto'")
        return 'cuda' if device == 'auto' else device
    has_cuda, missing = _cuda_support(backend)
    if device.startswith('cuda') and not has_cuda:
        raise RuntimeError(f"device {device!r} requested for backend {backend!r} but {missing}")
    if device.startswith('cuda:') and backend == 'torch':
        count = torch.cuda.device_count()
        if device_index(device) >= count:
            raise RuntimeError(f"device {device!r} does not exist: this machine has {count} "
                               f"CUDA device{'s' if count != 1 else ''} (cuda:0..cuda:"
                               f"{count - 1})")
    if device == 'auto':
        if has_cuda:
            return 'cuda'
        if warn:
            warnings.warn(f'no GPU for backend {backend!r}, running on the CPU (slow for '
                          'real-time use)', RuntimeWarning, stacklevel=4)
        return 'cpu'
    return device


def check_precision(precision: str) -> str:
    """'fp32' or 'fp16', else a ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    return precision


def resolve_precision(precision: str, device: str) -> str:
    """fp16 is for GPUs: on the CPU it is slower and less exact, so fall back to fp32."""
    check_precision(precision)
    if precision == 'fp16' and not device.startswith('cuda'):
        warnings.warn('fp16 requested on the CPU; using fp32', RuntimeWarning, stacklevel=4)
        return 'fp32'
    return precision


def resolve_amp(amp_dtype: str, device: torch.device) -> torch.dtype | None:
    """Training's autocast dtype: 'auto' = bf16 where the GPU supports it, else fp16.

    None (fp32, no autocast) on the CPU or with 'none'.
    """
    if amp_dtype not in AMP_DTYPES:
        raise ValueError(f'amp_dtype must be one of {AMP_DTYPES}, got {amp_dtype!r}')
    if device.type != 'cuda' or amp_dtype == 'none':
        return None
    if amp_dtype == 'auto':
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return TORCH_DTYPES[amp_dtype]
