"""Tidy (long) pandas tables of analysis results, including ragged sets of layers."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import xarray as xr


def to_frame(results: Mapping[str, xr.Dataset | xr.DataArray] | xr.Dataset | xr.DataArray, *,
             name: str = "layer") -> pd.DataFrame:
    """One long table from one result or from a dict of results (e.g. one per layer).

    Every dim becomes a column, and so does every variable; with a dict, its
    keys go in column ``name``. Results may have different dims (a bias has no
    ``dim_1``, features and weights differ), which a single ``xr.Dataset``
    cannot hold: columns a result lacks are left empty. This computes lazy
    results.

    Parameters
    ----------
    results : Dataset, DataArray, or mapping of them
        Outputs of ``ts.moments``, ``ts.normality``, ``ts.shift``,
        ``ts.correlate``...
    name : str
        Column for the mapping's keys.

    Returns
    -------
    pandas.DataFrame
        One row per combination of labels (and key).

    Examples
    --------
    >>> import numpy as np, xarray as xr, tensorstats as ts
    >>> w1 = xr.DataArray(np.ones((2, 3, 4)), dims=("step", "channel", "dim_1"))
    >>> b1 = xr.DataArray(np.zeros((2, 3)), dims=("step", "channel"))
    >>> table = ts.to_frame({"fc1.weight": ts.moments(w1, by="step"),
    ...                      "fc1.bias": ts.moments(b1, by="step")})
    >>> table[["layer", "step", "mean", "count"]]
            layer  step  mean  count
    0  fc1.weight     0   1.0     12
    1  fc1.weight     1   1.0     12
    2    fc1.bias     0   0.0      3
    3    fc1.bias     1   0.0      3
    """
    if isinstance(results, (xr.Dataset, xr.DataArray)):
        return _frame(results)
    if not isinstance(results, Mapping):
        raise TypeError(f"expected a Dataset, a DataArray or a mapping of them, got "
                        f"{type(results).__name__}")
    frames = []
    for key, res in results.items():
        frame = _frame(res)
        if name in frame.columns:
            raise ValueError(f"column {name!r} already exists in the result for {key!r}; "
                             "pass another name=")
        frame.insert(0, name, key)
        frames.append(frame)
    if not frames:
        return pd.DataFrame({name: []})
    return pd.concat(frames, ignore_index=True, sort=False)


def _frame(res: xr.Dataset | xr.DataArray) -> pd.DataFrame:
    if isinstance(res, xr.DataArray):
        res = res.to_dataset(name=res.name if res.name is not None else "value")
    if not res.dims:  # 0-d result: one row
        return pd.DataFrame({k: [v.values.item()] for k, v in res.data_vars.items()})
    return res.compute().to_dataframe().reset_index()
