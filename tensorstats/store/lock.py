"""One writer per store (per rank): an advisory lock held while a Recorder is open.

On a local file system the Recorder takes an exclusive ``flock`` on a lock
file in the store's folder (``.tensorstats-lock``, or
``.tensorstats-lock-rank<r>`` for rank ``r`` of a multi-process run) and
keeps it until it is closed. The operating system releases it when the
process ends, however it ends, so a crashed writer never leaves the store
locked. A second Recorder on the same store (or rank) gets
:class:`~tensorstats.errors.StoreLockedError` before it changes anything.

Object stores (S3, ...) have no such lock; there the rule is the caller's
to keep (see ``docs/s3.md``). Lock files are not part of the Zarr hierarchy
and readers ignore them.
"""

from __future__ import annotations

import os
import socket
from typing import Any

LOCK_PREFIX = ".tensorstats-lock"


def lock_name(rank: int | None) -> str:
    """``.tensorstats-lock`` or ``.tensorstats-lock-rank3``."""
    return LOCK_PREFIX if rank is None else f"{LOCK_PREFIX}-rank{rank}"


def is_lock_file(name: str) -> bool:
    return name.startswith(LOCK_PREFIX)


class StoreLock:
    """An exclusive lock on ``folder/<lock_name(rank)>``, held until :meth:`release`."""

    def __init__(self, folder: str, rank: int | None, store: str) -> None:
        import fcntl

        from ..errors import StoreLockedError

        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, lock_name(rank))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            who = "" if rank is None else f" (rank {rank})"
            raise StoreLockedError(
                f"{store!r}{who} is being written by another Recorder ({holder}); one writer "
                "per store (per rank). Close that one first, or write to another path") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Release the lock (the file stays; it is empty of meaning without a holder)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def acquire(backend: Any, rank: int | None, store: str) -> StoreLock | None:
    """Lock the store for this writer where the backend is a local folder, else None."""
    folder = backend.local_path("")
    if folder is None:
        return None
    return StoreLock(folder, rank, store)
