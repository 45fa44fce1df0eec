"""Pure NumPy kernels: groups on the leading axes, samples on the last. No xarray, no dask."""
