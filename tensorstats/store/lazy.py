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

from ..dims import ELEMENT, MOMENT, POSITION, RANK, STEP
from .backend import Backend
from .codec_read import CodecChunkReader
from .discover import RankedSeries, SeriesInfo
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
    data = dsa.from_array(_Guarded(source, array, series.key), chunks=(per, *zchunks[1:]),
                          lock=False, asarray=True, name=name,
                          meta=np.empty((0,) * array.ndim, dtype))
    return data[: series.length]


class _Guarded:
    """A chunk source whose read errors name the series and the steps being read.

    It keeps only the series' key and the zarr store its array lives in (not
    its step labels, which would be pickled into every task of a graph); the
    labels are read back when an error is reported.
    """

    def __init__(self, source: Any, array: Any, key: str) -> None:
        self._source = source
        self._store = array.store
        self._key = key
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
            raise DamagedStoreError(
                f"{series_label(self._key)} {self._steps(first)}: cannot read the stored "
                f"data ({type(e).__name__}: {e}); ts.check(run) lists every damaged chunk "
                "(on a cluster, also check that the workers can reach the store)") from e

    def _steps(self, rows: Any) -> str:
        if not isinstance(rows, slice):
            return "a step"
        try:
            import zarr

            group = zarr.open_group(self._store, mode="r", use_consolidated=False)
            labels = np.asarray(group[f"{self._key}/step"][rows])
        except Exception:  # the labels are unreadable too: name the rows
            start, stop, _ = rows.indices(self.shape[0])
            return f"rows {start}..{stop - 1}"
        if len(labels) == 1:
            return f"step {labels[0]}"
        return f"steps {labels[0]}..{labels[-1]}" if len(labels) else "a step"


def ranked_dataarray(backend: Backend, series: RankedSeries, chunk_bytes: int,
                     moments: bool = False) -> xr.DataArray | None:
    """Each rank's series (or stored moments) stacked along a leading ``rank`` dim.

    Steps are outer-joined: a step some rank has not (yet) written reads as
    NaN for that rank.
    """
    import pandas as pd

    if not moments and series.sharded:
        return assembled_dataarray(backend, series, chunk_bytes)
    make = moments_dataarray if moments else series_dataarray
    parts = {r: make(backend, s, chunk_bytes) for r, s in series.by_rank.items()}
    if any(p is None for p in parts.values()):
        return None
    return xr.concat(list(parts.values()), dim=pd.Index(list(parts), name=RANK),
                     join="outer", combine_attrs="override")


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


def _shard(series: SeriesInfo) -> dict[str, Any] | None:
    return series.attrs.get(META_KEY, {}).get("shard")


def assembled_dataarray(backend: Backend, series: RankedSeries,
                        chunk_bytes: int) -> xr.DataArray:
    """The full tensor of a sharded series (FSDP), from each rank's shard, lazily.

    The shards must tile the tensor along one axis (the one their offsets
    differ in); steps are those every shard has.
    """
    from ..errors import DamagedStoreError
    from .check import series_label

    infos = sorted(series.by_rank.values(), key=lambda s: _shard(s)["offset"])
    shards = [_shard(s) for s in infos]
    meta = infos[0].attrs.get(META_KEY, {})
    global_shape = shards[0]["global_shape"]
    differ = [a for a in range(len(global_shape))
              if len({tuple(sh["offset"])[a] for sh in shards}) > 1]
    label = series_label(series.key)
    if len(differ) > 1:
        raise DamagedStoreError(f"{label}: shards differ in their offsets along axes {differ}; "
                                "only shards along one axis are assembled")
    parts = [series_dataarray(backend, s, chunk_bytes) for s in infos]
    if not differ:  # every rank holds the whole tensor
        return parts[0]
    axis = differ[0]
    end = 0
    for info, sh in zip(infos, shards, strict=True):
        size = info.attrs[META_KEY]["source_shape"][axis]
        if size and sh["offset"][axis] != end:
            raise DamagedStoreError(f"{label}: the ranks' shards do not tile axis {axis} "
                                    f"(a shard starts at {sh['offset'][axis]}, expected {end})")
        end += size
    if end != global_shape[axis]:
        raise DamagedStoreError(f"{label}: the shards cover {end} of {global_shape[axis]} "
                                f"along axis {axis}; a rank's shard is missing")
    ax = meta.get("channel_axis")
    order = [ax, *(i for i in range(len(global_shape)) if i != ax)] if ax is not None else list(
        range(len(global_shape)))
    dim = parts[0].dims[1 + order.index(axis)]
    full = xr.concat(parts, dim=dim, join="inner", combine_attrs="override")
    attrs = {k: v for k, v in full.attrs.items() if k != "shard"}
    attrs["source_shape"] = list(global_shape)
    full.attrs = attrs
    return full
