"""Analysis of recorded tensors: xarray in, xarray out, lazy and Dask-parallel.

- :mod:`~tensorstats.stats.moments`: count, NaN/Inf counts, mean, variance, skew,
  excess kurtosis, min, max (exact chunked merges);
- :mod:`~tensorstats.stats.normality`: Shapiro-Wilk, Anderson-Darling,
  D'Agostino-Pearson, Jarque-Bera, with effect sizes and FDR;
- :mod:`~tensorstats.stats.shift`: Wasserstein, KS, energy and Jensen-Shannon
  distances from a reference step;
- :mod:`~tensorstats.stats.correlate`: correlation with the loss at lags, with
  detrending, and Granger causality;
- :mod:`~tensorstats.stats.multitest`: Benjamini-Hochberg (``ts.fdr``);
- :mod:`~tensorstats.stats.emission` and :mod:`~tensorstats.stats.meanfield`: the
  seed paper's channel-wise emission/absorption and the mean-field variance check;
- :mod:`~tensorstats.stats.tidy`: long pandas tables (``ts.to_frame``).

The numerics live in NumPy/numba kernels over ``axis=-1`` in
:mod:`~tensorstats.kernels`; these modules are thin xarray wrappers.
"""
