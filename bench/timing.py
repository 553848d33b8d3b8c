"""Side-by-side timing: every variant called in turn, iteration by iteration.

A load spike on a shared machine then hits all variants alike, so their ratios hold even
when the absolute times do not.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from tqdm import tqdm


def interleaved_ms(calls: Sequence[Callable], inputs: Sequence, iters: int, warmup: int,
                   desc: str, unit: str = 'iter') -> list[list[float]]:
    """Milliseconds per call of each of `calls`, input i % len(inputs) at iteration i.

    `warmup` untimed rounds first (lazy initialisation, caches, autotuning).
    """
    for i in range(warmup):
        for call in calls:
            call(inputs[i % len(inputs)])
    times: list[list[float]] = [[] for _ in calls]
    for i in tqdm(range(iters), desc=desc, unit=unit, leave=False):
        x = inputs[i % len(inputs)]
        for call, samples in zip(calls, times):
            start = time.perf_counter()
            call(x)
            samples.append((time.perf_counter() - start) * 1e3)
    return times
