"""Checks of what a caller asks :class:`~tensorstats.Recorder` to record.

Every check runs before anything is written: a record that fails one leaves
the store as it was. Messages name the series and the step (``where``).
"""

from __future__ import annotations

import json
import operator
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..dims import RESERVED, default_dim
from ..store.format import META_KEY
from .convert import to_numpy


def check_step(step: Any, where: str) -> int:
    """An int, or anything integer-like (NumPy/JAX/PyTorch 0-d integer arrays); not bool."""
    is_bool = isinstance(step, (bool, np.bool_)) or "bool" in str(getattr(step, "dtype", ""))
    try:
        if is_bool:
            raise TypeError
        step = operator.index(step)
    except TypeError:
        raise TypeError(f"{where}: step must be an integer, got {type(step).__name__} "
                        f"{step!r}") from None
    if not -(2**63) <= step < 2**63:
        raise ValueError(f"{where}: step {step} does not fit in int64")
    return step


def check_json(obj: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """A copy of ``obj`` (``None``: empty) after checking it is plain, finite JSON."""
    obj = dict(obj or {})
    if META_KEY in obj:
        raise ValueError(f"{what} key {META_KEY!r} is reserved for tensorstats' own metadata")
    try:
        json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{what} must be JSON-serialisable (str keys; str, number, bool, None, "
            f"lists and dicts of those; finite floats): {e}") from e
    return obj


def stored_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a new series stores ``dtype`` as: native byte order, at most float64."""
    if dtype.kind == "f" and dtype.itemsize > 8:
        return np.dtype("float64")
    return np.dtype(dtype.name)


def read_numeric(value: Any, where: str) -> tuple[np.ndarray, str]:
    """``value`` as a NumPy array of bool, integer or float data, and its source dtype."""
    try:
        arr, source_dtype = to_numpy(value)
    except (TypeError, ValueError, RuntimeError, BufferError) as e:
        raise TypeError(f"{where}: cannot read the value as a numeric array: {e}") from e
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{where}: expected numeric data (bool, integer or float), "
            f"got dtype {arr.dtype} ({source_dtype})")
    return arr, source_dtype


def channel_axis(axis: int | None, shape: tuple[int, ...], where: str) -> int | None:
    """The channel axis as a non-negative int, or None."""
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{where}: channel_axis must be an int or None, got {axis!r}")
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{where}: channel_axis={axis} is out of range for a tensor of shape "
            f"{shape} ({ndim} axes); expected an axis in [{-ndim}, {ndim - 1}] or None")
    return int(axis) % ndim


def dim_names(dims: Sequence[str] | None, other: list[int], where: str) -> tuple[str, ...]:
    """Names of the non-channel axes ``other``: given, or ``dim_<axis>``."""
    if dims is None:
        return tuple(default_dim(i) for i in other)
    if isinstance(dims, str):
        dims = (dims,)
    dims = tuple(dims)
    if len(dims) != len(other):
        raise ValueError(
            f"{where}: dims={dims} names {len(dims)} axes, but the tensor has "
            f"{len(other)} non-channel axes")
    for d in dims:
        if not isinstance(d, str) or not d:
            raise ValueError(f"{where}: dims must be non-empty strings, got {d!r}")
        if d in RESERVED:
            raise ValueError(f"{where}: dim name {d!r} is reserved; avoid {sorted(RESERVED)}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"{where}: dims {dims} has duplicates")
    return dims


def check_max_elements(max_elements: Any, where: str) -> int | None:
    if max_elements is None:
        return None
    if (isinstance(max_elements, bool) or not isinstance(max_elements, (int, np.integer))
            or max_elements < 1):
        raise ValueError(f"{where}: max_elements must be a positive int or None, "
                         f"got {max_elements!r}")
    return int(max_elements)


def check_fits(arr: np.ndarray, dtype: np.dtype, source_dtype: str, where: str) -> None:
    """Refuse values the series' dtype cannot hold as they are.

    Integers outside the range of an integer series, and finite values beyond
    the range of a float series (1e300 into float32, or the integer 100000
    into float16, would become ``inf``), are refused: a value is never
    changed silently. NaN and ±Inf
    are stored as they are. The check costs a pass over the values only when
    the series' dtype is narrower than the value's.

    Examples
    --------
    >>> check_fits(np.array([1e300]), np.dtype("float32"), "float64", "'w' layer 'x' at step 3")
    Traceback (most recent call last):
    ...
    ValueError: 'w' layer 'x' at step 3: finite values up to 1e+300 in magnitude do not fit ...
    """
    wide_int = arr.dtype.kind in "iu" and int(np.iinfo(arr.dtype).max) > float(
        np.finfo(dtype).max if dtype.kind == "f" else 0)
    if dtype.kind == "f" and arr.size and (
            (arr.dtype.kind == "f" and arr.dtype.itemsize > dtype.itemsize) or wide_int):
        _check_float_range(arr, dtype, source_dtype, where)  # e.g. 1e5 into float16
    if dtype.kind in "iu" and arr.size and not np.can_cast(arr.dtype, dtype):
        info = np.iinfo(dtype)
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            raise ValueError(
                f"{where}: values from {lo} to {hi} do not fit the series' dtype "
                f"{dtype} ({info.min}..{info.max}), fixed at its first step")


def _check_float_range(arr: np.ndarray, dtype: np.dtype, source_dtype: str, where: str) -> None:
    limit = float(np.finfo(dtype).max)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN tensor
        lo, hi = np.nanmin(arr), np.nanmax(arr)
    if np.isnan(hi) or (-limit <= lo and hi <= limit):  # all within range (or all NaN)
        return
    if arr.dtype.kind in "iu":
        biggest = float(max(abs(int(lo)), abs(int(hi))))
    else:
        finite = np.isfinite(arr)
        if not finite.any():
            return
        biggest = float(np.max(np.abs(arr[finite])))
    if biggest > limit:
        raise ValueError(
            f"{where}: finite values up to {biggest:.3g} in magnitude do not fit the series' "
            f"dtype {dtype} (largest {limit:.3g}), fixed at its first step; given as "
            f"{source_dtype}. Storing them would turn them into inf. Record this series in "
            "a wider float dtype from its first step, or rescale the values")


def check_shard(shard: Any, shape: tuple[int, ...], where: str) -> dict[str, list[int]] | None:
    """``(global_shape, offset)`` of a shard as stored metadata, after checking it fits."""
    if shard is None:
        return None
    try:
        global_shape, offset = (tuple(int(v) for v in part) for part in shard)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: shard must be (global_shape, offset), two sequences of "
                        f"ints; got {shard!r}") from None
    if not len(global_shape) == len(offset) == len(shape):
        raise ValueError(f"{where}: shard {global_shape}, {offset} does not match the local "
                         f"shape {shape} in length")
    for n, o, g in zip(shape, offset, global_shape, strict=True):
        if o < 0 or o + n > g:
            raise ValueError(f"{where}: a local shard of shape {shape} at offset {offset} "
                             f"does not fit in the global shape {global_shape}")
    return {"global_shape": list(global_shape), "offset": list(offset)}
