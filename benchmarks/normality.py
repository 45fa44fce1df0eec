"""Batched normality tests (``ts.normality``) against SciPy loops and ``np.sort``.

Targets (issue 13, section 1, "Normality after the sort"), on float32 groups
held in memory, 2000 groups of n=2048 and 20000 groups of n=256:

* ``ts.normality(da, tests=("shapiro",), effect_size=False)`` is at least 20x
  faster than a loop of :func:`scipy.stats.shapiro` at n=2048 and 150x at
  n=256, and takes at most 1.5x the time of ``np.sort`` of the same array (the
  floor: Shapiro-Wilk needs sorted data) at both sizes;
* the default call ``ts.normality(da)`` (Shapiro-Wilk, Anderson-Darling and the
  effect sizes skew, kurtosis and ``ks_distance``) is at least 100x faster than
  the SciPy composition computing the same per group (below) at n=2048 and
  600x at n=256, and takes at most 3x the time of ``np.sort``.

Arms, all on the same ``xr.DataArray`` with dims ``("channel", "sample")``
(one group per channel), measured in the same run, interleaved in a shuffled
order over rounds (median per arm), in two phases:

1. the fast arms (``sort``, the ``ts`` and ``kernel`` arms), for every ratio
   to ``np.sort`` and the thread scaling;
2. the two SciPy loops, each interleaved with the ``ts`` arm it is compared
   with (that arm timed again in this phase), for the speed-ups over SciPy.

Why two phases: a SciPy loop runs for seconds of small Python allocations
(the composition 30-40 s a round at n=256), and arms timed after it ran
slower -- at n=256 ``ts default`` 28-30 ms instead of 21-23 ms and the
kernel alone 24 instead of 19-21 ms, measured -- while ``np.sort`` did not,
which put a ratio to the sort at the mercy of which arm ran before. Each
ratio still comes from arms interleaved with each other in one run.

* ``sort``: ``np.sort(x, axis=-1)`` (NumPy, one thread);
* ``ts shapiro, effect_size=False``: the Shapiro-Wilk target's arm;
* ``ts shapiro``: ``ts.normality(da, tests=("shapiro",))``, i.e. with the
  effect sizes (the KS distance without Anderson-Darling);
* ``ts default``: ``ts.normality(da)``, the default call's target arm;
* ``kernel default, 1 thread`` / ``2 threads``: the kernel behind the default
  call (:func:`tensorstats.kernels.normality.normality_kernel`, no xarray, no
  Benjamini-Hochberg) on one and on two threads, for the thread scaling;
* ``scipy shapiro loop``: one :func:`scipy.stats.shapiro` call per group;
* ``scipy composition``: per group :func:`scipy.stats.shapiro`,
  :func:`scipy.stats.anderson`, :func:`scipy.stats.skew`,
  :func:`scipy.stats.kurtosis` and :func:`scipy.stats.kstest` of the values
  standardized by their mean and std (ddof=1) against N(0, 1).

``ts.normality`` uses every core for in-memory input (the sort and the
compiled per-value kernel release the GIL). The SciPy loops are timed on a
subset of groups and scaled (they are linear in the number of groups).

Before the arms, the script times the first ``ts.normality`` call of a fresh
process (numba compiles the kernel on first use), with numba's on-disk cache
cold (an empty ``NUMBA_CACHE_DIR``) and then warm.

Run it::

    .venv/bin/python benchmarks/normality.py            # ~2 min on 2 cores
    .venv/bin/python benchmarks/normality.py --quick    # smoke run

Results: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import scipy.stats
import xarray as xr

import tensorstats as ts
from tensorstats.kernels.normality import normality_kernel

SIZES = ((2000, 2048), (20000, 256))
SHAPIRO_SPEEDUP = {2048: 20.0, 256: 150.0}
"""Target: scipy shapiro loop / ts shapiro (effect_size=False), at least."""
SHAPIRO_SORT = 1.5
"""Target: ts shapiro (effect_size=False) / np.sort, at most."""
DEFAULT_SPEEDUP = {2048: 100.0, 256: 600.0}
"""Target: scipy composition / ts default, at least."""
DEFAULT_SORT = 3.0
"""Target: ts default / np.sort, at most."""
SCIPY_PEERS = {"scipy shapiro loop": "ts shapiro, effect_size=False",
               "scipy composition": "ts default"}
"""Each SciPy loop and the ts arm timed with it in the second phase."""


def _anderson(x: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return scipy.stats.anderson(x, dist="norm", method="interpolate").statistic
        except TypeError:  # scipy < 1.17 has no method argument
            return scipy.stats.anderson(x, dist="norm").statistic


def _composition(x: np.ndarray) -> tuple[float, ...]:
    """What ``ts.normality(da)`` gives for one group, computed with SciPy."""
    w = scipy.stats.shapiro(x)
    a2 = _anderson(x)
    z = (x - x.mean()) / x.std(ddof=1)
    ks = scipy.stats.kstest(z, "norm").statistic
    return w.statistic, w.pvalue, a2, scipy.stats.skew(x), scipy.stats.kurtosis(x), ks


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _arms(x: np.ndarray, loop_groups: int) -> dict[str, Callable[[], object]]:
    da = xr.DataArray(x, dims=("channel", "sample"))
    sub = x[:loop_groups]
    return {
        "sort": lambda: np.sort(x, axis=-1),
        "ts shapiro, effect_size=False": lambda: ts.normality(da, tests=("shapiro",),
                                                             effect_size=False),
        "ts shapiro": lambda: ts.normality(da, tests=("shapiro",)),
        "ts default": lambda: ts.normality(da),
        "kernel default, 1 thread": lambda: normality_kernel(x, threads=1),
        "kernel default, 2 threads": lambda: normality_kernel(x, threads=2),
        "scipy shapiro loop": lambda: [scipy.stats.shapiro(r) for r in sub],
        "scipy composition": lambda: [_composition(r) for r in sub],
    }


def _rounds(arms: dict[str, Callable[[], object]], rounds: int, rng: np.random.Generator,
            scale: dict[str, float]) -> dict[str, float]:
    """Median seconds per arm over ``rounds`` shuffled rounds (times multiplied by ``scale``)."""
    times: dict[str, list[float]] = {k: [] for k in arms}
    order = list(arms)
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            times[k].append(_timed(arms[k]) * scale.get(k, 1.0))
    return {k: statistics.median(v) for k, v in times.items()}


def bench(groups: int, n: int, rounds: int, loop_groups: int) -> dict[str, float]:
    """Median seconds per arm (SciPy loops scaled to ``groups``), in the two phases.

    The ``ts`` arms' times in the SciPy phase are returned as ``<arm> (with scipy)``.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((groups, n)).astype(np.float32)
    arms = _arms(x, loop_groups)
    scale = {k: groups / loop_groups for k in arms if k.startswith("scipy")}
    for fn in arms.values():  # warm-up: caches, thread pool, page faults, compilation
        fn()
    fast = {k: fn for k, fn in arms.items() if not k.startswith("scipy")}
    med = _rounds(fast, rounds, rng, scale)
    for loop, ts_arm in SCIPY_PEERS.items():
        pair = {loop: arms[loop], f"{ts_arm} (with scipy)": arms[ts_arm]}
        med.update(_rounds(pair, rounds, rng, scale))
    return med


