"""Run a row kernel over cache-sized blocks of rows, on one or several threads.

Examples
--------
>>> import numpy as np
>>> x = np.arange(12.0).reshape(6, 2)
>>> out = map_row_blocks(lambda b: {"s": b.sum(axis=-1)}, x, rows=4, threads=2)
>>> out["s"].tolist()
[1.0, 5.0, 9.0, 13.0, 17.0, 21.0]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BLOCK_VALUES = 1 << 18
"""Values per block: float64 temporaries of 2 MiB, about one core's L2 cache. Smaller
blocks lose more to handing the GIL between threads at every NumPy call than
they gain in cache hits (measured on the 2-core development VM)."""


def rows_per_block(width: int, block_values: int = BLOCK_VALUES) -> int:
    """How many rows of ``width`` values make one block (at least one)."""
    return max(1, block_values // max(1, width))


_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] | None = None
_pool_lock = threading.Lock()


def map_threads(fn: Callable, items: Sequence, workers: int) -> list:
    """``fn`` over ``items`` on a long-lived pool of ``workers`` threads.

    The pool outlives the call so that its threads keep their scratch buffers
    (fresh memory is slow to touch); it is rebuilt after a fork or when a
    different number of workers is asked for.
    """
    global _pool, _pool_key
    key = (os.getpid(), workers)
    with _pool_lock:
        if _pool is None or _pool_key != key:
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="tensorstats-kernel")
            _pool_key = key
        pool = _pool
    chunks = [items[i::workers] for i in range(workers)]  # one task per thread
    results = list(pool.map(lambda part: [fn(item) for item in part], chunks))
    out = [None] * len(items)
    for i, res in enumerate(results):
        out[i::workers] = res
    return out


def map_row_blocks(fn: Callable[..., dict], flat: np.ndarray, *extra: np.ndarray | None,
                   rows: int, threads: int | None = 1) -> dict:
    """``fn(block, *extra_block)`` over blocks of ``rows`` rows, results concatenated.

    ``fn`` returns a dict of arrays whose first axis is the block's rows.
    ``extra`` arrays (or None) are split along their first axis alongside.
    ``threads=None`` uses every CPU; NumPy releases the GIL in the heavy loops.
    """
    starts = range(0, max(flat.shape[0], 1), rows)

    def run(s: int) -> dict:
        return fn(flat[s:s + rows], *(None if e is None else e[s:s + rows] for e in extra))

    workers = (os.cpu_count() or 1) if threads is None else threads
    if workers > 1 and len(starts) > 1:
        parts = map_threads(run, starts, workers)
    else:
        parts = [run(s) for s in starts]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
