"""The run-store format and the low-level, crash-safe append protocol."""

from .format import FORMAT_NAME, FORMAT_VERSION
from .names import decode_name, encode_name

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "decode_name", "encode_name"]
