"""Layer-level analyses of a run: :func:`emission_absorption` and :func:`meanfield`.

These need several series of one layer at once (its weight, the gradient of
its output, its input) and the layer's geometry. This module only finds and
pairs those series in a :class:`~tensorstats.Run`; the arithmetic lives in
:mod:`tensorstats.stats.emission` and :mod:`tensorstats.stats.meanfield`,
which take DataArrays and never see the reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr

from .dims import CHANNEL, IN_CHANNEL, OUT_CHANNEL, SAMPLE, STEP
from .kinds import PER_LAYER_KINDS
from .stats.emission import emission_absorption_from
from .stats.geometry import Geometry, layer_geometry
from .stats.meanfield import meanfield_from

SOURCES = ("auto", "offline", "captured")


class LayerSeries:
    """The recorded series of one layer of a run, paired by the layer's module.

    ``layer`` is a module name as ``watch`` records features (``conv1``, or
    ``conv1[1]`` for a module's second call in a pass). Its parameters are
    the weight series ``<module>.weight`` and ``<module>.bias``, where
    ``<module>`` is the ``module_name`` stored with the layer's series.
    """

    def __init__(self, run: Any, layer: str) -> None:
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a str, got {type(layer).__name__}")
        self.run = run
        self.layer = layer
        probe = getattr(run, "probe_name", None)
        self.main = run._main_run() if probe is not None else run
        self.where = f"{run.store!r}" + (f" (probe {probe!r})" if probe else "")

    def has(self, kind: str) -> bool:
        return (kind, self.layer) in self.run

    def _recorded(self) -> xr.DataArray | None:
        """The first of the layer's own series that was recorded (they share its attrs)."""
        for kind in PER_LAYER_KINDS:
            if self.has(kind):
                return self.run[kind, self.layer]
        return None

    def series(self, kind: str, hint: str = "") -> xr.DataArray:
        """The layer's series of ``kind``, its batch axis named ``sample``.

        Series recorded from JAX (their module metadata has a ``weight_layout``)
        are batch-first with unnamed axes: the first axis after ``channel`` is
        the batch.
        """
        if not self.has(kind):
            known = sorted({name for k in self.run.kinds for name in self.run.layers(k)})
            raise KeyError(f"layer {self.layer!r} has no {kind!r} series in {self.where}"
                           + (f"; {hint}" if hint else "") + f"; layers recorded: {known}")
        da = self.run[kind, self.layer]
        module = da.attrs.get("module") or {}
        if "weight_layout" in module and SAMPLE not in da.dims and da.ndim > 2:
            da = da.rename({da.dims[2]: SAMPLE})
        return da

    @property
    def module(self) -> dict[str, Any] | None:
        """The layer's module metadata (``attrs["module"]``), if it was recorded."""
        source = self._recorded()
        if source is None:
            source = self.parameter("weight", self.layer)
        return None if source is None else source.attrs.get("module")

    @property
    def module_name(self) -> str:
        """The name of the module whose call this layer is (``conv`` for ``conv[1]``)."""
        source = self._recorded()
        return self.layer if source is None else source.attrs.get("module_name", self.layer)

    def geometry(self) -> Geometry:
        return layer_geometry(self.module, self.layer)

    def parameter(self, role: str, module_name: str | None = None) -> xr.DataArray | None:
        """The ``weight`` series of ``<module>.<role>`` (``weight`` or ``bias``), if recorded.

        A JAX kernel (``<module>.kernel``) counts as the weight, and one laid out
        ``HWIO`` (``attrs["module"]["weight_layout"]``) is presented in PyTorch's
        layout (out, in, *kernel). A probe's own weight series (recorded by
        ``Watcher.probe_pass``) come first: they are the weights its passes used.
        """
        names = [f"{module_name or self.module_name}.{r}"
                 for r in ((role, "kernel") if role == "weight" else (role,))]
        for run in (self.run, self.main):
            for name in names:
                if ("weight", name) in run:
                    return torch_layout(run["weight", name])
        return None

    def input_shape(self) -> Sequence[int] | None:
        """The layer input's shape without the batch axis, from attrs or the ``input`` series."""
        source = self._recorded()
        if source is not None and source.attrs.get("input_shape") is not None:
            return source.attrs["input_shape"]
        if self.has("input"):
            da = self.run["input", self.layer]
            return [da.sizes[CHANNEL], *(da.sizes[d] for d in da.dims[3:])]
        return None


def torch_layout(weight: xr.DataArray) -> xr.DataArray:
    """A weight series in PyTorch's layout: (step, out, in, *kernel).

    JAX convolution kernels are ``HWIO``: recorded with the output axis as
    ``channel``, their input axis comes last; it is moved right after ``channel``.
    """
    module = weight.attrs.get("module") or {}
    if module.get("weight_layout") != "HWIO" or weight.ndim < 4:
        return weight
    dims = list(weight.dims)
    return weight.transpose(dims[0], dims[1], dims[-1], *dims[2:-1])


def _captured(pair: LayerSeries) -> xr.Dataset:
    emission = pair.series("emission").rename({CHANNEL: OUT_CHANNEL})
    absorption = pair.series("absorption").rename({CHANNEL: IN_CHANNEL})
    emission, absorption = xr.align(emission, absorption, join="inner",
                                    exclude=[SAMPLE, OUT_CHANNEL, IN_CHANNEL])
    ds = xr.Dataset({"emission": emission.transpose(STEP, SAMPLE, OUT_CHANNEL).astype("f8"),
                     "absorption": absorption.transpose(STEP, SAMPLE, IN_CHANNEL).astype("f8")})
    for var in ds.data_vars.values():
        var.attrs = {}
    ds.attrs.update({"layer": pair.layer, "source": "captured"})
    return ds


def emission_absorption(run: Any, layer: str, *, source: str = "auto",
                        input_shape: Sequence[int] | None = None,
                        sample_block: int | None = None) -> xr.Dataset:
    """The seed paper's channel-wise emission and absorption of local gradients.

    For a Conv layer with weight W (C₁ out × C₂/groups in × kernel) and the
    gradient G = ∂L/∂V of its output V (the recorded ``feature_grad``), the
    local gradient LG^{c₁→c₂} is the transposed convolution of G[c₁] with
    W[c₁, c₂] (an input-sized map per sample; summed over c₁ it is ∂L/∂A[c₂]).
    Per sample x, with norms over all spatial positions:

    - emission  Em^{c₁}(x) = Σ_{c₂} ‖LG^{c₁→c₂}(x)‖₂ (how much gradient output channel c₁ sends);
    - absorption Ab^{c₂}(x) = Σ_{c₁} ‖LG^{c₁→c₂}(x)‖₂ (how much input channel c₂ receives).

    For a Linear layer LG^{i→j} = g_i·W_ij per sample (and per position, for
    inputs with extra axes such as tokens). See ``docs/emission.md``.

    Parameters
    ----------
    run : tensorstats.Run
        An open run, or a probe of one (``run.probe("valid")``), whose
        weights are then taken from the run itself.
    layer : str
        The module's name, as features are recorded (``"conv2"``).
    source : {"auto", "offline", "captured"}
        ``"offline"`` computes from the recorded ``weight`` (``<module>.weight``,
        the weight the pass used) and ``feature_grad`` at the same steps;
        steps where either is missing are skipped. ``"captured"`` reads the
        ``emission`` and ``absorption`` kinds that ``watch(..., kinds=(...,
        "emission", "absorption"))`` computed at capture time. ``"auto"``
        (default) is offline where ``feature_grad`` and the weight were
        recorded, captured otherwise.
    input_shape : sequence of int, optional
        The layer input's shape without the batch axis, where it was not
        recorded and cannot be told from the output (stride above 1 with
        right padding).
    sample_block : int, optional
        Samples per task; default: as many as fit in about 64 MiB of gradient.

    Returns
    -------
    xarray.Dataset
        ``emission`` (``step``, ``sample``, ``out_channel``) and ``absorption``
        (``step``, ``sample``, ``in_channel``), float64, lazy: one dask task
        per block of steps and samples of at most about 64 MiB of gradient.
        ``out_channel`` indexes the layer's output channels c₁, ``in_channel``
        its input channels c₂.

    Raises
    ------
    KeyError
        The layer, its weight or its ``feature_grad`` (or captured series) is
        not in the run.
    ValueError
        Its module metadata is missing or of an unsupported type, or a series
        was subsampled (``max_elements``).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    pair = LayerSeries(run, layer)
    weight = pair.parameter("weight")
    offline_ok = pair.has("feature_grad") and weight is not None
    if source == "captured" or (source == "auto" and not offline_ok
                                and pair.has("emission") and pair.has("absorption")):
        return _captured(pair)
    hint = ("record feature_grad with watch(kinds=(..., 'feature_grad')), or capture "
            "kinds 'emission' and 'absorption'")
    grad = pair.series("feature_grad", hint)
    geometry = pair.geometry()
    if weight is None:
        raise KeyError(f"layer {layer!r}: no weight series {pair.module_name + '.weight'!r} in "
                       f"{pair.where}; "
                       "record kind 'weight' too")
    ds = emission_absorption_from(weight, grad, geometry=geometry, layer=layer,
                                  input_shape=input_shape or pair.input_shape(),
                                  sample_block=sample_block)
    ds.attrs.update({"layer": layer, "source": "offline"})
    return ds


def meanfield(run: Any, layer: str) -> xr.Dataset:
    """Observed pre-activation variance of a layer against the mean-field prediction.

    ``observed`` is the variance of all of the layer's recorded pre-activations
    (``feature``) at a step, pooled over units (channels), samples and
    positions. ``predicted`` is n_in·Var[W]·E[x²] + Var[b], from the weight
    and bias recorded at that step and the recorded ``input`` (E[x²] over the
    input patches, padding zeros included, for a conv). ``ratio`` is
    observed / predicted: about 1 at initialisation on a wide layer; its
    drift during training is a measure of feature learning. See
    ``docs/meanfield.md`` for the derivation and its assumptions.

    Parameters
    ----------
    run : tensorstats.Run
        An open run (or a probe of one; weights then come from the run).
    layer : str
        The module's name (``"fc1"``). The run must hold its ``feature`` and
        ``input`` and the weight ``<module>.weight`` (and ``<module>.bias``
        where the layer has one).

    Returns
    -------
    xarray.Dataset
        Over ``step`` (steps where every series was recorded): ``observed``,
        ``predicted``, ``ratio``, and the pieces of the prediction.
    """
    pair = LayerSeries(run, layer)
    feature = pair.series("feature", "record kind 'feature'")
    inputs = pair.series("input", "record kind 'input' too: watch(..., kinds=(..., 'input'))")
    geometry = pair.geometry()
    weight = pair.parameter("weight")
    if weight is None:
        raise KeyError(f"layer {layer!r}: no weight series {pair.module_name + '.weight'!r} in "
                       f"{pair.where}; record kind 'weight' too")
    bias = pair.parameter("bias")
    if bias is None and (pair.module or {}).get("bias"):
        raise KeyError(f"layer {layer!r} has a bias but no weight series "
                       f"{pair.module_name + '.bias'!r} in {pair.where}")
    ds = meanfield_from(feature, inputs, weight, bias, geometry=geometry, layer=layer)
    ds.attrs.update({"layer": layer})
    return ds
