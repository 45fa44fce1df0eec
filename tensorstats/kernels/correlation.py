"""Correlation of many series with one (or many) along the last axis, at several lags.

Pairs where either value is not finite are left out, row by row. ``pearson``
and ``spearman`` are vectorized over rows (Spearman = Pearson on average
ranks); ``kendall`` calls :func:`scipy.stats.kendalltau` per row. p-values
are two-sided: Student's t with n - 2 degrees of freedom for Pearson (equal
to the exact beta form :func:`scipy.stats.pearsonr` uses) and Spearman (as
:func:`scipy.stats.spearmanr`), scipy's own for Kendall.

Examples
--------
>>> import numpy as np, scipy.stats
>>> rng = np.random.default_rng(0)
>>> x, y = rng.normal(size=(3, 50)), rng.normal(size=50)
>>> r, p, n = correlation(x, y, "spearman")
>>> ref = scipy.stats.spearmanr(x[1], y)
>>> bool(np.isclose(r[1], ref.statistic) and np.isclose(p[1], ref.pvalue))
True
"""

from __future__ import annotations

import numpy as np
from scipy.special import stdtr

METHODS = ("pearson", "spearman", "kendall")
DETRENDS = (None, "difference", "linear")


def detrend(x: np.ndarray, how: str | None, t: np.ndarray | None = None) -> np.ndarray:
    """Remove the trend along the last axis: ``None``, ``"difference"`` or ``"linear"``.

    ``"difference"`` gives first differences (one value shorter); ``"linear"``
    subtracts each row's least-squares line in ``t`` (default: positions),
    fitted on its finite values. Non-finite values stay NaN.

    Examples
    --------
    >>> detrend(np.array([1.0, 3.0, 6.0]), "difference").tolist()
    [2.0, 3.0]
    >>> np.round(detrend(np.array([1.0, 2.0, 3.0, np.nan]), "linear"), 12).tolist()
    [0.0, 0.0, 0.0, nan]
    """
    x = np.asarray(x, dtype=np.float64)
    if how is None:
        return x
    if how == "difference":
        return np.diff(x, axis=-1)
    if how != "linear":
        raise ValueError(f"detrend must be one of {DETRENDS}, got {how!r}")
    t = np.arange(x.shape[-1], dtype=np.float64) if t is None else np.asarray(t, np.float64)
    ok = np.isfinite(x)
    w = ok.astype(np.float64)
    n = w.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        tm = (w * t).sum(axis=-1, keepdims=True) / n
        xm = np.where(ok, x, 0.0).sum(axis=-1, keepdims=True) / n
        dt = np.where(ok, t - tm, 0.0)
        slope = (dt * np.where(ok, x - xm, 0.0)).sum(axis=-1, keepdims=True) / (dt * dt).sum(
            axis=-1, keepdims=True)
        slope = np.where(np.isfinite(slope), slope, 0.0)
        return np.where(ok, x - xm - slope * (t - tm), np.nan)


def _pearson(x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, ...]:
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = np.where(ok, x, 0.0).sum(axis=-1, keepdims=True) / n[..., None]
        ym = np.where(ok, y, 0.0).sum(axis=-1, keepdims=True) / n[..., None]
        dx = np.where(ok, x - xm, 0.0)
        dy = np.where(ok, y - ym, 0.0)
        sxx = (dx * dx).sum(axis=-1)
        syy = (dy * dy).sum(axis=-1)
        r = (dx * dy).sum(axis=-1) / np.sqrt(sxx * syy)
        r = np.clip(r, -1.0, 1.0)
        df = n - 2.0
        t = r * np.sqrt(df / ((1.0 - r) * (1.0 + r)))
        p = 2.0 * stdtr(df, -np.abs(t))
        p = np.where(np.abs(r) == 1.0, 0.0, p)
    bad = (n < 3) | ~(sxx > 0) | ~(syy > 0)
    return np.where(bad, np.nan, r), np.where(bad, np.nan, p), n


