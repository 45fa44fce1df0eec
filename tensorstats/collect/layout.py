"""How a series is laid out in the store, and what the Recorder remembers of it.

A tensor series holds one array (``tensor``) or, when ``max_elements``
subsamples it, two (the sampled ``tensor`` and the exact ``moments`` of the
full tensor), each described by an :class:`ArrayLayout`. :class:`TensorSpec`
is what the training thread knows about a series (writes may lag behind).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dims import CHANNEL, ELEMENT, MOMENT, STEP, default_dim
from ..store.format import INDICES_VAR, META_KEY, MOMENTS_VAR, STEP_CHUNK, TENSOR_VAR
from ..store.series import AppendArray, SeriesWriter, read_static_array
from .sampling import MOMENT_NAMES, channel_moments, sample_positions
from .validate import check_fits


@dataclass(frozen=True)
class ArrayLayout:
    """One appendable array of a series: a row per step."""

    row_shape: tuple[int, ...]
    dtype: np.dtype
    dims: tuple[str, ...]
    codec: str
    split: int = 0
    """Channels per chunk when a step is split along channels (0: one chunk per step)."""
    step_chunk: int = 1
    """Steps per chunk: more than one packs the steps of a small row into one file."""

    def array(self, key: str, name: str) -> AppendArray:
        attributes = {META_KEY: {"moment": list(MOMENT_NAMES)}} if name == MOMENTS_VAR else {}
        return AppendArray(key=f"{key}/{name}", row_shape=self.row_shape, dtype=self.dtype,
                           dims=self.dims, codec=self.codec, step_chunk=self.step_chunk,
                           split=self.split, attributes=attributes)


PACK_MAX_ROW_BYTES = 4096
"""Rows (one step of a series) of at most this many bytes share a chunk with
other steps: a bias or a layer's per-channel moments would otherwise make a
file of a few hundred bytes at every logged step."""
PACK_CHUNK_BYTES = 1 << 16
"""Bytes of a packed chunk (uncompressed): the writer keeps the latest chunk of
each packed series in memory, so this bounds that memory per series."""


def small_row_layout(row_shape: tuple[int, ...], dtype: np.dtype, dims: tuple[str, ...],
                     codec: str, chunk_bytes: int = PACK_CHUNK_BYTES) -> ArrayLayout:
    """The layout of an array whose rows are appended one step at a time.

    Rows of at most :data:`PACK_MAX_ROW_BYTES` are packed, many steps per
    uncompressed chunk (written in place slot by slot) of at most
    ``chunk_bytes`` (and :data:`PACK_CHUNK_BYTES`); larger rows get a chunk
    of their own per step, compressed with ``codec``. On object stores, which
    cannot write in place, a packed chunk is replaced whole at each step (the
    same number of requests as a chunk per step, and reading a series takes
    one request per chunk instead of one per step).

    Examples
    --------
    >>> small_row_layout((16,), np.dtype("float32"), ("step", "channel"), "lz4").step_chunk
    1024
    >>> small_row_layout((4096,), np.dtype("float32"), ("step", "channel"), "lz4").step_chunk
    1
    """
    nbytes = math.prod(row_shape) * dtype.itemsize
    steps = min(STEP_CHUNK, min(chunk_bytes, PACK_CHUNK_BYTES) // max(nbytes, 1))
    if nbytes > PACK_MAX_ROW_BYTES or nbytes == 0 or steps < 2:  # empty rows: no chunk at all
        return ArrayLayout(row_shape, dtype, dims, codec)
    return ArrayLayout(row_shape, dtype, dims, "none", step_chunk=steps)


@dataclass
class TensorSpec:
    """What the training thread knows about a tensor series."""

    series: SeriesWriter
    source_shape: tuple[int, ...]
    source_dtype: str
    channel_axis: int | None
    dims: tuple[str, ...]
    dtype: np.dtype
    positions: np.ndarray | None
    max_elements: int | None
    attrs: dict[str, Any]
    last_step: int | None

    def check(self, arr: np.ndarray, source_dtype: str, ax: int | None,
              names: tuple[str, ...], step: int, max_elements: int | None,
              attrs: Mapping[str, Any] | None, where: str) -> None:
        """Refuse a step that does not fit the series as its first step fixed it."""
        if arr.shape != self.source_shape:
            raise ValueError(
                f"{where}: shape {arr.shape} differs from the shape {self.source_shape} "
                f"recorded at earlier steps of this series; expected {self.source_shape}")
        if self.channel_axis != ax:
            raise ValueError(
                f"{where}: channel_axis {ax} differs from {self.channel_axis} used at "
                "earlier steps of this series")
        if self.dims != names:
            raise ValueError(f"{where}: dims {names} differ from {self.dims} used at "
                             "earlier steps of this series")
        if not np.can_cast(arr.dtype, self.dtype, casting="same_kind"):
            raise TypeError(
                f"{where}: dtype {source_dtype} cannot be stored in this series, which holds "
                f"{self.dtype} (from {self.source_dtype}) since its first step")
        check_fits(arr, self.dtype, source_dtype, where)
        if max_elements is not None and self.positions is not None \
                and max_elements != self.max_elements:
            raise ValueError(f"{where}: max_elements={max_elements} differs from "
                             f"{self.max_elements} fixed when the series was created")
        if attrs is not None and attrs != self.attrs:
            raise ValueError(f"{where}: attrs {attrs} differ from {self.attrs} stored when the "
                             "series was created")
        if self.last_step is not None and step <= self.last_step:
            raise ValueError(
                f"{where}: step {step} is not greater than the last step recorded for this "
                f"series ({self.last_step}); steps must increase")


@dataclass
class ScalarSpec:
    """What the training thread knows about a scalar series."""

    series: SeriesWriter
    last_step: int | None


@dataclass(frozen=True)
class NewTensorLayout:
    """The arrays of a new tensor series, and what is stored once with it."""

    arrays: dict[str, ArrayLayout]
    positions: np.ndarray | None
    meta: dict[str, Any]
    static: dict[str, Any]


def new_tensor_layout(arr: np.ndarray, ax: int | None, names: tuple[str, ...],
                      dtype: np.dtype, *, key: str, codec: str, chunk_bytes: int,
                      max_elements: int | None, seed: int) -> NewTensorLayout:
    """The layout of a new series whose first step is ``arr`` (channel axis ``ax``)."""
    n_channels = arr.shape[ax] if ax is not None else None
    per_channel = arr.size // max(n_channels or 1, 1)
    lead = (STEP, CHANNEL) if ax is not None else (STEP,)
    channels = () if ax is None else (n_channels,)
    if max_elements is not None and per_channel > max_elements:
        positions = sample_positions(per_channel, max_elements, seed=seed, key=key)
        static = {INDICES_VAR: (positions, (ELEMENT,), {META_KEY: {
            "description": "flat position (C order over the non-channel axes) of each "
                           "sampled element, the same at every step"}})}
        arrays = {TENSOR_VAR: small_row_layout((*channels, len(positions)), dtype,
                                               (*lead, ELEMENT), codec, chunk_bytes),
                  MOMENTS_VAR: small_row_layout((*channels, len(MOMENT_NAMES)),
                                                np.dtype("float64"), (*lead, MOMENT), "none",
                                                chunk_bytes)}
        return NewTensorLayout(arrays, positions,
                               {"max_elements": max_elements, "dims": list(names)}, static)
    row_shape = (np.moveaxis(arr, ax, 0) if ax is not None else arr).shape
    small = small_row_layout(row_shape, dtype, (*lead, *names), codec, chunk_bytes)
    if small.step_chunk > 1:
        return NewTensorLayout({TENSOR_VAR: small}, None, {}, {})
    split = 0
    if row_shape:
        inner = int(np.prod(row_shape[1:], dtype=np.int64)) * dtype.itemsize
        if inner * row_shape[0] > chunk_bytes:
            split = max(1, chunk_bytes // max(inner, 1))
    return NewTensorLayout({TENSOR_VAR: ArrayLayout(row_shape, dtype, (*lead, *names), codec,
                                                    split)}, None, {}, {})


def resumed_spec(series: SeriesWriter, backend: Any, key: str) -> TensorSpec:
    """The spec of a tensor series an earlier Recorder wrote (``mode="a"``)."""
    meta = series.attributes.get(META_KEY, {})
    tensor = series.payload[TENSOR_VAR]
    ax = meta.get("channel_axis")
    positions = read_static_array(backend, f"{key}/{INDICES_VAR}")
    shape = tuple(meta.get("source_shape", ()))
    if positions is None:
        names = tensor.dims[2:] if ax is not None else tensor.dims[1:]
    else:
        names = tuple(default_dim(i) for i in range(len(shape)) if i != ax)
        names = tuple(meta.get("dims", names))
    return TensorSpec(series=series, source_shape=shape,
                      source_dtype=meta.get("source_dtype", tensor.dtype.name),
                      channel_axis=ax, dims=tuple(names), dtype=tensor.dtype,
                      positions=positions, max_elements=meta.get("max_elements"),
                      attrs={k: v for k, v in series.attributes.items() if k != META_KEY},
                      last_step=series.last_step)


def payload_rows(row: np.ndarray, positions: np.ndarray | None,
                 has_channel: bool) -> dict[str, np.ndarray]:
    """The arrays appended for one step: the tensor, or a sample plus full moments."""
    if positions is None:
        return {TENSOR_VAR: row}
    flat = row.reshape(row.shape[0], -1) if has_channel else row.reshape(1, -1)
    sample = np.ascontiguousarray(flat[:, positions])
    moments = channel_moments(flat)
    if not has_channel:
        sample, moments = sample[0], moments[0]
    return {TENSOR_VAR: sample, MOMENTS_VAR: moments}
