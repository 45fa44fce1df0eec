"""Reusable staging buffers for tensor copies.

Copying a tensor into a freshly allocated array each step makes the process
map, fault in and zero new pages while the kernel fills its page cache with
the same bytes; on the development machine that competition made whole runs
2-3x slower. Reusing a few buffers of the sizes a run records removes it.
"""

from __future__ import annotations

import threading

import numpy as np


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
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with self._lock:
            stack = self._idle.get(nbytes)
            raw = stack.pop() if stack else None
            if raw is not None:
                self._idle_bytes -= nbytes
        if raw is None:
            raw = np.empty(max(nbytes, 1), np.uint8)
        return raw[:nbytes].view(dtype).reshape(shape)

    def give(self, arr: np.ndarray) -> None:
        raw = arr.base if arr.base is not None else arr
        while raw.base is not None:
            raw = raw.base
        if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8:
            return
        nbytes = arr.nbytes
        with self._lock:
            if self._idle_bytes + nbytes <= self.max_bytes:
                self._idle.setdefault(nbytes, []).append(raw)
                self._idle_bytes += nbytes
