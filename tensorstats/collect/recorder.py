"""The framework-agnostic writer of run stores."""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import operator
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._version import __version__
from ..dims import CHANNEL, ELEMENT, MOMENT, RESERVED, STEP, default_dim
from ..store.backend import Backend, open_backend
from ..store.consolidate import consolidate, unconsolidate
from ..store.format import (
    CODECS,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CODEC,
    FORMAT_NAME,
    FORMAT_VERSION,
    INDICES_VAR,
    META_KEY,
    MOMENTS_VAR,
    PROBES,
    SCALAR_VAR,
    SCALARS,
    STEP_CHUNK,
    TENSOR_VAR,
    TENSORS,
    check_format,
    dumps,
    group_metadata,
)
from ..store.names import encode_name
from ..store.series import AppendArray, SeriesWriter, read_static_array, repair_all
from .buffers import BufferPool
from .convert import to_numpy
from .sampling import MOMENT_NAMES, channel_moments, sample_positions
from .writer import BackgroundWriter

Mode = Literal["w-", "w", "a"]
_MODES = ("w-", "w", "a")
DEFAULT_MAX_PENDING_BYTES = 512 * 2**20
SCALAR_BATCH = 64


def _check_step(step: Any, where: str) -> int:
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


def _stored_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "f" and dtype.itemsize > 8:
        return np.dtype("float64")
    return np.dtype(dtype.name)  # native little-endian form of the same type


def _check_json(obj: Any, what: str) -> dict[str, Any]:
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


@dataclass
class _TensorSpec:
    """What the training thread knows about a tensor series (writes may lag behind)."""

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


@dataclass
class _ScalarSpec:
    series: SeriesWriter
    last_step: int | None


