"""The report's table of the moments that track the loss best, after detrending.

Two series that both trend over training (a std that grows, a loss that
falls) correlate strongly whether or not they are related. The table is
therefore made from ``ts.correlate(..., detrend="difference")``: the
step-to-step changes of each moment against those of the loss (averaged over
each logging interval), at lags ``-max_lag..max_lag``, with Benjamini-Hochberg
p-values over every series and lag tested in that run. A correlation here is
an association after detrending, not a cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ..dims import LAG, LAYER, STEP
from .analysis import RunAnalysis

STATISTICS = ("std", "skew", "kurtosis")
"""The per-step moments correlated with the loss."""

STATISTIC = "statistic"
DETREND = "difference"
METHOD = "spearman"
MAX_LAG = 3
TOP = 10


@dataclass(frozen=True)
class Correlation:
    """One row of the table: the lag of largest |r| of one (run, layer, statistic)."""

    run: str
    layer: str
    statistic: str
    lag: int
    lag_steps: float
    r: float
    pvalue_fdr: float
    n: int


def loss_names(scalars: Sequence[str]) -> list[str]:
    """The scalars named ``loss*``, ``loss`` first.

    Examples
    --------
    >>> loss_names(["lr", "loss_valid", "loss"])
    ['loss', 'loss_valid']
    """
    return sorted((n for n in scalars if n.startswith("loss")), key=lambda n: (n != "loss", n))


def max_lag_for(n_steps: int) -> int:
    """Lags to test for ``n_steps`` logged steps: none below 12, at most :data:`MAX_LAG`.

    Examples
    --------
    >>> max_lag_for(30), max_lag_for(8)
    (3, 0)
    """
    return int(min(MAX_LAG, max(0, (n_steps - 8) // 4)))


def _moment_series(analysis: RunAnalysis, kind: str, layers: Sequence[str]) -> xr.DataArray:
    """The statistics of every layer as one (layer, statistic, step) array, steps joined."""
    rows = {layer: analysis.moments[kind, layer][list(STATISTICS)].to_dataarray(STATISTIC)
            for layer in layers if (kind, layer) in analysis.moments}
    return xr.concat(list(rows.values()), dim=pd.Index(list(rows), name=LAYER), join="outer",
                     fill_value=np.nan)


def correlations(analysis: RunAnalysis, kind: str, layers: Sequence[str]) -> list[Correlation]:
    """Per (layer, statistic), the lag with the largest |r| against the run's loss.

    Empty when the run has no ``loss*`` scalar, or too few steps.
    """
    from ..stats.correlate import correlate

    names = loss_names(list(analysis.scalars))
    if not names or not any((kind, layer) in analysis.moments for layer in layers):
        return []
    x = _moment_series(analysis, kind, layers)
    steps = np.asarray(x[STEP].values)
    if len(steps) < 5:
        return []
    max_lag = max_lag_for(len(steps))
    res = correlate(x, analysis.scalars[names[0]], align="mean", detrend=DETREND,
                    max_lag=max_lag, method=METHOD)
    spacing = float(np.median(np.diff(steps)))
    r = res["r"].transpose(LAYER, STATISTIC, LAG)
    out = []
    for i, layer in enumerate(r[LAYER].values):
        for j, stat in enumerate(r[STATISTIC].values):
            values = np.asarray(r.values[i, j], dtype=float)
            if not np.isfinite(values).any():
                continue
            k = int(np.nanargmax(np.abs(values)))
            at = {LAYER: layer, STATISTIC: stat, LAG: r[LAG].values[k]}
            lag = int(r[LAG].values[k])
            out.append(Correlation(run=analysis.name, layer=str(layer), statistic=str(stat),
                                   lag=lag, lag_steps=lag * spacing, r=float(values[k]),
                                   pvalue_fdr=float(res["pvalue_fdr"].sel(at)),
                                   n=int(res["n"].sel(at))))
    return out


def top_correlations(analyses: Sequence[RunAnalysis], kind: str, layers: Sequence[str],
                     top: int = TOP) -> list[Correlation]:
    """The ``top`` rows of every run, by |r|."""
    rows = [c for a in analyses for c in correlations(a, kind, layers)]
    return sorted(rows, key=lambda c: -abs(c.r))[:top]
