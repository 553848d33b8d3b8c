"""What the in-process node tests share: messages collected under one lock, and waiting."""
import threading
import time


class Collecting:
    """Subscription callbacks store messages under one condition; tests wait on predicates.

    `timeout` (seconds) is the default wait of the subclass.
    """

    timeout = 20.0

    def __init__(self):
        self.lock = threading.Condition()

    def _store(self, items, msg):
        with self.lock:
            items.append(msg)
            self.lock.notify_all()

    def wait(self, predicate, what, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, f'timed out waiting for {what}'
                self.lock.wait(min(left, 0.1))
