"""The run-store format: constants, codecs and Zarr v3 metadata documents.

Everything a reader in another language needs is described in
``docs/format.md``; this module is the Python side of that contract.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

FORMAT_NAME: Final = "tensorstats.run"
FORMAT_VERSION: Final = "1.3"
"""``MAJOR.MINOR``. Readers accept any minor of a major they know; a minor
bump only adds optional arrays or attributes."""

META_KEY: Final = "tensorstats"
"""Attribute key holding tensorstats' own metadata on every node it writes."""

TENSORS: Final = "tensors"
SCALARS: Final = "scalars"
PROBES: Final = "probes"
SUMMARIES: Final = "summaries"
"""Section of per-step summary series (exact per-channel moments only, no tensor)."""
RANKS: Final = "ranks"
"""Group of the per-rank subtrees (``ranks/<r>/tensors``...) of a multi-process run."""
TENSOR_VAR: Final = "tensor"
INDICES_VAR: Final = "indices"
MOMENTS_VAR: Final = "moments"
SCALAR_VAR: Final = "value"
STEP_VAR: Final = "step"

STEP_CHUNK: Final = 1024
"""Steps per chunk of the ``step`` coordinate and of scalar series."""

DEFAULT_CHUNK_BYTES: Final = 16 * 2**20
"""Largest uncompressed chunk of a tensor series before it splits along channels."""

CODECS: Final = ("none", "lz4", "zstd")
DEFAULT_CODEC: Final = "none"
"""Chosen from ``benchmarks/write_throughput.py``; see ``docs/benchmarks.md``."""


def major(version: str) -> int:
    """Major number of a ``MAJOR.MINOR`` version string.

    Examples
    --------
    >>> major("1.3")
    1
    """
    return int(str(version).split(".", 1)[0])