def _verdict(value: float, target: float, at_least: bool) -> str:
    met = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    return f"(target {sign} {target:g}x: {'met' if met else 'NOT met'})"


def report(n: int, med: dict[str, float]) -> None:
    """Print the arms' medians and every ratio against its target."""
    for k, v in med.items():
        print(f"  {k:42s} {v * 1e3:9.1f} ms")
    sw, full, sort = med["ts shapiro, effect_size=False"], med["ts default"], med["sort"]
    sw_s = med["ts shapiro, effect_size=False (with scipy)"]
    full_s = med["ts default (with scipy)"]
    rows = [
        ("shapiro: scipy loop / ts", med["scipy shapiro loop"] / sw_s, SHAPIRO_SPEEDUP[n], True),
        ("shapiro: ts / np.sort", sw / sort, SHAPIRO_SORT, False),
        ("default: scipy composition / ts", med["scipy composition"] / full_s,
         DEFAULT_SPEEDUP[n], True),
        ("default: ts / np.sort", full / sort, DEFAULT_SORT, False),
    ]
    for label, value, target, at_least in rows:
        print(f"  {label:42s} {value:8.2f}x  {_verdict(value, target, at_least)}")
    one, two = med["kernel default, 1 thread"], med["kernel default, 2 threads"]
    print(f"  {'kernel: 1 thread / 2 threads':42s} {one / two:8.2f}x")


FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np, xarray as xr, tensorstats as ts
da = xr.DataArray(np.random.default_rng(0).standard_normal((4, 300)).astype(np.float32),
                  dims=("channel", "sample"))
t1 = time.perf_counter()
ts.normality(da)
t2 = time.perf_counter()
ts.normality(da)
t3 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.4f}")
"""


def first_call() -> None:
    """The first ``ts.normality`` call of a fresh process, numba's cache cold, then warm."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            imports, first, second = (float(v) for v in out)
            print(f"  numba cache {label}: imports {imports:.2f} s, first call {first:.2f} s, "
                  f"second call {second * 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="few rounds, small loops")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    print(f"tensorstats {ts.__version__}, numpy {np.__version__}, scipy {scipy.__version__}; "
          f"median of {rounds} interleaved rounds")
    print("\nfirst call in a fresh process (4 groups x n=300 float32):")
    first_call()
    for groups, n in SIZES:
        loop_groups = min(groups, 50 if args.quick else 400)
        med = bench(groups, n, rounds, loop_groups)
        print(f"\n{groups} groups x n={n} float32 ({groups * n * 4 / 1e6:.1f} MB; "
              f"SciPy loops over {loop_groups} groups, scaled)")
        report(n, med)


if __name__ == "__main__":
    main()
