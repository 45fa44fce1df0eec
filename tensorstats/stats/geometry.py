"""The geometry of a Linear or Conv layer, read from the module metadata a collector stored.

``tensorstats.torch.watch`` stores each module's type and shape parameters in
the series attributes (``attrs["module"]``, see ``docs/format.md``). The
layer-level analyses (emission/absorption, the mean-field check) need them as
numbers: :func:`layer_geometry` turns that dict into a :class:`Geometry`, with
an error that names the layer when something is missing or unsupported.

Examples
--------
>>> g = layer_geometry({"type": "Conv2d", "in_channels": 3, "out_channels": 16,
...                     "kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1],
...                     "dilation": [1, 1], "groups": 1}, "conv1")
>>> g.output_size((32, 32)), g.fan_in
((16, 16), 27)
>>> layer_geometry({"type": "Linear", "in_features": 4, "out_features": 2}, "fc").kind
'linear'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import xarray as xr

from ..dims import CHANNEL, ELEMENT, MOMENT, STEP
from .groups import check_input

LINEAR_TYPES = frozenset({"Linear", "LazyLinear", "NonDynamicallyQuantizableLinear"})
"""Module types read as a Linear layer (``y = x Wᵀ + b`` over the last axis)."""

CONV_TYPES = {"Conv1d": 1, "Conv2d": 2, "Conv3d": 3,
              "LazyConv1d": 1, "LazyConv2d": 2, "LazyConv3d": 3}
"""Module types read as a convolution, with their number of spatial dims."""

SUPPORTED = "Linear and Conv1d/2d/3d (zero padding, not transposed)"


@dataclass(frozen=True)
class Geometry:
    """How a Linear or Conv layer maps its input to its output.

    A Linear layer is a convolution with no spatial dims (``kernel_size=()``):
    any axes between the batch and the features are positions that the layer
    treats independently.

    Attributes
    ----------
    kind : {"linear", "conv"}
    in_channels, out_channels : int
        C₂ (input features/channels) and C₁ (output features/channels).
    kernel_size, stride, dilation : tuple of int
        One entry per spatial dim (empty for Linear).
    padding : tuple of (int, int)
        Zeros added before and after each spatial dim.
    groups : int
        Each output channel sees ``in_channels // groups`` input channels.
    """

    kind: str
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[tuple[int, int], ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1

    @property
    def ndim(self) -> int:
        """Number of spatial dims (0 for Linear)."""
        return len(self.kernel_size)

    @property
    def taps(self) -> int:
        """Kernel positions per input channel: k₁·k₂·… (1 for Linear)."""
        return math.prod(self.kernel_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the weight in PyTorch's layout: (out, in // groups, *kernel)."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    @property
    def fan_in(self) -> int:
        """Inputs summed into one output value: ``in_channels // groups · taps``."""
        return self.in_channels // self.groups * self.taps

    def output_size(self, input_size: Sequence[int]) -> tuple[int, ...]:
        """Spatial output size for a spatial input size (PyTorch's formula)."""
        self._check_len(input_size, "input size")
        return tuple((i + pl + pr - d * (k - 1) - 1) // s + 1 for i, k, s, (pl, pr), d
                     in zip(input_size, self.kernel_size, self.stride, self.padding,
                            self.dilation, strict=True))

    def input_size(self, output_size: Sequence[int], layer: str = "") -> tuple[int, ...]:
        """The spatial input size that gives ``output_size``, where only one can matter.

        With a stride above 1, several input sizes give the same output size.
        They differ only in the trailing inputs that the kernel reaches
        through the right padding, so the smallest is right where that
        padding is 0; otherwise the input size must have been recorded.
        """
        self._check_len(output_size, "output size")
        sizes = []
        for o, k, s, (pl, pr), d in zip(output_size, self.kernel_size, self.stride,
                                        self.padding, self.dilation, strict=True):
            if s > 1 and pr > 0:
                raise ValueError(
                    f"layer {layer!r}: its input size cannot be told from its output size "
                    f"{tuple(output_size)} (stride {self.stride}, padding {self.padding}); "
                    "record the layer with a current tensorstats.torch.watch (it stores "
                    "attrs['input_shape']) or pass input_shape=")
            sizes.append((o - 1) * s + d * (k - 1) + 1 - pl - pr)
        return tuple(sizes)

    def _check_len(self, size: Sequence[int], what: str) -> None:
        if len(size) != self.ndim:
            raise ValueError(f"a {self.ndim}-d layer needs a {self.ndim}-d {what}, got "
                             f"{tuple(size)}")


def check_layer_series(da: object, name: str, layer: str, analysis: str) -> xr.DataArray:
    """``da`` if it is a full, real-valued series over ``step`` and ``channel`` of ``layer``.

    Raises TypeError (not a real-valued DataArray) or ValueError (a dim
    missing, or subsampled with ``max_elements``: ``analysis`` needs every
    element), naming the layer and the series.
    """
    da = check_input(da, name)
    for dim in (STEP, CHANNEL):
        if dim not in da.dims:
            raise ValueError(f"layer {layer!r}: the {name} series has dims {list(da.dims)}, "
                             f"without {dim!r}")
    if ELEMENT in da.dims or MOMENT in da.dims:
        raise ValueError(f"layer {layer!r}: the {name} series was subsampled (dims "
                         f"{list(da.dims)}); {analysis} needs the full tensors: record it "
                         "without max_elements")
    return da


