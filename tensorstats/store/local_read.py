"""Direct reads of uncompressed chunks from a run store on the local file system.

Reading through zarr-python costs far more than the bytes: every chunk goes
through its event loop, its codec pipeline and a copy, with the GIL held for
most of it, so two dask threads read no faster than one and stall any
computation running beside them. For the layout the Recorder writes by
default -- chunks that hold whole steps, stored uncompressed in native byte
order -- a chunk file *is* the array's bytes, so :class:`LocalChunkReader`
reads each one straight into the output with one ``readinto`` (the GIL is
released while the kernel copies from the page cache).

Anything else -- compressed or byte-swapped chunks, chunks that split a step,
data types NumPy does not know, object stores -- goes through zarr-python
unchanged. Missing chunk files read as the array's fill value, as in Zarr,
unless the reader is told that every chunk it reads must exist
(``missing="raise"``, what :func:`tensorstats.open_run` asks: it reads only
committed steps, whose chunks the writer always wrote).

Examples
--------
>>> import tempfile, numpy as np, zarr
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp()) / "a"
>>> z = zarr.create_array(str(folder), shape=(3, 2), chunks=(1, 2), dtype="float32",
...                       compressors=None, fill_value=np.nan)
>>> z[:2] = [[1, 2], [3, 4]]
>>> reader = LocalChunkReader.for_array(str(folder), z)
>>> reader[0:3, :].tolist()
[[1.0, 2.0], [3.0, 4.0], [nan, nan]]
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np


class LocalChunkReader:
    """A NumPy-style sliceable view of one local Zarr v3 array, for ``dask.array.from_array``.

    Build it with :meth:`for_array`, which returns None where the fast path
    does not apply. Indexing with a tuple of unit-step slices reads the chunk
    files directly; any other index is handed to the zarr array.

    Attributes
    ----------
    shape, dtype, ndim, chunks
        As the zarr array's.
    """

    def __init__(self, folder: str, array: Any, encode_key: Any,
                 missing: str = "fill") -> None:
        self._folder = folder
        self._missing = missing
        self._array = array
        self._encode_key = encode_key
        self.shape: tuple[int, ...] = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.chunks: tuple[int, ...] = tuple(array.chunks)
        self._chunk_nbytes = int(np.prod(self.chunks, dtype=np.int64)) * self.dtype.itemsize
        self._fill = array.fill_value

    @classmethod
    def for_array(cls, folder: str, array: Any,
                  missing: str = "fill") -> LocalChunkReader | None:
        """A reader for the zarr ``array`` stored in ``folder``, or None if it needs zarr.

        Parameters
        ----------
        folder : str
            The array's folder on the local file system.
        array : zarr.Array
            The same array opened with zarr-python (its metadata is used, and
            it serves any index the fast path does not).
        missing : {"fill", "raise"}
            What a missing chunk file reads as: the fill value (Zarr's rule),
            or a :class:`~tensorstats.errors.DamagedStoreError`.
        """
        from zarr.codecs import BytesCodec
        from zarr.core.chunk_grids import RegularChunkGrid

        meta = getattr(array, "metadata", None)
        if meta is None or getattr(meta, "zarr_format", None) != 3:
            return None
        try:
            dtype = np.dtype(array.dtype)
        except TypeError:
            return None
        codecs = tuple(meta.codecs)
        if dtype.kind not in "biuf" or len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
            return None
        endian = codecs[0].endian
        if dtype.itemsize > 1 and (endian is None or endian.value != sys.byteorder):
            return None
        if not isinstance(meta.chunk_grid, RegularChunkGrid) or len(array.shape) == 0:
            return None
        if tuple(array.chunks[1:]) != tuple(array.shape[1:]):
            return None  # a chunk must hold whole steps
        return cls(folder, array, meta.chunk_key_encoding.encode_chunk_key, missing)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        simple = len(key) <= self.ndim and all(
            isinstance(k, slice) and k.step in (None, 1) for k in key)
        if not simple:
            return np.asarray(self._array[key])
        start, stop, _ = key[0].indices(self.shape[0])
        out = self._read_steps(start, max(start, stop))
        rest = key[1:]
        return out[(slice(None), *rest)] if rest else out

    def _chunk_path(self, index: int) -> str:
        coords = (index,) + (0,) * (self.ndim - 1)
        return os.path.join(self._folder, *self._encode_key(coords).split("/"))

    def _read_steps(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        per = self.chunks[0]
        scratch = None
        for index in range(start // per, -(-stop // per) if stop > start else start // per):
            lo, hi = max(start, index * per), min(stop, (index + 1) * per)
            whole = lo == index * per and hi == (index + 1) * per
            if whole:
                target = out[lo - start:hi - start]
            else:
                if scratch is None:
                    scratch = np.empty(self.chunks, self.dtype)
                target = scratch
            if not self._read_chunk(index, target):
                out[lo - start:hi - start] = self._fill
            elif not whole:
                out[lo - start:hi - start] = scratch[lo - index * per:hi - index * per]
        return out

    def _read_chunk(self, index: int, target: np.ndarray) -> bool:
        """Fill ``target`` (one chunk, C-contiguous) from its file; False if there is none."""
        path = self._chunk_path(index)
        try:
            f = open(path, "rb", buffering=0)
        except FileNotFoundError:
            if self._missing == "raise":
                from ..errors import DamagedStoreError

                raise DamagedStoreError(f"chunk {path!r} is missing: the store is "
                                        "damaged") from None
            return False
        with f:
            view = memoryview(target).cast("B")
            got = 0
            while got < self._chunk_nbytes:
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
            extra = f.read(1)
        if got != self._chunk_nbytes or extra:
            from ..errors import DamagedStoreError

            size = os.path.getsize(path)
            raise DamagedStoreError(f"chunk {path!r} holds {size} bytes, expected "
                                    f"{self._chunk_nbytes}: the store is damaged")
        return True
