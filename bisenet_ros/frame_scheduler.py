"""The hand-over from the cameras' callbacks to the inference worker (no ROS).

Each camera has one slot holding its newest frame: a frame the worker has not taken yet is
replaced by the next one (newest wins, the replaced one is counted as dropped), so nothing
queues and latency does not grow. The worker takes the newest waiting frame of every camera
that has one, at once: a camera is served in every cycle it has a frame, whatever the rates
of the others, so none starves. By default the worker takes what is there as soon as one
frame is (no camera waits for another); with a batch window it waits up to that long after
the first frame for the other active cameras to fill the batch.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

Item = TypeVar('Item')
# A camera that sent a frame within this many seconds is waited for by the batch window; a
# silent or vanished camera is not (else every cycle would wait the whole window for it).
ACTIVE_S = 1.0


@dataclass(frozen=True)
class Waiting(Generic[Item]):
    """One camera's newest frame as the worker takes it."""

    camera: str
    item: Item
    received: float  # the scheduler clock when the frame was put


class FrameScheduler(Generic[Item]):
    """Per-camera newest-frame-wins slots and the worker's take-all cycle.

    Args:
        cameras: camera names (the order of a cycle's frames).
        batch_window_s: 0 (default): take() returns as soon as one frame waits; > 0: it
            waits up to this long after the first frame for every active camera's frame.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(self, cameras: Sequence[str], batch_window_s: float = 0.0,
                 clock=time.monotonic):
        if batch_window_s < 0:
            raise ValueError(f'batch window must be >= 0 s, got {batch_window_s}')
        self.cameras = tuple(cameras)
        self.batch_window_s = batch_window_s
        self._clock = clock
        self._slots: dict[str, Waiting[Item]] = {}
        self._last_put: dict[str, float] = {}
        self._ready = threading.Condition()
        self._stopping = False
        self.dropped = dict.fromkeys(self.cameras, 0)

    def put(self, camera: str, item: Item) -> bool:
        """Store `camera`'s newest frame; True if it replaced one not taken yet (dropped).

        Never blocks on the worker. After stop() frames are refused (False, not stored).
        """
        now = self._clock()
        with self._ready:
            if self._stopping:
                return False
            replaced = camera in self._slots
            if replaced:
                self.dropped[camera] += 1
            self._slots[camera] = Waiting(camera, item, now)
            self._last_put[camera] = now
            self._ready.notify_all()
        return replaced

    def waiting(self, camera: str | None = None) -> int:
        """Frames waiting (of one camera, or of all)."""
        with self._ready:
            return len(self._slots) if camera is None else int(camera in self._slots)

    def take(self, timeout: float | None = None) -> list[Waiting[Item]]:
        """The newest frame of every camera that has one, in camera order.

        Blocks until a frame waits (or `timeout` passes: []). After stop(), returns what
        still waits once, then [] at once: the worker's signal to end.
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._ready:
            while not self._slots and not self._stopping:
                if not self._wait(deadline):
                    return []
            if self.batch_window_s > 0 and not self._stopping:
                first = min(w.received for w in self._slots.values())
                window_end = first + self.batch_window_s
                while not self._stopping and not self._all_active_waiting():
                    if not self._wait(window_end):
                        break
            taken = [self._slots.pop(c) for c in self.cameras if c in self._slots]
        return taken

    def _wait(self, deadline: float | None) -> bool:
        """Wait for a notify until `deadline` (scheduler clock); False once it has passed."""
        if deadline is None:
            self._ready.wait()
            return True
        left = deadline - self._clock()
        if left <= 0:
            return False
        self._ready.wait(left)
        return True

    def _all_active_waiting(self) -> bool:
        now = self._clock()
        active = [c for c, at in self._last_put.items() if now - at <= ACTIVE_S]
        return all(c in self._slots for c in active)

    def stop(self) -> None:
        """Refuse new frames and wake the worker: it takes what waits, then gets []."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stopping
