"""Writing: the framework-agnostic :class:`Recorder` (adapters come later)."""

from .recorder import Recorder

__all__ = ["Recorder"]
