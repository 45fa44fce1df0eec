"""``ts.normality``: are the values of each group Gaussian?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..dims import POOLED, TEST
from ..kernels.normality import check_tests, normality_kernel
from .groups import BY_DOC, By, check_input, is_dask, kept_coords, pool, resolve_by, subsample_keys
from .multitest import fdr_last_axes, fdr_over_groups

_OUTPUTS = (("statistic", np.float64, True), ("pvalue", np.float64, True),
            ("n", np.int64, False), ("nan_count", np.int64, False),
            ("inf_count", np.int64, False), ("skew", np.float64, False),
            ("kurtosis", np.float64, False), ("ks_distance", np.float64, False))


def _apply(values: np.ndarray, keys: np.ndarray, *, tests: tuple[str, ...],
           max_samples: int | None, effect_size: bool, threads: int | None) -> tuple:
    out = normality_kernel(values, tests=tests, max_samples=max_samples, keys=keys,
                           effect_size=effect_size, threads=threads)
    return tuple(out[name] for name, _, _ in _OUTPUTS)


def _lazy(groups: xr.DataArray, keys: xr.DataArray, kept: tuple, options: dict) -> dict:
    """The kernel over dask chunks of groups, one thread each: name -> Variable."""
    results = xr.apply_ufunc(
        _apply, groups, keys,
        input_core_dims=[[POOLED], []],
        output_core_dims=[[TEST] if has_test else [] for _, _, has_test in _OUTPUTS],
        kwargs={**options, "threads": 1},
        dask="parallelized",
        output_dtypes=[dtype for _, dtype, _ in _OUTPUTS],
        dask_gufunc_kwargs={"output_sizes": {TEST: len(options["tests"])}},
    )
    return {name: res.variable for (name, _, _), res in zip(_OUTPUTS, results, strict=True)}


def _eager(groups: xr.DataArray, keys: xr.DataArray, kept: tuple, options: dict) -> dict:
    """The kernel on in-memory groups, every core: name -> Variable.

    Called directly rather than through ``xr.apply_ufunc``, and the results
    kept as Variables (no coords to align): for 20,000 groups of 256 values
    that wrapping was a tenth of the call.
    """
    results = _apply(groups.data, keys.data, **options, threads=None)
    return {name: xr.Variable((*kept, TEST) if has_test else kept, res)
            for (name, _, has_test), res in zip(_OUTPUTS, results, strict=True)}


def _fdr_variable(pvalue: xr.Variable, kept: tuple) -> xr.Variable:
    """Benjamini-Hochberg over the groups (``kept`` dims) of each test, as a Variable;
    in-memory p-values directly, without ``xr.apply_ufunc``."""
    if is_dask(pvalue) or not kept or pvalue.size == 0:
        return fdr_over_groups(xr.DataArray(pvalue), kept).variable
    return pvalue.copy(data=fdr_last_axes(np.asarray(pvalue.values), len(kept)))


def normality(da: xr.DataArray, *, by: By = None, tests: Sequence[str] = ("shapiro", "anderson"),
              max_samples: int | None = 5000, seed: int = 0,
              effect_size: bool = True) -> xr.Dataset:
    """Normality tests of each group, with effect sizes and FDR-corrected p-values.

    Each group's finite values are (if more than ``max_samples``) subsampled,
    sorted once, and tested with every test in ``tests``.

    Parameters
    ----------
    da : xarray.DataArray
        Any real dtype, NumPy- or dask-backed.
    {by}
    tests : sequence of str
        Any of ``"shapiro"`` (Shapiro-Wilk W, Royston's algorithm as in
        :func:`scipy.stats.shapiro`), ``"anderson"`` (Anderson-Darling A² with
        estimated mean and variance; p-value as in
        :func:`statsmodels.stats.diagnostic.normal_ad`), ``"dagostino"``
        (D'Agostino-Pearson K², as :func:`scipy.stats.normaltest`; needs 8
        values) and ``"jarque_bera"`` (as :func:`scipy.stats.jarque_bera`).
    max_samples : int or None
        Groups with more finite values are subsampled without replacement to
        this many, with a generator seeded from ``seed`` and the group's
        labels on the kept dims: reproducible, and independent of chunking.
        ``None`` never subsamples. 5000 is the largest n for which Royston's
        Shapiro-Wilk p-value is validated.
    seed : int
        Seed of the subsampling.
    effect_size : bool
        Give the effect sizes ``skew``, ``kurtosis`` and ``ks_distance``
        (default). ``False`` leaves them out: without Anderson-Darling, that
        saves the second pass over each sorted group (a normal CDF per value,
        which ``ks_distance`` needs) and the third and fourth power sums.

    Returns
    -------
    xarray.Dataset
        ``statistic``, ``pvalue`` and ``pvalue_fdr`` (Benjamini-Hochberg over
        all groups of one test) with a leading ``test`` dim; ``n`` (finite
        values used), ``nan_count`` and ``inf_count`` (values left out); and,
        unless ``effect_size=False``, effect sizes of the values used, which
        do not shrink with ``n``:
        ``skew`` (g1), ``kurtosis`` (excess g2) and ``ks_distance``, the
        largest gap between the empirical CDF of the values standardized by
        their mean and std (ddof=1) and the standard normal CDF. Degenerate
        groups (fewer than 3 finite values, or constant) give NaN. Lazy when
        ``da`` is.

    See Also
    --------
    tensorstats.moments : the moments of the full groups, never subsampled.

    Examples
    --------
    >>> import numpy as np, xarray as xr, tensorstats as ts
    >>> rng = np.random.default_rng(0)
    >>> x = np.stack([rng.normal(size=(4, 500)), rng.exponential(size=(4, 500))])
    >>> da = xr.DataArray(x, dims=("step", "channel", "sample"))
    >>> res = ts.normality(da)
    >>> res["pvalue"].dims, res["test"].values.tolist()
    (('test', 'step', 'channel'), ['shapiro', 'anderson'])
    >>> (res["pvalue_fdr"].sel(test="shapiro") < 0.01).sum("channel").values
    array([0, 4])
    """
    check_input(da)
    tests = check_tests(tests)
    if max_samples is not None and (not isinstance(max_samples, (int, np.integer))
                                    or max_samples < 3):
        raise ValueError(f"max_samples must be an int >= 3 or None, got {max_samples!r}")
    kept, pooled = resolve_by(da, by)
    groups = pool(da, kept, pooled)
    needed = max_samples is not None and groups.sizes[POOLED] > max_samples
    keys = subsample_keys(da, kept, groups, seed, needed)
    options = {"tests": tests, "max_samples": max_samples, "effect_size": effect_size}
    out = (_lazy if is_dask(groups) else _eager)(groups, keys, kept, options)
    for name in ("statistic", "pvalue"):
        out[name] = out[name].transpose(TEST, *kept)
    out["pvalue_fdr"] = _fdr_variable(out["pvalue"], kept)
    names = ["statistic", "pvalue", "pvalue_fdr", "n", "nan_count", "inf_count"]
    if effect_size:
        names += ["skew", "kurtosis", "ks_distance"]
    return xr.Dataset({name: out[name] for name in names},
                      coords={TEST: list(tests), **kept_coords(da, kept)},
                      attrs={"max_samples": -1 if max_samples is None else int(max_samples),
                             "seed": int(seed)})


normality.__doc__ = normality.__doc__.format(by=BY_DOC)
