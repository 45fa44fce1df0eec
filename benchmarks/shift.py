"""Distribution-shift distances (``ts.shift``) against SciPy loops and ``np.sort``.

Claims (issue 5), 2000 channel pairs of n=2048 float32 values each, in memory:

* W1 (``metrics=("wasserstein",)``) and KS (``metrics=("ks",)``, with its
  p-value) are each at least 10x faster than a loop of
  :func:`scipy.stats.wasserstein_distance` / :func:`scipy.stats.ks_2samp`;
* W1 takes at most 1.5x the time of ``np.sort`` of the same data (both
  samples of every pair: the floor, since W1 needs sorted samples).

The sample is a DataArray ``(channel, sample)``; the reference another one
of the same shape, passed as ``reference=`` (so every channel is compared with
its own reference channel). Arms run in the same process, interleaved over 7
rounds (median); the SciPy loops are timed on 200 pairs and scaled.
``ks_2samp`` uses its default ``method="auto"`` (exact p-values at this n),
and so does ``ts.shift``, which computes each distinct statistic's exact
p-value once and caches it; the cache is emptied before every timed call.

Run it::

    .venv/bin/python benchmarks/shift.py            # ~1 min
    .venv/bin/python benchmarks/shift.py --quick

Results: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import scipy
import scipy.stats
import xarray as xr

import tensorstats as ts
from tensorstats.kernels import shift as shift_kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    groups, n = 2000, 2048
    loop_groups = 40 if args.quick else 200
    rng = np.random.default_rng(0)
    x = rng.standard_normal((groups, n)).astype(np.float32)
    r = (rng.standard_normal((groups, n)) * 1.1 + 0.05).astype(np.float32)
    da = xr.DataArray(x, dims=("channel", "sample"))
    ref = xr.DataArray(r, dims=("channel", "sample"))
    scale = groups / loop_groups

    def scipy_ks() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for i in range(loop_groups):
                scipy.stats.ks_2samp(x[i], r[i])

    def cold(metrics: tuple[str, ...] | None = None):
        # Exact KS p-values are cached per (n, m, statistic); start every timed
        # call with an empty cache so that no round benefits from an earlier one.
        shift_kernels._ks_exact.cache_clear()
        if metrics is None:
            return ts.shift(da, reference=ref)
        return ts.shift(da, reference=ref, metrics=metrics)

    arms = {
        "sort (both samples)": lambda: (np.sort(x, axis=-1), np.sort(r, axis=-1)),
        "ts W1": lambda: cold(("wasserstein",)),
        "ts KS + p": lambda: cold(("ks",)),
        "ts all four (default)": lambda: cold(),
        "scipy W1 loop": lambda: [scipy.stats.wasserstein_distance(x[i], r[i])
                                  for i in range(loop_groups)],
        "scipy KS loop": scipy_ks,
    }
    for fn in arms.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in arms}
    order = list(arms)
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            t0 = time.perf_counter()
            arms[k]()
            dt = time.perf_counter() - t0
            times[k].append(dt * scale if "loop" in k else dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"tensorstats {ts.__version__}, numpy {np.__version__}, scipy {scipy.__version__}; "
          f"{groups} pairs x n={n} float32; median of {rounds} interleaved rounds")
    for k, v in med.items():
        print(f"  {k:24s} {v * 1e3:9.1f} ms")
    print(f"  W1: scipy loop / ts = {med['scipy W1 loop'] / med['ts W1']:6.1f}x (target >= 10x)")
    ks = med["scipy KS loop"] / med["ts KS + p"]
    print(f"  KS: scipy loop / ts = {ks:6.1f}x (target >= 10x)")
    print(f"  W1: ts / np.sort    = {med['ts W1'] / med['sort (both samples)']:6.2f}x "
          "(target <= 1.5x)")


if __name__ == "__main__":
    main()
