"""Array-likes from every framework arrive intact; tensorstats itself never imports torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import tensorstats as ts
from tensorstats.collect.convert import to_numpy


def test_import_does_not_pull_frameworks():
    code = ("import sys, tensorstats; "
            "bad = [m for m in ('torch', 'jax', 'matplotlib') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


class _ArrayOnly:
    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a


class _DLPackOnly:
    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


@pytest.mark.parametrize("wrap", [_ArrayOnly, _DLPackOnly])
def test_array_protocols(store, wrap):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    with ts.Recorder(store) as rec:
        rec.record("weight", "w", wrap(x), step=0)
    np.testing.assert_array_equal(ts.open_run(store)["weight", "w"].values[0], x)


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16", "int64", "uint8",
                                   "bool"])
def test_torch_dtypes_roundtrip(store, dtype):
    tdtype = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(5, 8, 3, 3, generator=g) * 10
    t = base.to(tdtype)
    with ts.Recorder(store) as rec:
        rec.record("feature", "conv", t, step=0, channel_axis=1)
    da = ts.open_run(store)["feature", "conv"]
    # reference: torch's own upcast of the same tensor (exact for bf16/f16 -> f32)
    ref = t.float().numpy() if dtype in ("bfloat16",) else t.numpy()
    np.testing.assert_array_equal(da.values[0], np.moveaxis(ref, 1, 0))
    assert da.attrs["source_dtype"] == dtype
    expected_stored = {"bfloat16": "float32"}.get(dtype, dtype)
    assert da.dtype == np.dtype(expected_stored)


def test_torch_grad_noncontiguous_and_views(store):
    w = torch.randn(6, 4, requires_grad=True)
    view = w.t()  # non-contiguous, requires grad
    sliced = torch.randn(8, 8)[::2, 1::3]  # strided view
    with ts.Recorder(store) as rec:
        rec.record("weight", "w_t", view, step=0)
        rec.record("weight", "sliced", sliced, step=0)
    run = ts.open_run(store)
    np.testing.assert_array_equal(run["weight", "w_t"].values[0], w.detach().t().numpy())
    np.testing.assert_array_equal(run["weight", "sliced"].values[0], sliced.numpy())


def test_torch_complex_rejected(store):
    with ts.Recorder(store) as rec, pytest.raises(TypeError, match="'z' at step 0.*complex"):
        rec.record("weight", "z", torch.zeros(2, dtype=torch.complex64), step=0)


def test_torch_scalar_tensor_for_record_scalar(store):
    loss = torch.tensor(2.5, dtype=torch.bfloat16, requires_grad=True) * 1
    with ts.Recorder(store) as rec:
        rec.record_scalar("loss", loss, step=0)
    assert ts.open_run(store).scalars["loss"].values.tolist() == [2.5]


def test_to_numpy_reports_source_dtype():
    arr, src = to_numpy(torch.ones(2, dtype=torch.bfloat16))
    assert (arr.dtype, src) == (np.float32, "bfloat16")
