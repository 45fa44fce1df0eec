"""Analysis of recorded tensors: moments and normality tests (xarray in, xarray out)."""
