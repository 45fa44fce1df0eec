"""Reusable staging buffers for tensor copies.

Copying a tensor into a freshly allocated array each step makes the process
map, fault in and zero new pages while the kernel fills its page cache with
the same bytes; on the development machine that competition made whole runs
2-3x slower. Reusing a few buffers of the sizes a run records removes it.
"""

from __future__ import annotations

import threading

import numpy as np

ALIGN = 4096
"""Buffers start on a page boundary, so they can be written with ``O_DIRECT``."""


def aligned_empty(nbytes: int) -> np.ndarray:
    """An uninitialised ``uint8`` array of ``nbytes`` starting on an :data:`ALIGN` boundary.

    Examples
    --------
    >>> a = aligned_empty(10_000)
    >>> a.nbytes, a.ctypes.data % ALIGN
    (10000, 0)
    """
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start:start + nbytes]


class BufferPool:
    """Hand out C-contiguous arrays backed by reused memory.

    At most ``max_bytes`` of idle buffers are kept; a buffer given back when
    the pool is full is dropped (and freed by Python as usual).

    Examples
    --------
    >>> pool = BufferPool(1 << 20)
    >>> a = pool.take((4, 3), np.dtype("float32"))
    >>> pool.give(a)
    >>> b = pool.take((3, 4), np.dtype("float32"))  # same size: the same memory
    >>> bool(np.shares_memory(a, b))
    True
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._idle: dict[int, list[np.ndarray]] = {}
        self._idle_bytes = 0
        self._lent: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with self._lock:
            stack = self._idle.get(nbytes)
            raw = stack.pop() if stack else None
            if raw is not None:
                self._idle_bytes -= nbytes
        if raw is None:
            raw = aligned_empty(max(nbytes, 1))
        arr = raw[:nbytes].view(dtype).reshape(shape)
        with self._lock:
            self._lent[id(arr)] = raw
        return arr

    def give(self, arr: np.ndarray) -> None:
        """Return an array that :meth:`take` handed out (anything else is ignored)."""
        with self._lock:
            raw = self._lent.pop(id(arr), None)
            if raw is None:
                return
            nbytes = arr.nbytes
            if self._idle_bytes + nbytes <= self.max_bytes:
                self._idle.setdefault(nbytes, []).append(raw)
                self._idle_bytes += nbytes
