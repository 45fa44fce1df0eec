"""Finding a run store's series before touching their data.

The reader lists the groups of a section (``tensors``, ``probes/<name>``,
``scalars``), reads each series' ``zarr.json`` and its ``step`` array, and
keeps what it learnt in a :class:`SeriesInfo`. A folder without a
``zarr.json`` is one the writer had not yet committed and is skipped. A series
whose metadata cannot be read, or disagrees with itself, is *damaged*: it is
set aside with the reason (``damaged``), and every other series still reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dims import STEP
from ..errors import DamagedStoreError, NotARunStoreError
from .backend import Backend
from .format import INDICES_VAR, META_KEY, MOMENTS_VAR, PROBES, STEP_VAR
from .names import decode_name

Damaged = dict[str, str]
"""Series that could not be opened: readable label (``feature/conv1``) -> reason."""


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
        raise DamagedStoreError(f"{key}/{var} has dims {dims}; expected {STEP!r} first")
    if np.dtype(data_arr.dtype).kind not in "biuf":
        raise DamagedStoreError(f"{key}/{var} has data type {data_arr.dtype}, not numeric")
    _check_row_shape(attrs.get(META_KEY, {}), tuple(data_arr.shape[1:]), positions, key)
    return SeriesInfo(key=key, name=name, var=var, length=length, dims=dims,
                      shape=(length, *data_arr.shape[1:]), dtype=np.dtype(data_arr.dtype),
                      zarr_chunks=tuple(data_arr.chunks), attrs=attrs, steps=steps,
                      array=data_arr, moments=moments, positions=positions)


def _check_row_shape(meta: dict[str, Any], row: tuple[int, ...],
                     positions: np.ndarray | None, key: str) -> None:
    """A fully stored series' rows have its source shape, channel axis first."""
    shape, ax = meta.get("source_shape"), meta.get("channel_axis")
    if shape is None or positions is not None:
        return
    want = tuple(np.moveaxis(np.empty(shape, dtype=np.bool_), ax, 0).shape
                 if ax is not None else shape)
    if row != want:
        raise DamagedStoreError(f"{key}: stored rows have shape {row}, but the series was "
                                f"recorded with shape {tuple(shape)} (channel axis {ax}); "
                                "its metadata was edited or damaged")


_DAMAGE = (DamagedStoreError, NotARunStoreError, ValueError, KeyError, TypeError,
           IndexError, json.JSONDecodeError, UnicodeDecodeError)


def _open_or_note(backend: Backend, root: Any, key: str, var: str, name_attr: str,
                  damaged: Damaged) -> SeriesInfo | None:
    try:
        return open_series(backend, root, key, var, name_attr)
    except _DAMAGE as e:
        from .check import series_label

        damaged[series_label(key)] = f"{type(e).__name__}: {e}"
        return None


def tensor_series(backend: Backend, root: Any, section: str, var: str,
                  damaged: Damaged) -> dict[str, dict[str, SeriesInfo]]:
    """``{kind: {layer: series}}`` of a tensor section, both levels sorted."""
    kinds: dict[str, dict[str, SeriesInfo]] = {}
    for kind_key in backend.children(section):
        try:
            kind_meta = read_json(backend, f"{section}/{kind_key}/zarr.json")
        except NotARunStoreError as e:
            from .check import series_label

            damaged[series_label(f"{section}/{kind_key}")] = str(e)
            continue
        if kind_meta is None:
            continue
        kind = _own_meta(kind_meta).get("kind", decode_name(kind_key))
        layers = {}
        for layer_key in backend.children(f"{section}/{kind_key}"):
            series = _open_or_note(backend, root, f"{section}/{kind_key}/{layer_key}", var,
                                   "layer", damaged)
            if series is not None:
                layers[series.name] = series
        kinds[kind] = dict(sorted(layers.items()))
    return dict(sorted(kinds.items()))


def scalar_series(backend: Backend, root: Any, section: str, var: str,
                  damaged: Damaged) -> dict[str, SeriesInfo]:
    """``{name: series}`` of the scalar section."""
    out = {}
    for name_key in backend.children(section):
        series = _open_or_note(backend, root, f"{section}/{name_key}", var, "scalar", damaged)
        if series is not None:
            out[series.name] = series
    return out


def probe_names(backend: Backend, ranks: str | None = None) -> list[str]:
    """Sorted names of the probe batches recorded in the store (by any rank)."""
    sections = [PROBES]
    if ranks is not None:
        sections += [f"{ranks}/{r}/{PROBES}" for r in rank_numbers(backend, ranks)]
    names = set()
    for section in sections:
        for probe_key in backend.children(section):
            meta = read_json(backend, f"{section}/{probe_key}/zarr.json")
            if meta is not None:
                names.add(_own_meta(meta).get("probe", decode_name(probe_key)))
    return sorted(names)


@dataclass
class RankedSeries:
    """One series written by several ranks (``ranks/<r>/...``), read as one with a ``rank`` dim."""

    by_rank: dict[int, SeriesInfo]

    @property
    def first(self) -> SeriesInfo:
        return self.by_rank[min(self.by_rank)]

    @property
    def key(self) -> str:
        return self.first.key

    @property
    def name(self) -> str:
        return self.first.name

    @property
    def attrs(self) -> dict[str, Any]:
        return self.first.attrs

    @property
    def steps(self) -> np.ndarray:
        return np.unique(np.concatenate([s.steps for s in self.by_rank.values()]))

    @property
    def sharded(self) -> bool:
        """Whether the ranks hold shards of one tensor (read assembled, without a rank dim)."""
        return all("shard" in s.attrs.get(META_KEY, {}) for s in self.by_rank.values())

    @property
    def dims(self) -> tuple[str, ...]:
        return self.first.dims if self.sharded else ("rank", *self.first.dims)

    @property
    def shape(self) -> tuple[int, ...]:
        if self.sharded:
            meta = self.first.attrs[META_KEY]
            full, ax = meta["shard"]["global_shape"], meta.get("channel_axis")
            rest = [n for i, n in enumerate(full) if i != ax]
            return (len(self.steps), *([full[ax]] if ax is not None else []), *rest)
        return (len(self.by_rank), len(self.steps), *self.first.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.first.dtype

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.by_rank.values())


def rank_numbers(backend: Backend, ranks: str) -> list[int]:
    """The ranks that wrote series of their own (``ranks/<r>`` folders), sorted."""
    return sorted(int(r) for r in backend.children(ranks) if r.isdigit())


def ranked_series(backend: Backend, root: Any, ranks: str, section: str, var: str,
                  damaged: Damaged) -> dict[str, dict[str, RankedSeries]]:
    """``{kind: {layer: RankedSeries}}`` of ``ranks/<r>/<section>`` over every rank."""
    out: dict[str, dict[str, RankedSeries]] = {}
    for rank in rank_numbers(backend, ranks):
        kinds = tensor_series(backend, root, f"{ranks}/{rank}/{section}", var, damaged)
        for kind, layers in kinds.items():
            for layer, series in layers.items():
                ranked = out.setdefault(kind, {}).setdefault(layer, RankedSeries({}))
                ranked.by_rank[rank] = series
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}
