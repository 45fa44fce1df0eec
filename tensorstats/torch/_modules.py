"""Which modules and parameters :func:`~tensorstats.torch.watch` hooks, their layouts.

By default every parameter of the model is watched (``weight``/``grad``), and
the outputs of every Linear, Conv and ``nn.MultiheadAttention`` (``feature``,
...). With ``layers=``, the chosen modules and the parameters they and their
submodules hold.

A :class:`Site` is one call of a watched module in a pass (``conv1``, or
``conv1[1]`` for its second call): the module, the layout of its output and
input as the store keeps them, and the series attributes written with them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..dims import SAMPLE, TOKEN, default_dim

ROOT = "(root)"
"""Layer name of the model itself when it is watched (PyTorch names it ``""``)."""
_SPATIAL = {1: (), 2: (), 3: ("length",), 4: ("height", "width"), 5: ("depth", "height", "width")}


def default_types() -> tuple[type, ...]:
    """The module types whose outputs are watched when ``layers`` is not given."""
    import torch.nn as nn

    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)


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
                 "stride", "padding", "dilation", "groups", "padding_mode", "transposed",
                 "embed_dim", "num_heads", "kdim", "vdim", "batch_first", "num_embeddings",
                 "embedding_dim", "normalized_shape"):
        if hasattr(module, attr):
            value = getattr(module, attr)
            if isinstance(value, tuple):
                value = list(value)
            if isinstance(value, (int, str, bool, list)):
                meta[attr] = value
    if hasattr(module, "bias"):
        meta["bias"] = getattr(module, "bias", None) is not None
    return meta


def _features_last(module: Any) -> bool:
    """A Linear-like or attention module: its tensors are (..., features)."""
    return hasattr(module, "in_features") or hasattr(module, "embed_dim")


def _has_tokens(module: Any, sequence: Sequence | None) -> bool:
    """Whether ``sequence`` names the tokens of the module's 3-d tensors."""
    if sequence is None or hasattr(module, "in_channels"):
        return False
    return _features_last(module) or not sequence.linear_only


def layout(module: Any, ndim: int,
           sequence: Sequence | None = None) -> tuple[int | None, tuple[str, ...]]:
    """Channel axis and the other dims' names of a module's output (or input).

    A 3-d tensor of a module other than a convolution gets a ``token`` axis,
    with the features last as ``channel``, where ``sequence`` says which axis
    is the batch (and, if it is only ``linear_only``, for Linear-like and
    attention modules); otherwise a Linear's is ``(sample, dim_1)`` and
    another module's has its channel at axis 1, as a convolution's.

    Examples
    --------
    >>> import torch
    >>> layout(torch.nn.Linear(4, 2), 3, Sequence(False, "sequence_dim=0"))
    (2, ('token', 'sample'))
    >>> layout(torch.nn.Linear(4, 2), 3)
    (2, ('sample', 'dim_1'))
    """
    if ndim == 0:
        return None, ()
    if ndim == 1:
        return 0, ()
    if ndim == 3 and _has_tokens(module, sequence):
        return 2, ((SAMPLE, TOKEN) if sequence.batch_first else (TOKEN, SAMPLE))
    if _features_last(module):  # (sample, ..., features)
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
    if not chosen and (layers is not None or not any(True for _ in model.parameters())):
        raise ValueError("no module to watch: the model has no parameters and no Linear/Conv/"
                         "MultiheadAttention layers; name some with layers=[...]")
    return chosen


def parameters(model: Any, modules: dict[str, Any] | None) -> dict[str, tuple[Any, str]]:
    """``{qualified name: (parameter, name of the module holding it)}``, in model order.

    ``modules=None`` (``watch``'s default) gives every parameter of the model
    under the names ``model.named_parameters()`` gives them; otherwise, those
    held by the chosen modules and their submodules. A parameter shared by
    several modules is listed once, under its first name.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.LayerNorm(4))
    >>> list(parameters(model, None))
    ['0.weight', '1.weight', '1.bias']
    >>> list(parameters(model, {"1": model[1]}))
    ['1.weight', '1.bias']
    """
    chosen = None if modules is None else {
        n: m for name, module in modules.items()
        for n, m in module.named_modules(prefix="" if name == ROOT else name)}
    out: dict[str, tuple[Any, str]] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        if chosen is not None and name not in chosen:
            continue
        for pname, p in module.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                out[f"{name}.{pname}" if name else pname] = (p, name or ROOT)
    return out


@dataclass(frozen=True)
class Sequence:
    """A module's 3-d tensors are batch-first or not, and what said so.

    Decided by :func:`tensorstats.torch._sequence.decide`.
    """

    batch_first: bool
    source: str
    """The attribute or argument the decision came from, for the series attrs."""
    linear_only: bool = False
    """Inferred from modules beside this one, not around or inside it: it then names
    the tokens of Linear and attention tensors only, whose last axis is known to be
    the features."""

    def attrs(self) -> dict[str, Any]:
        """JSON-ready form stored with the module's series (``attrs["sequence"]``)."""
        return {"batch_first": self.batch_first, "source": self.source}


@dataclass(frozen=True)
class Layout:
    """Where the channel axis is in a tensor, and the names of its other axes.

    ``dims=None`` leaves the other axes to the Recorder's default names.
    """

    channel_axis: int | None
    dims: tuple[str, ...] | None

    @property
    def sample_axis(self) -> int | None:
        """The batch axis of the tensor (in its own axis order), if one is named ``sample``."""
        if not self.dims or SAMPLE not in self.dims:
            return None
        others = [i for i in range(len(self.dims) + (self.channel_axis is not None))
                  if i != self.channel_axis]
        return others[self.dims.index(SAMPLE)]


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
              out: Any, sequence: Sequence | None = None) -> Site:
    """The :class:`Site` of a module call, from its first inputs and output.

    ``attrs["input_shape"]`` is the input's shape without its batch axis;
    ``attrs["sequence"]`` says whether 3-d tensors were taken as batch-first,
    where it was known (see :mod:`tensorstats.torch._sequence`).
    """
    first = inputs[0] if inputs else None
    is_tensor = hasattr(first, "shape") and hasattr(first, "dtype")
    attrs: dict[str, Any] = {"module": meta, "module_name": module_name}
    in_layout = Layout(*layout(module, first.ndim, sequence)) if is_tensor else None
    if is_tensor and first.ndim > 0:
        batch = in_layout.sample_axis if in_layout.sample_axis is not None else 0
        attrs["input_shape"] = [int(n) for i, n in enumerate(first.shape) if i != batch]
    if _has_tokens(module, sequence):
        attrs["sequence"] = sequence.attrs()
    return Site(key, module_name, module, Layout(*layout(module, out.ndim, sequence)),
                in_layout, attrs)
