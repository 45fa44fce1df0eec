"""The background writer: a thread, a bounded queue, errors handed back."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable


class BackgroundWriter:
    """Run write tasks in order on one thread, holding at most ``max_pending_bytes``.

    ``submit`` blocks while the tasks already queued hold more than
    ``max_pending_bytes`` (a single task larger than that is still accepted
    once the queue is empty), so memory stays bounded when the disk is slower
    than training. The thread keeps the default priority: a lower one let it
    be descheduled while holding the GIL, which stalled the training thread.
    The first exception in the thread is kept; every later ``submit``/``flush``
    raises it, and queued tasks after it are dropped.
    """

    def __init__(self, max_pending_bytes: int, name: str = "tensorstats-writer"):
        self.max_pending_bytes = max_pending_bytes
        self._queue: collections.deque[tuple[Callable[[], None], int]] = collections.deque()
        self._cv = threading.Condition()
        self._pending = 0
        self._busy = False
        self._stop = False
        self.error: BaseException | None = None
        self.peak_pending_bytes = 0
        self.cpu_seconds = 0.0
        """CPU time the writer thread has used (measured in the thread)."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending_bytes(self) -> int:
        """Bytes held by tasks not yet written."""
        return self._pending

    def submit(self, task: Callable[[], None], nbytes: int) -> None:
        with self._cv:
            self._raise()
            while self._pending and self._pending + nbytes > self.max_pending_bytes:
                self._cv.wait()
                self._raise()
            self._queue.append((task, nbytes))
            self._pending += nbytes
            self.peak_pending_bytes = max(self.peak_pending_bytes, self._pending)
            self._cv.notify_all()

    def flush(self) -> None:
        """Wait until every submitted task has run; raise the writer's error if any."""
        with self._cv:
            while (self._queue or self._busy) and self.error is None:
                self._cv.wait()
            self._raise()

    def close(self) -> None:
        """Flush, then stop the thread (also after an error)."""
        try:
            self.flush()
        finally:
            with self._cv:
                self._stop = True
                self._cv.notify_all()
            self._thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            message = (f"a background write failed: {self.error!r}; the tasks queued after "
                       "it were not written")
            if isinstance(self.error, OSError):  # keep errno (ENOSPC, EIO...) for callers
                raise OSError(self.error.errno, message) from self.error
            raise RuntimeError(message) from self.error

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait()
                if not self._queue:
                    return
                task, nbytes = self._queue.popleft()
                self._busy = True
            t0 = time.thread_time()
            try:
                if self.error is None:
                    task()
            except BaseException as e:  # handed to the training thread, never lost
                self.error = e
            finally:
                self.cpu_seconds += time.thread_time() - t0
                with self._cv:
                    self._busy = False
                    self._pending -= nbytes
                    if self.error is not None:
                        for _, n in self._queue:
                            self._pending -= n
                        self._queue.clear()
                    self._cv.notify_all()
