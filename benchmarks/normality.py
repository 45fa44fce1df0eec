"""Batched normality tests (``ts.normality``) against SciPy loops and ``np.sort``.

Claims (issue 4), on float32 groups held in memory:

* ``ts.normality(da, tests=("shapiro",))`` is at least 8x faster than a loop of
  :func:`scipy.stats.shapiro` over 2000 groups of n=2048, and at least 60x
  faster over 20000 groups of n=256;
* it takes at most 2x the time of ``np.sort`` of the same array (the floor:
  Shapiro-Wilk needs sorted data), at both sizes;
* ``ts.normality(da, tests=("anderson",))`` is at least 10x faster than a loop
  of :func:`scipy.stats.anderson`.

Arms, all on the same ``xr.DataArray`` with dims ``("channel", "sample")``
(one group per channel), measured in the same run, interleaved over rounds
(median per arm):

* ``sort``: ``np.sort(x, axis=-1)`` (NumPy, one thread);
* ``ts shapiro``: ``ts.normality(da, tests=("shapiro",))`` with defaults, i.e.
  including the effect sizes ``skew``, ``kurtosis`` and ``ks_distance``;
* ``ts shapiro, effect_size=False``: the same without ``ks_distance`` (which
  costs one normal CDF per value);
* ``ts anderson``: ``ts.normality(da, tests=("anderson",))`` (effect sizes
  included; they share its CDF evaluations);
* ``scipy shapiro loop`` / ``scipy anderson loop``: one call per group.

``ts.normality`` uses both cores for in-memory input (NumPy's sort and the
SciPy special functions release the GIL). The SciPy loops are timed on a
subset of groups and scaled (they are linear in the number of groups).

Run it::

    .venv/bin/python benchmarks/normality.py            # ~1 min on 2 cores
    .venv/bin/python benchmarks/normality.py --quick    # smoke run

Results: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import scipy.stats
import xarray as xr

import tensorstats as ts

SIZES = ((2000, 2048), (20000, 256))
TARGETS = {2048: 8.0, 256: 60.0}


def _anderson(x: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return scipy.stats.anderson(x, dist="norm", method="interpolate").statistic
        except TypeError:  # scipy < 1.17 has no method argument
            return scipy.stats.anderson(x, dist="norm").statistic


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(groups: int, n: int, rounds: int, loop_groups: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((groups, n)).astype(np.float32)
    da = xr.DataArray(x, dims=("channel", "sample"))
    sub = x[:loop_groups]
    scale = groups / loop_groups
    arms = {
        "sort": lambda: np.sort(x, axis=-1),
        "ts shapiro": lambda: ts.normality(da, tests=("shapiro",)),
        "ts shapiro, effect_size=False": lambda: ts.normality(da, tests=("shapiro",),
                                                             effect_size=False),
        "ts anderson": lambda: ts.normality(da, tests=("anderson",)),
        "scipy shapiro loop": lambda: [scipy.stats.shapiro(r) for r in sub],
        "scipy anderson loop": lambda: [_anderson(r) for r in sub],
    }
    for fn in arms.values():  # warm-up: caches, thread pool, page faults
        fn()
    times: dict[str, list[float]] = {k: [] for k in arms}
    order = list(arms)
    for r in range(rounds):
        rng.shuffle(order)
        for k in order:
            t = _timed(arms[k])
            times[k].append(t * scale if "loop" in k else t)
        del r
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="few rounds, small loops")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    print(f"tensorstats {ts.__version__}, numpy {np.__version__}, scipy {scipy.__version__}; "
          f"median of {rounds} interleaved rounds")
    for groups, n in SIZES:
        loop_groups = min(groups, 50 if args.quick else 400)
        med = bench(groups, n, rounds, loop_groups)
        print(f"\n{groups} groups x n={n} float32 ({groups * n * 4 / 1e6:.1f} MB)")
        for k, v in med.items():
            print(f"  {k:32s} {v * 1e3:9.1f} ms")
        sw, ad = med["ts shapiro"], med["ts anderson"]
        sw_fast = med["ts shapiro, effect_size=False"]
        print(f"  shapiro: scipy loop / ts        = {med['scipy shapiro loop'] / sw:6.1f}x  "
              f"(target >= {TARGETS[n]:.0f}x; effect_size=False: "
              f"{med['scipy shapiro loop'] / sw_fast:.1f}x)")
        print(f"  shapiro: ts / np.sort           = {sw / med['sort']:6.2f}x  "
              f"(target <= 2x; effect_size=False: {sw_fast / med['sort']:.2f}x)")
        print(f"  anderson: scipy loop / ts       = {med['scipy anderson loop'] / ad:6.1f}x  "
              "(target >= 10x)")


if __name__ == "__main__":
    main()
