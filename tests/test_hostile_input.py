"""Hostile and odd input at the public API, fuzzed with Hypothesis.

Every case either records and reads back exactly, or raises a documented
error (TypeError or ValueError) with nothing already stored lost. A value is
never changed silently: a cast that would overflow finite floats is refused.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from hypothesis.extra import numpy as hnp

import tensorstats as ts

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64"]
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def fresh(tmp_path) -> str:
    return str(tmp_path / f"{uuid.uuid4().hex}.zarr")


# ------------------------------------------------------------------ float overflow
def test_float_overflow_into_narrower_series_is_refused(tmp_path):
    path = fresh(tmp_path)
    first = np.array([[1.5, -2.0], [0.25, 3.0]], np.float32)
    with ts.Recorder(path) as rec:
        rec.record("weight", "fc.weight", first, step=0)
        bad = np.array([[1e300, 0.0], [1.0, 2.0]])  # float64; float32's max is 3.4e38
        with pytest.raises(ValueError) as err:
            rec.record("weight", "fc.weight", bad, step=1)
        msg = str(err.value)
        for part in ("'fc.weight'", "step 1", "float32", "float64", "1e+300", "inf"):
            assert part in msg, msg
        # NaN and ±Inf are values of their own, stored as they are; in range is fine
        special = np.array([[np.nan, np.inf], [-np.inf, 3e38]])
        rec.record("weight", "fc.weight", special, step=2)
        # an Inf does not hide an overflowing finite value next to it
        with pytest.raises(ValueError, match="do not fit"):
            rec.record("weight", "fc.weight", np.array([[np.inf, -1e39], [0, 0]]), step=3)
    da = ts.open_run(path)["weight", "fc.weight"]
    assert da["step"].values.tolist() == [0, 2]  # nothing of the refused steps
    np.testing.assert_array_equal(da.sel(step=0).values, first)
    np.testing.assert_array_equal(da.sel(step=2).values, special.astype(np.float32))


def test_longdouble_beyond_float64_is_refused_at_the_first_step(tmp_path):
    if np.finfo(np.longdouble).max <= np.finfo(np.float64).max:
        pytest.skip("longdouble is float64 on this platform")
    path = fresh(tmp_path)
    with ts.Recorder(path) as rec:
        with pytest.raises(ValueError, match="float64"):
            rec.record("x", "big", np.array([np.longdouble("1e4000"), 1]), step=0)
        rec.record("x", "ok", np.array([np.longdouble("1.5"), 1]), step=0)
    run = ts.open_run(path)
    assert run.layers("x") == ["ok"]
    assert run["x", "ok"].dtype == np.float64


def test_integers_beyond_a_float16_series_are_refused(tmp_path):
    path = fresh(tmp_path)
    with ts.Recorder(path) as rec:
        rec.record("x", "h", np.array([1.5, 2.0], np.float16), step=0)
        with pytest.raises(ValueError, match=r"1e\+05.*float16"):
            rec.record("x", "h", np.array([1, 100_000], np.int32), step=1)
        rec.record("x", "h", np.array([1, 60_000], np.int32), step=2)  # fits (rounded)
    got = ts.open_run(path)["x", "h"]
    assert got["step"].values.tolist() == [0, 2]
    assert np.isfinite(got.values).all()


def test_float_into_int_series_and_out_of_range_ints_refused(tmp_path):
    path = fresh(tmp_path)
    with ts.Recorder(path) as rec:
        rec.record("count", "c", np.array([1, 2], np.int16), step=0)
        with pytest.raises(TypeError, match="cannot be stored"):
            rec.record("count", "c", np.array([1.5, 2.0]), step=1)
        with pytest.raises(ValueError, match="do not fit"):
            rec.record("count", "c", np.array([1, 70000], np.int64), step=1)
    assert ts.open_run(path)["count", "c"].values.tolist() == [[1, 2]]


# ------------------------------------------------------------------ fuzzing
def _arrays(draw, dtype, shape):
    elements = None
    if np.dtype(dtype).kind == "f":
        elements = hst.floats(allow_nan=True, allow_infinity=True,
                              width=np.dtype(dtype).itemsize * 8)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@hst.composite
def steps_of_a_series(draw):
    """Several steps of one series: same shape, dtypes that may change between steps."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    first = draw(hst.sampled_from(DTYPES))
    n = draw(hst.integers(1, 4))
    dtypes = [first] + [draw(hst.sampled_from(DTYPES)) for _ in range(n - 1)]
    axis = draw(hst.sampled_from([None, 0, -1])) if shape else None
    return shape, axis, [_arrays(draw, d, shape) for d in dtypes]