def check_format(attrs: Any, where: str, *, writing: bool = False) -> dict[str, Any]:
    """Check a root group's attributes name a run store of a format this version handles.

    The one check of the writer (resuming, ``mode="a"``) and the reader.

    Parameters
    ----------
    attrs
        The ``attributes`` of the store's root ``zarr.json``.
    where
        The store, for messages.
    writing
        Whether the caller is about to append (the message says so).

    Returns
    -------
    dict
        The store's own metadata (``attrs[META_KEY]``).

    Raises
    ------
    tensorstats.errors.NotARunStoreError
        No tensorstats format attribute: some other Zarr store.
    tensorstats.errors.FormatVersionError
        A format whose major version differs from :data:`FORMAT_VERSION`'s
        (or a version that is not ``MAJOR.MINOR``).

    Examples
    --------
    >>> check_format({META_KEY: {"format": FORMAT_NAME, "format_version": "1.0"}}, "a.zarr")
    {'format': 'tensorstats.run', 'format_version': '1.0'}
    """
    from .._version import __version__
    from ..errors import FormatVersionError, NotARunStoreError

    meta = attrs.get(META_KEY) if isinstance(attrs, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise NotARunStoreError(f"{where!r} is not a tensorstats run store (its zarr.json has "
                                "no tensorstats format attribute)")
    version = meta.get("format_version", "0")
    try:
        same = major(version) == major(FORMAT_VERSION)
    except (TypeError, ValueError):
        same = False
    if not same:
        action = "writes" if writing else "reads"
        raise FormatVersionError(
            f"{where!r} uses store format {version}; tensorstats {__version__} {action} "
            f"format {major(FORMAT_VERSION)}.x")
    return meta


def fill_value(dtype: np.dtype) -> Any:
    """JSON fill value for a stored dtype (never visible to readers)."""
    if dtype.kind == "f":
        return "NaN"
    if dtype.kind == "b":
        return False
    return 0


def codec_chain(codec: str, dtype: np.dtype) -> list[dict[str, Any]]:
    """Zarr v3 ``codecs`` list for one of :data:`CODECS`."""
    chain: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if codec == "none":
        return chain
    if codec == "lz4":
        chain.append({"name": "blosc", "configuration": {
            "cname": "lz4", "clevel": 5, "shuffle": "bitshuffle",
            "typesize": int(dtype.itemsize), "blocksize": 0}})
        return chain
    if codec == "zstd":
        chain.append({"name": "zstd", "configuration": {"level": 3, "checksum": False}})
        return chain
    raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")


class ChunkEncoder:
    """Turns a C-contiguous little-endian array into the bytes of one chunk."""

    def __init__(self, codec: str):
        self.codec = codec
        if codec == "none":
            self._compressor = None
        elif codec == "lz4":
            from numcodecs import Blosc

            self._compressor = Blosc(cname="lz4", clevel=5, shuffle=Blosc.BITSHUFFLE, blocksize=0)
        elif codec == "zstd":
            from numcodecs import Zstd

            self._compressor = Zstd(level=3)
        else:
            raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")

    def encode(self, chunk: np.ndarray) -> bytes | memoryview:
        if self._compressor is None:
            return memoryview(chunk).cast("B")
        return self._compressor.encode(chunk)


SEPARATOR: Final = "."
"""Chunk-key separator of the arrays tensorstats writes: ``tensor/c.12.0.0``. A
flat folder per array means appending a step creates one file and no folders."""

LENGTH_WIDTH: Final = 20
"""Width of the first shape entry of an appendable array's ``zarr.json``: the
number is right-aligned in this many characters (JSON allows the spaces), so a
new length has the same byte size and can be written in place."""


def array_metadata(
    *,
    shape: Sequence[int],
    dtype: np.dtype,
    chunks: Sequence[int],
    dims: Sequence[str],
    codec: str,
    attributes: dict[str, Any] | None = None,
    separator: str = SEPARATOR,
) -> dict[str, Any]:
    """The ``zarr.json`` document of one array."""
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [int(s) for s in shape],
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular",
                       "configuration": {"chunk_shape": [int(c) for c in chunks]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": separator}},
        "fill_value": fill_value(dtype),
        "codecs": codec_chain(codec, dtype),
        "attributes": attributes or {},
        "dimension_names": list(dims),
    }


def group_metadata(attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``zarr.json`` document of one group."""
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes or {}}


def dumps(doc: dict[str, Any]) -> bytes:
    """Serialise a metadata document (strict JSON: no NaN literals)."""
    return json.dumps(doc, indent=1, allow_nan=False).encode("utf-8")


def dumps_appendable(doc: dict[str, Any]) -> tuple[bytes, int]:
    """Serialise an array document with a fixed-width length; return it and the
    byte offset of that length field (see :data:`LENGTH_WIDTH`).

    Examples
    --------
    >>> text, at = dumps_appendable({"shape": [7, 2], "zarr_format": 3})
    >>> text[at:at + LENGTH_WIDTH].strip(), json.loads(text)["shape"]
    (b'7', [7, 2])
    """
    rest = {k: v for k, v in doc.items() if k != "shape"}
    head = '{"shape": ['
    tail = "".join(f", {int(n)}" for n in doc["shape"][1:]) + "], "
    body = json.dumps(rest, separators=(", ", ": "), allow_nan=False)[1:]
    text = f"{head}{length_field(doc['shape'][0]).decode()}{tail}{body}"
    return text.encode("utf-8"), len(head)


def length_field(n: int) -> bytes:
    """The fixed-width text of an array length."""
    return f"{int(n):>{LENGTH_WIDTH}d}".encode("ascii")


def chunk_key(array_key: str, index: Sequence[int], separator: str = SEPARATOR) -> str:
    """Key of one chunk under the ``default`` chunk-key encoding.

    Examples
    --------
    >>> chunk_key("tensors/weight/w/tensor", (3, 0, 0))
    'tensors/weight/w/tensor/c.3.0.0'
    >>> chunk_key("a/tensor", (3, 0), separator="/")
    'a/tensor/c/3/0'
    """
    return f"{array_key}/" + separator.join(["c", *map(str, index)])
