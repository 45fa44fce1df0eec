"""Groups of the conventional kinds, where more than one module needs the same group.

Kinds are free strings (``docs/format.md``); these are the ones the collectors
write and the layer analyses read.
"""

from __future__ import annotations

from typing import Final

PER_LAYER_KINDS: Final = ("feature", "feature_grad", "input", "emission", "absorption")
"""Kinds recorded per module call, named by the module and carrying its metadata in
their attrs; the others (``weight``, ``grad``) are recorded per parameter."""
