"""The compiled shift kernel against SciPy, brute-force bins and the NumPy merge path.

Every expected value is computed here, one pair at a time, from the finite
values of the pair: W1, energy and KS (statistic and ``method="auto"``
p-value) with :mod:`scipy.stats`; JS with
:func:`scipy.spatial.distance.jensenshannon` and Hellinger with NumPy on bins
built here from the documented rule (pooled quantile edges moved past their
ties, each sample's maximum, the largest pooled value below each sample's
minimum). The NumPy merge path (``shift._merged_metrics``), which the
compiled kernel replaced, is a second reference.

The grid: distributions (continuous, integer-valued ties, values repeated
across the samples, disjoint supports, heavy tails, constants) x sizes
(equal and unequal, down to 1) x NaN/Inf in either sample x float32/float64,
through a reference per group and a shared (broadcast) one; Hypothesis adds
arbitrary small samples; dask-chunked DataArrays go through ``ts.shift``.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
import scipy.stats as st
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.spatial.distance import jensenshannon

import tensorstats as ts
from tensorstats.kernels import shift

METRICS = ("wasserstein", "ks", "energy", "js", "hellinger")
SIZES = [(1, 1), (1, 2), (2, 1), (2, 3), (3, 2), (3, 3), (1, 40), (40, 1), (7, 7), (33, 64),
         (150, 200), (256, 256)]
KINDS = ("normal", "ints", "repeated", "disjoint", "heavy", "constant")


def _bins(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin proportions of ``a`` and ``b`` on the documented shared edges."""
    pooled = np.sort(np.concatenate([a, b]))
    nbins = int(np.clip(math.ceil(math.sqrt(min(a.size, b.size))), 2, 128))
    quantiles = pooled[[(k * pooled.size) // nbins - 1 for k in range(1, nbins)]]
    extra = [a.max(), b.max(), *(pooled[pooled < s.min()][-1:] for s in (a, b))]
    edges = np.sort(np.concatenate([quantiles, np.hstack(extra)]))

    def props(s: np.ndarray) -> np.ndarray:
        cum = np.r_[0, np.searchsorted(np.sort(s), edges, side="right"), s.size]
        return np.diff(cum) / s.size

    return props(a), props(b)


def _expected(a: np.ndarray, b: np.ndarray) -> dict:
    """Every metric of one pair from SciPy and brute-force bins (NaN if a side is empty)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    out = {"n": a.size, "n_reference": b.size}
    if a.size == 0 or b.size == 0:
        return {**out, **{k: np.nan for k in (*METRICS, "ks_pvalue")}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's exact -> asymp fallback
        ks = st.ks_2samp(a, b)
    p, q = _bins(a, b)
    return {**out, "wasserstein": st.wasserstein_distance(a, b),
            "energy": st.energy_distance(a, b), "ks": ks.statistic, "ks_pvalue": ks.pvalue,
            "js": jensenshannon(p, q, base=2) ** 2,
            "hellinger": math.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(p * q)))))}


def _numpy_path(a: np.ndarray, b: np.ndarray) -> dict:
    """The NumPy merge path on the sorted finite values of one pair."""
    a = np.sort(a[np.isfinite(a)].astype(np.float64))[None]
    b = np.sort(b[np.isfinite(b)].astype(np.float64))[None]
    return {k: float(v[0]) for k, v in shift._merged_metrics(a, b, METRICS).items()}


def _close(name: str, got: float, want: float, scale: float, err: str) -> None:
    if name in ("wasserstein", "energy"):  # in the data's units
        assert_allclose(got, want, rtol=1e-9, atol=1e-12 * scale, err_msg=err)
    elif name == "hellinger":  # sqrt amplifies rounding of 1 - sum sqrt(pq) near 0
        assert_allclose(got ** 2, want ** 2, rtol=1e-9, atol=1e-12, err_msg=err)
    elif name == "ks_pvalue":
        assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=err)
    else:
        assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=err)


def _check(x: np.ndarray, r: np.ndarray, out: dict, err: str, numpy_path: bool = True) -> None:
    """Compare ``out`` row by row with SciPy, the bins and (optionally) the NumPy path."""
    r = np.broadcast_to(r, (x.shape[0], r.shape[-1]))
    for q in range(x.shape[0]):
        want = _expected(x[q], r[q])
        assert out["n"][q] == want["n"] and out["n_reference"][q] == want["n_reference"]
        finite = np.r_[x[q], r[q]][np.isfinite(np.r_[x[q], r[q]])].astype(np.float64)
        scale = float(np.ptp(finite)) if finite.size else 1.0
        old = _numpy_path(x[q], r[q]) if numpy_path and want["n"] * want["n_reference"] else {}
        for name in out:
            if name in ("n", "n_reference"):
                continue
            got = float(out[name][q])
            if np.isnan(want[name]):
                assert np.isnan(got), f"{err} row {q} {name}: {got} for an empty side"
                continue
            _close(name, got, want[name], scale, f"{err} row {q} {name} vs scipy")
            if name in old:
                _close(name, got, old[name], scale, f"{err} row {q} {name} vs NumPy path")


def _sample(kind: str, rng: np.random.Generator, g: int, n: int, m: int
            ) -> tuple[np.ndarray, np.ndarray]:
    if kind == "normal":
        return rng.standard_normal((g, n)), rng.normal(0.3, 1.2, (g, m))
    if kind == "ints":  # heavy ties within and across the samples
        return rng.integers(0, 5, (g, n)).astype(float), rng.integers(1, 6, (g, m)).astype(float)
    if kind == "repeated":  # the reference repeats some of the sample's values
        x = rng.standard_normal((g, n)).round(2)
        picks = np.take_along_axis(x, rng.integers(0, n, (g, m)), axis=-1)
        return x, np.where(rng.random((g, m)) < 0.5, picks, rng.standard_normal((g, m)))
    if kind == "disjoint":
        lo, hi = rng.uniform(0, 1, (g, n)), rng.uniform(2, 3, (g, m))
        return (lo, hi) if rng.random() < 0.5 else (hi, lo)  # either side above
    if kind == "heavy":
        return rng.standard_t(1.5, (g, n)) * 1e3, rng.standard_t(1.5, (g, m)) * 1e3 + 10
    if kind == "constant":
        return np.full((g, n), 1.5), np.where(rng.random((g, m)) < 0.5, 1.5, 2.0)
    raise AssertionError(kind)


def _poke(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """NaN, +inf and -inf in some places, and the whole first row if wider than 2."""
    a = a.copy()
    mask = rng.random(a.shape) < 0.2
    a[mask] = rng.choice(np.array([np.nan, np.inf, -np.inf]), size=int(mask.sum()))
    if a.shape[1] > 2:
        a[0] = np.nan  # a row without a finite value
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nonfinite", ["none", "x", "r", "both"])
@pytest.mark.parametrize("kind", KINDS)
def test_grid_against_scipy_and_numpy_path(kind, nonfinite, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{kind} {nonfinite} {np.dtype(dtype)}".encode()))
    for n, m in SIZES:
        x, r = _sample(kind, rng, 4, n, m)
        x, r = x.astype(dtype), r.astype(dtype)
        if nonfinite in ("x", "both"):
            x = _poke(x, rng)
        if nonfinite in ("r", "both"):
            r = _poke(r, rng)
        err = f"{kind} n={n} m={m} {np.dtype(dtype).name} non-finite in {nonfinite}"
        _check(x, r, shift.shift_kernel(x, r, metrics=METRICS), err)
        # a reference shared by every group: sorted once, read in place
        _check(x, r[1:2], shift.shift_kernel(x, r[1:2], metrics=METRICS), err + " shared")
        # W1 alone: equal sizes skip the merge
        _check(x, r, shift.shift_kernel(x, r, metrics=("wasserstein",)), err + " W1 only")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hst.data())
def test_hypothesis_small_samples(data):
    dtype = data.draw(hst.sampled_from([np.float32, np.float64]), label="dtype")
    ties = data.draw(hst.booleans(), label="integer values")
    values = (hst.integers(-3, 3).map(float) if ties else
              hst.floats(-1e6, 1e6, width=32 if dtype == np.float32 else 64))
    n = data.draw(hst.integers(1, 30), label="n")
    m = data.draw(hst.integers(1, 30), label="m")
    x = data.draw(hnp.arrays(dtype, (2, n), elements=values), label="x")
    r = data.draw(hnp.arrays(dtype, (2, m), elements=values), label="r")
    for a in (x, r):  # a few NaN / +-inf anywhere
        spots = hst.tuples(hst.integers(0, 1), hst.integers(0, a.shape[1] - 1),
                           hst.sampled_from([np.nan, np.inf, -np.inf]))
        for row, col, v in data.draw(hst.lists(spots, max_size=3), label="non-finite"):
            a[row, col] = v
    _check(x, r, shift.shift_kernel(x, r, metrics=METRICS), "hypothesis")
    if n == m:
        _check(x, r, shift.shift_kernel(x, r, metrics=("wasserstein",)), "hypothesis W1")


def test_float32_read_as_is_equals_float64():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 300)).astype(np.float32)
    r = rng.integers(-50, 50, (20, 250)).astype(np.float32) / 16  # ties with each other
    r[3, :100] = x[3, :100]  # and with x
    a = shift.shift_kernel(x, r, metrics=METRICS)
    b = shift.shift_kernel(x.astype(np.float64), r.astype(np.float64), metrics=METRICS)
    c = shift.shift_kernel(x, r.astype(np.float64), metrics=METRICS)  # mixed dtypes
    for k in a:
        assert_allclose(a[k], b[k], rtol=1e-13, atol=1e-15, err_msg=k)
        assert_allclose(c[k], b[k], rtol=1e-13, atol=1e-15, err_msg=k)


def test_threads_do_not_change_results():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 1500))
    x[::7, ::3] = np.nan
    r = rng.normal(0.1, 1, (300, 1100))
    one = shift.shift_kernel(x, r, metrics=METRICS, threads=1)
    two = shift.shift_kernel(x, r, metrics=METRICS, threads=2)
    for k in one:
        assert_array_equal(one[k], two[k], err_msg=k)
    _check(x[:5], r[:5], {k: v[:5] for k, v in two.items()}, "threads", numpy_path=False)


def test_large_magnitudes_do_not_overflow():
    # (F - G) is scaled to [0, 1] before it multiplies a gap between values
    rng = np.random.default_rng(3)
    x, r = rng.standard_normal((3, 500)) * 1e300, rng.normal(0.5, 1, (3, 400)) * 1e300
    out = shift.shift_kernel(x, r, metrics=("wasserstein", "energy"))
    for q in range(3):
        assert_allclose(out["wasserstein"][q], st.wasserstein_distance(x[q], r[q]), rtol=1e-9)
        assert_allclose(out["energy"][q], st.energy_distance(x[q], r[q]), rtol=1e-9)


def test_ks_ties_are_evaluated_after_every_tied_value():
    # Every value tied across the samples: scipy compares the CDFs only after all
    # copies of a value; before the last copy |F - G| would reach 1.
    x = np.array([[0.0, 1.0, 2.0, 3.0]])
    r = x.copy()
    out = shift.shift_kernel(x, r, metrics=("ks", "wasserstein", "energy"))
    assert out["ks"][0] == 0.0 and out["wasserstein"][0] == 0.0 and out["energy"][0] == 0.0
    x, r = np.array([[1.0, 1.0, 2.0]]), np.array([[1.0, 2.0, 2.0]])
    assert shift.shift_kernel(x, r, metrics=("ks",))["ks"][0] == pytest.approx(1 / 3, abs=1e-15)


def test_js_identical_is_zero_and_disjoint_is_one_bit_for_both_dtypes():
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        same = rng.integers(0, 9, (3, 700)).astype(dtype)
        out = shift.shift_kernel(same, same.copy(), metrics=("js", "hellinger", "ks"))
        assert_array_equal(out["js"], 0.0)
        assert_array_equal(out["ks"], 0.0)
        for n, m in ((1, 1), (2, 3), (700, 9)):
            lo = rng.uniform(0, 1, (2, n)).astype(dtype)
            hi = rng.uniform(2, 3, (2, m)).astype(dtype)
            for a, b in ((lo, hi), (hi, lo)):
                out = shift.shift_kernel(a, b, metrics=("js", "hellinger"))
                assert_allclose(out["js"], 1.0, atol=1e-12)
                assert_allclose(out["hellinger"], 1.0, atol=1e-12)


def test_bins_clip_at_128():
    rng = np.random.default_rng(6)
    x, r = rng.standard_normal((1, 17000)), rng.normal(0.1, 1.1, (1, 20000)).round(2)
    assert shift.n_bins(17000, 20000) == 128
    _check(x, r, shift.shift_kernel(x, r, metrics=METRICS), "B = 128", numpy_path=True)


@pytest.mark.parametrize("reference", ["initial", "dataarray"])
def test_dask_chunked_dataarrays_through_ts_shift(reference):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 5, 40)) * np.arange(1, 4)[:, None, None]).astype(np.float32)
    x[1, 2, :13] = np.nan
    x[2, 0, 5] = np.inf
    x[0, 4] = np.round(x[0, 4])  # ties
    da = xr.DataArray(x, dims=("step", "channel", "v"), coords={"step": [0, 1, 2]})
    if reference == "initial":
        ref, ref_values = "initial", np.broadcast_to(x[:1], x.shape)
        kwargs = {}
    else:
        r = rng.normal(0.2, 1, (5, 23)).astype(np.float64)  # other size and dtype
        r[3, :4] = -np.inf
        ref = xr.DataArray(r, dims=("channel", "w"))
        ref_values = np.broadcast_to(r, (3, *r.shape))
        kwargs = {"by": ("step", "channel")}
    eager = ts.shift(da, reference=ref, metrics=METRICS, **kwargs)
    lazy = ts.shift(da.chunk({"step": 1, "channel": 2}), reference=ref, metrics=METRICS,
                    **kwargs)
    lazy = lazy.compute()
    for name in eager.data_vars:
        assert_array_equal(lazy[name].values, eager[name].values, err_msg=name)
    flat_x = x.reshape(15, -1)
    flat_r = ref_values.reshape(15, -1)
    got = {name: eager[name].values.reshape(-1) for name in eager.data_vars}
    _check(flat_x, flat_r, got, f"ts.shift reference={reference}", numpy_path=False)


def test_numba_is_imported_on_first_use_only():
    code = ("import sys, tensorstats, tensorstats.kernels.shift, tensorstats.stats.shift; "
            "assert 'numba' not in sys.modules, 'numba imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
