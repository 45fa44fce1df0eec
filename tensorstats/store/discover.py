"""Finding a run store's series before touching their data.

The reader lists the groups of a section (``tensors``, ``probes/<name>``,
``scalars``), reads each series' ``zarr.json`` and its ``step`` array, and
keeps what it learnt in a :class:`SeriesInfo`. A folder without a
``zarr.json`` is one the writer had not yet committed and is skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dims import STEP
from ..errors import NotARunStoreError
from .backend import Backend
from .format import INDICES_VAR, META_KEY, MOMENTS_VAR, PROBES, STEP_VAR
from .names import decode_name


@dataclass
class SeriesInfo:
    """What the reader knows about one series before touching its data."""

    key: str
    name: str
    var: str
    length: int
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype
    zarr_chunks: tuple[int, ...]
    attrs: dict[str, Any]
    steps: np.ndarray = field(repr=False)
    array: Any = field(repr=False)
    moments: Any = field(default=None, repr=False)
    positions: np.ndarray | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def read_json(backend: Backend, key: str) -> dict[str, Any] | None:
    """The JSON object stored at ``key``, or None where there is none."""
    raw = backend.read(key)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NotARunStoreError(f"{backend.url!r}: {key} is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise NotARunStoreError(f"{backend.url!r}: {key} is not a JSON object")
    return meta


def _own_meta(group: dict[str, Any]) -> dict[str, Any]:
    return group.get("attributes", {}).get(META_KEY, {})


def open_series(backend: Backend, root: Any, key: str, var: str,
                name_attr: str) -> SeriesInfo | None:
    """The series at ``key`` whose data array is ``var``; None if not yet committed.

    ``root`` is the store's zarr group. The shortest of the series' arrays
    gives the committed length (see ``store/series.py``).
    """
    group = read_json(backend, f"{key}/zarr.json")
    if group is None:
        return None
    attrs = group.get("attributes", {})
    name = _own_meta(group).get(name_attr, decode_name(key.rsplit("/", 1)[-1]))
    try:
        step_arr = root[f"{key}/{STEP_VAR}"]
        data_arr = root[f"{key}/{var}"]
    except KeyError as e:
        raise NotARunStoreError(f"store is damaged: {key} lacks an array ({e})") from e
    members = set(backend.children(key))
    moments = root[f"{key}/{MOMENTS_VAR}"] if MOMENTS_VAR in members else None
    positions = np.asarray(root[f"{key}/{INDICES_VAR}"][:]) if INDICES_VAR in members else None
    length = min(a.shape[0] for a in (step_arr, data_arr, moments) if a is not None)
    steps = np.asarray(step_arr[:length], dtype=np.int64)
    dims = tuple(data_arr.metadata.dimension_names)
    if dims[0] != STEP:
        raise ValueError(f"{key}/{var} has dims {dims}; expected {STEP!r} first")
    return SeriesInfo(key=key, name=name, var=var, length=length, dims=dims,
                      shape=(length, *data_arr.shape[1:]), dtype=np.dtype(data_arr.dtype),
                      zarr_chunks=tuple(data_arr.chunks), attrs=attrs, steps=steps,
                      array=data_arr, moments=moments, positions=positions)


def tensor_series(backend: Backend, root: Any, section: str,
                  var: str) -> dict[str, dict[str, SeriesInfo]]:
    """``{kind: {layer: series}}`` of a tensor section, both levels sorted."""
    kinds: dict[str, dict[str, SeriesInfo]] = {}
    for kind_key in backend.children(section):
        kind_meta = read_json(backend, f"{section}/{kind_key}/zarr.json")
        if kind_meta is None:
            continue
        kind = _own_meta(kind_meta).get("kind", decode_name(kind_key))
        layers = {}
        for layer_key in backend.children(f"{section}/{kind_key}"):
            series = open_series(backend, root, f"{section}/{kind_key}/{layer_key}", var,
                                 "layer")
            if series is not None:
                layers[series.name] = series
        kinds[kind] = dict(sorted(layers.items()))
    return dict(sorted(kinds.items()))


def scalar_series(backend: Backend, root: Any, section: str,
                  var: str) -> dict[str, SeriesInfo]:
    """``{name: series}`` of the scalar section."""
    out = {}
    for name_key in backend.children(section):
        series = open_series(backend, root, f"{section}/{name_key}", var, "scalar")
        if series is not None:
            out[series.name] = series
    return out


def probe_names(backend: Backend) -> list[str]:
    """Sorted names of the probe batches recorded in the store."""
    names = []
    for probe_key in backend.children(PROBES):
        meta = read_json(backend, f"{PROBES}/{probe_key}/zarr.json")
        if meta is not None:
            names.append(_own_meta(meta).get("probe", decode_name(probe_key)))
    return sorted(names)
