"""Rolling latency statistics and rates for the node's diagnostics (thread-safe, no ROS)."""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

PERCENTILES = (50, 90, 99)


class RollingStats:
    """The last `window` samples of one quantity (ms): p50/p90/p99/max over them.

    A window of samples rather than all of them, so the figures follow the node's current
    behaviour (a slow first frame, a warm-up, does not stay in p99 forever). Each sample keeps
    the time it was added, so summary(since=t) judges only the samples of a recent period.
    """

    def __init__(self, window: int = 300, clock=time.perf_counter):
        if window < 1:
            raise ValueError(f'window must be >= 1, got {window}')
        self._samples: deque[tuple[float, float]] = deque(maxlen=window)
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, value_ms: float) -> None:
        with self._lock:
            self._samples.append((self._clock(), float(value_ms)))

    def __len__(self) -> int:
        with self._lock:
            return len(self._samples)

    def summary(self, since: float | None = None) -> dict[str, float]:
        """{'p50', 'p90', 'p99', 'max'} in ms; NaN for each when there is no sample.

        Args:
            since: only samples added at or after this clock time (default: all in window).
        """
        with self._lock:
            values = np.array([value for at, value in self._samples
                               if since is None or at >= since], dtype=np.float64)
        if values.size == 0:
            return {**{f'p{p}': float('nan') for p in PERCENTILES}, 'max': float('nan')}
        result = dict(zip((f'p{p}' for p in PERCENTILES),
                          (float(v) for v in np.percentile(values, PERCENTILES))))
        result['max'] = float(values.max())
        return result


class RateMeter:
    """Events per second over a sliding time window (frames in, frames out)."""

    def __init__(self, window_s: float = 5.0, clock=time.monotonic):
        self._window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            self._times.append(self._clock())

    def rate(self) -> float:
        """Events/s in the last window_s seconds (0 when fewer than two events)."""
        now = self._clock()
        with self._lock:
            while self._times and now - self._times[0] > self._window_s:
                self._times.popleft()
            if len(self._times) < 2:
                return 0.0
            span = now - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0