def _storable(value: np.ndarray, stored: np.dtype) -> bool:
    """Whether a later step can go into the series' dtype without a changed value."""
    if not np.can_cast(value.dtype, stored, casting="same_kind"):
        return False
    if value.size == 0:
        return True
    if stored.kind in "iu" and not np.can_cast(value.dtype, stored):
        info = np.iinfo(stored)
        return info.min <= value.min() and value.max() <= info.max
    if stored.kind == "f" and value.dtype.kind in "fiu":
        finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
        return finite.size == 0 or np.abs(finite.astype(float)).max() <= np.finfo(stored).max
    return True


@FUZZ
@given(case=steps_of_a_series())
def test_fuzzed_steps_record_exactly_or_raise_with_nothing_lost(tmp_path, case):
    _, axis, values = case
    path = fresh(tmp_path)
    kept = []
    with ts.Recorder(path) as rec:
        for step, value in enumerate(values):
            stored = kept[0][1].dtype if kept else value.dtype
            if _storable(value, np.dtype(stored)):
                rec.record("k", "layer", value, step=step, channel_axis=axis)
                kept.append((step, value))
            else:
                with pytest.raises((TypeError, ValueError)):
                    rec.record("k", "layer", value, step=step, channel_axis=axis)
    da = ts.open_run(path)["k", "layer"]
    assert da["step"].values.tolist() == [s for s, _ in kept]
    for step, value in kept:
        got = da.sel(step=step).values
        want = np.moveaxis(value, axis, 0) if axis is not None else value
        assert got.shape == want.shape
        # exactly the values given, in the series' dtype (same kind, no overflow)
        np.testing.assert_array_equal(got, want.astype(got.dtype))
        assert np.array_equal(np.isnan(got.astype(float)), np.isnan(want.astype(float)))


NAMES = hst.text(alphabet=hst.characters(codec="utf-8", exclude_categories=["Cs"]),
                 min_size=1, max_size=12) | hst.sampled_from(
    ["..", ".", "/", "a/../../b", "\x00", "con", "zarr.json", "tensors", "~", " ", "%2F"])


@FUZZ
@given(kind=NAMES, layer=NAMES)
def test_fuzzed_names_stay_inside_the_store_and_roundtrip(tmp_path, kind, layer):
    root = tmp_path / uuid.uuid4().hex
    root.mkdir()
    path = str(root / "run.zarr")
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    with ts.Recorder(path) as rec:
        rec.record(kind, layer, value, step=3)
        rec.record_scalar(layer, 1.25, step=3)
    assert os.listdir(root) == ["run.zarr"]  # nothing written beside the store
    run = ts.open_run(path)
    assert run.kinds == [kind] and run.layers(kind) == [layer]
    np.testing.assert_array_equal(run[kind, layer].sel(step=3).values, value)
    assert float(run.scalars[layer].sel(step=3)) == 1.25


def test_empty_tensors_and_0d_scalars(tmp_path):
    path = fresh(tmp_path)
    with ts.Recorder(path) as rec:
        rec.record("k", "empty", np.zeros((0, 3)), step=0)
        rec.record("k", "empty", np.zeros((0, 3)), step=1)
        rec.record("k", "zero_d", np.float32(2.5), step=0)
        with pytest.raises(ValueError, match="shape"):
            rec.record("k", "empty", np.zeros((1, 3)), step=2)
    run = ts.open_run(path)
    assert run["k", "empty"].shape == (2, 0, 3)
    assert run["k", "zero_d"].values.tolist() == [2.5]


def test_a_hundred_thousand_channels(tmp_path):
    path = fresh(tmp_path)
    x = np.random.default_rng(0).normal(size=(100_000, 3)).astype(np.float32)
    with ts.Recorder(path) as rec:
        rec.record("weight", "emb", x, step=0)
        rec.record("weight", "emb", x * 2, step=1)
    da = ts.open_run(path)["weight", "emb"]
    assert da.sizes["channel"] == 100_000
    np.testing.assert_array_equal(da.sel(step=1).values, x * 2)
    m = ts.moments(da, by=("step", "channel")).compute()
    np.testing.assert_allclose(m["mean"].sel(step=0).values, x.astype(np.float64).mean(1),
                               rtol=1e-12, atol=1e-12)
