"""Reading run stores: :func:`open_run`, :func:`open_runs`, :class:`Run`, :class:`Runs`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .dims import MOMENT, RUN, STEP
from .errors import DamagedStoreError, StoreNotFoundError, UnknownSeriesError
from .kernels.moments import PARTIAL_FIELDS
from .run_repr import describe_run
from .store.backend import is_url, open_backend
from .store.discover import (
    RankedSeries,
    SeriesInfo,
    probe_names,
    ranked_series,
    read_json,
    scalar_series,
    tensor_series,
)
from .store.format import (
    MOMENTS_VAR,
    PROBES,
    RANKS,
    SCALAR_VAR,
    SCALARS,
    SUMMARIES,
    TENSOR_VAR,
    TENSORS,
    check_format,
)
from .store.lazy import moments_dataarray, ranked_dataarray, series_dataarray
from .store.names import encode_name


class DamagedSeriesWarning(UserWarning):
    """Some series of a run could not be opened; the others read (see ``Run.damaged``)."""


DEFAULT_DASK_CHUNK_BYTES = 64 * 2**20
"""Steps are grouped into dask chunks of about this many bytes when reading."""


class Run:
    """A run store opened for reading: lazy, dask-backed, nothing loaded.

    Use :func:`open_run` to make one.

    Attributes
    ----------
    store : str
        The path or URL the run was opened from.
    attrs : dict
        The ``attrs`` given to the :class:`~tensorstats.Recorder`, plus the
        ``"tensorstats"`` entry (format version, library version, codec, ...).
    """

    def __init__(self, store: str | os.PathLike[str], *,
                 storage_options: Mapping[str, Any] | None = None,
                 chunk_bytes: int = DEFAULT_DASK_CHUNK_BYTES, _probe: str | None = None) -> None:
        import zarr

        self._storage_options = storage_options
        self.probe_name = _probe
        section = TENSORS if _probe is None else f"{PROBES}/{encode_name(_probe)}"
        self._backend = open_backend(store, storage_options)
        self.store = self._backend.url
        self._chunk_bytes = chunk_bytes
        root = read_json(self._backend, "zarr.json")
        if root is None:
            raise StoreNotFoundError(f"no run store at {self.store!r} (no zarr.json there)")
        self.attrs: dict[str, Any] = root.get("attributes", {})
        check_format(self.attrs, self.store)
        self._zarr = zarr.open_group(self._backend.zarr_store(read_only=True), mode="r",
                                     use_consolidated=False)
        self.damaged: dict[str, str] = {}
        """Series that could not be opened (``"feature/conv1"`` -> why); see ``ts.check``."""
        self._tensors: dict[str, dict[str, SeriesInfo | RankedSeries]] = dict(tensor_series(
            self._backend, self._zarr, section, TENSOR_VAR, self.damaged))
        ranked = ranked_series(self._backend, self._zarr, RANKS, section, TENSOR_VAR,
                               self.damaged)
        for kind, layers in ranked.items():  # per-rank series, read with a rank dim
            merged = {**layers, **self._tensors.get(kind, {})}
            self._tensors[kind] = dict(sorted(merged.items()))
        self._tensors = dict(sorted(self._tensors.items()))
        summaries = SUMMARIES if _probe is None else f"{SUMMARIES}/{section}"
        self._summaries: dict[str, dict[str, SeriesInfo | RankedSeries]] = dict(tensor_series(
            self._backend, self._zarr, summaries, MOMENTS_VAR, self.damaged))
        for kind, layers in ranked_series(self._backend, self._zarr, RANKS, summaries,
                                          MOMENTS_VAR, self.damaged).items():
            self._summaries[kind] = dict(sorted({**layers,
                                                 **self._summaries.get(kind, {})}.items()))
        self.probes: list[str] = ([] if _probe is not None
                                  else probe_names(self._backend, RANKS))
        """Names of the fixed-input probe batches recorded (see :meth:`probe`)."""
        self._scalars = ({} if _probe is not None else
                         scalar_series(self._backend, self._zarr, SCALARS, SCALAR_VAR,
                                       self.damaged))
        self._cache: dict[tuple[str, str], xr.DataArray] = {}
        if self.damaged:
            warnings.warn(f"{self.store!r}: {len(self.damaged)} damaged series left out "
                          f"({', '.join(self.damaged)}); every other series reads. "
                          "run.damaged says why; ts.check(run) lists every problem",
                          DamagedSeriesWarning, stacklevel=3)

    # ---------------------------------------------------------------- access
    @property
    def kinds(self) -> list[str]:
        """Sorted tensor kinds in the store, e.g. ``["feature", "weight"]``."""
        return list(self._tensors)

    def layers(self, kind: str) -> list[str]:
        """Sorted layer names recorded under ``kind``."""
        if kind not in self._tensors:
            raise UnknownSeriesError(f"no kind {kind!r} in {self.store!r}; kinds: {self.kinds}")
        return list(self._tensors[kind])

    @property
    def steps(self) -> np.ndarray:
        """Every step at which anything was recorded, sorted."""
        all_steps = [s.steps for k in self._tensors.values() for s in k.values()]
        all_steps += [s.steps for s in self._scalars.values()]
        if not all_steps:
            return np.empty(0, np.int64)
        return np.unique(np.concatenate(all_steps))

    def _dataarray(self, series: SeriesInfo | RankedSeries) -> xr.DataArray:
        if isinstance(series, RankedSeries):
            return ranked_dataarray(self._backend, series, self._chunk_bytes)
        return series_dataarray(self._backend, series, self._chunk_bytes)

    def _series(self, kind: str, layer: str) -> SeriesInfo | RankedSeries:
        layers = self._tensors.get(kind)
        where = f"{self.store!r}" + (f" (probe {self.probe_name!r})" if self.probe_name else "")
        label = (f"probe {self.probe_name}: " if self.probe_name else "") + f"{kind}/{layer}"
        if label in self.damaged and (layers is None or layer not in layers):
            raise DamagedStoreError(f"{label} in {where} is damaged: {self.damaged[label]}")
        if layers is None:
            raise UnknownSeriesError(f"no kind {kind!r} in {where}; kinds: {self.kinds}")
        if layer not in layers:
            raise UnknownSeriesError(f"no layer {layer!r} of kind {kind!r} in {where}; "
                           f"layers: {list(layers)}")
        return layers[layer]

    def moments(self, kind: str, layer: str) -> xr.DataArray | None:
        """Exact moments of the full tensor stored with a subsampled series.

        Returns a lazy DataArray with dims ``("step", "channel", "moment")``
        and a ``moment`` coordinate (``count``, ``nan_count``, ``inf_count``,
        ``mean``, ``m2``, ``m3``, ``m4``, ``min``, ``max``; ``m2``..``m4`` are
        central sums, so ``var = m2 / count``), or ``None`` where the series
        was stored in full.
        """
        series = self._series(kind, layer)
        if isinstance(series, RankedSeries):
            return ranked_dataarray(self._backend, series, self._chunk_bytes, moments=True)
        return moments_dataarray(self._backend, series, self._chunk_bytes)

    @property
    def summary_kinds(self) -> list[str]:
        """Kinds with summary series (``watch(..., summaries="moments")``), sorted."""
        return sorted(self._summaries)

    def summary_layers(self, kind: str) -> list[str]:
        """Layers with a summary series of ``kind``, sorted."""
        if kind not in self._summaries:
            raise UnknownSeriesError(f"no summaries of kind {kind!r} in {self.store!r}; "
                                     f"summary kinds: {self.summary_kinds}")
        return list(self._summaries[kind])

    def summary(self, kind: str, layer: str) -> xr.DataArray:
        """The per-step summary of a series: exact per-channel moments, lazily.

        Dims ``("step", "channel", "moment")`` (``"rank"`` first for per-rank
        series), laid out as :meth:`moments`; ``ts.moments(run.summary(...))``
        gives mean, var, std, skew, kurtosis, min, max and the NaN/Inf counts.
        Recorded with ``watch(..., summaries="moments")`` or
        ``Recorder.record_summary``.
        """
        layers = self._summaries.get(kind, {})
        if layer not in layers:
            raise UnknownSeriesError(
                f"no summary of {kind!r} layer {layer!r} in {self.store!r}; summaries: "
                + ", ".join(f"{k}/{n}" for k, ls in self._summaries.items() for n in ls))
        series = layers[layer]
        da = self._dataarray(series)
        return da.assign_coords({MOMENT: list(PARTIAL_FIELDS)}).rename(f"{layer} summary")

    def probe(self, name: str) -> Run:
        """The series recorded on the fixed input batch ``name`` (e.g. ``"valid"``).

        The result is a :class:`Run` restricted to that probe: ``kinds``,
        ``layers``, ``[kind, layer]`` work as for the training batch.
        """
        if name not in self.probes:
            raise UnknownSeriesError(f"no probe {name!r} in {self.store!r}; probes: {self.probes}")
        return Run(self.store, storage_options=self._storage_options,
                   chunk_bytes=self._chunk_bytes, _probe=name)

    def refresh(self) -> Run:
        """Look at the store again: steps, series and probes recorded since it was opened.

        For a run still being written (a notebook next to a training job).
        Every step shown is complete: each series shows the steps committed
        when it was looked at (later ones appear on the next refresh). Arrays
        taken from the run before keep the steps they had. Returns the run.
        """
        fresh = Run(self.store, storage_options=self._storage_options,
                    chunk_bytes=self._chunk_bytes, _probe=self.probe_name)
        self.__dict__.clear()  # drops cached scalars and tree too
        self.__dict__.update(fresh.__dict__)
        return self

    def _main_run(self) -> Run:
        """The run itself, for a probe (whose parameters are stored with the run)."""
        if self.probe_name is None:
            return self
        return Run(self.store, storage_options=self._storage_options,
                   chunk_bytes=self._chunk_bytes)

    def __getitem__(self, key: tuple[str, str]) -> xr.DataArray:
        """``run[kind, layer]``: the series as a lazy DataArray over ``step``."""
        if not (isinstance(key, tuple) and len(key) == 2):
            raise KeyError(f"index a Run with (kind, layer), e.g. run['weight', 'fc.weight']; "
                           f"got {key!r}")
        kind, layer = key
        if key not in self._cache:
            self._cache[key] = self._dataarray(self._series(kind, layer))
        return self._cache[key]

    def __contains__(self, key: object) -> bool:
        return (isinstance(key, tuple) and len(key) == 2
                and key[0] in self._tensors and key[1] in self._tensors[key[0]])

    def items(self) -> Iterable[tuple[tuple[str, str], xr.DataArray]]:
        """Every ``((kind, layer), DataArray)`` pair, lazily."""
        for kind, layers in self._tensors.items():
            for layer in layers:
                yield (kind, layer), self[kind, layer]

    @cached_property
    def scalars(self) -> xr.Dataset:
        """Every scalar series in one Dataset over ``step`` (outer join, NaN where absent)."""
        arrays = [self._dataarray(s).rename(name) for name, s in self._scalars.items()]
        if not arrays:
            return xr.Dataset(coords={STEP: np.empty(0, np.int64)})
        ds = xr.merge(arrays, join="outer", compat="no_conflicts", combine_attrs="drop")
        return ds

    @cached_property
    def tree(self) -> xr.DataTree:
        """The whole store as an ``xr.DataTree``, node paths as stored (encoded names)."""
        nodes: dict[str, xr.Dataset] = {"/": xr.Dataset(attrs=self.attrs)}
        for run in (self, *(self.probe(p) for p in self.probes)):
            for layers in run._tensors.values():
                for series in layers.values():
                    parts = (series.by_rank.values() if isinstance(series, RankedSeries)
                             else [series])
                    for s in parts:  # each rank's series at its own path
                        variables = {TENSOR_VAR: run._dataarray(s).rename(None)}
                        moments = moments_dataarray(run._backend, s, run._chunk_bytes)
                        if moments is not None:
                            variables[MOMENTS_VAR] = moments.rename(None)
                        nodes[s.key] = xr.Dataset(variables, attrs=s.attrs)
        for s in self._scalars.values():
            nodes[s.key] = xr.Dataset({SCALAR_VAR: self._dataarray(s).rename(None)}, attrs=s.attrs)
        return xr.DataTree.from_dict(nodes)

    def __repr__(self) -> str:
        return describe_run(self.store, self.probe_name, self.attrs, self._tensors,
                            self._scalars, self.probes)


def open_run(store: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None,
             chunk_bytes: int = DEFAULT_DASK_CHUNK_BYTES) -> Run:
    """Open a run store for reading, lazily.

    Parameters
    ----------
    store
        A local folder or an fsspec URL (``"s3://bucket/run.zarr"``).
    storage_options
        Passed to fsspec for URLs.
    chunk_bytes
        Consecutive steps are grouped into dask chunks of about this size.

    Returns
    -------
    Run
        ``run.kinds``, ``run.layers(kind)``, ``run[kind, layer]`` (an
        ``xr.DataArray`` with dims ``("step", "channel", ...)``),
        ``run.scalars``, ``run.attrs`` and ``run.tree``.

    Notes
    -----
    A store whose writer was killed opens too: each series shows every step
    committed before the kill. A store still being written opens as well:
    each series shows the steps committed so far, every one complete;
    :meth:`Run.refresh` (or another ``open_run``) shows the newer ones.

    Examples
    --------
    >>> import numpy as np, tempfile, os, tensorstats as ts
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> with ts.Recorder(path) as rec:
    ...     rec.record("feature", "conv1", np.zeros((8, 4, 5, 5)), step=0, channel_axis=1)
    >>> run = ts.open_run(path)
    >>> run.kinds, run.layers("feature")
    (['feature'], ['conv1'])
    >>> run["feature", "conv1"].dims
    ('step', 'channel', 'dim_0', 'dim_2', 'dim_3')
    """
    return Run(store, storage_options=storage_options, chunk_bytes=chunk_bytes)


class Runs:
    """Several runs side by side; tensors gain a leading ``run`` dim.

    Use :func:`open_runs` to make one. Series are aligned on ``step`` by
    label (outer join): a step one run logged and another did not is NaN in
    the other, never shifted.
    """

    def __init__(self, runs: Mapping[str, Run]) -> None:
        if not runs:
            raise ValueError("open_runs needs at least one run")
        self.runs: dict[str, Run] = dict(runs)

    @property
    def names(self) -> list[str]:
        """Run names, in the order given; the coordinate of the ``run`` dim."""
        return list(self.runs)

    @property
    def kinds(self) -> list[str]:
        """Kinds present in any run, sorted."""
        return sorted({k for r in self.runs.values() for k in r.kinds})

    def layers(self, kind: str) -> list[str]:
        """Layers of ``kind`` present in any run, sorted."""
        return sorted({layer for r in self.runs.values() if kind in r.kinds
                       for layer in r.layers(kind)})

    @property
    def attrs(self) -> dict[str, dict[str, Any]]:
        """Each run's attrs, by run name."""
        return {n: r.attrs for n, r in self.runs.items()}

    def _stack(self, arrays: dict[str, xr.DataArray | xr.Dataset]) -> Any:
        index = pd.Index(list(arrays), name=RUN)
        return xr.concat(list(arrays.values()), dim=index, join="outer", fill_value=np.nan,
                         combine_attrs="drop_conflicts")

    def __getitem__(self, key: tuple[str, str]) -> xr.DataArray:
        """``runs[kind, layer]``: dims ``("run", "step", ...)``, steps outer-joined."""
        missing = [n for n, r in self.runs.items() if key not in r]
        if missing:
            raise UnknownSeriesError(f"{key!r} is missing from runs {missing}")
        arrays = {n: r[key] for n, r in self.runs.items()}
        first_name, first = next(iter(arrays.items()))
        for n, a in arrays.items():
            other = {d: s for d, s in a.sizes.items() if d != STEP}
            expected = {d: s for d, s in first.sizes.items() if d != STEP}
            if other != expected:
                raise ValueError(f"{key!r} has sizes {other} in run {n!r} but {expected} in run "
                                 f"{first_name!r}; only runs of the same shape can be stacked")
        steps = [a.indexes[STEP] for a in arrays.values()]
        if any(not s.equals(steps[0]) for s in steps):
            arrays = {n: a if a.dtype.kind == "f" else a.astype(np.float64)
                      for n, a in arrays.items()}
        return self._stack(arrays)

    @cached_property
    def scalars(self) -> xr.Dataset:
        """Scalars of every run, stacked along ``run`` (outer join on ``step``)."""
        return self._stack({n: r.scalars for n, r in self.runs.items()})

    def __repr__(self) -> str:
        body = "\n".join(f"  {n}: {r.store!r} ({len(r.kinds)} kinds, {len(r.steps)} steps)"
                         for n, r in self.runs.items())
        return f"<tensorstats.Runs, {len(self.runs)} runs>\n{body}"


