"""The mean-field check of a layer: observed pre-activation variance against n_in·Var[W]·E[x²].

:func:`meanfield_from` takes a layer's recorded ``feature``, ``input``,
``weight`` and ``bias`` series (DataArrays over ``step``) and its
:class:`~tensorstats.stats.geometry.Geometry`; ``ts.meanfield(run, layer)``
(:mod:`tensorstats.layers`) finds those in a run. The variances are exact
pooled moments (:func:`~tensorstats.stats.moments.moments`), E[x²] over the
input patches comes from :func:`~tensorstats.kernels.meanfield.patch_mean_square`,
and the prediction from :func:`~tensorstats.kernels.meanfield.meanfield_variance`.
The derivation and its assumptions are in ``docs/meanfield.md``.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import xarray as xr

from ..dims import CHANNEL, SAMPLE, STEP
from ..kernels.meanfield import meanfield_variance, patch_mean_square, variance_ratio
from .geometry import Geometry, check_layer_series
from .groups import is_dask
from .moments import moments

DESCRIPTIONS = {
    "observed": "variance of the pre-activations pooled over units, samples and positions "
                "(ddof=0)",
    "predicted": "mean-field variance n_in·Var[W]·E[x²] + Var[b]",
    "ratio": "observed / predicted",
    "weight_var": "variance of all weight elements (ddof=0)",
    "weight_mean": "mean of all weight elements (the prediction assumes 0)",
    "bias_var": "variance of the bias elements (ddof=0; 0 without a bias)",
    "input_mean_square": "E[x²] over every entry of the input patches, padding zeros included",
    "unit_variance": "mean over units (channels) of each unit's variance over samples and "
                     "positions (ddof=0)",
    "unit_ratio": "unit_variance / predicted",
}
"""What each result variable holds (stored as its ``description`` attribute)."""


def _others(da: xr.DataArray) -> tuple[Hashable, ...]:
    return tuple(d for d in da.dims if d not in (STEP, CHANNEL, SAMPLE))


def _check_sizes(feature: xr.DataArray, inputs: xr.DataArray, weight: xr.DataArray,
                 bias: xr.DataArray | None, geometry: Geometry, layer: str) -> None:
    """ValueError naming the layer, the series and the sizes where they disagree."""
    g = geometry

    def fail(what: str, got: object, expected: object) -> None:
        raise ValueError(f"layer {layer!r} ({g.kind}, in_channels={g.in_channels}, "
                         f"out_channels={g.out_channels}, kernel_size={g.kernel_size}, "
                         f"groups={g.groups}): {what} is {got}, expected {expected}")

    if feature.sizes[CHANNEL] != g.out_channels:
        fail("the feature's channel count", feature.sizes[CHANNEL], g.out_channels)
    if inputs.sizes[CHANNEL] != g.in_channels:
        fail("the input's channel count", inputs.sizes[CHANNEL], g.in_channels)
    shape = tuple(weight.sizes[d] for d in weight.dims if d != STEP)
    if shape != g.weight_shape:
        fail("the weight's shape (without step)", shape, g.weight_shape)
    if bias is not None:
        shape = tuple(bias.sizes[d] for d in bias.dims if d != STEP)
        if shape != (g.out_channels,):
            fail("the bias's shape (without step)", shape, (g.out_channels,))
    if (SAMPLE in feature.dims) != (SAMPLE in inputs.dims) or (
            SAMPLE in feature.dims and feature.sizes[SAMPLE] != inputs.sizes[SAMPLE]):
        fail("the feature's sample count", feature.sizes.get(SAMPLE),
             f"{inputs.sizes.get(SAMPLE)} (the input's)")
    in_size = tuple(inputs.sizes[d] for d in _others(inputs))
    out_size = tuple(feature.sizes[d] for d in _others(feature))
    if g.kind == "conv":
        if SAMPLE not in inputs.dims or len(in_size) != g.ndim:
            fail(f"the input's dims {list(inputs.dims)}", f"{len(in_size)} spatial",
                 f"(step, channel, sample) and {g.ndim} spatial")
        wanted = g.output_size(in_size)
        if min(wanted, default=1) < 1:
            fail(f"the output size for input size {in_size}", wanted, "at least 1")
    else:
        wanted = in_size
    if out_size != wanted:
        fail(f"the feature's size besides step, channel and sample (input: {in_size})",
             out_size, wanted)


def _finite(m: xr.Dataset, var: str) -> xr.DataArray:
    """``m[var]`` where its group had no NaN or Inf, else NaN (nothing dropped silently)."""
    return m[var].where((m["nan_count"] == 0) & (m["inf_count"] == 0))


def meanfield_from(feature: xr.DataArray, input: xr.DataArray,
                   weight: xr.DataArray, bias: xr.DataArray | None, *,
                   geometry: Geometry, layer: str) -> xr.Dataset:
    """Observed pre-activation variance of one layer against the mean-field prediction.

    Parameters
    ----------
    feature : xarray.DataArray
        The layer's pre-activations as recorded: dims (``step``, ``channel``,
        ``sample``, *spatial) for a conv, (``step``, ``channel``, ``sample``,
        *token axes) for a Linear layer; channel = output unit.
    input : xarray.DataArray
        The layer's input, laid out as ``feature`` (channel = input channel).
    weight : xarray.DataArray
        (``step``, ``channel``, ...) in torch layout: (C_out, C_in/groups, *kernel).
    bias : xarray.DataArray or None
        (``step``, ``channel``), or None for a layer without a bias.
    geometry : Geometry
        The layer's geometry (:func:`~tensorstats.stats.geometry.layer_geometry`).
    layer : str
        The layer's name, for error messages and ``attrs``.

    Returns
    -------
    xarray.Dataset
        Over ``step``, at the steps that all series share (the others are
        skipped), float64:

        - ``observed``: variance of all of the step's pre-activations, pooled
          over units, samples and positions (ddof=0);
        - ``predicted``: n_in·Var[W]·E[x²] + Var[b];
        - ``ratio``: observed / predicted;
        - ``weight_var``, ``weight_mean``: over all weight elements;
        - ``bias_var``: over the bias elements (0 without a bias);
        - ``input_mean_square``: E[x²] over all patch entries, padding
          zeros included (the plain mean square for a Linear layer);
        - ``unit_variance``: mean over units of each unit's variance over
          samples and positions, Wᵢᵀ·Cov(x)·Wᵢ on average, which is below
          ``observed`` when the inputs have a non-zero mean;
        - ``unit_ratio``: unit_variance / predicted.

        ``attrs``: ``n_in`` (``geometry.fan_in``) and ``layer``. A NaN or Inf
        in a series at a step gives NaN in the variables computed from it
        (the input kernel gives NaN or +Inf), never a silently smaller
        sample. Lazy when the inputs are: E[x²] is one dask task per step.

    Raises
    ------
    TypeError
        A series is not a real-valued DataArray.
    ValueError
        A series lacks ``step`` or ``channel``, was subsampled, or its sizes
        disagree with ``geometry`` (the message names the layer, the series
        and both sizes).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from tensorstats.stats.geometry import Geometry
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(0, 2, size=(1, 256, 512))          # (step, sample, in)
    >>> w = rng.normal(0, 1 / np.sqrt(512), size=(1, 64, 512))
    >>> h = np.einsum("sni,soi->son", x, w)                # (step, out, sample)
    >>> ds = meanfield_from(
    ...     xr.DataArray(h, dims=("step", "channel", "sample")),
    ...     xr.DataArray(x.transpose(0, 2, 1), dims=("step", "channel", "sample")),
    ...     xr.DataArray(w, dims=("step", "channel", "dim_1")), None,
    ...     geometry=Geometry("linear", 512, 64), layer="fc")
    >>> ds.attrs["n_in"], round(float(ds["ratio"][0]), 2), round(float(ds["unit_ratio"][0]), 2)
    (512, 1.03, 0.25)
    """
    series = {"feature": feature, "input": input, "weight": weight}
    if bias is not None:
        series["bias"] = bias
    series = {name: check_layer_series(da, name, layer, "the mean-field check")
              for name, da in series.items()}
    _check_sizes(series["feature"], series["input"], series["weight"], series.get("bias"),
                 geometry, layer)
    others = {d for da in series.values() for d in da.dims if d != STEP}
    aligned = dict(zip(series, xr.align(*series.values(), join="inner", exclude=others),
                       strict=True))
    feature, inputs, weight = aligned["feature"], aligned["input"], aligned["weight"]

    pooled = moments(feature, by=STEP)
    per_unit = moments(feature, by=(STEP, CHANNEL))
    weights = moments(weight, by=STEP)
    weight_var = _finite(weights, "var")
    if "bias" in aligned:
        bias_var = _finite(moments(aligned["bias"], by=STEP), "var")
    else:
        bias_var = xr.zeros_like(weight_var)

    core = [d for d in (CHANNEL, SAMPLE) if d in inputs.dims] + list(_others(inputs))
    x = inputs.drop_vars([c for c in inputs.coords if c != STEP]).transpose(STEP, *core)
    if is_dask(x):
        x = x.chunk({STEP: 1, **{d: -1 for d in core}})
    input_mean_square = xr.apply_ufunc(
        patch_mean_square, x, input_core_dims=[core],
        kwargs={"geometry": geometry, "core_ndim": len(core)},
        dask="parallelized", output_dtypes=[np.float64])

    def elementwise(func, *args, **kwargs) -> xr.DataArray:
        return xr.apply_ufunc(func, *args, kwargs=kwargs, dask="parallelized",
                              output_dtypes=[np.float64])

    observed = _finite(pooled, "var")
    unit_variance = _finite(per_unit, "var").mean(CHANNEL, skipna=False)
    predicted = elementwise(meanfield_variance, weight_var, input_mean_square, bias_var,
                            n_in=geometry.fan_in)
    ds = xr.Dataset({
        "observed": observed,
        "predicted": predicted,
        "ratio": elementwise(variance_ratio, observed, predicted),
        "weight_var": weight_var,
        "weight_mean": _finite(weights, "mean"),
        "bias_var": bias_var,
        "input_mean_square": input_mean_square,
        "unit_variance": unit_variance,
        "unit_ratio": elementwise(variance_ratio, unit_variance, predicted),
    })
    for name, text in DESCRIPTIONS.items():
        ds[name].attrs = {"description": text}
    ds.attrs.update({"n_in": geometry.fan_in, "layer": layer})
    return ds
