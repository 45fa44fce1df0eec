"""Reads of compressed whole-step chunks, checked before they are decoded.

zarr-python hands a chunk's bytes to numcodecs' Blosc decoder as they are, and
that decoder trusts the sizes in the chunk's own header: a chunk cut short
(a torn copy, a truncated file) decodes into whatever memory follows it,
without an error (numcodecs issue #228). This reader fetches each chunk
through the store's backend, checks that a Blosc chunk is exactly as long as
its header says, decodes it, and checks the decoded size, so a damaged chunk
is an error naming the chunk, never silently wrong values.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .backend import Backend
from .local_read import LocalChunkReader

BLOSC_HEADER = 16


def check_blosc_frame(raw: bytes | memoryview) -> None:
    """Raise ValueError unless ``raw`` is one whole Blosc frame (length as its header says).

    Examples
    --------
    >>> from numcodecs import Blosc
    >>> frame = Blosc(cname="lz4").encode(np.arange(100.0))
    >>> check_blosc_frame(frame)
    >>> check_blosc_frame(frame[:-8])
    Traceback (most recent call last):
    ...
    ValueError: a Blosc frame of ... bytes says it holds ... bytes: it was cut short
    """
    if len(raw) < BLOSC_HEADER:
        raise ValueError(f"{len(raw)} bytes are too few for a Blosc frame")
    declared = int.from_bytes(bytes(raw[12:16]), "little")
    if declared != len(raw):
        raise ValueError(f"a Blosc frame of {len(raw)} bytes says it holds {declared} bytes: "
                         + ("it was cut short" if declared > len(raw) else
                            "extra bytes follow it"))


class CodecChunkReader(LocalChunkReader):
    """Like :class:`LocalChunkReader`, for whole-step chunks compressed with Blosc or Zstd."""

    def __init__(self, backend: Backend, key: str, array: Any, encode_key: Any,
                 codec: str) -> None:
        super().__init__("", array, encode_key, missing="raise")
        self._backend = backend
        self._key = key
        self._codec = codec
        if codec == "blosc":
            from numcodecs import Blosc

            self._decode = Blosc().decode
        else:
            from numcodecs import Zstd

            self._decode = Zstd().decode

    @classmethod
    def for_codec_array(cls, backend: Backend, key: str, array: Any) -> CodecChunkReader | None:
        """A reader for ``array`` (stored at ``key``), or None where zarr must read it."""
        from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec
        from zarr.core.chunk_grids import RegularChunkGrid

        meta = getattr(array, "metadata", None)
        if meta is None or getattr(meta, "zarr_format", None) != 3:
            return None
        codecs = tuple(meta.codecs)
        if len(codecs) != 2 or not isinstance(codecs[0], BytesCodec):
            return None
        kind = ("blosc" if isinstance(codecs[1], BloscCodec) else
                "zstd" if isinstance(codecs[1], ZstdCodec) else None)
        try:
            dtype = np.dtype(array.dtype)
        except TypeError:
            return None
        endian = codecs[0].endian
        if kind is None or dtype.kind not in "biuf" or (
                dtype.itemsize > 1 and (endian is None or endian.value != sys.byteorder)):
            return None
        if not isinstance(meta.chunk_grid, RegularChunkGrid) or len(array.shape) == 0:
            return None
        if tuple(array.chunks[1:]) != tuple(array.shape[1:]):
            return None
        return cls(backend, key, array, meta.chunk_key_encoding.encode_chunk_key, kind)

    def _read_chunk(self, index: int, target: np.ndarray) -> bool:
        from ..errors import DamagedStoreError

        name = self._encode_key((index,) + (0,) * (self.ndim - 1))
        key = f"{self._key}/{name}"
        raw = self._backend.read(key)
        if raw is None:
            raise DamagedStoreError(f"chunk {key!r} is missing: the store is damaged")
        try:
            if self._codec == "blosc":
                check_blosc_frame(raw)
            out = self._decode(raw)
        except Exception as e:  # any decoder failure means the bytes are damaged
            raise DamagedStoreError(f"chunk {key!r} does not decode ({e}): the store is "
                                    "damaged") from e
        out = memoryview(out).cast("B")
        if len(out) != self._chunk_nbytes:
            raise DamagedStoreError(f"chunk {key!r} decodes to {len(out)} bytes, expected "
                                    f"{self._chunk_nbytes}: the store is damaged")
        memoryview(target).cast("B")[:] = out
        return True
