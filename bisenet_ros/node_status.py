"""The node's own status beside its cameras': batches run, compute per batch, memory (no ROS)."""
from __future__ import annotations

import os
import resource
import sys
import threading
from collections import Counter

from bisenet_ros.latency import RollingStats


class BatchStats:
    """Batch sizes seen and the compute time of each batch (one forward pass)."""

    def __init__(self, window: int = 300):
        self._sizes: Counter[int] = Counter()
        self._compute_ms = RollingStats(window)
        self._retries = 0
        self._lock = threading.Lock()

    def add(self, size: int, compute_ms: float) -> None:
        with self._lock:
            self._sizes[size] += 1
        self._compute_ms.add(compute_ms)

    def add_retry(self) -> None:
        """A batch raised and its frames were run one by one."""
        with self._lock:
            self._retries += 1

    def values(self) -> dict[str, object]:
        """Diagnostic values: batches, sizes seen ('size x count'), compute per batch."""
        with self._lock:
            sizes = dict(sorted(self._sizes.items()))
            retries = self._retries
        batches = sum(sizes.values())
        frames = sum(size * count for size, count in sizes.items())
        values: dict[str, object] = {
            'batches': batches,
            'batch_sizes_seen': ' '.join(f'{s}x{n}' for s, n in sizes.items()) or '-',
            'batch_size_mean': frames / batches if batches else float('nan'),
            'batch_retries': retries}
        for key, ms in self._compute_ms.summary().items():
            values[f'batch_compute_{key}_ms'] = ms
        return values


def rss_mb() -> float:
    """Resident memory of this process in MiB (the peak where /proc is missing)."""
    try:
        with open('/proc/self/statm') as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf('SC_PAGE_SIZE') / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, B on macOS
        return peak / (2**20 if sys.platform == 'darwin' else 2**10)


def gpu_memory_mb(device: str) -> dict[str, float]:
    """{'gpu_memory_allocated_mb', 'gpu_memory_reserved_mb'} of torch on a CUDA device; {} else."""
    if not str(device).startswith('cuda'):
        return {}
    import torch  # already loaded by the Segmenter on a CUDA device

    if not torch.cuda.is_available():
        return {}
    return {'gpu_memory_allocated_mb': torch.cuda.memory_allocated(device) / 2**20,
            'gpu_memory_reserved_mb': torch.cuda.memory_reserved(device) / 2**20}