_open_recorders: weakref.WeakSet[Recorder] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:  # queued asynchronous writes are not lost at exit
    for rec in list(_open_recorders):
        try:
            rec.close()
        except Exception:
            pass


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

    Notes
    -----
    Synchronously, each :meth:`record` commits one step of one series before it
    returns; asynchronously, everything recorded is committed when
    :meth:`flush` returns. A crash after that, ``SIGKILL`` included, loses
    none of it. A step is never rewritten to add the next one. A Recorder is
    thread-safe; one store must have only one Recorder writing to it at once.

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
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
        for name, v in (("chunk_bytes", chunk_bytes), ("max_pending_bytes", max_pending_bytes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        user_attrs = _check_json(attrs, "attrs")
        self._backend: Backend = open_backend(store, storage_options)
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
        self._writer: BackgroundWriter | None = None
        self._resumed: dict[str, SeriesWriter] = {}
        self._pool = BufferPool(max_pending_bytes)
        self._held: list[Callable[[], None]] = []

        root = self._backend.read("zarr.json")
        if mode == "w-" and not self._backend.is_empty():
            raise FileExistsError(
                f"{self.store!r} already exists; use mode='a' to append to it "
                "or mode='w' to overwrite it")
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
        if asynchronous:
            self.set_asynchronous(True)
        _open_recorders.add(self)

    # ------------------------------------------------------------------ setup
    def _create(self, user_attrs: dict[str, Any]) -> None:
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "codec": self.codec,
        }
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
        self._resumed = repair_all(self._backend)  # read once, used by record()
        self._root_attrs = {**attrs, **user_attrs}
        if user_attrs:
            self._backend.write("zarr.json", dumps(group_metadata(self._root_attrs)), replace=True)
        for section in (TENSORS, SCALARS):
            self._ensure_group(section, {META_KEY: {"section": section}})

    def set_asynchronous(self, on: bool = True) -> None:
        """Switch background writing on or off (switching off flushes first)."""
        with self._lock:
            self._check_open()
            if on and self._writer is None:
                self._writer = BackgroundWriter(self.max_pending_bytes)
            elif not on and self._writer is not None:
                self._release_held()
                writer, self._writer = self._writer, None
                writer.close()

    @property
    def asynchronous(self) -> bool:
        """Whether writes happen on a background thread."""
        return self._writer is not None

    @property
    def pending_bytes(self) -> int:
        """Tensor bytes recorded but not yet written (0 when synchronous)."""
        return self._writer.pending_bytes if self._writer else 0

    def _submit(self, task: Callable[[], None], nbytes: int = 0, *,
                batch: bool = False) -> None:
        """Run ``task`` now (synchronous) or queue it for the writer thread.

        Asynchronously, ``batch=True`` tasks (scalars: tiny and frequent) are
        held back and queued together, up to :data:`SCALAR_BATCH` at a time or
        before the next other task, :meth:`flush` or :meth:`close`, so the
        writer thread wakes once per batch instead of once per training step.
        """
        if self._writer is None:
            task()
            return
        if batch:
            self._held.append(task)
            if len(self._held) < SCALAR_BATCH:
                return
        self._release_held()
        if not batch:
            self._writer.submit(task, nbytes)

    def _release_held(self) -> None:
        if self._held and self._writer is not None:
            tasks, self._held = self._held, []

            def run_all() -> None:
                for t in tasks:
                    t()

            self._writer.submit(run_all, 8 * len(tasks))

    def _ensure_group(self, key: str, attributes: dict[str, Any]) -> None:
        if key in self._groups:
            return
        self._groups.add(key)
        if self.mode == "a" and self._backend.read(f"{key}/zarr.json") is not None:
            return
        doc = dumps(group_metadata(attributes))
        self._submit(lambda: self._backend.write(f"{key}/zarr.json", doc, replace=True))

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
        step = _check_step(step, where)
        kind_key = encode_name(kind, what="kind")
        layer_key = encode_name(layer, what="layer")
        section = TENSORS if probe is None else f"{PROBES}/{encode_name(probe, what='probe')}"
        try:
            arr, source_dtype = to_numpy(value)
        except (TypeError, ValueError, RuntimeError, BufferError) as e:
            raise TypeError(f"{where}: cannot read the value as a numeric array: {e}") from e
        if arr.dtype.kind not in "biuf":
            raise TypeError(
                f"{where}: expected numeric data (bool, integer or float), "
                f"got dtype {arr.dtype} ({source_dtype})")
        if arr.ndim == 0 and channel_axis == 0:
            channel_axis = None  # the default means nothing for a 0-d value
        ax = self._channel_axis(channel_axis, arr.shape, where)
        other = [i for i in range(arr.ndim) if i != ax]
        names = self._dims(dims, other, where)
        if max_elements is not None and (isinstance(max_elements, bool) or
                                         not isinstance(max_elements, (int, np.integer))
                                         or max_elements < 1):
            raise ValueError(f"{where}: max_elements must be a positive int or None, "
                             f"got {max_elements!r}")
        series_attrs = dict(attrs) if attrs is not None else None
        key = f"{section}/{kind_key}/{layer_key}"
        with self._lock:
            self._check_open()
            spec = self._tensor_spec(key, section)
            if spec is None:
                user_attrs = _check_json(series_attrs, f"{where}: attrs")  # checked once
                spec = self._new_tensor_series(
                    key, section, kind, layer, probe, arr, source_dtype, ax, names,
                    max_elements, user_attrs)
            else:
                self._check_compatible(spec, arr, source_dtype, ax, names, step, max_elements,
                                       series_attrs, where)
            moved = np.moveaxis(arr, ax, 0) if ax is not None else arr
            dtype = spec.dtype.newbyteorder("<")
            staged = not (moved.flags.c_contiguous and moved.dtype == dtype) or (
                self._writer is not None and copy)
            if staged:  # a reused buffer: see buffers.py for why not a fresh array
                row = self._pool.take(moved.shape, dtype)
                np.copyto(row, moved, casting="unsafe")
            else:
                row = moved
            spec.last_step = step
            series, positions, has_channel = spec.series, spec.positions, ax is not None
            pool = self._pool

            def append() -> None:
                try:
                    series.append(step, _payload_rows(row, positions, has_channel))
                finally:
                    if staged:
                        pool.give(row)

            self._submit(append, row.nbytes)

    @staticmethod
    def _channel_axis(channel_axis: int | None, shape: tuple[int, ...], where: str) -> int | None:
        if channel_axis is None:
            return None
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise TypeError(f"{where}: channel_axis must be an int or None, got {channel_axis!r}")
        ndim = len(shape)
        if not -ndim <= channel_axis < ndim:
            raise ValueError(
                f"{where}: channel_axis={channel_axis} is out of range for a tensor of shape "
                f"{shape} ({ndim} axes); expected an axis in [{-ndim}, {ndim - 1}] or None")
        return int(channel_axis) % ndim

    @staticmethod
    def _dims(dims: Sequence[str] | None, other: list[int], where: str) -> tuple[str, ...]:
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
                raise ValueError(f"{where}: dim name {d!r} is reserved; "
                                 f"avoid {sorted(RESERVED)}")
        if len(set(dims)) != len(dims):
            raise ValueError(f"{where}: dims {dims} has duplicates")
        return dims

    def _tensor_spec(self, key: str, section: str) -> _TensorSpec | None:
        if key in self._series:
            return self._series[key]
        if self.mode != "a":
            return None
        series = self._resumed.pop(key, None)
        if series is None:
            return None
        meta = series.attributes.get(META_KEY, {})
        tensor = series.payload[TENSOR_VAR]
        ax = meta.get("channel_axis")
        positions = read_static_array(self._backend, f"{key}/{INDICES_VAR}")
        shape = tuple(meta.get("source_shape", ()))
        if positions is None:
            names = tensor.dims[2:] if ax is not None else tensor.dims[1:]
        else:
            names = tuple(default_dim(i) for i in range(len(shape)) if i != ax)
            names = tuple(meta.get("dims", names))
        spec = _TensorSpec(series=series, source_shape=shape,
                           source_dtype=meta.get("source_dtype", tensor.dtype.name),
                           channel_axis=ax, dims=tuple(names), dtype=tensor.dtype,
                           positions=positions, max_elements=meta.get("max_elements"),
                           attrs={k: v for k, v in series.attributes.items() if k != META_KEY},
                           last_step=series.last_step)
        self._series[key] = spec
        return spec

    def _new_tensor_series(self, key: str, section: str, kind: str, layer: str,
                           probe: str | None, arr: np.ndarray, source_dtype: str,
                           ax: int | None, names: tuple[str, ...], max_elements: int | None,
                           user_attrs: dict[str, Any]) -> _TensorSpec:
        if section != TENSORS:
            self._ensure_group(PROBES, {META_KEY: {"section": PROBES}})
            self._ensure_group(section, {META_KEY: {"probe": probe}})
        self._ensure_group(key.rsplit("/", 1)[0], {META_KEY: {"kind": kind}})
        dtype = _stored_dtype(arr.dtype)
        n_channels = arr.shape[ax] if ax is not None else None
        per_channel = arr.size // max(n_channels or 1, 1)
        meta: dict[str, Any] = {"kind": kind, "layer": layer, "source_shape": list(arr.shape),
                                "source_dtype": source_dtype, "channel_axis": ax}
        if probe is not None:
            meta["probe"] = probe
        static = {}
        positions = None
        lead = (STEP, CHANNEL) if ax is not None else (STEP,)
        if max_elements is not None and per_channel > max_elements:
            positions = sample_positions(per_channel, int(max_elements), seed=self.seed, key=key)
            meta.update(max_elements=int(max_elements), dims=list(names))
            static[INDICES_VAR] = (positions, (ELEMENT,), {META_KEY: {
                "description": "flat position (C order over the non-channel axes) of each "
                               "sampled element, the same at every step"}})
            rows = {TENSOR_VAR: ((*(() if ax is None else (n_channels,)), len(positions)),
                                 dtype, (*lead, ELEMENT), self.codec, 0),
                    MOMENTS_VAR: ((*(() if ax is None else (n_channels,)), len(MOMENT_NAMES)),
                                  np.dtype("float64"), (*lead, MOMENT), "none", 0)}
        else:
            row_shape = (np.moveaxis(arr, ax, 0) if ax is not None else arr).shape
            split = 0
            if row_shape:
                inner = int(np.prod(row_shape[1:], dtype=np.int64)) * dtype.itemsize
                if inner * row_shape[0] > self.chunk_bytes:
                    split = max(1, self.chunk_bytes // max(inner, 1))
            rows = {TENSOR_VAR: (row_shape, dtype, (*lead, *names), self.codec, split)}
        payload = {
            name: AppendArray(key=f"{key}/{name}", row_shape=tuple(shape), dtype=dt, dims=d,
                              codec=codec, step_chunk=1, split=split,
                              attributes={META_KEY: {"moment": list(MOMENT_NAMES)}}
                              if name == MOMENTS_VAR else {})
            for name, (shape, dt, d, codec, split) in rows.items()}
        series = SeriesWriter(self._backend, key, payload, {**user_attrs, META_KEY: meta})
        self._submit(lambda: series.create(static))
        spec = _TensorSpec(series=series, source_shape=arr.shape, source_dtype=source_dtype,
                           channel_axis=ax, dims=names, dtype=dtype, positions=positions,
                           max_elements=meta.get("max_elements"), attrs=user_attrs,
                           last_step=None)
        self._series[key] = spec
        return spec

    @staticmethod
    def _check_compatible(spec: _TensorSpec, arr: np.ndarray, source_dtype: str,
                          ax: int | None, names: tuple[str, ...], step: int,
                          max_elements: int | None, attrs: dict[str, Any] | None,
                          where: str) -> None:
        if arr.shape != spec.source_shape:
            raise ValueError(
                f"{where}: shape {arr.shape} differs from the shape {spec.source_shape} recorded "
                f"at earlier steps of this series; expected {spec.source_shape}")
        if spec.channel_axis != ax:
            raise ValueError(
                f"{where}: channel_axis {ax} differs from {spec.channel_axis} used at "
                "earlier steps of this series")
        if spec.dims != names:
            raise ValueError(f"{where}: dims {names} differ from {spec.dims} used at "
                             "earlier steps of this series")
        if not np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
            raise TypeError(
                f"{where}: dtype {source_dtype} cannot be stored in this series, which holds "
                f"{spec.dtype} (from {spec.source_dtype}) since its first step")
        if spec.dtype.kind in "iu" and arr.size and not np.can_cast(arr.dtype, spec.dtype):
            info = np.iinfo(spec.dtype)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise ValueError(
                    f"{where}: values from {lo} to {hi} do not fit the series' dtype "
                    f"{spec.dtype} ({info.min}..{info.max}), fixed at its first step")
        if max_elements is not None and spec.positions is not None \
                and max_elements != spec.max_elements:
            raise ValueError(f"{where}: max_elements={max_elements} differs from "
                             f"{spec.max_elements} fixed when the series was created")
        if attrs is not None and attrs != spec.attrs:
            raise ValueError(f"{where}: attrs {attrs} differ from {spec.attrs} stored when the "
                             "series was created")
        if spec.last_step is not None and step <= spec.last_step:
            raise ValueError(
                f"{where}: step {step} is not greater than the last step recorded for this "
                f"series ({spec.last_step}); steps must increase")

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
        step = _check_step(step, where)
        name_key = encode_name(name, what="scalar name")
        try:
            arr, _ = to_numpy(value)
        except (TypeError, ValueError, RuntimeError, BufferError) as e:
            raise TypeError(f"{where}: cannot read the value as a number: {e}") from e
        if arr.dtype.kind not in "biuf" or arr.size != 1:
            raise TypeError(f"{where}: expected one real number, got {arr.dtype} "
                            f"array of shape {arr.shape}")
        key = f"{SCALARS}/{name_key}"
        with self._lock:
            self._check_open()
            spec = self._series.get(key)
            if spec is None and self.mode == "a":
                series = self._resumed.pop(key, None)
                if series is not None:
                    spec = self._series[key] = _ScalarSpec(series, series.last_step)
            if spec is None:
                value_arr = AppendArray(key=f"{key}/{SCALAR_VAR}", row_shape=(),
                                        dtype=np.dtype("float64"), dims=(STEP,),
                                        step_chunk=STEP_CHUNK)
                series = SeriesWriter(self._backend, key, {SCALAR_VAR: value_arr},
                                      {META_KEY: {"scalar": name}})
                self._submit(series.create)
                spec = self._series[key] = _ScalarSpec(series, None)
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
            self._release_held()
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush, consolidate the store's metadata and close. Closing twice is harmless.

        Consolidation inlines every node's metadata into the root ``zarr.json``
        (one atomic write), so plain ``xarray``/``zarr`` open the store with a
        single read. A store that was never closed (a crash) opens without it.
        If a background write failed, its error is raised here and the store is
        left unconsolidated.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _open_recorders.discard(self)
            if self._writer is not None:
                self._release_held()
                writer, self._writer = self._writer, None
                try:
                    writer.close()
                except BaseException:
                    self._backend.close()
                    raise
            try:
                consolidate(self._backend)
            finally:
                self._backend.close()

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
        if self._writer is not None:
            state += ", asynchronous"
        return f"<tensorstats.Recorder {self.store!r} {state}, {len(self._series)} series>"


def _payload_rows(row: np.ndarray, positions: np.ndarray | None,
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
