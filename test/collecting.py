"""What the in-process node tests share: messages collected under one lock, waiting, closing."""
import threading
import time


class Collecting:
    """Subscription callbacks store messages under one condition; tests wait on predicates.

    `timeout` (seconds) is the default wait of the subclass. A subclass that spins a
    SegmentNode (`node`) and a client node (`client`) on `executor` in `thread` gets `close`.
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

    def close(self):
        self.executor.shutdown()
        self.thread.join(5)
        self.node.destroy_node()
        self.client.destroy_node()
        assert not self.node.worker.is_alive()
