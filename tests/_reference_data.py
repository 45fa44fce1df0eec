"""Test data shared by the moments and normality reference tests.

Groups of several distributions, with NaN / ±inf mixed in, as DataArrays with
labelled step and channel dims; a chunker for the dask backends; and a loop
over the groups of an array, for brute-force references.
"""

from __future__ import annotations

import zlib

import dask.array
import numpy as np
import pytest
import xarray as xr

DEFAULT_KEPT = ("run", "step", "channel")


def seed_of(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def sample(dist: str, shape, rng) -> np.ndarray:
    if dist == "normal":
        return 1.5 + 2.0 * rng.standard_normal(shape)
    if dist == "uniform":
        return rng.uniform(-3.0, 5.0, shape)
    if dist == "heavy":
        return rng.standard_t(3, shape)
    if dist == "bimodal":
        left = rng.normal(-3.0, 1.0, shape)
        right = rng.normal(2.0, 0.5, shape)
        return np.where(rng.random(shape) < 0.4, left, right)
    raise AssertionError(dist)


def inject_nonfinite(x: np.ndarray, rng) -> np.ndarray:
    """Put a few NaN / +inf / -inf in every group (last axis = the pooled sample)."""
    x = x.copy()
    n = x.shape[-1]
    flat = x.reshape(-1, n)
    kmax = max(1, n // 5)
    for g in range(flat.shape[0]):
        k = int(rng.integers(1 if g == 0 else 0, kmax + 1))
        pos = rng.choice(n, size=k, replace=False)
        flat[g, pos] = rng.choice(np.array([np.nan, np.inf, -np.inf]), size=k)
    # Make sure all three kinds appear somewhere in the array.
    flat[0, 0] = np.nan
    if flat.shape[0] > 1:
        flat[1, 0] = np.inf
        flat[-1, -1] = -np.inf
    return flat.reshape(x.shape)


def make_da(dist, n, nonfinite, *, nstep=2, nchan=3, dtype=np.float64, seed=0,
            salt="", step0=7, step_spacing=100, channel_prefix="c", name="w") -> xr.DataArray:
    """Groups of ``n`` values per (step, channel); dims ("step", "channel", "sample")."""
    parts = (salt,) if salt else ()
    rng = np.random.default_rng(seed_of(*parts, dist, n, nonfinite, nstep, nchan, seed))
    x = sample(dist, (nstep, nchan, n), rng)
    if nonfinite:
        x = inject_nonfinite(x, rng)
    return xr.DataArray(
        x.astype(dtype),
        dims=("step", "channel", "sample"),
        coords={
            "step": np.arange(nstep) * step_spacing + step0,
            "channel": [f"{channel_prefix}{i}" for i in range(nchan)],
        },
        name=name,
    )


def chunk(da: xr.DataArray, backend: str) -> xr.DataArray:
    """``da`` as is ("numpy") or dask-backed, split along the pooled dim and maybe kept dims."""
    if backend == "numpy":
        return da
    n = da.sizes["sample"]
    chunks = {"sample": max(1, n // 3)}
    if backend == "dask-kept":
        chunks.update({d: 1 for d in da.dims if d in DEFAULT_KEPT})
    return da.chunk(chunks)


def groups(da: xr.DataArray, kept):
    """Yield (index in the kept shape, 1-D array of every value of the group)."""
    kept = tuple(kept)
    pooled = [d for d in da.dims if d not in kept]
    arr = np.asarray(da.transpose(*kept, *pooled).values)
    kshape = arr.shape[: len(kept)]
    arr = arr.reshape((*kshape, -1))
    for idx in np.ndindex(*kshape):
        yield idx, arr[idx]


def kept_in_input_order(da: xr.DataArray, by) -> tuple:
    """The dims ``by`` keeps, in ``da``'s order (the contract's rule, written out)."""
    if by is None:
        return tuple(d for d in da.dims if d in DEFAULT_KEPT)
    if isinstance(by, str):
        by = (by,)
    return tuple(d for d in da.dims if d in by)


def is_dask(x) -> bool:
    """Whether a DataArray (or Variable) is backed by a dask array."""
    return isinstance(x.data, dask.array.Array)


def reference_grid(test):
    """The issue's grid: every distribution, n and NaN mix, on numpy and chunked dask
    input, with warnings turned into errors (degenerate groups must stay quiet)."""
    marks = [
        pytest.mark.filterwarnings("error::RuntimeWarning"),
        pytest.mark.filterwarnings("error::FutureWarning"),
        pytest.mark.filterwarnings("error::UserWarning"),
        pytest.mark.parametrize("backend", ["numpy", "dask-pooled", "dask-kept"]),
        pytest.mark.parametrize("nonfinite", [False, True], ids=["finite", "nonfinite"]),
        pytest.mark.parametrize("n", [3, 20, 500, 5000]),
        pytest.mark.parametrize("dist", ["normal", "uniform", "heavy", "bimodal"]),
    ]
    for mark in reversed(marks):  # applied innermost first, as decorators would be
        test = mark(test)
    return test
