"""The compiled Benjamini-Hochberg (radix argsort) against NumPy and statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from tensorstats.kernels import fdr
from tensorstats.kernels.fdr_compiled import COUNTERS, _radix_order, adjust_row


def _numpy_path(row: np.ndarray) -> np.ndarray:
    out = np.full(row.shape, np.nan)
    fdr._adjust_row((row, out))
    return out


def _pvalues(rng: np.random.Generator, m: int, nan: bool = True) -> np.ndarray:
    """Uniform, tiny, exact zeros and ones, -0.0, ties and (if ``nan``) NaNs."""
    p = rng.uniform(size=m) ** 3
    p[rng.integers(0, m, m // 20)] = 10.0 ** rng.uniform(-300, -5, m // 20)
    p[:: 97] = 0.0
    p[5:: 101] = -0.0
    p[7:: 89] = 1.0
    p[100:160] = 0.0123  # a long tie
    if nan:
        p[11:: 53] = np.nan
    return p



def radix_order(keys: np.ndarray) -> np.ndarray:
    """The compiled radix sort's order of ``keys`` (uint64), with fresh work arrays."""
    keys = np.array(keys, dtype=np.uint64)
    m = len(keys)
    return _radix_order(keys, np.empty_like(keys), np.empty(m, np.int64),
                        np.empty(m, np.int64), np.empty(COUNTERS, np.int64)).copy()

@pytest.mark.parametrize("nan", [True, False])
@pytest.mark.parametrize("m", [fdr.COMPILED_FROM, 20000])
def test_compiled_row_equals_numpy_and_statsmodels(m, nan):
    rng = np.random.default_rng(m)
    row = _pvalues(rng, m, nan)
    got = fdr.bh_adjust(row)  # long row: the compiled kernel
    np.testing.assert_array_equal(got, _numpy_path(row))  # the same bits
    ok = ~np.isnan(row)
    np.testing.assert_allclose(got[ok], multipletests(row[ok], method="fdr_bh")[1], rtol=1e-12)
    assert np.isnan(got[~ok]).all()


def test_several_long_rows_on_threads_match_statsmodels():
    rng = np.random.default_rng(1)
    p = np.stack([_pvalues(rng, 6000) for _ in range(3)])
    p[1] = np.nan  # a row with no tests
    got = fdr.bh_adjust(p)
    assert np.isnan(got[1]).all()
    for row, out in zip(p[[0, 2]], got[[0, 2]], strict=True):
        ok = ~np.isnan(row)
        np.testing.assert_allclose(out[ok], multipletests(row[ok], method="fdr_bh")[1],
                                   rtol=1e-12)


def test_negative_value_falls_back_to_numpy():
    row = np.random.default_rng(2).uniform(size=fdr.COMPILED_FROM)
    row[3] = -1e-3
    out = np.full(row.shape, 7.0)
    m = len(row)
    assert not adjust_row(row, out, np.empty(2 * m, np.uint64), np.empty(2 * m, np.int64),
                          np.empty(COUNTERS, np.int64))
    assert (out == 7.0).all()  # untouched
    np.testing.assert_array_equal(fdr.bh_adjust(row), _numpy_path(row))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=300),
       st.sampled_from([0, 2**11 - 1, 2**33, 2**64 - 2**20]))
def test_radix_order_is_a_stable_sort(values, mask):
    """Against NumPy's stable argsort; masked keys share digits (skipped passes)."""
    keys = np.array(values, dtype=np.uint64) | np.uint64(mask)
    kept = keys.copy()
    np.testing.assert_array_equal(radix_order(keys), np.argsort(keys, kind="stable"))
    np.testing.assert_array_equal(keys, kept)


def test_radix_order_of_equal_and_empty_keys():
    assert radix_order(np.zeros(0, np.uint64)).size == 0
    np.testing.assert_array_equal(radix_order(np.full(5, 9, np.uint64)), np.arange(5))
