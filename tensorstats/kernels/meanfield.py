"""Kernels of the mean-field check: E[x²] over a layer's input patches, and the prediction.

A Linear or Conv layer sums, for each output value, ``fan_in`` products
W·x of a weight and an entry of one input *patch* (the im2col column of that
output position, padding zeros included). With independent zero-mean weights,
the variance of the outputs pooled over units, samples and positions is

    Var[h] = n_in · Var[W] · E[x²] + Var[b]

where E[x²] is the mean square over every entry of every patch
(:func:`patch_mean_square`). The patches need not be built: an input position
p enters ``w[p]`` patches, the number of (output position o, kernel offset k)
pairs with ``o·stride − pad_left + k·dilation = p`` (separable over the
spatial dims), so

    E[x²] = Σ_p w[p] · Σ_{c,n} x[c, n, p]² / (C_in · N · taps · O)

with O the number of output positions; the padding zeros count in the
denominator (``Σ_p w[p] ≤ taps·O``) and nowhere else. With ``groups`` above 1
each output channel sees C_in/groups input channels, but every group feeds
as many output channels, so pooled over output channels the mean is over all
C_in channels as above. Squares accumulate in float64, a block of rows at a
time.

NaN and Inf are not dropped: a NaN anywhere in a step's input gives NaN, and
otherwise an Inf gives +Inf, even in an input position that no patch reaches
(one cut off by the stride): a non-finite input is a fault worth seeing. An
input with no values (no samples, or no output position) gives NaN.

:func:`patch_mean_square_reference` builds the im2col matrix explicitly; it
exists for the tests only. This module never imports xarray or dask.

Examples
--------
>>> import numpy as np
>>> from tensorstats.stats.geometry import Geometry
>>> conv = Geometry("conv", 2, 4, (3,), (1,), ((1, 1),), (1,))
>>> x = np.ones((2, 5, 8))           # (C_in, N, length)
>>> float(patch_mean_square(x, conv))   # 2 of the 3·8 patch entries per row are padding
0.9166666666666666
>>> float(patch_mean_square_reference(x, conv))
0.9166666666666666
>>> linear = Geometry("linear", 3, 2)
>>> float(patch_mean_square(np.full((3, 4), 2.0), linear))
4.0
>>> float(meanfield_variance(np.float64(0.5), np.float64(4.0), np.float64(0.1), n_in=3))
6.1
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from ..stats.geometry import Geometry
from .blocks import BLOCK_VALUES


def _check_layout(x: np.ndarray, geometry: Geometry, core_ndim: int | None) -> int:
    """The number of trailing core axes of ``x``, checked against ``geometry``."""
    if geometry.kind == "conv":
        expected = 2 + geometry.ndim
        if core_ndim is None:
            core_ndim = expected
        if core_ndim != expected:
            raise ValueError(f"a {geometry.ndim}-d conv input needs {expected} core axes "
                             f"(C_in, N, *spatial), got core_ndim={core_ndim}")
    elif core_ndim is None:
        core_ndim = 2
    if core_ndim < 1 or x.ndim < core_ndim:
        raise ValueError(f"input of shape {x.shape} has fewer than core_ndim={core_ndim} axes")
    if x.shape[x.ndim - core_ndim] != geometry.in_channels:
        raise ValueError(f"input of shape {x.shape}: axis {x.ndim - core_ndim} should hold the "
                         f"{geometry.in_channels} input channels")
    return core_ndim


def patch_coverage(geometry: Geometry, input_size: Sequence[int]) -> list[np.ndarray]:
    """For each spatial dim, how many (output position, kernel offset) pairs read each input.

    Entry p of dim i is the number of pairs (o, k), 0 ≤ o < O_i, 0 ≤ k < k_i,
    with ``o·stride_i − pad_left_i + k·dilation_i = p``. The product over the
    dims is the number of patch entries that hold input position p.

    Examples
    --------
    >>> from tensorstats.stats.geometry import Geometry
    >>> g = Geometry("conv", 1, 1, (3,), (2,), ((1, 1),), (1,))
    >>> patch_coverage(g, (6,))[0].tolist()   # outputs read [-1..1], [1..3], [3..5]
    [1.0, 2.0, 1.0, 2.0, 1.0, 1.0]
    """
    output_size = geometry.output_size(input_size)
    out = []
    for i, o, k, s, (pl, _), d in zip(input_size, output_size, geometry.kernel_size,
                                      geometry.stride, geometry.padding, geometry.dilation,
                                      strict=True):
        pos = (np.arange(max(o, 0))[:, None] * s - pl + np.arange(k)[None, :] * d).ravel()
        pos = pos[(pos >= 0) & (pos < i)]
        out.append(np.bincount(pos, minlength=i).astype(np.float64))
    return out


def _sum_squares(x: np.ndarray, ncore: int, npositions: int) -> np.ndarray:
    """Σ x² over the pooled core axes, float64, one block of rows at a time.

    ``x`` is (*lead, *pooled, *positions), with ``ncore`` core axes of which
    the last ``npositions`` are positions; the result is (*lead, *positions).
    Only one block of float64 values exists at a time (and, for an input that
    is not contiguous, a copy of one leading group).
    """
    lead = x.shape[:x.ndim - ncore]
    positions = x.shape[x.ndim - npositions:]
    out = np.zeros((*lead, *positions))
    block = max(1, BLOCK_VALUES // max(1, math.prod(positions)))
    for index in np.ndindex(lead):
        rows = x[index].reshape(-1, *positions)
        for start in range(0, rows.shape[0], block):
            part = rows[start:start + block].astype(np.float64)
            out[index] += np.einsum("r...,r...->...", part, part)
    return out


def patch_mean_square(x: np.ndarray, geometry: Geometry, *,
                      core_ndim: int | None = None) -> np.ndarray:
    """Mean of x² over every entry of a layer's input patches, padding zeros included.

    Parameters
    ----------
    x : numpy.ndarray
        The layer's input, with any leading axes (one result each) and then
        ``core_ndim`` core axes. For a conv: (..., C_in, N, *spatial), the
        spatial axes in the order of ``geometry.kernel_size``. For a Linear
        layer: (..., C_in, ...) -- input features first, then any sample and
        token axes, all pooled.
    geometry : Geometry
        The layer (kernel size, stride, padding, dilation; ``groups`` does
        not change the pooled mean).
    core_ndim : int, optional
        Number of trailing core axes: ``2 + geometry.ndim`` for a conv (the
        default), at least 1 for a Linear layer (default 2).

    Returns
    -------
    numpy.ndarray
        float64, shape ``x.shape[:-core_ndim]``. NaN where a leading group
        holds a NaN; else +Inf where it holds an Inf (even where no patch
        reaches it); NaN where it has no values.

    Examples
    --------
    >>> import numpy as np
    >>> from tensorstats.stats.geometry import Geometry
    >>> g = Geometry("conv", 1, 1, (2, 2), (1, 1), ((0, 0), (0, 0)), (1, 1))
    >>> x = np.arange(9.0).reshape(1, 1, 1, 3, 3)       # (step, C_in, N, 3, 3)
    >>> patch_mean_square(x, g).tolist()                # centre in 4 patches, corners in 1
    [21.0]
    """
    x = np.asarray(x)
    core_ndim = _check_layout(x, geometry, core_ndim)
    lead = x.shape[:x.ndim - core_ndim]
    core = x.shape[x.ndim - core_ndim:]
    spatial = core[2:] if geometry.kind == "conv" else ()
    squares = _sum_squares(x, core_ndim, len(spatial))
    squares = squares.reshape(math.prod(lead), math.prod(spatial))
    nan = np.isnan(squares).any(axis=1)
    inf = np.isinf(squares).any(axis=1)
    total = np.where(np.isfinite(squares), squares, 0.0).reshape((-1, *spatial))
    if spatial:
        for w in reversed(patch_coverage(geometry, spatial)):
            total = total @ w
        count = math.prod(core[:2]) * geometry.taps * math.prod(geometry.output_size(spatial))
    else:
        count = math.prod(core)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = np.divide(total, count) if count else np.full(len(total), np.nan)
    mean = np.where(nan, np.nan, np.where(inf, np.inf, mean))
    return mean.reshape(lead)


def patch_mean_square_reference(x: np.ndarray, geometry: Geometry) -> np.ndarray:
    """:func:`patch_mean_square` by brute force, building the im2col matrix (tests only).

    ``x`` is (C_in, N, *spatial) for a conv, anything for a Linear layer (the
    plain mean square). The zero-padded input is sliced once per kernel
    offset; the slices stacked are the patches, whose mean square is returned.
    """
    x = np.asarray(x, dtype=np.float64)
    if geometry.kind != "conv":
        return np.mean(x * x)
    padded = np.pad(x, [(0, 0), (0, 0), *geometry.padding])
    out = geometry.output_size(x.shape[2:])
    columns = []
    for offset in itertools.product(*(range(k) for k in geometry.kernel_size)):
        index = tuple(slice(k * d, k * d + (o - 1) * s + 1, s) for k, d, o, s
                      in zip(offset, geometry.dilation, out, geometry.stride, strict=True))
        columns.append(padded[(slice(None), slice(None), *index)])
    im2col = np.stack(columns, axis=1)  # (C_in, taps, N, *out)
    return np.mean(im2col * im2col)


def meanfield_variance(weight_var: np.ndarray, input_mean_square: np.ndarray,
                       bias_var: np.ndarray, *, n_in: int) -> np.ndarray:
    """The mean-field pre-activation variance n_in·Var[W]·E[x²] + Var[b], elementwise.

    Examples
    --------
    >>> meanfield_variance(np.array([0.25]), np.array([2.0]), np.array([0.0]), n_in=4).tolist()
    [2.0]
    """
    return n_in * np.asarray(weight_var, np.float64) * input_mean_square + bias_var


def variance_ratio(observed: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """observed / predicted, elementwise; 0/0 gives NaN and x/0 gives Inf, without a warning.

    Examples
    --------
    >>> variance_ratio(np.array([1.0, 0.0]), np.array([2.0, 0.0])).tolist()
    [0.5, nan]
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(np.asarray(observed, np.float64), predicted)
