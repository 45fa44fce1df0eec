"""Which axis of a watched module's 3-d tensors is the batch, and which the tokens.

A Linear or attention output of shape ``(a, b, features)`` is either
batch-first ``(sample, token, features)`` or sequence-first ``(token, sample,
features)``. The shape cannot tell; the model can. :func:`decide` says, for
each watched module, which one it is, and from where it knows:

1. ``watch(..., sequence_dim=1)`` (batch-first) or ``sequence_dim=0``
   (sequence-first) decides for every module; ``sequence_dim=None`` never
   names a token axis.
2. ``sequence_dim="auto"`` (default) walks from the module up to the root
   and stops at the first module that answers: one with a bool
   ``batch_first`` attribute (``nn.MultiheadAttention``, ``nn.Transformer``,
   ``nn.LSTM``, ...), a Hugging Face ``PreTrainedModel`` (always
   batch-first), or one whose submodules with a ``batch_first`` attribute all
   agree (a ``TransformerEncoderLayer`` through its ``self_attn``). Where they
   disagree, or nothing answers, the axis stays unnamed (``dim_1``).

   An answer that came from an enclosing module's other submodules (the
   ``self_attn`` beside a ``linear1``) is ``linear_only``: it names the
   tokens of Linear and attention tensors, whose last axis is known to be the
   features, and not those of other modules (whose 3-d outputs may be
   ``(batch, channels, length)``).

Examples
--------
>>> import torch
>>> layer = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16)
>>> model = torch.nn.Sequential(layer, torch.nn.Linear(8, 3))
>>> found = decide(model, ["0.linear1", "1"], "auto")["0.linear1"]
>>> found.batch_first, found.linear_only
(False, True)
>>> decide(model, ["1"], 1)["1"].batch_first
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._modules import ROOT, Sequence

SEQUENCE_DIMS = ("auto", 0, 1, None)
"""What ``watch(..., sequence_dim=)`` takes."""


def check_sequence_dim(sequence_dim: Any) -> None:
    """Raise ValueError unless ``sequence_dim`` is one of :data:`SEQUENCE_DIMS`."""
    if isinstance(sequence_dim, bool) or not any(
            sequence_dim == v and type(sequence_dim) is type(v) for v in SEQUENCE_DIMS):
        raise ValueError(f"sequence_dim must be 'auto', 1 (batch-first: (batch, tokens, "
                         f"features)), 0 (sequence-first: (tokens, batch, features)) or None; "
                         f"got {sequence_dim!r}")


def _is_hf_pretrained(module: Any) -> bool:
    """A Hugging Face ``PreTrainedModel``, told without importing transformers."""
    return any(c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers")
               for c in type(module).__mro__)


def _own(module: Any) -> bool | None:
    value = getattr(module, "batch_first", None)
    return value if isinstance(value, bool) else None


def _ancestors(name: str) -> list[str]:
    """``name`` and the names of its ancestors, nearest first, ending at the root ``""``."""
    if not name:
        return [""]
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _is_watched(watched: str, name: str) -> bool:
    """Whether module ``name`` is the watched module itself (its submodules answered)."""
    return ("" if watched == ROOT else watched) == name


def _display(name: str) -> str:
    return name or ROOT


def _batch_firsts_below(modules: dict[str, Any]) -> dict[str, dict[bool, str]]:
    """Module name -> {batch_first value: a module in its subtree (itself too) that has it}."""
    below: dict[str, dict[bool, str]] = {}
    for name, module in modules.items():
        value = _own(module)
        if value is not None:
            for ancestor in _ancestors(name):
                below.setdefault(ancestor, {}).setdefault(value, name)
    return below


def _infer(watched: str, modules: dict[str, Any],
           below: dict[str, dict[bool, str]]) -> Sequence | None:
    """The first answer on the way from ``watched`` up to the root (see the module doc)."""
    for name in _ancestors("" if watched == ROOT else watched):
        module = modules.get(name)
        value = _own(module)
        if value is not None:
            return Sequence(value, f"{_display(name)}.batch_first")
        if _is_hf_pretrained(module):
            return Sequence(True, f"{_display(name)} is a Hugging Face PreTrainedModel")
        seen = below.get(name, {})
        if len(seen) > 1:
            return None  # its submodules disagree
        if seen:
            value, holder = next(iter(seen.items()))
            return Sequence(value, f"{_display(holder)}.batch_first (every batch_first in "
                                   f"{_display(name)} agrees)",
                            linear_only=not _is_watched(watched, name))
    return None


def decide(model: Any, names: Iterable[str], sequence_dim: Any) -> dict[str, Sequence | None]:
    """``{watched module name: its Sequence, or None where it cannot be known}``.

    ``names`` are module names as :func:`~tensorstats.torch._modules.select`
    gives them (the root is ``"(root)"``); ``sequence_dim`` as ``watch`` takes it.
    """
    check_sequence_dim(sequence_dim)
    names = list(names)
    if sequence_dim is None:
        return dict.fromkeys(names)
    if sequence_dim != "auto":
        return dict.fromkeys(names, Sequence(sequence_dim == 1, f"sequence_dim={sequence_dim}"))
    modules = dict(model.named_modules())
    below = _batch_firsts_below(modules)
    return {watched: _infer(watched, modules, below) for watched in names}
