"""Append-only series: the crash-safe write protocol of the run store.

A *series* is one Zarr group holding a ``step`` coordinate and one or more
payload arrays whose first dimension is ``step``. Appending step ``n`` does,
in this order:

1. write the payload chunk(s) of row ``n``. Tensor payloads use one step per
   chunk, so these are new keys and no earlier step is rewritten;
2. write row ``n`` of the ``step`` coordinate (1024 steps per chunk): in place,
   into its slot of the chunk file, where the store allows it; otherwise by an
   atomic replace of the chunk. The labels already there survive any crash;
3. commit: write the new length into each payload's ``zarr.json``, then into
   the ``step`` array's ``zarr.json`` last.

The length is written in a fixed-width field (see ``format.LENGTH_WIDTH``), so
on a local disk a commit is a 20-byte ``pwrite`` inside the file's first page,
which a killed process cannot tear; elsewhere the whole document is replaced
atomically.

Until step 3 the new row is beyond every array's shape and invisible. A crash
inside step 3 can leave arrays one row apart; readers take the shortest length
of the series' arrays, and reopening with ``mode="a"`` repairs the metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DamagedStoreError
from .backend import Backend
from .format import (
    SEPARATOR,
    STEP_CHUNK,
    STEP_VAR,
    ChunkEncoder,
    array_metadata,
    chunk_key,
    dumps,
    dumps_appendable,
    fill_value,
    group_metadata,
    length_field,
)


@dataclass
class AppendArray:
    """One Zarr v3 array that grows along its first (``step``) axis."""

    key: str
    row_shape: tuple[int, ...]
    dtype: np.dtype
    dims: tuple[str, ...]
    codec: str = "none"
    step_chunk: int = 1
    split: int = 0
    """Rows per chunk along the first non-step axis (0: the whole axis)."""
    attributes: dict[str, Any] = field(default_factory=dict)
    separator: str = SEPARATOR
    _encoder: ChunkEncoder = field(init=False, repr=False)
    _tail: np.ndarray | None = field(default=None, init=False, repr=False)
    _tail_index: int = field(default=-1, init=False, repr=False)
    _tail_on_disk: bool = field(default=False, init=False, repr=False)
    _length_offset: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.step_chunk > 1 and self.codec != "none":
            raise ValueError("multi-step chunks are stored uncompressed")
        self._encoder = ChunkEncoder(self.codec)
        if self.row_shape and not self.split:
            self.split = max(self.row_shape[0], 1)  # a chunk is never empty

    @property
    def chunks(self) -> tuple[int, ...]:
        if not self.row_shape:
            return (self.step_chunk,)
        return (self.step_chunk, self.split, *(max(n, 1) for n in self.row_shape[1:]))

    def write_metadata(self, backend: Backend, length: int) -> None:
        """Replace the whole ``zarr.json`` (atomic), in the appendable layout."""
        text, self._length_offset = dumps_appendable(array_metadata(
            shape=(length, *self.row_shape), dtype=self.dtype, chunks=self.chunks,
            dims=self.dims, codec=self.codec, attributes=self.attributes,
            separator=self.separator))
        backend.write(f"{self.key}/zarr.json", text, replace=True)

    def commit(self, backend: Backend, length: int) -> None:
        """Make the array ``length`` rows long for readers."""
        if self._length_offset is not None and backend.write_at(
                f"{self.key}/zarr.json", self._length_offset, length_field(length)):
            return
        self.write_metadata(backend, length)

    def _key(self, index: tuple[int, ...]) -> str:
        return chunk_key(self.key, index, self.separator)

    def write_row(self, backend: Backend, index: int, row: np.ndarray) -> None:
        """Write the chunk(s) holding row ``index``; the row stays invisible."""
        if self.step_chunk == 1:
            if row.size == 0 and self.row_shape:  # an empty tensor has no chunk to write
                return
            rest = (0,) * max(len(self.row_shape) - 1, 0)
            if not self.row_shape:
                backend.write(self._key((index,)), self._encoder.encode(row.reshape(1)),
                              replace=False)
                return
            for j, start in enumerate(range(0, self.row_shape[0], self.split)):
                piece = row[start:start + self.split]
                if piece.shape[0] < self.split:  # edge chunks are stored full size
                    pad = np.full((self.split, *piece.shape[1:]),
                                  np.nan if self.dtype.kind == "f" else 0, dtype=self.dtype)
                    pad[: piece.shape[0]] = piece
                    piece = pad
                piece = np.ascontiguousarray(piece)
                backend.write(self._key((index, j, *rest)), self._encoder.encode(piece),
                              replace=False)
            return
        # Multi-step chunks (step labels, scalars): uncompressed, one slot per row.
        chunk_index, offset = divmod(index, self.step_chunk)
        key = self._key((chunk_index, *(0,) * len(self.row_shape)))
        if self._tail is None or self._tail_index != chunk_index:
            tail, on_disk = self._load_tail(backend, chunk_index)
            if offset and not on_disk:  # committed rows of this chunk cannot be read back
                raise DamagedStoreError(
                    f"{key} is missing or not {tail.nbytes} bytes, but rows of it are "
                    f"committed: not writing row {index} over them (ts.check lists the damage)")
            self._tail, self._tail_on_disk, self._tail_index = tail, on_disk, chunk_index
        self._tail[offset] = row
        slot = memoryview(self._tail[offset:offset + 1]).cast("B")
        if self._tail_on_disk and backend.write_at(key, offset * len(slot), slot):
            return
        # No row of this chunk is committed when offset == 0, so a plain write
        # is enough; otherwise replace atomically to keep the committed rows.
        backend.write(key, memoryview(self._tail).cast("B"), replace=offset > 0)
        self._tail_on_disk = True

    def _load_tail(self, backend: Backend, chunk_index: int) -> tuple[np.ndarray, bool]:
        raw = backend.read(self._key((chunk_index, *(0,) * len(self.row_shape))))
        shape = (self.step_chunk, *self.row_shape)
        if raw is not None and len(raw) == int(np.prod(shape)) * self.dtype.itemsize:
            tail = np.frombuffer(raw, dtype=self.dtype.newbyteorder("<")).reshape(shape)
            return tail.copy(), True
        fv = fill_value(self.dtype)
        return np.full(shape, np.nan if fv == "NaN" else fv, dtype=self.dtype), False

    def read_rows(self, backend: Backend, length: int) -> np.ndarray:
        """All committed rows of a multi-step-chunk array (used on resume)."""
        out = []
        for ci in range(-(-length // self.step_chunk)):
            out.append(self._load_tail(backend, ci)[0])
        if not out:
            return np.empty((0, *self.row_shape), self.dtype)
        return np.concatenate(out)[:length]

    @classmethod
    def from_metadata(cls, key: str, meta: dict[str, Any]) -> tuple[AppendArray, int]:
        """Rebuild an array from its ``zarr.json``; also returns its length."""
        names = [c["name"] for c in meta["codecs"]]
        codec = "lz4" if "blosc" in names else "zstd" if "zstd" in names else "none"
        chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
        shape = meta["shape"]
        separator = meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
        arr = cls(key=key, row_shape=tuple(shape[1:]), dtype=np.dtype(meta["data_type"]),
                  dims=tuple(meta["dimension_names"]), codec=codec, step_chunk=chunks[0],
                  split=chunks[1] if len(chunks) > 1 else 0,
                  attributes=meta.get("attributes", {}), separator=separator)
        return arr, int(shape[0])


class SeriesWriter:
    """A group with a ``step`` coordinate and payload arrays, appended together."""

    def __init__(self, backend: Backend, key: str, payload: dict[str, AppendArray],
                 attributes: dict[str, Any], *, length: int = 0, last_step: int | None = None):
        self.backend = backend
        self.key = key
        self.payload = payload
        self.attributes = attributes
        self.step = AppendArray(key=f"{key}/{STEP_VAR}", row_shape=(), dtype=np.dtype("int64"),
                                dims=(STEP_VAR,), step_chunk=STEP_CHUNK)
        self.length = length
        self.last_step = last_step

    def create(self, static: dict[str, tuple[np.ndarray, tuple[str, ...], dict[str, Any]]]
               | None = None) -> None:
        """Write the empty arrays (length 0), any static arrays, then the group.

        The group's ``zarr.json`` comes last: a series folder without it was
        never created and is ignored by readers (and recreated on resume).
        """
        for name, (data, dims, attrs) in (static or {}).items():
            write_static_array(self.backend, f"{self.key}/{name}", data, dims, attrs)
        for arr in (*self.payload.values(), self.step):
            arr.write_metadata(self.backend, 0)
        self.backend.write(f"{self.key}/zarr.json", dumps(group_metadata(self.attributes)),
                           replace=True)

    def append(self, step: int, rows: dict[str, np.ndarray]) -> None:
        """Append one step. When this returns, the step is committed."""
        n = self.length
        for name, arr in self.payload.items():
            arr.write_row(self.backend, n, rows[name])
        self.step.write_row(self.backend, n, np.asarray(step, dtype=np.int64))
        for arr in (*self.payload.values(), self.step):
            arr.commit(self.backend, n + 1)
        self.length = n + 1
        self.last_step = step

    @classmethod
    def load(cls, backend: Backend, key: str) -> SeriesWriter | None:
        """Reopen an existing series, repairing a half-committed append.

        Returns ``None`` where the series was never completely created.
        """
        raw = backend.read(f"{key}/zarr.json")
        if raw is None:
            return None
        attributes = json.loads(raw).get("attributes", {})
        payload: dict[str, AppendArray] = {}
        lengths = {}
        for name in backend.children(key):
            meta_raw = backend.read(f"{key}/{name}/zarr.json")
            if meta_raw is None:
                continue
            meta = json.loads(meta_raw)
            if meta.get("node_type") != "array" or meta["dimension_names"][:1] != [STEP_VAR]:
                continue  # static arrays (e.g. sample indices) do not grow
            arr, lengths[name] = AppendArray.from_metadata(f"{key}/{name}", meta)
            if name != STEP_VAR:
                payload[name] = arr
        if STEP_VAR not in lengths:
            raise ValueError(f"store is damaged: {key}/{STEP_VAR}/zarr.json is missing")
        length = min(lengths.values())
        series = cls(backend, key, payload, attributes, length=length)
        steps = series.step.read_rows(backend, length)
        if length and not np.all(np.diff(steps) > 0):
            raise ValueError(f"store is damaged: steps of {key} are not increasing")
        series.last_step = int(steps[-1]) if length else None
        for name, arr in (*payload.items(), (STEP_VAR, series.step)):
            if lengths[name] != length:  # a crash between two metadata writes
                arr.write_metadata(backend, length)
        return series


def write_static_array(backend: Backend, key: str, data: np.ndarray, dims: tuple[str, ...],
                       attributes: dict[str, Any] | None = None) -> None:
    """Write a small array that never grows, in one chunk, data before metadata."""
    data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    shape = data.shape or (1,)
    backend.write(chunk_key(key, (0,) * len(shape)), memoryview(data.reshape(shape)).cast("B"),
                  replace=True)  # a static array is written once, before its metadata
    backend.write(f"{key}/zarr.json", dumps(array_metadata(
        shape=data.shape, dtype=np.dtype(data.dtype.name), chunks=[max(s, 1) for s in shape],
        dims=dims, codec="none", attributes=attributes)), replace=True)


def read_static_array(backend: Backend, key: str) -> np.ndarray | None:
    """Read back an array written by :func:`write_static_array`."""
    raw = backend.read(f"{key}/zarr.json")
    if raw is None:
        return None
    meta = json.loads(raw)
    shape = meta["shape"]
    data = backend.read(chunk_key(key, (0,) * len(shape)))
    if data is None:
        return None
    dtype = np.dtype(meta["data_type"]).newbyteorder("<")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def repair_all(backend: Backend, prefix: str = "") -> dict[str, SeriesWriter]:
    """Reopen (and so repair) every series below ``prefix`` after a crash.

    A series is a group with a ``step`` array. :meth:`SeriesWriter.load`
    trims arrays left one row apart by a crash between two metadata writes.
    Returns the reopened series by key, so callers need not read them again.
    """
    found: dict[str, SeriesWriter] = {}
    for name in backend.children(prefix):
        key = f"{prefix}/{name}" if prefix else name
        raw = backend.read(f"{key}/zarr.json")
        if raw is None or json.loads(raw).get("node_type") != "group":
            continue
        if backend.read(f"{key}/{STEP_VAR}/zarr.json") is not None:
            series = SeriesWriter.load(backend, key)
            if series is not None:
                found[key] = series
        else:
            found.update(repair_all(backend, key))
    return found
