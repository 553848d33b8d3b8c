"""What a benchmark ran on: CPU, load, GPU, driver and library versions (one line)."""
from __future__ import annotations

import os
import platform
import subprocess

import torch

from bisenet_core.inference.backends import cpu_threads, ort_available, ort_providers


def gpu_info() -> str:
    """'NVIDIA H200, driver 570.x, CUDA 12.x' for every visible GPU, or 'none'."""
    if not torch.cuda.is_available():
        return 'none'
    driver = 'unknown'
    try:
        query = ['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader']
        driver = subprocess.run(query, capture_output=True, text=True,
                                timeout=20).stdout.split()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
    return (f"{' + '.join(names)} (x{torch.cuda.device_count()}), driver {driver}, "
            f'CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}')


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if 'model name' in line)
    except (OSError, StopIteration):
        pass
    ort_version = 'not installed'
    if ort_available():
        import onnxruntime
        ort_version = onnxruntime.__version__
    load = ', '.join(f'{v:.1f}' for v in os.getloadavg())
    return (f'CPU: {cpu}, {cpu_threads()} usable cores (torch threads {torch.get_num_threads()}), '
            f'load average {load}; GPU: {gpu_info()}; Python {platform.python_version()}, '
            f'torch {torch.__version__}, onnxruntime {ort_version} {ort_providers()}')
