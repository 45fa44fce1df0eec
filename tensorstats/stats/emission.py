"""Emission/absorption from a layer's weight and output gradient, as DataArrays.

:func:`emission_absorption_from` pairs a layer's recorded ``weight`` and
``feature_grad`` by step and runs the kernel of
:mod:`tensorstats.kernels.emission` on each step (and block of
samples) as one dask task. Finding the series in a run is
:func:`tensorstats.emission_absorption`'s job (:mod:`tensorstats.layers`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..dims import CHANNEL, IN_CHANNEL, OUT_CHANNEL, SAMPLE, STEP
from ..kernels.emission import emission_absorption
from .geometry import Geometry, check_layer_series
from .groups import is_dask

BLOCK_BYTES = 64 * 2**20
"""Default bytes of output gradient per task (a step's samples are split beyond it)."""


def _core_names(prefix: str, n: int) -> list[str]:
    return [f"__{prefix}{i}__" for i in range(n)]


def _apply(g: np.ndarray, w: np.ndarray, *, geometry: Geometry, input_size: tuple[int, ...],
           threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Kernel over leading (step, sample) axes; ``w`` has leading (step[, 1]) axes."""
    steps, samples = g.shape[:2]
    loop = w.ndim - 2 - len(geometry.kernel_size)  # (step,) or (step, 1)
    w = w.reshape(-1, *w.shape[loop:])
    emission = np.empty((steps, samples, geometry.out_channels))
    absorption = np.empty((steps, samples, geometry.in_channels))

    for s in range(steps):
        out = emission_absorption(g[s], w[s], geometry, input_size, threads)
        emission[s], absorption[s] = out["emission"], out["absorption"]
    return emission, absorption


def _blocks(g: xr.DataArray, sample_block: int | None) -> tuple[int, int]:
    """Samples and steps per task: a task holds at most :data:`BLOCK_BYTES` of gradient.

    A step larger than that is split into blocks of samples. Smaller steps are
    grouped, as long as every worker still gets about two tasks: each task
    costs a few hundred microseconds of scheduling, as much as the kernel
    spends on a small layer's step.
    """
    n_steps, n_samples = g.shape[:2]
    per_sample = max(1, math.prod(g.shape[2:]) * g.dtype.itemsize)
    samples = sample_block or max(1, BLOCK_BYTES // per_sample)
    if samples < n_samples:
        return samples, 1
    by_memory = max(1, BLOCK_BYTES // (per_sample * max(n_samples, 1)))
    by_workers = max(1, -(-n_steps // (2 * (os.cpu_count() or 1))))
    return samples, min(by_memory, by_workers)


def _input_size(geometry: Geometry, layer: str, output_size: tuple[int, ...],
                input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if geometry.kind == "linear":
        return ()
    if input_shape is None:
        return geometry.input_size(output_size, layer)
    shape = tuple(int(n) for n in input_shape)
    if len(shape) != geometry.ndim + 1 or shape[0] != geometry.in_channels:
        raise ValueError(f"layer {layer!r}: input_shape {shape} is not (in_channels="
                         f"{geometry.in_channels}, {geometry.ndim} spatial sizes)")
    if geometry.output_size(shape[1:]) != output_size:
        raise ValueError(f"layer {layer!r}: an input of shape {shape} gives outputs of spatial "
                         f"size {geometry.output_size(shape[1:])}, but the recorded gradient "
                         f"has {output_size}")
    return shape[1:]


def _check(weight: xr.DataArray, grad: xr.DataArray, geometry: Geometry, layer: str) -> None:
    for name, da in (("weight", weight), ("feature_grad", grad)):
        check_layer_series(da, name, layer, "emission/absorption")
    expected = geometry.weight_shape
    got = tuple(weight.sizes[d] for d in weight.dims if d != STEP)
    if got != expected:
        raise ValueError(f"layer {layer!r}: weight of shape {got} per step; its module "
                         f"metadata says {expected}")
    if grad.sizes[CHANNEL] != geometry.out_channels or grad.ndim < 3:
        raise ValueError(f"layer {layer!r}: feature_grad of sizes {dict(grad.sizes)}; expected "
                         f"{geometry.out_channels} channels and a sample dim")
    if geometry.kind == "conv" and grad.ndim != 3 + geometry.ndim:
        raise ValueError(f"layer {layer!r}: feature_grad has dims {grad.dims}; a "
                         f"{geometry.ndim}-d conv needs (step, channel, sample, "
                         f"{geometry.ndim} spatial dims)")


def emission_absorption_from(weight: xr.DataArray, feature_grad: xr.DataArray, *,
                             geometry: Geometry, layer: str = "",
                             input_shape: Sequence[int] | None = None,
                             sample_block: int | None = None) -> xr.Dataset:
    """Emission and absorption of every sample at every step both series share.

    Parameters
    ----------
    weight : xarray.DataArray
        The layer's weight over ``step``: (step, channel, ...) in PyTorch's
        layout (out, in/groups, *kernel), as ``watch`` records it.
    feature_grad : xarray.DataArray
        ∂L/∂output over ``step``: (step, channel, sample, *spatial); for a
        Linear layer (step, channel, sample, *positions).
    geometry : Geometry
        From :func:`~tensorstats.stats.geometry.layer_geometry`.
    layer : str
        For error messages.
    input_shape : sequence of int, optional
        The input's shape without the batch axis (channels, *spatial), where
        the spatial size cannot be told from the output's.
    sample_block : int, optional
        Samples per dask task (default: as many as fit in about 64 MiB of
        gradient). Steps are grouped into a task while it stays under that
        size and every CPU still gets about two tasks.

    Returns
    -------
    xarray.Dataset
        ``emission`` (step, sample, out_channel) and ``absorption`` (step,
        sample, in_channel), float64; lazy when an input is. Steps missing
        from either series are left out.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from tensorstats.stats.geometry import Geometry
    >>> geo = Geometry("linear", 3, 2)
    >>> w = xr.DataArray(np.ones((2, 2, 3)), dims=("step", "channel", "dim_1"),
    ...                  coords={"step": [0, 10]})
    >>> g = xr.DataArray(np.ones((1, 2, 4)), dims=("step", "channel", "sample"),
    ...                  coords={"step": [10]})
    >>> ds = emission_absorption_from(w, g, geometry=geo)
    >>> ds["emission"].sizes, float(ds["absorption"][0, 0, 0])
    (Frozen({'step': 1, 'sample': 4, 'out_channel': 2}), 2.0)
    """
    _check(weight, feature_grad, geometry, layer)
    others = [d for d in feature_grad.dims if d not in (STEP, CHANNEL)]
    sample = SAMPLE if SAMPLE in others else others[0]
    positions = [d for d in others if d != sample]
    input_size = _input_size(geometry, layer,
                             tuple(feature_grad.sizes[d] for d in positions), input_shape)
    g_core = _core_names("g", 1 + len(positions))
    w_dims = [d for d in weight.dims if d != STEP]
    w_core = _core_names("w", len(w_dims))
    g = feature_grad.transpose(STEP, sample, CHANNEL, *positions).rename(
        {sample: SAMPLE, **dict(zip([CHANNEL, *positions], g_core, strict=True))})
    w = weight.transpose(STEP, *w_dims).rename(dict(zip(w_dims, w_core, strict=True)))
    g = g.drop_vars([c for c in g.coords if c != STEP])
    w = w.drop_vars([c for c in w.coords if c != STEP])
    g, w = xr.align(g, w, join="inner", exclude=[SAMPLE, *g_core, *w_core])
    lazy = is_dask(g) or is_dask(w)
    if lazy:
        samples, steps = _blocks(g, sample_block)
        g = g.chunk({STEP: steps, SAMPLE: samples, **dict.fromkeys(g_core, -1)})
        w = w.chunk({STEP: steps, **dict.fromkeys(w_core, -1)})
    emission, absorption = xr.apply_ufunc(
        _apply, g, w,
        input_core_dims=[g_core, w_core],
        output_core_dims=[[OUT_CHANNEL], [IN_CHANNEL]],
        kwargs={"geometry": geometry, "input_size": input_size,
                "threads": 1 if lazy else (os.cpu_count() or 1)},
        dask="parallelized",
        output_dtypes=[np.float64, np.float64],
        dask_gufunc_kwargs={"output_sizes": {OUT_CHANNEL: geometry.out_channels,
                                             IN_CHANNEL: geometry.in_channels}},
    )
    return xr.Dataset({"emission": emission.transpose(STEP, SAMPLE, OUT_CHANNEL),
                       "absorption": absorption.transpose(STEP, SAMPLE, IN_CHANNEL)})
