"""The framework-agnostic writer of run stores."""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from .._version import __version__
from ..dims import CHANNEL, RESERVED, STEP, default_dim
from ..store.backend import Backend, open_backend
from ..store.consolidate import consolidate, unconsolidate
from ..store.format import (
    CODECS,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CODEC,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_KEY,
    SCALAR_VAR,
    SCALARS,
    STEP_CHUNK,
    TENSOR_VAR,
    TENSORS,
    dumps,
    group_metadata,
    major,
)
from ..store.names import encode_name
from ..store.series import AppendArray, SeriesWriter
from .convert import to_numpy

Mode = Literal["w-", "w", "a"]
_MODES = ("w-", "w", "a")


def _check_step(step: Any, where: str) -> int:
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"{where}: step must be an integer, got {type(step).__name__} {step!r}")
    step = int(step)
    if not -(2**63) <= step < 2**63:
        raise ValueError(f"{where}: step {step} does not fit in int64")
    return step


def _stored_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "f" and dtype.itemsize > 8:
        return np.dtype("float64")
    return np.dtype(dtype.name)  # native little-endian form of the same type


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

    Notes
    -----
    Each call to :meth:`record` writes and commits one step of one series
    before it returns, so a crash afterwards, ``SIGKILL`` included, loses
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
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
        if not isinstance(chunk_bytes, int) or chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be a positive int, got {chunk_bytes!r}")
        user_attrs = self._check_attrs(attrs)
        self._backend: Backend = open_backend(store, storage_options)
        self.store = self._backend.url
        self.mode = mode
        self.codec = codec
        self.chunk_bytes = chunk_bytes
        self._lock = threading.RLock()
        self._series: dict[str, SeriesWriter] = {}
        self._groups: set[str] = set()
        self._closed = False

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

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _check_attrs(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
        attrs = dict(attrs or {})
        if META_KEY in attrs:
            raise ValueError(f"attrs key {META_KEY!r} is reserved for tensorstats' own metadata")
        try:
            json.dumps(attrs, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"attrs must be JSON-serialisable (str keys; str, number, bool, None, "
                f"lists and dicts of those; finite floats): {e}") from e
        return attrs

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
        meta = attrs.get(META_KEY, {})
        if meta.get("format") != FORMAT_NAME:
            raise ValueError(f"{self.store!r} is a Zarr store but not a tensorstats run store")
        if major(meta.get("format_version", "0")) != major(FORMAT_VERSION):
            raise ValueError(
                f"{self.store!r} has store format {meta.get('format_version')}; this "
                f"tensorstats ({__version__}) writes format {FORMAT_VERSION}")
        conflicts = {k for k in user_attrs if k in attrs and attrs[k] != user_attrs[k]}
        if conflicts:
            raise ValueError(
                f"attrs {sorted(conflicts)} differ from those stored in {self.store!r}: "
                + ", ".join(f"{k}: stored {attrs[k]!r}, given {user_attrs[k]!r}"
                            for k in sorted(conflicts)))
        # Everything is checked; only now may the store change. Consolidated
        # metadata goes first, so no reader ever sees a stale snapshot.
        unconsolidate(self._backend)
        self._root_attrs = {**attrs, **user_attrs}
        if user_attrs:
            self._backend.write("zarr.json", dumps(group_metadata(self._root_attrs)), replace=True)
        self._groups.update(g for g in (TENSORS, SCALARS)
                            if self._backend.read(f"{g}/zarr.json") is not None)
        for section in (TENSORS, SCALARS):
            self._ensure_group(section, {META_KEY: {"section": section}})

    def _ensure_group(self, key: str, attributes: dict[str, Any]) -> None:
        if key in self._groups:
            return
        if self.mode != "a" or self._backend.read(f"{key}/zarr.json") is None:
            self._backend.write(f"{key}/zarr.json", dumps(group_metadata(attributes)), replace=True)
        self._groups.add(key)

    def _existing(self, key: str, arrays: Sequence[str]) -> SeriesWriter | None:
        if key in self._series:
            return self._series[key]
        if self.mode == "a":
            series = SeriesWriter.load(self._backend, key, arrays)
            if series is not None:
                self._series[key] = series
            return series
        return None

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
        step = _check_step(step, where)
        kind_key = encode_name(kind, what="kind")
        layer_key = encode_name(layer, what="layer")
        try:
            arr, source_dtype = to_numpy(value)
        except (TypeError, ValueError, RuntimeError, BufferError) as e:
            raise TypeError(f"{where}: cannot read the value as a numeric array: {e}") from e
        if arr.dtype.kind not in "biuf":
            raise TypeError(
                f"{where}: expected numeric data (bool, integer or float), "
                f"got dtype {arr.dtype} ({source_dtype})")
        ax = self._channel_axis(channel_axis, arr.shape, where)
        other = [i for i in range(arr.ndim) if i != ax]
        names = self._dims(dims, other, where)
        key = f"{TENSORS}/{kind_key}/{layer_key}"
        with self._lock:
            self._check_open()
            series = self._existing(key, [TENSOR_VAR])
            if series is None:
                dtype = _stored_dtype(arr.dtype)
                row = np.moveaxis(arr, ax, 0) if ax is not None else arr
                series = self._new_tensor_series(
                    key, kind, layer, arr.shape, source_dtype, ax, names, dtype, row.shape)
            else:
                self._check_compatible(series, arr, source_dtype, ax, names, step, where)
            payload = series.payload[TENSOR_VAR]
            row = np.moveaxis(arr, ax, 0) if ax is not None else arr
            row = np.ascontiguousarray(row, dtype=payload.dtype.newbyteorder("<"))
            series.append(step, {TENSOR_VAR: row})

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

    def _new_tensor_series(self, key: str, kind: str, layer: str, shape: tuple[int, ...],
                           source_dtype: str, ax: int | None, names: tuple[str, ...],
                           dtype: np.dtype, row_shape: tuple[int, ...]) -> SeriesWriter:
        kind_group = key.rsplit("/", 1)[0]
        self._ensure_group(kind_group, {META_KEY: {"kind": kind}})
        dims = (STEP, CHANNEL, *names) if ax is not None else (STEP, *names)
        split = 0
        if row_shape:
            inner = int(np.prod(row_shape[1:], dtype=np.int64)) * dtype.itemsize
            if inner * row_shape[0] > self.chunk_bytes:
                split = max(1, self.chunk_bytes // max(inner, 1))
        attributes = {META_KEY: {
            "kind": kind, "layer": layer, "source_shape": list(shape),
            "source_dtype": source_dtype, "channel_axis": ax,
        }}
        tensor = AppendArray(key=f"{key}/{TENSOR_VAR}", row_shape=tuple(row_shape), dtype=dtype,
                             dims=dims, codec=self.codec, step_chunk=1, split=split)
        series = SeriesWriter(self._backend, key, {TENSOR_VAR: tensor}, attributes)
        series.create()
        self._series[key] = series
        return series

    @staticmethod
    def _check_compatible(series: SeriesWriter, arr: np.ndarray, source_dtype: str,
                          ax: int | None, names: tuple[str, ...], step: int, where: str) -> None:
        meta = series.attributes.get(META_KEY, {})
        shape = tuple(meta.get("source_shape", ()))
        if arr.shape != shape:
            raise ValueError(
                f"{where}: shape {arr.shape} differs from the shape {shape} recorded at earlier "
                f"steps of this series; expected {shape}")
        if meta.get("channel_axis") != ax:
            raise ValueError(
                f"{where}: channel_axis {ax} differs from {meta.get('channel_axis')} used at "
                "earlier steps of this series")
        payload = series.payload[TENSOR_VAR]
        stored_names = payload.dims[2:] if ax is not None else payload.dims[1:]
        if tuple(stored_names) != names:
            raise ValueError(f"{where}: dims {names} differ from {tuple(stored_names)} used at "
                             "earlier steps of this series")
        if not np.can_cast(arr.dtype, payload.dtype, casting="same_kind"):
            raise TypeError(
                f"{where}: dtype {source_dtype} cannot be stored in this series, which holds "
                f"{payload.dtype} (from {meta.get('source_dtype')}) since its first step")
        if series.last_step is not None and step <= series.last_step:
            raise ValueError(
                f"{where}: step {step} is not greater than the last step recorded for this "
                f"series ({series.last_step}); steps must increase")

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
            series = self._existing(key, [SCALAR_VAR])
            if series is None:
                value_arr = AppendArray(key=f"{key}/{SCALAR_VAR}", row_shape=(),
                                        dtype=np.dtype("float64"), dims=(STEP,),
                                        step_chunk=STEP_CHUNK)
                series = SeriesWriter(self._backend, key, {SCALAR_VAR: value_arr},
                                      {META_KEY: {"scalar": name}})
                series.create()
                self._series[key] = series
            elif series.last_step is not None and step <= series.last_step:
                raise ValueError(
                    f"{where}: step {step} is not greater than the last step recorded for "
                    f"this scalar ({series.last_step}); steps must increase")
            series.append(step, {SCALAR_VAR: np.asarray(arr.reshape(()), dtype=np.float64)})

    # -------------------------------------------------------------- lifecycle
    def flush(self) -> None:
        """Wait until everything recorded so far is committed to the store.

        Writes are currently synchronous, so this returns at once; it is the
        point to call before relying on the store from another process.
        """
        self._check_open()

    def close(self) -> None:
        """Flush, consolidate the store's metadata and close. Closing twice is harmless.

        Consolidation inlines every node's metadata into the root ``zarr.json``
        (one atomic write), so plain ``xarray``/``zarr`` open the store with a
        single read. A store that was never closed (a crash) opens without it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            consolidate(self._backend)

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
        return f"<tensorstats.Recorder {self.store!r} {state}, {len(self._series)} series>"


