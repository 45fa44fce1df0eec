"""The framework-agnostic writer of run stores."""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from .._version import __version__
from ..dims import CHANNEL, MOMENT, STEP
from ..store.backend import Backend, open_backend
from ..store.check import series_label
from ..store.consolidate import consolidate, unconsolidate
from ..store.format import (
    CODECS,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CODEC,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_KEY,
    MOMENTS_VAR,
    PROBES,
    SCALAR_VAR,
    SCALARS,
    STEP_CHUNK,
    SUMMARIES,
    TENSORS,
    check_format,
    dumps,
    group_metadata,
)
from ..store.lock import StoreLock
from ..store.lock import acquire as acquire_lock
from ..store.names import encode_name
from ..store.series import AppendArray, SeriesWriter, repair_all
from . import validate
from .buffers import BufferPool
from .convert import to_numpy
from .layout import (
    ScalarSpec,
    TensorSpec,
    new_tensor_layout,
    payload_rows,
    resumed_spec,
    small_row_layout,
)
from .nonfinite import FirstNonfinite
from .ranks import (
    RANKS,
    SHARED_KINDS,
    rank_prefix,
    resolve_ranks,
    run_id,
    wait_for_root,
)
from .sampling import MOMENT_NAMES
from .submit import Submitter
from .validate import (
    check_fits,
    check_json,
    check_max_elements,
    check_shard,
    check_step,
    dim_names,
    read_numeric,
    stored_dtype,
)

Mode = Literal["w-", "w", "a"]
_MODES = ("w-", "w", "a")
DEFAULT_MAX_PENDING_BYTES = 512 * 2**20


_open_recorders: weakref.WeakSet[Recorder] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:  # queued asynchronous writes are not lost at exit
    for rec in list(_open_recorders):
        try:
            rec.close()
        except Exception:
            pass


def _section(base: str, section: str) -> str:
    """A section (``tensors``, ``probes/<p>``, ``summaries``) of the run, or of a rank's part."""
    return f"{base}/{section}" if base else section


