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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BLOCK_VALUES = 1 << 17
"""Values per block: float64 temporaries of 1 MiB stay in a core's L2 cache."""


def rows_per_block(width: int, block_values: int = BLOCK_VALUES) -> int:
    """How many rows of ``width`` values make one block (at least one)."""
    return max(1, block_values // max(1, width))


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
        with ThreadPoolExecutor(min(workers, len(starts))) as pool:
            parts = list(pool.map(run, starts))
    else:
        parts = [run(s) for s in starts]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
