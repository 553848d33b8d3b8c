"""One camera's counters and timings in segment_node.

Totals for /diagnostics and the log, this period's counts for the status level (thread-safe:
the executor, the worker and the diagnostics timer all write).
"""
from __future__ import annotations

import threading
import time
from typing import Sequence

from bisenet_core.inference.segmenter import STAGES as SEGMENTER_STAGES
from bisenet_ros.diagnostics import node_level
from bisenet_ros.latency import RateMeter, RollingStats

# Per-stage times: message -> numpy, the Segmenter's stages (upload, compute, download; see
# SegmentationResult), publishing, and header stamp -> published.
STAGES = ('decode', *SEGMENTER_STAGES, 'publish', 'end_to_end')
# frames_in: received; frames_out: labelled; frames_dropped: replaced by a newer frame before
# the worker took them; frames_lost: the middleware's message-lost event; frames_missed:
# publication sequence gaps (lost or replaced before the callback); errors: bad input or
# failed inference.
COUNTERS = ('frames_in', 'frames_out', 'frames_dropped', 'frames_lost', 'frames_missed',
            'errors')


class CameraStats:
    """Counters (read as attributes: stats.frames_in, ...), stage times and rates."""

    def __init__(self):
        self._lock = threading.Lock()
        self._totals = dict.fromkeys(COUNTERS, 0)
        self._period = dict.fromkeys(COUNTERS, 0)
        self._period_start = time.perf_counter()
        self.last_error = ''
        # Publishers on the input topics whose QoS cannot match (set by the input's events).
        self.incompatible_publishers = 0
        self.stage_ms = {stage: RollingStats() for stage in STAGES}
        self.rate_in, self.rate_out = RateMeter(), RateMeter()

    def __getattr__(self, name: str) -> int:
        if name in COUNTERS:
            return self._totals[name]
        raise AttributeError(name)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._totals[name] += n
            self._period[name] += n

    def error(self, message: str) -> None:
        with self._lock:
            self._totals['errors'] += 1
            self._period['errors'] += 1
            self.last_error = message

    def frame_done(self, stages_ms: dict[str, float]) -> None:
        """A frame's labels are out: count it and record its stage times."""
        self.rate_out.tick()
        self.count('frames_out')
        for stage, ms in stages_ms.items():
            self.stage_ms[stage].add(ms)

    def values(self) -> dict[str, object]:
        """Rates, totals and stage-time summaries (p50, p90, p99, max) for /diagnostics."""
        values: dict[str, object] = {'fps_in': self.rate_in.rate(),
                                     'fps_out': self.rate_out.rate()}
        values.update(self._totals)
        values['incompatible_publishers'] = self.incompatible_publishers
        for stage in STAGES:
            for key, ms in self.stage_ms[stage].summary().items():
                values[f'{stage}_{key}_ms'] = ms
        return values

    def period_level(self, latency_budget_ms: float,
                     notes: Sequence[str] = ()) -> tuple[int, str]:
        """(level, message) of the period since the last call; starts the next period.

        The level judges this period's frames only: two slow warm-up frames must not keep
        the status WARN while no frame comes (the reported p90 is over the last 300).
        """
        now = time.perf_counter()
        with self._lock:
            period, self._period = self._period, dict.fromkeys(COUNTERS, 0)
            period_start, self._period_start = self._period_start, now
            last_error = self.last_error
        period_p90 = self.stage_ms['end_to_end'].summary(since=period_start)['p90']
        return node_level(period['errors'], period['frames_dropped'], period_p90,
                          latency_budget_ms, last_error, lost=period['frames_lost'],
                          missed=period['frames_missed'],
                          incompatible=self.incompatible_publishers, notes=notes)