class Recorder:
    """Write tensors and scalars of a training run into a Zarr v3 run store.

    Parameters
    ----------
    store
        A local folder (``"runs/a.zarr"``) or an fsspec URL (``"s3://b/a.zarr"``,
        ``"memory://a.zarr"``).
    mode
        ``"w-"`` (default) creates the store and raises :class:`FileExistsError`
        if something is already there, touching nothing. ``"w"`` deletes an
        existing *Zarr* store first (it refuses to delete a folder that is not
        one). ``"a"`` resumes an existing store (or creates it) and appends.
    attrs
        JSON-serialisable run metadata, e.g. ``{"init": "kaiming"}``. In mode
        ``"a"`` new keys are added; a key whose value differs from the stored
        one is an error.
    storage_options
        Passed to fsspec for URLs (credentials, endpoint, ...).
    codec
        Compression of tensor chunks: ``"none"`` (default), ``"lz4"`` (Blosc
        LZ4 with bit-shuffle) or ``"zstd"``. See ``docs/benchmarks.md``.
        Steps of at most 4 KiB (biases, small weights, the moments of
        subsampled series) are packed uncompressed, many steps per chunk
        file, each step written in place into its own slot.
    chunk_bytes
        A step of a tensor larger than this is split along its channel axis
        into several chunks (default 16 MiB).
    asynchronous
        Write on a background thread. :meth:`record` then only validates and
        copies the tensor and returns; :meth:`flush` and :meth:`close` wait
        for the writes, and an error in the writer is raised at the next call.
    max_pending_bytes
        With ``asynchronous=True``, the most tensor bytes waiting to be
        written (default 512 MiB). When the writer falls behind, :meth:`record`
        blocks instead of holding more.
    seed
        Seed of the element positions chosen by ``max_elements``.
    rank, world_size
        This process's place in a run of several processes (data-parallel
        training). Not given, they are taken from ``torch.distributed`` when
        it is initialised with more than one process. Rank ``r`` writes its
        own series under ``ranks/<r>/``; the ``shared_kinds`` and the scalars
        are written by rank 0 only (other ranks' calls return at once). Rank 0
        creates the store; the others join it. ``open_run`` shows per-rank
        series with a ``rank`` dim. See ``docs/distributed.md``.
    durable
        On a local file system, ``fsync`` each step's chunks, the folders
        that gained them, and then the commit, so a committed step survives
        a power loss or an operating-system crash, not only the death of the
        process. Costs a few disk flushes per series per step (see
        ``docs/reliability.md``). Object stores are durable once a write
        returns, either way.
    shared_kinds
        Kinds that agree across ranks (default ``("weight", "grad")``: the
        weights, and the gradients after data parallelism's all-reduce).

    Notes
    -----
    Synchronously, each :meth:`record` commits one step of one series before it
    returns; asynchronously, everything recorded is committed when
    :meth:`flush` returns. A crash of the process after that, ``SIGKILL``
    included, loses none of it; with ``durable=True`` neither does a power
    loss. A step is never rewritten to add the next one. A Recorder is
    thread-safe. One store has one writer (one per rank): on a local file
    system a second Recorder on the same store (or rank) raises
    :class:`~tensorstats.errors.StoreLockedError` (a ``flock`` the system
    drops when the process ends, however it ends).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> with Recorder(path, attrs={"init": "kaiming"}) as rec:
    ...     for step in range(3):
    ...         rec.record("weight", "fc.weight", np.ones((4, 2)) * step, step=step)
    ...         rec.record_scalar("loss", 1.0 / (step + 1), step=step)
    >>> import tensorstats as ts
    >>> ts.open_run(path)["weight", "fc.weight"].sizes
    Frozen({'step': 3, 'channel': 4, 'dim_1': 2})
    """

    def __init__(
        self,
        store: str | os.PathLike[str],
        *,
        mode: Mode = "w-",
        attrs: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        codec: str = DEFAULT_CODEC,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        asynchronous: bool = False,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        shared_kinds: Sequence[str] = SHARED_KINDS,
        durable: bool = False,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
        for name, v in (("chunk_bytes", chunk_bytes), ("max_pending_bytes", max_pending_bytes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        user_attrs = check_json(attrs, "attrs")
        self._started = time.time()
        self.rank, self.world_size = resolve_ranks(rank, world_size)
        self.shared_kinds = tuple(shared_kinds)
        self.durable = bool(durable)
        self._backend: Backend = open_backend(store, storage_options, durable=self.durable)
        self.store = self._backend.url
        self.mode = mode
        self.codec = codec
        self.chunk_bytes = chunk_bytes
        self.seed = int(seed)
        self.max_pending_bytes = max_pending_bytes
        self._lock = threading.RLock()
        self._series: dict[str, Any] = {}
        self._groups: set[str] = set()
        self._closed = False
        self._submitter = Submitter(max_pending_bytes)
        self._resumed: dict[str, SeriesWriter] = {}
        self._pool = BufferPool(max_pending_bytes)
        self._store_lock: StoreLock | None = None
        try:
            if self.rank in (None, 0):
                self._open_main(mode, user_attrs)
            else:
                self._join(mode, user_attrs)
            self._nonfinite = FirstNonfinite(self._backend, self.rank, self._root_attrs)
        except BaseException:
            self._release_lock()
            raise
        if asynchronous:
            self.set_asynchronous(True)
        _open_recorders.add(self)

    # ------------------------------------------------------------------ setup
    def _open_main(self, mode: str, user_attrs: dict[str, Any]) -> None:
        """Create, overwrite or resume the store (one process, or rank 0 of several)."""
        root = self._backend.read("zarr.json")
        if mode == "w-" and not self._backend.is_empty():
            raise FileExistsError(
                f"{self.store!r} already exists; use mode='a' to append to it "
                "or mode='w' to overwrite it")
        self._store_lock = acquire_lock(self._backend, None, self.store)
        if mode == "w" and not self._backend.is_empty():
            if root is None:
                raise FileExistsError(
                    f"{self.store!r} exists and is not a Zarr store; refusing to delete it")
            self._backend.remove_all()
            root = None
        if mode == "a" and root is not None:
            self._resume(json.loads(root), user_attrs)
        else:
            if mode == "a" and not self._backend.is_empty():
                raise FileExistsError(
                    f"{self.store!r} exists and is not a Zarr store; cannot append to it")
            self._create(user_attrs)

    def _join(self, mode: str, user_attrs: dict[str, Any]) -> None:
        """Rank r > 0: join the store rank 0 created; own only ``ranks/<r>``."""
        assert self.rank is not None
        raw = wait_for_root(self._backend, self.rank, mode, self._started)
        attrs = json.loads(raw).get("attributes", {})
        check_format(attrs, self.store, writing=True)
        given = {k: v for k, v in user_attrs.items() if attrs.get(k, v) != v or k not in attrs}
        if given:
            raise ValueError(f"rank {self.rank}: attrs {sorted(given)} are not those rank 0 "
                             f"stored in {self.store!r}; run attrs are written by rank 0")
        self._store_lock = acquire_lock(self._backend, self.rank, self.store)
        mine = rank_prefix(self.rank)
        if self._backend.children(mine):
            if mode == "w-":
                raise FileExistsError(f"{self.store!r} already holds rank {self.rank}'s series; "
                                      "use mode='a' to append or mode='w' to replace them")
            if mode == "w":
                self._backend.remove(mine)
        self._root_attrs = attrs
        if mode == "a":
            self._resumed = repair_all(self._backend, mine)

    def _release_lock(self) -> None:
        if self._store_lock is not None:
            self._store_lock.release()
            self._store_lock = None

    def _create(self, user_attrs: dict[str, Any]) -> None:
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "codec": self.codec,
        }
        if self.world_size is not None:
            meta["world_size"] = self.world_size
            if run_id() is not None:
                meta["run_id"] = run_id()
        self._root_attrs = {**user_attrs, META_KEY: meta}
        self._backend.write("zarr.json", dumps(group_metadata(self._root_attrs)), replace=True)
        for section in (TENSORS, SCALARS):
            self._ensure_group(section, {META_KEY: {"section": section}})

    def _resume(self, root: dict[str, Any], user_attrs: dict[str, Any]) -> None:
        attrs = root.get("attributes", {})
        check_format(attrs, self.store, writing=True)
        conflicts = {k for k in user_attrs if k in attrs and attrs[k] != user_attrs[k]}
        if conflicts:
            raise ValueError(
                f"attrs {sorted(conflicts)} differ from those stored in {self.store!r}: "
                + ", ".join(f"{k}: stored {attrs[k]!r}, given {user_attrs[k]!r}"
                            for k in sorted(conflicts)))
        # Everything is checked; only now may the store change. Consolidated
        # metadata goes first, so no reader ever sees a stale snapshot.
        unconsolidate(self._backend)
        sections = [TENSORS, SCALARS, PROBES, SUMMARIES]  # other ranks repair their own
        sections += [RANKS] if self.rank is None else [rank_prefix(self.rank)]
        for section in sections:  # read once, used by record()
            self._resumed.update(repair_all(self._backend, section))
        self._root_attrs = {**attrs, **user_attrs}
        if user_attrs:
            self._backend.write("zarr.json", dumps(group_metadata(self._root_attrs)), replace=True)
        for section in (TENSORS, SCALARS):
            self._ensure_group(section, {META_KEY: {"section": section}})

    def set_asynchronous(self, on: bool = True) -> None:
        """Switch background writing on or off (switching off flushes first)."""
        with self._lock:
            self._check_open()
            self._submitter.set_asynchronous(on)

    @property
    def asynchronous(self) -> bool:
        """Whether writes happen on a background thread."""
        return self._submitter.writer is not None

    @property
    def pending_bytes(self) -> int:
        """Tensor bytes recorded but not yet written (0 when synchronous)."""
        return self._submitter.pending_bytes

    def _submit(self, task: Callable[[], None], nbytes: int = 0, *, batch: bool = False) -> None:
        self._submitter.submit(task, nbytes, batch=batch)

    def _ensure_group(self, key: str, attributes: dict[str, Any]) -> None:
        if key in self._groups:
            return
        self._groups.add(key)
        if self.mode == "a" and self._backend.read(f"{key}/zarr.json") is not None:
            return
        doc = dumps(group_metadata(attributes))
        self._submit(lambda: self._backend.write(f"{key}/zarr.json", doc, replace=True))

    def _base(self, kind: str) -> str | None:
        """Where this writer's series of ``kind`` go: ``""`` (the run's own sections),
        ``"ranks/<r>"`` (this rank's), or None (a shared kind, left to rank 0)."""
        if self.rank is None:
            return ""
        if kind in self.shared_kinds:
            return "" if self.rank == 0 else None
        return rank_prefix(self.rank)

    def _ensure_parents(self, key: str, kind: str, probe: str | None) -> None:
        """The groups above a new series, each with what it is in its attributes."""
        parts = key.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            path, name = "/".join(parts[:i]), parts[i - 1]
            above = parts[i - 2] if i > 1 else None
            if i == len(parts):
                meta: dict[str, Any] = {"kind": kind}
            elif above == PROBES:
                meta = {"probe": probe}
            elif above == RANKS:
                meta = {"rank": int(name)}
            else:
                meta = {"section": name}
            self._ensure_group(path, {META_KEY: meta})

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"Recorder for {self.store!r} is closed")

    # ---------------------------------------------------------------- writing
    def record(
        self,
        kind: str,
        layer: str,
        value: Any,
        *,
        step: int,
        channel_axis: int | None = 0,
        dims: Sequence[str] | None = None,
        probe: str | None = None,
        max_elements: int | None = None,
        attrs: Mapping[str, Any] | None = None,
        copy: bool = True,
        shard: tuple[Sequence[int], Sequence[int]] | None = None,
    ) -> None:
        """Record one step of a tensor series.

        Parameters
        ----------
        kind
            What the tensor is: ``"weight"``, ``"grad"``, ``"feature"``,
            ``"feature_grad"``, ``"input"`` or any other non-empty string.
        layer
            The series' name within the kind, e.g. ``"conv1.weight"``. Any
            non-empty string; it is encoded into one safe path segment.
        value
            Anything array-like: NumPy, PyTorch (any device, any float dtype
            including bfloat16), JAX, lists, or an object with ``__array__`` or
            ``__dlpack__``. Bool, integer and float data; NaN and Inf are kept.
        step
            Integer training step, strictly greater than the last step recorded
            for this series.
        channel_axis
            Axis of ``value`` that indexes channels (default 0, the output axis
            of a weight; use 1 for an NCHW feature). It becomes the ``channel``
            dim, placed right after ``step``. ``None`` means no channel axis.
        dims
            Names for the other axes, in their order in ``value``. Default
            ``dim_<axis>``.
        probe
            Name of a fixed input batch (``"train"``, ``"valid"``...). Probe
            series live apart from the training-batch series of the same kind
            and layer; read them with ``run.probe(name)``.
        max_elements
            Keep at most this many elements per channel: the same random
            positions at every step (stored with the series), plus exact
            moments of the full tensor. Fixed when the series is created.
        attrs
            JSON-serialisable metadata of the series (module type, kernel
            size, ...), stored when the series is created; giving different
            values later is an error.
        copy
            Asynchronously, the value is copied before ``record`` returns so
            the caller may change it. ``copy=False`` promises it will not be
            changed (the caller hands it over), saving a copy.
        shard
            ``(global_shape, offset)``: ``value`` is this rank's shard of a
            tensor of ``global_shape``, starting at ``offset`` (sharded
            parameters, FSDP). Stored as this rank's series whatever its kind;
            ``open_run`` assembles the ranks' shards into the full tensor.

        Raises
        ------
        TypeError
            Non-numeric data, a non-integer step.
        ValueError
            A shape, channel axis, dims or dtype kind that differs from earlier
            steps of the series, a step not greater than the last, a
            ``channel_axis`` out of range, an empty name.

        Nothing is written when an error is raised; the store stays readable.
        """
        self._check_open()
        where = f"{kind!r} layer {layer!r} at step {step!r}"
        if probe is not None:
            where = f"probe {probe!r} " + where
        step = check_step(step, where)
        kind_key = encode_name(kind, what="kind")
        layer_key = encode_name(layer, what="layer")
        probe_key = None if probe is None else encode_name(probe, what="probe")
        arr, source_dtype = read_numeric(value, where)
        if arr.ndim == 0 and channel_axis == 0:
            channel_axis = None  # the default means nothing for a 0-d value
        ax = validate.channel_axis(channel_axis, arr.shape, where)
        names = dim_names(dims, [i for i in range(arr.ndim) if i != ax], where)
        max_elements = check_max_elements(max_elements, where)
        series_attrs = dict(attrs) if attrs is not None else None
        shard_meta = check_shard(shard, arr.shape, where)
        own = shard_meta is not None and self.rank is not None
        base = rank_prefix(self.rank) if own else self._base(kind)
        if base is None:
            return  # a shared kind: rank 0 records it for every rank
        section = _section(base, TENSORS if probe_key is None else f"{PROBES}/{probe_key}")
        key = f"{section}/{kind_key}/{layer_key}"
        with self._lock:
            self._check_open()
            spec = self._tensor_spec(key)
            if spec is None:
                user_attrs = check_json(series_attrs, f"{where}: attrs")  # checked once
                check_fits(arr, stored_dtype(arr.dtype), source_dtype, where)
                spec = self._new_tensor_series(
                    key, kind, layer, probe, arr, source_dtype, ax, names, max_elements,
                    user_attrs, shard_meta)
            else:
                spec.check(arr, source_dtype, ax, names, step, max_elements, series_attrs,
                           where)
                if shard_meta != spec.series.attributes.get(META_KEY, {}).get("shard"):
                    raise ValueError(f"{where}: shard {shard_meta} differs from the one fixed "
                                     "when the series was created")
            spec.last_step = step
            self._stage_and_submit(spec, arr, ax, step, copy)

    def _stage_and_submit(self, spec: TensorSpec, arr: np.ndarray, ax: int | None, step: int,
                          copy: bool) -> None:
        """Queue the append of one step, from a pooled copy where one is needed."""
        moved = np.moveaxis(arr, ax, 0) if ax is not None else arr
        dtype = spec.dtype.newbyteorder("<")
        staged = not (moved.flags.c_contiguous and moved.dtype == dtype) or (
            self.asynchronous and copy)
        if staged:  # a reused buffer: see buffers.py for why not a fresh array
            row = self._pool.take(moved.shape, dtype)
            np.copyto(row, moved, casting="unsafe")
        else:
            row = moved
        series, positions, has_channel = spec.series, spec.positions, ax is not None
        pool, nonfinite = self._pool, self._nonfinite

        def append() -> None:
            try:
                series.append(step, payload_rows(row, positions, has_channel))
                nonfinite.check_row(step, series.key, row)
            finally:
                if staged:
                    pool.give(row)

        self._submit(append, row.nbytes)

    def _tensor_spec(self, key: str) -> TensorSpec | None:
        if key in self._series:
            return self._series[key]
        series = self._resumed.pop(key, None) if self.mode == "a" else None
        if series is None:
            return None
        spec = self._series[key] = resumed_spec(series, self._backend, key)
        return spec

    def _new_tensor_series(self, key: str, kind: str, layer: str,
                           probe: str | None, arr: np.ndarray, source_dtype: str,
                           ax: int | None, names: tuple[str, ...], max_elements: int | None,
                           user_attrs: dict[str, Any],
                           shard: dict[str, list[int]] | None = None) -> TensorSpec:
        self._ensure_parents(key, kind, probe)
        dtype = stored_dtype(arr.dtype)
        layout = new_tensor_layout(arr, ax, names, dtype, key=key, codec=self.codec,
                                   chunk_bytes=self.chunk_bytes, max_elements=max_elements,
                                   seed=self.seed)
        meta: dict[str, Any] = {"kind": kind, "layer": layer, "source_shape": list(arr.shape),
                                "source_dtype": source_dtype, "channel_axis": ax}
        if probe is not None:
            meta["probe"] = probe
        if shard is not None:
            meta["shard"] = shard
        meta.update(layout.meta)
        payload = {name: a.array(key, name) for name, a in layout.arrays.items()}
        series = SeriesWriter(self._backend, key, payload, {**user_attrs, META_KEY: meta})
        self._submit(lambda: series.create(layout.static))
        spec = TensorSpec(series=series, source_shape=arr.shape, source_dtype=source_dtype,
                          channel_axis=ax, dims=names, dtype=dtype, positions=layout.positions,
                          max_elements=meta.get("max_elements"), attrs=user_attrs,
                          last_step=None)
        self._series[key] = spec
        return spec

    def record_summary(self, kind: str, layer: str, moments: Any, *, step: int,
                       probe: str | None = None,
                       attrs: Mapping[str, Any] | None = None) -> None:
        """Record one step of a summary series: exact per-channel moments, no tensor.

        For statistics at every step at the price of a few numbers per channel
        (``watch(..., summaries="moments")`` computes them on the tensor's
        device). Read with ``run.summary(kind, layer)``; ``ts.moments`` of it
        gives mean, var, skew, kurtosis, min, max and the NaN/Inf counts.

        Parameters
        ----------
        kind, layer
            As in :meth:`record`; a summary series lives apart from a tensor
            series of the same name (``summaries/<kind>/<layer>``).
        moments
            ``(channels, 9)`` (or ``(9,)`` without channels), float64, columns
            :data:`~tensorstats.kernels.moments.PARTIAL_FIELDS`: count,
            nan_count, inf_count, mean and the central power sums m2, m3, m4
            of the finite values, min, max (NaN moments where count is 0).
        step, probe, attrs
            As in :meth:`record`.
        """
        self._check_open()
        where = f"summary of {kind!r} layer {layer!r} at step {step!r}"
        step = check_step(step, where)
        arr, _ = read_numeric(moments, where)
        if arr.shape[-1:] != (len(MOMENT_NAMES),) or arr.ndim > 2:
            raise ValueError(f"{where}: expected moments of shape (channels, "
                             f"{len(MOMENT_NAMES)}) or ({len(MOMENT_NAMES)},), got {arr.shape}")
        arr = np.asarray(arr, dtype=np.float64)
        base = self._base(kind)
        if base is None:
            return
        section = _section(base, SUMMARIES if probe is None
                           else f"{SUMMARIES}/{PROBES}/{encode_name(probe, what='probe')}")
        key = f"{section}/{encode_name(kind, what='kind')}/{encode_name(layer, what='layer')}"
        series_attrs = dict(attrs) if attrs is not None else None
        with self._lock:
            self._check_open()
            spec = self._step_spec(key)
            if spec is None:
                user_attrs = check_json(series_attrs, f"{where}: attrs")
                self._ensure_parents(key, kind, probe)
                lead = (STEP, CHANNEL) if arr.ndim == 2 else (STEP,)
                layout = small_row_layout(arr.shape, np.dtype("float64"), (*lead, MOMENT), "none")
                meta = {"kind": kind, "layer": layer, "summary": "moments",
                        "channel_axis": 0 if arr.ndim == 2 else None}
                series = SeriesWriter(self._backend, key,
                                      {MOMENTS_VAR: layout.array(key, MOMENTS_VAR)},
                                      {**user_attrs, META_KEY: meta})
                self._submit(series.create)
                spec = self._series[key] = ScalarSpec(series, None)
            elif spec.last_step is not None and step <= spec.last_step:
                raise ValueError(f"{where}: step {step} is not greater than the last step "
                                 f"recorded for this series ({spec.last_step})")
            elif spec.series.payload[MOMENTS_VAR].row_shape != arr.shape:
                raise ValueError(f"{where}: shape {arr.shape} differs from earlier steps' "
                                 f"{spec.series.payload[MOMENTS_VAR].row_shape}")
            spec.last_step = step
            series, row = spec.series, arr.copy()
            label = series_label(key)

            def append() -> None:
                series.append(step, {MOMENTS_VAR: row})
                if row[..., 1:3].any():  # (NaN counts are truthy: summed below)
                    nan, inf = int(np.nansum(row[..., 1])), int(np.nansum(row[..., 2]))
                    if nan or inf:
                        self._nonfinite.note(step, label, nan, inf)

            # held and queued with the step's other summaries and scalars: the
            # writer wakes once per batch, not once per series and step
            self._submit(append, row.nbytes, batch=True)

    def _step_spec(self, key: str) -> ScalarSpec | None:
        """The spec of a scalar or summary series: this writer's, or one it resumes."""
        spec = self._series.get(key)
        if spec is None and self.mode == "a":
            series = self._resumed.pop(key, None)
            if series is not None:
                spec = self._series[key] = ScalarSpec(series, series.last_step)
        return spec

    def record_scalar(self, name: str, value: Any, *, step: int) -> None:
        """Record one value of a scalar series such as the loss or learning rate.

        Parameters
        ----------
        name
            Scalar name, e.g. ``"loss"``. Any non-empty string.
        value
            A real number, or anything array-like holding exactly one
            (a 0-d PyTorch tensor, a NumPy scalar...). Stored as float64;
            NaN and Inf are kept.
        step
            Integer step, strictly greater than the last one for this name.
        """
        self._check_open()
        where = f"scalar {name!r} at step {step!r}"
        step = check_step(step, where)
        name_key = encode_name(name, what="scalar name")
        try:
            arr, _ = to_numpy(value)
        except (TypeError, ValueError, RuntimeError, BufferError) as e:
            raise TypeError(f"{where}: cannot read the value as a number: {e}") from e
        if arr.dtype.kind not in "biuf" or arr.size != 1:
            raise TypeError(f"{where}: expected one real number, got {arr.dtype} "
                            f"array of shape {arr.shape}")
        if self.rank not in (None, 0):
            return  # scalars are rank 0's, as the shared kinds
        key = f"{SCALARS}/{name_key}"
        with self._lock:
            self._check_open()
            spec = self._step_spec(key)
            if spec is None:
                value_arr = AppendArray(key=f"{key}/{SCALAR_VAR}", row_shape=(),
                                        dtype=np.dtype("float64"), dims=(STEP,),
                                        step_chunk=STEP_CHUNK)
                series = SeriesWriter(self._backend, key, {SCALAR_VAR: value_arr},
                                      {META_KEY: {"scalar": name}})
                self._submit(series.create)
                spec = self._series[key] = ScalarSpec(series, None)
            elif spec.last_step is not None and step <= spec.last_step:
                raise ValueError(
                    f"{where}: step {step} is not greater than the last step recorded for "
                    f"this scalar ({spec.last_step}); steps must increase")
            spec.last_step = step
            series = spec.series
            row = np.asarray(arr.reshape(()), dtype=np.float64)
            self._submit(lambda: series.append(step, {SCALAR_VAR: row}), 8, batch=True)

    # -------------------------------------------------------------- lifecycle
    def flush(self) -> None:
        """Wait until everything recorded so far is committed to the store.

        Synchronously there is nothing to wait for. Asynchronously this blocks
        until the writer thread has committed every queued write, and raises
        the writer's error if one happened.
        """
        self._check_open()
        with self._lock:
            wait = self._submitter.wait()
        if wait is not None:
            wait()

    def close(self) -> None:
        """Flush, consolidate the store's metadata and close. Closing twice is harmless.

        Consolidation inlines every node's metadata into the root ``zarr.json``
        (one atomic write), so plain ``xarray``/``zarr`` open the store with a
        single read. A store that was never closed (a crash) opens without it.
        If a background write failed, its error is raised here and the store is
        left unconsolidated. The store of a run of several processes is not
        consolidated (no rank knows when the others are done); tensorstats
        reads it the same.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _open_recorders.discard(self)
            try:
                self._submitter.close()
            except BaseException:
                self._backend.close()
                self._release_lock()
                raise
            try:
                if self.world_size is None:
                    consolidate(self._backend)
            finally:
                self._backend.close()
                self._release_lock()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"mode={self.mode!r}"
        if self.asynchronous:
            state += ", asynchronous"
        if self.rank is not None:
            state += f", rank {self.rank} of {self.world_size}"
        return f"<tensorstats.Recorder {self.store!r} {state}, {len(self._series)} series>"

