"""The compiled moments kernel against a brute-force loop over the same groups.

The reference takes each group's finite values in float64 and sums with
``math.fsum``, two-pass (mean first, then centred powers); the kernel must agree
for float32 and float64 input, every layout it walks without a copy (pooled
axes in the middle, several strided axes, sliced and transposed views) and
those it copies (negative strides, strided innermost values), with NaN/Inf,
far-offset data, constant and empty groups, and on one or two threads.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from hypothesis.extra import numpy as hnp

from tensorstats.kernels import moments


def _reference(values: np.ndarray) -> dict:
    v = values[np.isfinite(values)].astype(np.float64)
    n = v.size
    ref = {"count": n, "nan_count": int(np.isnan(values).sum()),
           "inf_count": int(np.isinf(values).sum())}
    if n == 0:
        return {**ref, "mean": 0.0, "m2": 0.0, "m3": 0.0, "m4": 0.0, "min": np.inf,
                "max": -np.inf}
    mean = math.fsum(v) / n
    d = v - mean
    shift = math.fsum(d) / n  # the rounding of the mean, which matters at 1e7 + 0.1 noise
    mean, d = mean + shift, d - shift
    return {**ref, "mean": mean, "m2": math.fsum(d ** 2), "m3": math.fsum(d ** 3),
            "m4": math.fsum(d ** 4), "min": float(v.min()), "max": float(v.max())}


def _check(x: np.ndarray, axis: tuple[int, ...], threads: int = 1, rel: float = 1e-10) -> None:
    got = moments.partial_moments(x, axis=axis, threads=threads)
    kept = [a for a in range(x.ndim) if a not in axis]
    arr = np.transpose(x, kept + list(axis))
    lead = arr.shape[:len(kept)]
    for idx in np.ndindex(*lead):
        ref = _reference(arr[idx].ravel())
        scale = max(ref["m2"] / max(ref["count"], 1), 1e-300)
        for k in ("count", "nan_count", "inf_count", "min", "max"):
            assert got[k][idx] == ref[k], (k, idx)
        assert got["mean"][idx] == pytest.approx(ref["mean"], rel=1e-13, abs=1e-13 * scale ** 0.5)
        n = max(ref["count"], 1)
        for p, k in ((2, "m2"), (3, "m3"), (4, "m4")):
            assert got[k][idx] == pytest.approx(ref[k], rel=rel, abs=rel * n * scale ** (p / 2)), \
                (k, idx)


def _data(rng, shape, dtype, nonfinite, offset=0.0):
    x = (rng.standard_t(5, size=shape) * 2.0 + offset).astype(dtype)
    if nonfinite:
        flat = x.reshape(-1)
        picks = rng.choice(flat.size, size=max(1, flat.size // 50), replace=False)
        flat[picks] = rng.choice([np.nan, np.inf, -np.inf], size=picks.size)
    return x


LAYOUTS = {  # shape, pooled axes, a view of the array
    "rows": ((6, 500), (1,), lambda a: a),
    "channel in the middle": ((7, 5, 4, 3), (0, 2, 3), lambda a: a),
    "steps and channels kept": ((3, 6, 5, 4, 4), (1, 3, 4), lambda a: a),
    "sliced": ((8, 6, 40), (2,), lambda a: a[1::2, :, 3:33]),
    "transposed": ((30, 9), (0,), lambda a: a),
    "negative strides": ((5, 60), (1,), lambda a: a[::-1, ::-1]),
    "strided innermost": ((40, 6, 3), (0, 2), lambda a: a[:, :, ::2]),
    "everything pooled": ((4, 5, 6), (0, 1, 2), lambda a: a),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("nonfinite", [False, True])
def test_kernel_matches_a_loop(dtype, layout, nonfinite):
    shape, axis, view = LAYOUTS[layout]
    x = view(_data(np.random.default_rng(len(layout)), shape, dtype, nonfinite))
    _check(x, axis)


@pytest.mark.parametrize("dtype,offset", [(np.float64, 1e7), (np.float64, -3e9),
                                          (np.float32, 1e4)])
def test_far_offset_stays_exact(dtype, offset):
    """1e7 + 0.1 * noise: the group is summed again about its mean."""
    rng = np.random.default_rng(3)
    x = (offset + 0.1 * rng.standard_normal((4, 200_000))).astype(dtype)
    x[1::2, 5] = np.nan  # the masked path re-centres too
    # an outlier first: the kernel's shift (the first value) is ~300 sd from the mean
    x[2:, 0] = x[2:, 0] + dtype(40.0)
    _check(x, (1,), rel=1e-9)


def test_constant_empty_and_all_nonfinite_groups():
    x = np.array([[2.5] * 6, [np.nan] * 6, [np.inf, -np.inf, np.nan, 1.0, 1.0, 1.0],
                  [-0.0, 0.0, -0.0, 0.0, 1e-310, -1e-310]])
    got = moments.partial_moments(x)
    assert got["count"].tolist() == [6, 0, 3, 6]
    assert got["nan_count"].tolist() == [0, 6, 1, 0] and got["inf_count"].tolist() == [0, 0, 2, 0]
    assert got["mean"][0] == 2.5 and got["m2"][0] == got["m4"][0] == 0.0
    assert got["mean"][1] == 0.0 and got["min"][1] == np.inf and got["max"][1] == -np.inf
    assert got["mean"][2] == 1.0 and got["m2"][2] == 0.0
    assert got["min"][3] == -1e-310 and got["max"][3] == 1e-310  # subnormals kept
    empty = moments.partial_moments(np.zeros((3, 0)))
    assert empty["count"].tolist() == [0] * 3 and np.isposinf(empty["min"]).all()


def test_two_threads_give_the_same_bits(monkeypatch):
    monkeypatch.setattr(moments, "COMPILED_MIN_VALUES_PER_THREAD", 16)
    x = _data(np.random.default_rng(5), (50, 8, 30), np.float32, True)
    one = moments.partial_moments(x, axis=(0, 2), threads=1)
    two = moments.partial_moments(x, axis=(0, 2), threads=2)
    for k in one:
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)
    _check(x, (0, 2), threads=2)


def test_layouts_walked_without_a_copy():
    """The pooled axes of a conv feature's channel are read in place."""
    x = np.zeros((2, 16, 8, 4, 4), np.float32)  # step, sample, channel, h, w
    arr = np.transpose(x, (0, 2, 1, 3, 4))
    assert moments._strided_layout(arr, 2) is not None
    assert moments._strided_layout(np.zeros((5, 6))[:, ::2], 1) is None  # gathered: copied


