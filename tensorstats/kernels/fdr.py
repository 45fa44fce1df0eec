"""Benjamini-Hochberg false-discovery-rate adjustment along the last axis.

NaN p-values (from degenerate groups) are left out: they are not tests, so
they neither count towards ``m`` nor get an adjusted value.

Examples
--------
>>> import numpy as np
>>> bh_adjust(np.array([0.01, 0.04, np.nan, 0.03]))
array([0.03, 0.04,  nan, 0.04])
"""

from __future__ import annotations

import math

import numpy as np


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of each row of ``p`` (last axis).

    Equal to ``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]``
    on the non-NaN entries of each row.
    """
    p = np.asarray(p, dtype=np.float64)
    flat = p.reshape(math.prod(p.shape[:-1]), p.shape[-1]) if p.ndim else p.reshape(1, 1)
    out = np.full(flat.shape, np.nan)
    for row, res in zip(flat, out, strict=False):
        ok = ~np.isnan(row)
        m = int(ok.sum())
        if m == 0:
            continue
        vals = row[ok]
        order = np.argsort(vals, kind="stable")
        scaled = vals[order] * (m / np.arange(1, m + 1))
        adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
        back = np.empty(m)
        back[order] = np.minimum(adjusted, 1.0)
        res[ok] = back
    return out.reshape(p.shape)