def open_runs(stores: Mapping[str, str | os.PathLike[str]] | Sequence[str | os.PathLike[str]], *,
              storage_options: Mapping[str, Any] | None = None,
              chunk_bytes: int = DEFAULT_DASK_CHUNK_BYTES) -> Runs:
    """Open several runs to compare them; tensors gain a leading ``run`` dim.

    Parameters
    ----------
    stores
        ``{name: path}``, or a list of paths (each named by its file name
        without ``.zarr``).
    storage_options
        Passed to fsspec for the stores given as URLs (``"s3://..."``); local
        paths among ``stores`` do not take them, so a local run and a remote
        one open together.

    Examples
    --------
    >>> import numpy as np, tempfile, os, tensorstats as ts
    >>> tmp = tempfile.mkdtemp()
    >>> for name, steps in {"a": [0, 10, 20], "b": [0, 20]}.items():
    ...     with ts.Recorder(os.path.join(tmp, name + ".zarr")) as rec:
    ...         for s in steps:
    ...             rec.record("weight", "w", np.full(3, float(s)), step=s)
    >>> runs = ts.open_runs({n: os.path.join(tmp, n + ".zarr") for n in "ab"})
    >>> runs["weight", "w"].sel(channel=0).values
    array([[ 0., 10., 20.],
           [ 0., nan, 20.]])
    """
    if isinstance(stores, Mapping):
        named = dict(stores)
    else:
        named = {}
        for s in stores:
            name = os.path.basename(os.fspath(s).rstrip("/"))
            name = name[: -len(".zarr")] if name.endswith(".zarr") else name
            if name in named:
                raise ValueError(f"two runs would be named {name!r}; pass a dict of names")
            named[name] = s
    return Runs({n: open_run(p, storage_options=storage_options if is_url(p) else None,
                             chunk_bytes=chunk_bytes)
                 for n, p in named.items()})
