"""Per-thread scratch arrays, reused across blocks.

Allocating a fresh megabyte for every temporary of every block makes the
kernels spend more time in page faults than in arithmetic (the allocator hands
large blocks back to the OS and takes them again). Kernels ask for their big
temporaries here instead; each thread keeps one growing buffer per name.

Examples
--------
>>> a = scratch("demo", (2, 3), np.float64)
>>> b = scratch("demo", (3, 2), np.float64)
>>> a.shape, b.shape, bool(np.shares_memory(a, b))
((2, 3), (3, 2), True)
"""

from __future__ import annotations

import math
import threading

import numpy as np

_local = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialised array of ``shape`` and ``dtype``, private to this thread.

    The same ``name`` returns the same memory on the next call from this
    thread, so a caller must be done with the previous one (and must not
    return it).
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    buf = bufs.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = bufs[name] = np.empty(max(nbytes, 64), np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)