def _ints(value: Any, n: int, name: str, layer: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise ValueError(f"layer {layer!r}: module metadata {name}={value!r} is not an int")
    if isinstance(value, int):
        return (value,) * n
    if isinstance(value, (list, tuple)) and len(value) == n and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise ValueError(f"layer {layer!r}: module metadata {name}={value!r} is not an int or a "
                     f"list of {n} ints")


def _padding(value: Any, kernel: tuple[int, ...], stride: tuple[int, ...],
             dilation: tuple[int, ...], layer: str) -> tuple[tuple[int, int], ...]:
    if value == "valid":
        return ((0, 0),) * len(kernel)
    if value == "same":  # as torch: the odd zero goes on the right
        if any(s != 1 for s in stride):
            raise ValueError(f"layer {layer!r}: padding='same' needs stride 1, got {stride}")
        total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return tuple((t // 2, t - t // 2) for t in total)
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (list, tuple)) for v in value):  # (before, after) per dim
        pairs = tuple(_ints(list(v), 2, "padding", layer) for v in value)
        if len(pairs) == len(kernel):
            return pairs
    return tuple((p, p) for p in _ints(value, len(kernel), "padding", layer))


def layer_geometry(module: Mapping[str, Any] | None, layer: str) -> Geometry:
    """The :class:`Geometry` of ``layer`` from its stored module metadata.

    Parameters
    ----------
    module : dict or None
        ``attrs["module"]`` of a series recorded by ``tensorstats.torch.watch``
        (``type``, ``in_features``/``out_features`` or ``in_channels``,
        ``out_channels``, ``kernel_size``, ``stride``, ``padding``,
        ``dilation``, ``groups``, ``padding_mode``, ``transposed``) or by
        ``tensorstats.jax.record_pytree(..., modules=...)``. ``padding`` is an
        int, one int per dim, one ``[before, after]`` pair per dim,
        ``"same"`` or ``"valid"``.
    layer : str
        The layer's name, for error messages.

    Raises
    ------
    ValueError
        The metadata is missing, incomplete, or describes a layer type or
        option other than those supported (Linear; Conv1d/2d/3d with zero
        padding, not transposed).
    """
    if not isinstance(module, Mapping) or "type" not in module:
        raise ValueError(
            f"layer {layer!r} has no module metadata (attrs['module'] with a 'type'); record it "
            "with tensorstats.torch.watch, or pass Recorder.record(..., attrs={'module': {...}}) "
            "as described in docs/format.md")
    kind = module["type"]
    if kind in LINEAR_TYPES or (kind not in CONV_TYPES and "in_features" in module
                                and "kernel_size" not in module):
        missing = [k for k in ("in_features", "out_features") if k not in module]
        if missing:
            raise ValueError(f"layer {layer!r} ({kind}): module metadata lacks {missing}")
        return Geometry("linear", _ints(module["in_features"], 1, "in_features", layer)[0],
                        _ints(module["out_features"], 1, "out_features", layer)[0])
    if kind not in CONV_TYPES:
        raise ValueError(f"layer {layer!r} is a {kind}; supported: {SUPPORTED}")
    if module.get("transposed"):
        raise ValueError(f"layer {layer!r} is a transposed convolution; supported: {SUPPORTED}")
    if module.get("padding_mode", "zeros") != "zeros":
        raise ValueError(f"layer {layer!r} pads with {module['padding_mode']!r}; supported: "
                         f"{SUPPORTED}")
    needed = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
              "groups")
    missing = [k for k in needed if k not in module]
    if missing:
        raise ValueError(f"layer {layer!r} ({kind}): module metadata lacks {missing}")
    n = CONV_TYPES[kind]
    kernel = _ints(module["kernel_size"], n, "kernel_size", layer)
    stride = _ints(module["stride"], n, "stride", layer)
    dilation = _ints(module["dilation"], n, "dilation", layer)
    groups = _ints(module["groups"], 1, "groups", layer)[0]
    cin = _ints(module["in_channels"], 1, "in_channels", layer)[0]
    cout = _ints(module["out_channels"], 1, "out_channels", layer)[0]
    if min(kernel + stride + dilation + (groups,)) < 1 or cin % groups or cout % groups:
        raise ValueError(f"layer {layer!r}: inconsistent module metadata {dict(module)}")
    padding = _padding(module["padding"], kernel, stride, dilation, layer)
    if min(p for pair in padding for p in pair) < 0:
        raise ValueError(f"layer {layer!r}: negative padding {module['padding']!r}")
    return Geometry("conv", cin, cout, kernel, stride, padding, dilation, groups)
