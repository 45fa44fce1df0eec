"""Where a Recorder's writes run: now, on the caller's thread, or on a background writer."""

from __future__ import annotations

from collections.abc import Callable

from .writer import BackgroundWriter

SCALAR_BATCH = 64


class Submitter:
    """Runs write tasks synchronously, or queues them for a :class:`BackgroundWriter`.

    Asynchronously, ``batch=True`` tasks (scalars, summaries: small and frequent) are held
    back and queued together, up to :data:`SCALAR_BATCH` at a time or before
    the next other task, :meth:`flush` or :meth:`close`, so the writer thread
    wakes once per batch instead of once per training step. Not thread-safe:
    the Recorder calls it under its lock.
    """

    def __init__(self, max_pending_bytes: int) -> None:
        self.max_pending_bytes = max_pending_bytes
        self.writer: BackgroundWriter | None = None
        self._held: list[Callable[[], None]] = []
        self._held_bytes = 0

    @property
    def pending_bytes(self) -> int:
        return self.writer.pending_bytes if self.writer else 0

    def set_asynchronous(self, on: bool) -> None:
        if on and self.writer is None:
            self.writer = BackgroundWriter(self.max_pending_bytes)
        elif not on and self.writer is not None:
            self.close()

    def submit(self, task: Callable[[], None], nbytes: int = 0, *, batch: bool = False) -> None:
        if self.writer is None:
            task()
            return
        if batch:
            self._held.append(task)
            self._held_bytes += max(nbytes, 8)
            if len(self._held) < SCALAR_BATCH:
                return
        self.release_held()
        if not batch:
            self.writer.submit(task, nbytes)

    def release_held(self) -> None:
        """Queue the held-back batch tasks."""
        if self._held and self.writer is not None:
            tasks, self._held = self._held, []
            nbytes, self._held_bytes = self._held_bytes, 0

            def run_all() -> None:
                for t in tasks:
                    t()

            self.writer.submit(run_all, nbytes)

    def wait(self) -> Callable[[], None] | None:
        """Queue held tasks; return the writer's flush (call it outside the lock), if any."""
        self.release_held()
        return self.writer.flush if self.writer is not None else None

    def close(self) -> None:
        """Write everything queued and stop the writer; its error, if any, is raised."""
        if self.writer is not None:
            self.release_held()
            writer, self.writer = self.writer, None
            writer.close()