_floats = hst.one_of(hst.floats(allow_nan=True, allow_infinity=True, width=32),
                     hst.sampled_from([0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38]))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, hst.integers(1, 40), elements=_floats))
def test_order_keys_round_trip_and_order(values):
    bits = values.view(np.int32).astype(np.int64)
    keys = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    back = moments.key_values(keys, np.float32)
    np.testing.assert_array_equal(back.astype(np.float32).view(np.int32), values.view(np.int32))
    finite = values[np.isfinite(values)]
    fkeys = keys[np.isfinite(values)]
    if finite.size > 1:
        assert values.view(np.float32)[np.isfinite(values)][np.argmin(fkeys)] == finite.min()
        assert values.view(np.float32)[np.isfinite(values)][np.argmax(fkeys)] == finite.max()


@hst.composite
def _views(draw):
    ndim = draw(hst.integers(1, 4))
    shape = tuple(draw(hst.lists(hst.integers(1, 6), min_size=ndim, max_size=ndim)))
    dtype = draw(hst.sampled_from([np.float32, np.float64]))
    elems = hst.one_of(*[hst.integers(-4000, 4000).map(lambda k: k / 8.0)] * 8,
                       hst.sampled_from([np.nan, np.inf, -np.inf]))
    x = draw(hnp.arrays(dtype, shape, elements=elems))
    perm = draw(hst.permutations(range(ndim)))
    x = np.transpose(x, perm)
    steps = tuple(draw(hst.sampled_from([1, 1, 2, -1])) for _ in range(ndim))
    x = x[tuple(slice(None, None, s) for s in steps)]
    axis = tuple(sorted(draw(hst.sets(hst.integers(0, ndim - 1), min_size=1))))
    return x, axis


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_views())
def test_hyp_any_view_matches_the_loop(data):
    x, axis = data
    _check(x, axis)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, (2, 37),
                  elements=hst.integers(-4000, 4000).map(lambda k: k / 8.0)),
       hst.sets(hst.integers(1, 36), max_size=5))
def test_hyp_pieces_merge_to_the_whole(x, cuts):
    """Any split of the groups' values into pieces merges to the whole's partial."""
    edges = [0, *sorted(cuts), x.shape[1]]
    pieces = [moments.partial_moments(x[:, a:b]) for a, b in itertools.pairwise(edges)]
    whole = moments.finish_moments(moments.partial_moments(x))
    merged = moments.finish_moments(moments.merge_moments(pieces))
    for k in whole:
        np.testing.assert_allclose(merged[k], whole[k], rtol=1e-10, atol=1e-10, err_msg=k)


@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_channel_table_matches_the_loop(dtype, axis, contiguous):
    """The (channels, 9) table the capture path records, against the brute-force loop,
    on the memoized path (C-contiguous) and the general one."""
    x = _data(np.random.default_rng(axis + 6), (6, 5, 7), dtype, nonfinite=True)
    if not contiguous:
        x = np.asarray(_data(np.random.default_rng(axis + 1), (7, 5, 6), dtype,
                             nonfinite=True)).transpose(2, 1, 0)
    np.moveaxis(x, axis, 0)[1] = np.nan  # a channel without a finite value
    assert x.flags.c_contiguous == contiguous
    # the memoized path: C-contiguous, channels not last (channel-last is copied)
    assert (moments._channel_fast(x, axis, 1) is not None) == (contiguous and axis in (0, 1))
    table = moments.channel_table(x, axis)
    chans = np.moveaxis(x, axis, 0)
    assert table.shape == (chans.shape[0], len(moments.PARTIAL_FIELDS))
    for c in range(chans.shape[0]):
        ref = _reference(chans[c].ravel())
        assert table[c, :3].tolist() == [ref["count"], ref["nan_count"], ref["inf_count"]]
        if ref["count"] == 0:
            assert np.isnan(table[c, 3:]).all()
            continue
        assert table[c, 7] == ref["min"] and table[c, 8] == ref["max"]
        np.testing.assert_allclose(table[c, 3:7], [ref[k] for k in ("mean", "m2", "m3", "m4")],
                                   rtol=1e-10, atol=1e-10)
