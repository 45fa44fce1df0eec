"""Analyses refuse bad input with errors that name the problem."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import tensorstats as ts

DA = xr.DataArray(np.random.default_rng(0).random((3, 4, 10)), dims=("step", "channel", "d"),
                  coords={"step": [0, 1, 2]})
LOSS = DA.isel(channel=0, d=0)


@pytest.mark.parametrize("call, error, match", [
    (lambda: ts.moments(np.zeros(3)), TypeError, "must be an xarray.DataArray"),
    (lambda: ts.normality([1.0, 2.0]), TypeError, "must be an xarray.DataArray"),
    (lambda: ts.moments(DA.astype(complex)), TypeError, "complex128"),
    (lambda: ts.normality(DA.astype(complex)), TypeError, "real numbers"),
    (lambda: ts.shift(DA.astype(str)), TypeError, "real numbers"),
    (lambda: ts.shift(DA, reference=DA.astype(complex)), TypeError, "reference must hold"),
    (lambda: ts.correlate(DA, LOSS.astype(complex)), TypeError, "y must hold"),
    (lambda: ts.moments(DA, by="nope"), ValueError, r"by names \['nope'\]"),
    (lambda: ts.normality(DA, by=("step", "step")), ValueError, "twice"),
    (lambda: ts.normality(DA, tests="lilliefors"), ValueError, "'lilliefors'"),
    (lambda: ts.normality(DA, max_samples=2), ValueError, "max_samples"),
    (lambda: ts.shift(DA, metrics=("kl",)), ValueError, "'kl'"),
    (lambda: ts.shift(DA, reference="first"), ValueError, "'first'"),
    (lambda: ts.shift(DA, reference=7), ValueError, "step 7 is not a step"),
    (lambda: ts.shift(DA, reference="initial", by="channel"), ValueError, "must be a kept"),
    (lambda: ts.shift(DA, reference=DA.assign_coords(step=[5, 6, 7])), ValueError,
     "share no label"),
    (lambda: ts.shift(DA, ks_method="fast"), ValueError, "ks_method"),
    (lambda: ts.correlate(DA, xr.DataArray(np.arange(3.0), dims="t")), ValueError,
     "y has no dim 'step'"),
    (lambda: ts.correlate(DA, LOSS.assign_coords(step=[7, 8, 9])), ValueError,
     "share no label"),
    (lambda: ts.correlate(DA, LOSS, method="cosine"), ValueError, "method"),
    (lambda: ts.correlate(DA, LOSS, detrend="quadratic"), ValueError, "detrend"),
    (lambda: ts.correlate(DA, LOSS, max_lag=-1), ValueError, "max_lag"),
    (lambda: ts.correlate(DA, LOSS, align="nearest"), ValueError, "align"),
    (lambda: ts.granger(DA, LOSS, max_lag=0), ValueError, "max_lag"),
    (lambda: ts.to_frame([1, 2]), TypeError, "mapping"),
])
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_align_mean_needs_numeric_labels():
    x = DA.assign_coords(step=["a", "b", "c"])
    with pytest.raises(ValueError, match="numeric labels"):
        ts.correlate(x, LOSS.assign_coords(step=["a", "b", "c"]), align="mean")


def test_shift_of_an_input_without_steps_is_refused():
    with pytest.raises(ValueError, match="no step"):
        ts.shift(DA.isel(step=slice(0, 0)))


@pytest.mark.parametrize("chunked", [False, True])
def test_empty_inputs_give_empty_results(chunked):
    empty = xr.DataArray(np.zeros((0, 3, 40)), dims=("step", "channel", "v"))
    if chunked:
        empty = empty.chunk()
    for result in (ts.moments(empty), ts.normality(empty)):
        result = result.compute()
        assert result.sizes["step"] == 0 and result.sizes["channel"] == 3
