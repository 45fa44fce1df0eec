"""A stored series as a lazy dask array and xarray DataArray.

Steps are grouped into dask chunks of about ``chunk_bytes``; each dask chunk
reads whole stored chunks (one per step for tensors). Uncompressed chunks of
a local store are read with plain file I/O (:mod:`.local_read`), everything
else through zarr-python.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..dims import ELEMENT, MOMENT, POSITION, STEP
from .backend import Backend
from .codec_read import CodecChunkReader
from .discover import SeriesInfo
from .format import META_KEY
from .local_read import LocalChunkReader


def lazy_array(backend: Backend, series: SeriesInfo, array: Any, chunk_bytes: int) -> Any:
    """``array`` (the series' data or moments) as a dask array of its committed steps."""
    import dask.array as dsa

    zchunks = tuple(array.chunks)
    dtype = np.dtype(array.dtype)
    chunk_nbytes = int(np.prod(zchunks[1:], dtype=np.int64)) * dtype.itemsize
    per = max(1, chunk_bytes // max(chunk_nbytes, 1))
    if zchunks[0] > 1:  # multi-step chunks (scalars): align to them
        per = zchunks[0] * max(1, per // zchunks[0])
    name = f"tensorstats-{backend.url}-{array.path}-{series.length}"
    source = array
    folder = backend.local_path(array.path)
    if folder is not None:  # uncompressed local chunks: read directly
        source = LocalChunkReader.for_array(folder, array, missing="raise") or array
    if source is array:  # compressed whole-step chunks: checked before decoding
        source = CodecChunkReader.for_codec_array(backend, array.path, array) or array
    data = dsa.from_array(_Guarded(source, series), chunks=(per, *zchunks[1:]), lock=False,
                          asarray=True, name=name, meta=np.empty((0,) * array.ndim, dtype))
    return data[: series.length]


class _Guarded:
    """A chunk source whose read errors name the series and the steps being read."""

    def __init__(self, source: Any, series: SeriesInfo) -> None:
        self._source = source
        self._series = series
        self.shape, self.dtype, self.ndim = source.shape, source.dtype, source.ndim

    def __getitem__(self, key: Any) -> Any:
        try:
            return self._source[key]
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as e:
            from ..errors import DamagedStoreError
            from .check import series_label

            first = key[0] if isinstance(key, tuple) else key
            steps = self._series.steps[first] if isinstance(first, slice) else []
            where = (f"step {steps[0]}" if len(steps) == 1 else
                     f"steps {steps[0]}..{steps[-1]}" if len(steps) else "a step")
            raise DamagedStoreError(f"{series_label(self._series.key)} {where}: cannot read "
                                    f"the stored data ({type(e).__name__}: {e}); "
                                    "ts.check(run) lists every damaged chunk") from e


def series_dataarray(backend: Backend, series: SeriesInfo, chunk_bytes: int) -> xr.DataArray:
    """The series over ``step``, its attrs and tensorstats' own metadata merged."""
    attrs = {k: v for k, v in series.attrs.items() if k != META_KEY}
    attrs.update(series.attrs.get(META_KEY, {}))
    coords: dict[str, Any] = {STEP: series.steps}
    if series.positions is not None:
        coords[POSITION] = (ELEMENT, series.positions)
    return xr.DataArray(lazy_array(backend, series, series.array, chunk_bytes),
                        dims=series.dims, coords=coords, name=series.name, attrs=attrs)


def moments_dataarray(backend: Backend, series: SeriesInfo,
                      chunk_bytes: int) -> xr.DataArray | None:
    """The exact moments stored with a subsampled series, or None."""
    if series.moments is None:
        return None
    names = series.moments.metadata.attributes.get(META_KEY, {}).get("moment")
    dims = tuple(series.moments.metadata.dimension_names)
    return xr.DataArray(lazy_array(backend, series, series.moments, chunk_bytes), dims=dims,
                        coords={STEP: series.steps, MOMENT: names},
                        name=f"{series.name} moments")
