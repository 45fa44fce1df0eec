"""Which modules :func:`~tensorstats.torch.watch` hooks, what it says about them, their layouts.

A :class:`Site` is one call of a watched module in a pass (``conv1``, or
``conv1[1]`` for its second call): the module, the layout of its output and
input as the store keeps them, and the series attributes written with them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..dims import SAMPLE, default_dim

ROOT = "(root)"
"""Layer name of the model itself when it is watched (PyTorch names it ``""``)."""
_SPATIAL = {1: (), 2: (), 3: ("length",), 4: ("height", "width"), 5: ("depth", "height", "width")}


def default_types() -> tuple[type, ...]:
    """The module types watched when ``layers`` is not given."""
    import torch.nn as nn

    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def module_metadata(module: Any) -> dict[str, Any]:
    """JSON-ready description of a module: type, channels, kernel, stride, ...

    Examples
    --------
    >>> import torch
    >>> module_metadata(torch.nn.Conv2d(3, 16, 3, padding=1))["kernel_size"]
    [3, 3]
    """
    meta: dict[str, Any] = {"type": type(module).__name__}
    for attr in ("in_features", "out_features", "in_channels", "out_channels", "kernel_size",
                 "stride", "padding", "dilation", "groups", "padding_mode", "transposed"):
        if hasattr(module, attr):
            value = getattr(module, attr)
            if isinstance(value, tuple):
                value = list(value)
            if isinstance(value, (int, str, bool, list)):
                meta[attr] = value
    if hasattr(module, "bias"):
        meta["bias"] = getattr(module, "bias", None) is not None
    return meta


def layout(module: Any, ndim: int) -> tuple[int | None, tuple[str, ...]]:
    """Channel axis and the other dims' names of a module's output (or input)."""
    if ndim == 0:
        return None, ()
    if ndim == 1:
        return 0, ()
    if hasattr(module, "in_features"):  # Linear-like: (sample, ..., features)
        return ndim - 1, (SAMPLE, *(default_dim(i) for i in range(1, ndim - 1)))
    return 1, (SAMPLE, *_SPATIAL.get(ndim, tuple(default_dim(i) for i in range(2, ndim))))


def select(model: Any, layers: Iterable[Any] | None) -> dict[str, Any]:
    """``{name: module}`` of the modules to watch, in model order."""
    named = {n or ROOT: m for n, m in model.named_modules()}
    if layers is None:
        types = default_types()
        chosen = {n: m for n, m in named.items() if isinstance(m, types)}
    else:
        if isinstance(layers, (str, type)):
            layers = [layers]
        chosen = {}
        for spec in layers:
            if isinstance(spec, type):
                hits = {n: m for n, m in named.items() if isinstance(m, spec)}
            elif isinstance(spec, str):
                hits = {n: m for n, m in named.items()
                        if n == spec or (n != ROOT and fnmatch.fnmatchcase(n, spec))}
            else:
                raise TypeError(f"layers takes module names, glob patterns or module types; "
                                f"got {spec!r}")
            if not hits:
                raise ValueError(f"layers entry {spec!r} matches no module; modules: "
                                 f"{[n for n in named if n != ROOT]}")
            chosen.update(hits)
        chosen = {n: chosen[n] for n in named if n in chosen}  # model order
    if not chosen:
        raise ValueError("no module to watch: the model has no Linear/Conv layers; "
                         "name some with layers=[...]")
    return chosen


def parameters(modules: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """``{qualified name: (parameter, module name)}`` of the parameters the modules hold.

    A parameter shared by several modules is listed once, under the first.
    """
    out: dict[str, tuple[Any, str]] = {}
    seen: set[int] = set()
    for name, module in modules.items():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                out[f"{name}.{pname}" if name != ROOT else pname] = (p, name)
    return out


@dataclass(frozen=True)
class Layout:
    """Where the channel axis is in a tensor, and the names of its other axes.

    ``dims=None`` leaves the other axes to the Recorder's default names.
    """

    channel_axis: int | None
    dims: tuple[str, ...] | None


@dataclass
class Site:
    """One call of a watched module in a pass, as the hooks first saw it."""

    key: str
    """Series name: the module's name, ``name[1]`` for its second call in a pass, ..."""
    module_name: str
    module: Any
    output: Layout
    input: Layout | None
    attrs: dict[str, Any]
    """Series attributes: the module's metadata, its name and its input's shape."""
    geometry: Any = field(default=None, repr=False)
    """The layer's geometry, where emission/absorption is captured and supported."""


def make_site(key: str, module_name: str, module: Any, meta: dict[str, Any], inputs: Any,
              out: Any) -> Site:
    """The :class:`Site` of a module call, from its first inputs and output."""
    first = inputs[0] if inputs else None
    is_tensor = hasattr(first, "shape") and hasattr(first, "dtype")
    attrs = {"module": meta, "module_name": module_name}
    if is_tensor and first.ndim > 0:
        attrs["input_shape"] = [int(n) for n in first.shape[1:]]
    return Site(key, module_name, module, Layout(*layout(module, out.ndim)),
                Layout(*layout(module, first.ndim)) if is_tensor else None, attrs)