def correlation(x: np.ndarray, y: np.ndarray, method: str = "spearman"
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(r, pvalue, n)`` between rows of ``x`` and ``y`` (broadcast) along the last axis.

    Rows with fewer than 3 finite pairs, or a constant side, give NaN.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x, y = np.broadcast_arrays(x, y)
    ok = np.isfinite(x) & np.isfinite(y)
    if method == "pearson":
        return _pearson(x, y, ok)
    from scipy import stats  # here: scipy.stats takes 0.3 s to import

    if method == "spearman":
        xr_ = stats.rankdata(np.where(ok, x, np.nan), axis=-1, nan_policy="omit")
        yr_ = stats.rankdata(np.where(ok, y, np.nan), axis=-1, nan_policy="omit")
        return _pearson(xr_, yr_, ok)
    lead = x.shape[:-1]
    flat_x, flat_y, flat_ok = (a.reshape(-1, x.shape[-1]) for a in (x, y, ok))
    r = np.full(flat_x.shape[0], np.nan)
    p = np.full(flat_x.shape[0], np.nan)
    n = flat_ok.sum(axis=-1)
    for i in range(flat_x.shape[0]):
        m = flat_ok[i]
        a, b = flat_x[i, m], flat_y[i, m]
        if n[i] >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0:
            res = stats.kendalltau(a, b)
            r[i], p[i] = res.statistic, res.pvalue
    return r.reshape(lead), p.reshape(lead), n.reshape(lead)


def lagged_correlation(x: np.ndarray, y: np.ndarray, lags: np.ndarray, method: str
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`correlation` of ``x[t]`` with ``y[t + k]`` for each lag ``k`` in ``lags``.

    Returns arrays with a trailing lag axis. Lags are in positions along the
    last axis.
    """
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    length = x.shape[-1]
    out = [np.full((*x.shape[:-1], len(lags)), np.nan) for _ in range(2)]
    count = np.zeros((*x.shape[:-1], len(lags)), np.int64)
    for j, k in enumerate(lags):
        k = int(k)
        if abs(k) >= length:
            continue
        xs = x[..., :length - k] if k >= 0 else x[..., -k:]
        ys = y[..., k:] if k >= 0 else y[..., :length + k]
        out[0][..., j], out[1][..., j], count[..., j] = correlation(xs, ys, method)
    return out[0], out[1], count


def granger(x: np.ndarray, y: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """Does ``x`` Granger-cause ``y``? F test (``ssr_ftest``) at lags 1..``max_lag``.

    Rows go one by one through
    :func:`statsmodels.tsa.stattools.grangercausalitytests`. Leading and
    trailing non-finite values are trimmed; a row with a gap inside, or too
    short for ``max_lag``, gives NaN.

    Returns
    -------
    statistic, pvalue, n : ndarray with a trailing lag axis (n: values used).
    """
    from statsmodels.tsa.stattools import grangercausalitytests

    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    lead = x.shape[:-1]
    fx, fy = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    stat = np.full((fx.shape[0], max_lag), np.nan)
    pval = np.full((fx.shape[0], max_lag), np.nan)
    used = np.zeros((fx.shape[0], max_lag), np.int64)
    for i in range(fx.shape[0]):
        ok = np.flatnonzero(np.isfinite(fx[i]) & np.isfinite(fy[i]))
        if ok.size == 0 or ok[-1] - ok[0] + 1 != ok.size or ok.size < 3 * max_lag + 2:
            continue
        a, b = fx[i, ok], fy[i, ok]
        if not (np.ptp(a) > 0 and np.ptp(b) > 0):
            continue
        with np.errstate(all="ignore"):
            res = grangercausalitytests(np.column_stack([b, a]), maxlag=max_lag)
        for k in range(1, max_lag + 1):
            f, p, _, _ = res[k][0]["ssr_ftest"]
            stat[i, k - 1], pval[i, k - 1], used[i, k - 1] = f, p, ok.size
    shape = (*lead, max_lag)
    return stat.reshape(shape), pval.reshape(shape), used.reshape(shape)
