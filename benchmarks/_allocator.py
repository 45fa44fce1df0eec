"""Fixing glibc's allocator thresholds for a benchmark run (``--malloc steady``).

Shared by the benchmark scripts (run from this folder, which Python puts first
on ``sys.path``). See :func:`set_malloc`.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def set_malloc(mode: str) -> str:
    """Fix glibc's allocator thresholds (``steady``) or leave them (``default``).

    glibc adapts its mmap threshold at run time and returns the top of the heap
    to the kernel when more than twice that is free. Whether a large temporary
    then comes back as fresh pages or reuses resident ones depends on the
    heap's layout, which changes from run to run and with the order of the
    arms: in ``collector_overhead.py`` the model's 4 MB activations (about 2,000
    minor page faults per step) swing one arm by 20-70%. ``steady``
    sets ``M_MMAP_THRESHOLD`` = 64 MiB and ``M_TRIM_THRESHOLD`` = 1 GiB, so
    freed memory is reused without faults in every arm.

    Not for comparisons with code that allocates differently: fixed thresholds
    made a loop of ``scipy.stats.shapiro`` over 256-value groups 15-40% slower
    here, which is why ``normality.py`` keeps glibc's defaults.
    """
    if mode == "default":
        return "glibc defaults (dynamic mmap/trim thresholds)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, 64 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):
        ok = False
    if not ok:
        return "steady requested, but mallopt is not available: allocator defaults"
    return "steady: mallopt M_MMAP_THRESHOLD=64 MiB, M_TRIM_THRESHOLD=1 GiB"
