"""``ts.shift``: how far each group's distribution moved from a reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..dims import POOLED, STEP
from ..kernels.shift import KS_METHODS, check_metrics, output_names, shift_kernel
from .groups import BY_DOC, By, check_input, is_dask, kept_coords, pool, resolve_by, subsample_keys

REFERENCE_POOLED = "__reference_pooled__"
"""Core dim of the reference sample (its size may differ from the sample's)."""


def _apply(x: np.ndarray, r: np.ndarray, keys: np.ndarray, reference_keys: np.ndarray, *,
           metrics: tuple[str, ...], max_samples: int | None, ks_method: str,
           threads: int | None) -> tuple:
    out = shift_kernel(x, r, metrics=metrics, max_samples=max_samples, keys=keys,
                       reference_keys=reference_keys, ks_method=ks_method, threads=threads)
    return tuple(out[name] for name in output_names(metrics))


def _reference(da: xr.DataArray, reference: object, kept: tuple) -> xr.DataArray:
    """The reference DataArray for a step-based ``reference`` mode or label."""
    if STEP not in kept:
        raise ValueError(f"reference={reference!r} compares steps, so {STEP!r} must be a kept "
                         f"dim (in by); kept dims are {list(kept)}")
    if da.sizes[STEP] == 0:
        raise ValueError(f"reference={reference!r} compares steps, but the input has no step")
    if isinstance(reference, str) and reference == "initial":
        return da.isel({STEP: 0}, drop=True)
    if isinstance(reference, str) and reference == "previous":
        return da.shift({STEP: 1})
    if isinstance(reference, str):
        raise ValueError(f"reference must be 'initial', 'previous', a step label or a "
                         f"DataArray, got {reference!r}")
    if reference not in da.indexes[STEP]:
        steps = da.indexes[STEP]
        raise ValueError(f"reference step {reference!r} is not a step of the input "
                         f"(steps {steps[0]}..{steps[-1]}, {len(steps)} in all)")
    return da.sel({STEP: reference}, drop=True)


def shift(da: xr.DataArray, *, reference: object = "initial", by: By = None,
          metrics: Sequence[str] = ("wasserstein", "ks", "energy", "js"),
          max_samples: int | None = 5000, seed: int = 0,
          ks_method: str = "auto") -> xr.Dataset:
    """Distribution shift of each group from a reference: W1, KS, energy, JS, Hellinger.

    Parameters
    ----------
    da : xarray.DataArray
        Any real dtype, NumPy- or dask-backed.
    reference : {{"initial", "previous"}}, step label or xarray.DataArray
        What each group is compared with:

        - ``"initial"``: the same group (same labels on the other kept dims)
          at the first step of ``da``;
        - ``"previous"``: at the previous step of ``da`` (drift per logged
          step; the first step gets NaN);
        - a step label: at that step;
        - another DataArray, e.g. the same layer of another run, or a valid
          probe against the train probe. Its dims that are kept here are
          aligned by label (inner join) or broadcast where it lacks them; all
          its other dims are pooled, and their sizes may differ from
          ``da``'s.
    {by}
    metrics : sequence of str
        Any of ``"wasserstein"`` (W1, in the data's units), ``"ks"``
        (Kolmogorov-Smirnov statistic; adds ``ks_pvalue``), ``"energy"``
        (energy distance, as :func:`scipy.stats.energy_distance`), ``"js"``
        (Jensen-Shannon divergence in bits, 0..1, on shared equal-mass bins:
        the B-quantiles of the pooled values with ``B = ceil(sqrt(min(n,
        m)))`` clipped to [2, 128]) and ``"hellinger"`` (on the same bins).
    max_samples : int or None
        Each side of a group with more finite values is subsampled without
        replacement to this many, seeded from ``seed`` and that side's labels
        (reproducible, independent of chunking; a sample compared with itself
        is subsampled alike, so its distance stays 0). A reference shared by
        several groups (``"initial"``, a step label) is subsampled and sorted
        once. ``None`` never subsamples.
    seed : int
        Seed of the subsampling.
    ks_method : {{"auto", "exact", "asymp"}}
        How ``ks_pvalue`` is computed, as :func:`scipy.stats.ks_2samp`.

    Returns
    -------
    xarray.Dataset
        Over the kept dims: one variable per metric, ``ks_pvalue`` with
        ``ks``, and ``n`` / ``n_reference`` (finite values used on each
        side). Groups with no finite value on either side give NaN. Lazy
        when an input is.

    Examples
    --------
    >>> import numpy as np, xarray as xr, tensorstats as ts
    >>> rng = np.random.default_rng(0)
    >>> w = rng.normal(size=(3, 4, 200)) * np.array([1.0, 1.5, 2.0])[:, None, None]
    >>> da = xr.DataArray(w, dims=("step", "channel", "dim_1"), coords={{"step": [0, 10, 20]}})
    >>> d = ts.shift(da, metrics=("wasserstein", "ks"))
    >>> d["wasserstein"].dims, bool((d["wasserstein"].isel(step=0) == 0).all())
    (('step', 'channel'), True)
    >>> bool((d["ks_pvalue"].isel(step=2) < 0.01).all())
    True
    """
    check_input(da)
    metrics = check_metrics(metrics)
    if ks_method not in KS_METHODS:
        raise ValueError(f"ks_method must be one of {KS_METHODS}, got {ks_method!r}")
    if max_samples is not None and (not isinstance(max_samples, (int, np.integer))
                                    or max_samples < 1):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
    kept, pooled = resolve_by(da, by)
    if isinstance(reference, xr.DataArray):
        ref = check_input(reference, "reference")
        shared = [d for d in kept if d in ref.dims]
        da, ref = xr.align(da, ref, join="inner",
                           exclude=[d for d in (*ref.dims, *da.dims) if d not in shared])
        ref_kept = tuple(d for d in ref.dims if d in shared)
        empty = [d for d in shared if da.sizes[d] == 0]
        if empty:
            raise ValueError(f"the input and the reference share no label on {empty}")
    else:
        ref = _reference(da, reference, kept)
        ref_kept = tuple(d for d in kept if d in ref.dims)
    ref_pooled = tuple(d for d in ref.dims if d not in ref_kept)
    groups = pool(da, kept, pooled)
    ref_groups = pool(ref, ref_kept, ref_pooled).rename({POOLED: REFERENCE_POOLED})
    width = max(groups.sizes[POOLED], ref_groups.sizes[REFERENCE_POOLED])
    lazy = is_dask(groups) or is_dask(ref_groups)
    if lazy:
        groups = groups.chunk()
        chunks = dict(zip(kept, groups.chunks[:len(kept)], strict=True))
        ref_groups = ref_groups.chunk({**{d: chunks[d] for d in ref_kept},
                                       REFERENCE_POOLED: -1})
    needed = max_samples is not None and width > max_samples
    keys = subsample_keys(da, kept, groups, seed, needed)
    ref_keys = subsample_keys(ref, ref_kept, ref_groups, seed, needed)
    names = output_names(metrics)
    results = xr.apply_ufunc(
        _apply, groups, ref_groups, keys, ref_keys,
        input_core_dims=[[POOLED], [REFERENCE_POOLED], [], []],
        output_core_dims=[[] for _ in names],
        kwargs={"metrics": metrics, "max_samples": max_samples, "ks_method": ks_method,
                "threads": 1 if lazy else None},
        dask="parallelized",
        output_dtypes=[np.int64 if n.startswith("n") else np.float64 for n in names],
    )
    ds = xr.Dataset(dict(zip(names, results, strict=True)), coords=kept_coords(da, kept))
    ds = ds.transpose(*kept)
    ds.attrs.update({"reference": reference if isinstance(reference, (str, int, float))
                     else "DataArray", "max_samples": -1 if max_samples is None
                     else int(max_samples), "seed": int(seed)})
    return ds


shift.__doc__ = shift.__doc__.format(by=BY_DOC)
