"""No exception ends an executor callback or segment_node's worker silently.

An exception escaping a subscription, event or timer callback would end rclpy's spin (the
node exits with a traceback); one escaping the worker would end the thread while the process
stays up. CallbackGuard catches what nobody expected, logs it once per reason (type, message
and the line that raised it), counts it as an error on /diagnostics and lets the node go on.
"""
from __future__ import annotations

import functools
import os
import threading
import traceback
from typing import Callable

# Distinct reasons remembered (each logged once); a flood of new ones is still counted.
MAX_REASONS = 256


def describe(exc: BaseException) -> str:
    """'ZeroDivisionError: division by zero (at camera_info.py:42)': type, message, origin."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f' (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})' if frames else ''
    message = ' '.join(str(exc).split())
    return f'{type(exc).__name__}: {message}{where}' if message else f'{type(exc).__name__}{where}'


class CallbackGuard:
    """Wraps callbacks so that an unexpected exception is logged once, counted and survived.

    Args:
        logger: the node's logger.
    """

    def __init__(self, logger):
        self._logger = logger
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def report(self, what: str, exc: Exception, count: Callable[[str], None]) -> None:
        """Count `exc` (raised while doing `what`) with `count(message)`; log it once."""
        message = f'{what} failed unexpectedly: {describe(exc)}'
        count(message)
        with self._lock:
            new = message not in self._reported and len(self._reported) < MAX_REASONS
            self._reported.add(message)
        if new:
            self._logger.error(f'{message}; the node goes on (logged once; every occurrence '
                               'is counted in errors on /diagnostics)')

    def wrap(self, what: str, callback: Callable, count: Callable[[str], None]) -> Callable:
        """`callback` that reports instead of raising (rclpy still sees its signature)."""
        @functools.wraps(callback)
        def guarded(*args):
            try:
                return callback(*args)
            except Exception as exc:
                self.report(what, exc, count)
        return guarded
