"""Safe, reversible encoding of kind, layer and scalar names into store keys.

A name becomes exactly one path segment of the store. Every character outside
``[A-Za-z0-9._-]`` is percent-encoded as the ``%XX`` hex of its UTF-8 bytes,
so ``/``, ``\\``, control characters and anything else that could change the
meaning of a path is neutralised. Three more rules keep a segment legal under
the Zarr v3 spec and harmless on every file system:

* the names ``.`` and ``..`` are encoded completely (``%2E``, ``%2E%2E``);
* a leading ``__`` (reserved by Zarr) is encoded as ``%5F_``;
* the name ``zarr.json`` (in any letter case: the node's own metadata
  document) has its dot encoded, ``zarr%2Ejson``;
* the empty string cannot be encoded and is rejected.

Decoding is plain percent-decoding, so ``decode(encode(s)) == s`` for every
non-empty string. The original name is also stored in the node's attributes.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_ENCODED = re.compile(r"^(?:[A-Za-z0-9._-]|%[0-9A-F]{2})+$")


def _escape(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8"))


def encode_name(name: str, *, what: str = "name") -> str:
    """Encode ``name`` as one safe path segment.

    Parameters
    ----------
    name
        A kind, layer or scalar name. Any non-empty string.
    what
        What the name is, used in the error message (``"layer"``, ...).

    Raises
    ------
    TypeError
        If ``name`` is not a ``str``.
    ValueError
        If ``name`` is empty.

    Examples
    --------
    >>> encode_name("conv1.weight")
    'conv1.weight'
    >>> encode_name("../x")
    '..%2Fx'
    >>> encode_name("..")
    '%2E%2E'
    >>> encode_name("zarr.json")
    'zarr%2Ejson'
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {type(name).__name__}: {name!r}")
    if name == "":
        raise ValueError(f"{what} must be a non-empty string")
    return _encode(name)


@functools.lru_cache(maxsize=65536)
def _encode(name: str) -> str:
    if name in (".", ".."):
        return "%2E" * len(name)
    out = "".join(ch if ch in _SAFE else _escape(ch) for ch in name)
    if out.startswith("__"):
        out = "%5F" + out[1:]
    if out.lower() == "zarr.json":
        out = out.replace(".", "%2E")
    return out


def decode_name(segment: str) -> str:
    """Invert :func:`encode_name`.

    Examples
    --------
    >>> decode_name(encode_name("a/b\\n"))
    'a/b\\n'
    """
    if not _ENCODED.match(segment):
        raise ValueError(f"{segment!r} is not an encoded tensorstats name")
    return unquote(segment, errors="strict")
