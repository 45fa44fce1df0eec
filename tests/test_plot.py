"""Tests of ``tensorstats.plot``: each figure is rendered, then its artists are checked.

Every expected number is computed here from the raw data (or from the analysis
results) with NumPy, never with the plotting code: line y data, histogram edges
and counts, heatmap cells, significance dots and box-plot medians.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.collections import PathCollection, PolyCollection, QuadMesh
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch
from numpy.testing import assert_allclose, assert_array_equal

import tensorstats as ts
from conftest import raise_if_dask_computes
from tensorstats.dims import CHANNEL, IN_CHANNEL, OUT_CHANNEL, RUN, SAMPLE, STEP, TEST
from tensorstats.plot import (
    distributions,
    emission_absorption,
    normality_heatmap,
    shift,
    trajectories,
)

STEPS = [0, 10, 20, 50, 100]


def render(fig: Figure) -> bytes:
    """The figure as PNG bytes (the Agg canvas), proving it draws."""
    assert isinstance(fig, Figure)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    png = buf.getvalue()
    assert png.startswith(b"\x89PNG")
    return png


def raw(steps=STEPS, channels=4, n=60, seed=0, scale=None) -> xr.DataArray:
    """Normal values (step, channel, dim_1), the spread growing with the step by default."""
    rng = np.random.default_rng(seed)
    scale = np.linspace(1.0, 2.0, len(steps)) if scale is None else np.asarray(scale)
    x = rng.normal(size=(len(steps), channels, n)) * scale[:, None, None]
    return xr.DataArray(x, dims=(STEP, CHANNEL, "dim_1"), coords={STEP: steps})


def main_axes(fig: Figure, ylabel: str):
    (ax,) = [a for a in fig.axes if a.get_ylabel() == ylabel]
    return ax


def stairs(ax) -> list[StepPatch]:
    return [p for p in ax.patches if isinstance(p, StepPatch)]


# --------------------------------------------------------------------------- trajectories


def test_trajectories_one_line_per_channel_equals_numpy_std():
    da = raw()
    fig = trajectories(ts.moments(da), "std", title="conv1")
    render(fig)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["0", "1", "2", "3"]
    for c, line in enumerate(lines):
        assert_array_equal(line.get_xdata(), STEPS)
        assert_allclose(line.get_ydata(), da.values[:, c, :].std(axis=-1), rtol=1e-12)
    assert len(ax.get_legend().get_texts()) == 4
    assert ax.get_ylabel() == "std" and ax.get_xlabel() == STEP
    assert fig.get_suptitle() == "conv1"


def test_trajectories_mapping_several_vars_and_loss_on_twin_axes():
    da1, da2 = raw(seed=1), raw(seed=2) * 3.0
    loss_steps = np.arange(0, 101, 5)
    loss_values = np.exp(-loss_steps / 50.0)
    loss_values[3] = np.nan  # a step without a loss record
    loss = xr.DataArray(loss_values, dims=STEP, coords={STEP: loss_steps})
    results = {"conv1": ts.moments(da1, by=STEP), "conv2": ts.moments(da2, by=STEP)}
    fig = trajectories(results, ["mean", "std"], loss=loss)
    render(fig)
    assert len(fig.axes) == 4  # two stacked panels, each with its twin for the loss
    for var, func in (("mean", np.mean), ("std", np.std)):
        ax = main_axes(fig, var)
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["conv1", "conv2"]
        for line, da in zip(lines, (da1, da2), strict=True):
            assert_allclose(line.get_ydata(), func(da.values.reshape(len(STEPS), -1), axis=1),
                            rtol=1e-10, atol=1e-12)
    twins = [a for a in fig.axes if a.get_ylabel() == "loss"]
    assert len(twins) == 2
    keep = ~np.isnan(loss_values)
    for twin in twins:
        (line,) = twin.get_lines()
        assert line.get_label() == "loss"
        assert_array_equal(line.get_xdata(), loss_steps[keep])
        assert_array_equal(line.get_ydata(), loss_values[keep])
    top, bottom = main_axes(fig, "mean"), main_axes(fig, "std")
    assert top.get_shared_x_axes().joined(top, bottom)
    for twin in twins:  # the legend sits on the twin, above its loss line
        assert [t.get_text() for t in twin.get_legend().get_texts()] == ["conv1", "conv2",
                                                                         "loss"]


def test_trajectories_many_channels_get_a_colorbar_not_a_legend():
    da = raw(channels=16, n=20)
    fig = trajectories(ts.moments(da), "mean")
    render(fig)
    ax = main_axes(fig, "mean")
    assert len(ax.get_lines()) == 16
    assert ax.get_legend() is None
    assert len(fig.axes) == 2  # the plot and its colorbar
    colorbar = next(a for a in fig.axes if a is not ax)
    assert CHANNEL in (colorbar.get_ylabel(), colorbar.get_xlabel())
    colours = {tuple(line.get_color()) for line in ax.get_lines()}
    assert len(colours) == 16


def test_trajectories_dataarray_logy_and_hue():
    da = raw()
    std = ts.moments(da)["std"]
    fig = trajectories(std, logy=True)
    render(fig)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "std"
    assert len(ax.get_lines()) == 4
    by_run = xr.concat([da, 2 * da], dim=pd.Index(["a", "b"], name=RUN))
    m = ts.moments(by_run, by=(RUN, STEP))
    loss = xr.DataArray([[1.0, 0.8, np.nan, 0.5, 0.4], [2.0, 1.0, 0.9, 0.7, 0.6]],
                        dims=(RUN, STEP), coords={RUN: ["a", "b"], STEP: STEPS})
    fig = trajectories(m, "std", hue=RUN, loss=loss)
    render(fig)
    ax, twin = main_axes(fig, "std"), main_axes(fig, "loss")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert_allclose(lines[1].get_ydata(), 2 * da.values.reshape(len(STEPS), -1).std(axis=1))
    assert [line.get_label() for line in twin.get_lines()] == ["loss (a)", "loss (b)"]
    assert_array_equal(twin.get_lines()[0].get_ydata(), [1.0, 0.8, 0.5, 0.4])
    assert_array_equal(twin.get_lines()[1].get_ydata(), loss.sel({RUN: "b"}).values)
    assert len(twin.get_legend().get_texts()) == 4


def test_trajectories_two_remaining_dims_ask_for_hue_or_a_reduction():
    da = raw()
    by_run = xr.concat([da, da], dim=pd.Index(["a", "b"], name=RUN))
    m = ts.moments(by_run)  # run, step, channel
    with pytest.raises(ValueError, match="hue") as err:
        trajectories(m)
    assert "'run'" in str(err.value) and "'channel'" in str(err.value)
    with pytest.raises(ValueError, match="channel"):
        trajectories(m, hue=RUN)
    with pytest.raises(ValueError, match="hue='nope' is not a dim"):
        trajectories(ts.moments(da), hue="nope")
    with pytest.raises(ValueError, match="reduce"):  # a mapping wants one line per layer
        trajectories({"conv1": ts.moments(da)})


def test_trajectories_bad_arguments_name_the_thing():
    m = ts.moments(raw())
    with pytest.raises(ValueError, match=r"trajectories: variable 'foo' not in the results; "
                                         r"variables: \['count', "):
        trajectories(m, "foo")
    with pytest.raises(ValueError, match="variable 'foo' not in the results of layer 'fc1'"):
        trajectories({"fc1": m}, ["std", "foo"])
    with pytest.raises(TypeError, match="results must be"):
        trajectories(np.zeros(3))
    with pytest.raises(TypeError, match=r"results\['fc1'\] must be"):
        trajectories({"fc1": [1, 2]})
    with pytest.raises(TypeError, match="loss must be an xarray.DataArray"):
        trajectories(m, loss=[1.0, 2.0])
    with pytest.raises(ValueError, match="loss must have dims"):
        trajectories(m, loss=xr.DataArray(np.zeros(3), dims="time"))
    with pytest.raises(TypeError, match="logy"):
        trajectories(m, logy="yes")
    with pytest.raises(ValueError, match="no 'step' dim"):
        trajectories(ts.moments(raw(), by=CHANNEL))


def test_trajectories_lazy_input_computes_once():
    da = raw().chunk({STEP: 2})
    loss = xr.DataArray(np.linspace(2.0, 1.0, len(STEPS)), dims=STEP,
                        coords={STEP: STEPS}).chunk()
    m = ts.moments(da)
    with raise_if_dask_computes(max_computes=1):
        fig = trajectories(m, ["mean", "std"], loss=loss)
    render(fig)
    ax = main_axes(fig, "std")
    assert_allclose(ax.get_lines()[2].get_ydata(), da.values[:, 2, :].std(axis=-1), rtol=1e-12)


# --------------------------------------------------------------------------- distributions


def with_bad_values() -> xr.DataArray:
    """Raw values: 3 NaN at step 0, 1 Inf at the last step, the widest range in between."""
    da = raw(scale=[1.0, 1.5, 10.0, 1.5, 3.0])
    x = da.values.copy()
    x[0, 0, :3] = np.nan
    x[-1, 1, 5] = np.inf
    return da.copy(data=x)


def finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def test_distributions_share_edges_over_steps_and_count_like_numpy():
    da = with_bad_values()
    fig = distributions(da, bins=25)
    render(fig)
    ax = fig.axes[0]
    patches = stairs(ax)
    assert len(patches) == 2
    first, last = finite(da.values[0]), finite(da.values[-1])
    both = np.concatenate([first, last])  # the drawn values only, not the middle steps
    expected = np.linspace(both.min(), both.max(), 26)
    for patch, values in zip(patches, (first, last), strict=True):
        counts, edges, _ = patch.get_data()
        assert_array_equal(edges, expected)
        assert_array_equal(counts, np.histogram(values, expected)[0])
    assert_array_equal(ax.tensorstats_bins, expected)
    assert [p.get_label() for p in patches] == ["step 0 (3 NaN)", "step 100 (1 Inf)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["step 0 (3 NaN)",
                                                                   "step 100 (1 Inf)"]
    assert ax.get_yscale() == "linear"


def test_distributions_runs_share_edges_too():
    da = raw(seed=3)
    runs = xr.concat([da, 4.0 * da + 1.0], dim=pd.Index(["kaiming", "xavier"], name=RUN))
    fig = distributions(runs, steps=("first", 20), bins=30)
    render(fig)
    patches = stairs(fig.axes[0])
    assert [p.get_label() for p in patches] == ["kaiming / step 0", "kaiming / step 20",
                                                "xavier / step 0", "xavier / step 20"]
    samples = [runs.sel({RUN: r, STEP: s}).values.ravel()
               for r in ("kaiming", "xavier") for s in (0, 20)]
    pooled = np.concatenate(samples)
    expected = np.linspace(pooled.min(), pooled.max(), 31)
    for patch, values in zip(patches, samples, strict=True):
        counts, edges, _ = patch.get_data()
        assert_array_equal(edges, expected)
        assert_array_equal(counts, np.histogram(values, expected)[0])


def test_distributions_one_panel_per_layer_each_with_its_own_edges():
    conv1, fc1 = raw(seed=4), raw(seed=5, channels=2) * 100.0
    fig = distributions({"conv1.weight": conv1, "fc1.weight": fc1}, steps=["last"], bins=10,
                        log=True)
    render(fig)
    assert len(fig.axes) == 2
    for ax, da, name in zip(fig.axes, (conv1, fc1), ("conv1.weight", "fc1.weight"),
                            strict=True):
        assert ax.get_title() == name
        assert ax.get_yscale() == "log"
        values = da.values[-1].ravel()
        expected = np.linspace(values.min(), values.max(), 11)
        (patch,) = stairs(ax)
        assert_array_equal(patch.get_data().edges, expected)
        assert_array_equal(ax.tensorstats_bins, expected)


def test_distributions_fixed_edges_range_and_density():
    da = with_bad_values()
    fig = distributions(da, bins=8, range=(-2.0, 2.0), density=True)
    render(fig)
    ax = fig.axes[0]
    expected = np.linspace(-2.0, 2.0, 9)
    last = finite(da.values[-1])
    outside = int(((last < -2.0) | (last > 2.0)).sum())
    assert outside > 0
    patch = stairs(ax)[1]
    counts, edges, _ = patch.get_data()
    assert_array_equal(edges, expected)
    assert_allclose(counts, np.histogram(last, expected, density=True)[0])
    assert_allclose((counts * np.diff(edges)).sum(), 1.0)
    assert patch.get_label() == f"step 100 (1 Inf, {outside} outside the bins)"
    assert ax.get_ylabel() == "density"
    edges = np.array([-5.0, -1.0, 0.0, 0.5, 5.0])
    fig = distributions(da, bins=edges, steps=20)
    (patch,) = stairs(fig.axes[0])
    assert_array_equal(patch.get_data().edges, edges)
    assert_array_equal(patch.get_data().values, np.histogram(da.values[2].ravel(), edges)[0])


def test_distributions_first_and_last_of_one_step_draw_once():
    fig = distributions(raw().isel({STEP: [2]}))
    assert [p.get_label() for p in stairs(fig.axes[0])] == ["step 20"]


def test_distributions_bad_arguments_name_the_thing():
    da = raw()
    with pytest.raises(ValueError, match="steps must be 'first', 'last' or a step label"):
        distributions(da, steps=("first", "middle"))
    with pytest.raises(ValueError, match=r"step 999 is not a step of data \(steps 0..100"):
        distributions(da, steps=(999,))
    with pytest.raises(ValueError, match=r"step 50 is not a step of data\['b'\]"):
        distributions({"a": da, "b": da.isel({STEP: [0, 1]})}, steps=(50,))
    with pytest.raises(TypeError, match="steps must be a non-empty sequence"):
        distributions(da, steps=())
    with pytest.raises(ValueError, match="bins must be a positive int"):
        distributions(da, bins=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        distributions(da, bins=[0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="range must be"):
        distributions(da, range=(1.0, -1.0))
    with pytest.raises(TypeError, match="data must be a DataArray"):
        distributions(da.values)
    with pytest.raises(ValueError, match=r"data\['fc1'\] has no 'step' dim"):
        distributions({"fc1": da.isel({STEP: 0})})


def test_distributions_lazy_input_computes_once():
    da = with_bad_values()
    with raise_if_dask_computes(max_computes=1):
        fig = distributions({"a": da.chunk({STEP: 1}), "b": (2 * da).chunk({STEP: 1})}, bins=12)
    render(fig)
    last = finite(2 * da.values[-1])
    counts, edges, _ = stairs(fig.axes[1])[1].get_data()
    assert_array_equal(counts, np.histogram(last, edges)[0])


# --------------------------------------------------------------------------- normality_heatmap


@pytest.fixture(scope="module")
def normality_results():
    """conv1 (Gaussian, steps 0..100) and conv2 (lognormal, steps 10, 50, 200)."""
    gaussian = raw(channels=3, n=200, seed=6)
    skewed = np.exp(raw(steps=[10, 50, 200], channels=3, n=200, seed=7))
    return {"conv1": ts.normality(gaussian), "conv2": ts.normality(skewed)}


def expected_cells(results, var, reduce, *, test=None, fdr=0.05):
    """(values, significant) over the union of steps, computed with NumPy per layer."""
    steps = sorted(set().union(*(r[STEP].values.tolist() for r in results.values())))
    values = np.full((len(results), len(steps)), np.nan)
    significant = np.zeros((len(results), len(steps)), bool)
    for i, res in enumerate(results.values()):
        da = res[var]
        if TEST in da.dims:
            da = da.sel({TEST: test})
        fdr_values = res["pvalue_fdr"].sel({TEST: test or "shapiro"}).transpose(STEP, ...)
        for step, row, p in zip(res[STEP].values, da.transpose(STEP, ...).values,
                                fdr_values.values, strict=True):
            j = steps.index(step)
            values[i, j] = reduce(row)
            significant[i, j] = bool((p < fdr).any())
    return steps, values, significant


def heatmap_parts(fig):
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    return ax, mesh, dots


def test_heatmap_cells_equal_the_reduced_variable_and_dots_the_fdr_hits(normality_results):
    fig = normality_heatmap(normality_results, "ks_distance")
    render(fig)
    assert len(fig.axes) == 2  # heatmap and colorbar
    ax, mesh, (dots,) = heatmap_parts(fig)
    steps, values, significant = expected_cells(normality_results, "ks_distance", np.median)
    assert steps == [0, 10, 20, 50, 100, 200]
    drawn = np.ma.filled(mesh.get_array().astype(float), np.nan)
    assert_allclose(drawn, values, rtol=1e-12)
    assert np.isnan(drawn[0, -1]) and np.isnan(drawn[1, 0])  # steps a layer lacks are blank
    assert [t.get_text() for t in ax.get_yticklabels()] == ["conv1", "conv2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(s) for s in steps]
    rows, cols = np.nonzero(significant)
    assert significant[1].sum() == 3 and significant.sum() < 6  # conv2 rejects, conv1 mostly not
    assert_array_equal(dots.get_offsets(), np.column_stack([cols, rows]))
    assert fig.axes[1].get_ylabel() == "ks_distance"
    assert ax.get_title() == ("median over channel; "
                              "dots: pvalue_fdr (shapiro) < 0.05 in any channel")


def test_heatmap_pvalues_on_a_log_scale_for_the_chosen_test(normality_results):
    fig = normality_heatmap(normality_results, "pvalue", test="anderson", reduce="min")
    render(fig)
    _, mesh, (dots,) = heatmap_parts(fig)
    assert isinstance(mesh.norm, LogNorm)
    _, values, significant = expected_cells(normality_results, "pvalue", np.min,
                                            test="anderson")
    assert (values == 0).any()  # Anderson-Darling p-values of a lognormal underflow to 0
    floor = min(values[values > 0].min(), 1e-16)
    assert mesh.norm.vmin == floor
    values = np.where(values == 0, floor, values)  # zeros are drawn at the floor
    assert_allclose(np.ma.filled(mesh.get_array().astype(float), np.nan), values, rtol=1e-12)
    rows, cols = np.nonzero(significant)
    assert_array_equal(dots.get_offsets(), np.column_stack([cols, rows]))
    assert fig.axes[1].get_ylabel() == "pvalue [anderson]"
    assert fig.axes[0].get_title() == ("min over channel; 0 drawn at 1e-16; "
                                       "dots: pvalue_fdr (anderson) < 0.05 in any channel")


def test_heatmap_from_one_dataset_with_a_layer_dim_absmax_and_no_dots(normality_results):
    conv1 = normality_results["conv1"]
    stacked = xr.concat([conv1, -conv1], dim=pd.Index(["a", "b"], name="layer"))
    fig = normality_heatmap(stacked, "skew", reduce="absmax", fdr=None)
    render(fig)
    ax, mesh, dots = heatmap_parts(fig)
    assert dots == []
    expected = np.abs(conv1["skew"].transpose(STEP, ...).values).max(axis=1)
    assert_allclose(mesh.get_array(), np.stack([expected, expected]), rtol=1e-12)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]


def test_heatmap_median_skips_nan_channels(normality_results):
    conv1 = normality_results["conv1"].copy(deep=True)
    conv1["kurtosis"][{STEP: 1, CHANNEL: 0}] = np.nan
    fig = normality_heatmap({"conv1": conv1}, "kurtosis", reduce="mean")
    drawn = heatmap_parts(fig)[1].get_array()
    assert_allclose(drawn[0], np.nanmean(conv1["kurtosis"].transpose(STEP, ...).values, axis=1))


def test_heatmap_thins_step_labels_when_there_are_many():
    steps = list(range(0, 300, 10))
    res = ts.normality(raw(steps=steps, channels=2, n=30), tests=("shapiro",))
    fig = normality_heatmap({"fc1": res}, "skew")
    render(fig)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert 2 < len(labels) <= 12 and labels[0] == "0" and labels[-1] == "290"
    assert [steps[round(x)] for x in ax.get_xticks()] == [int(t) for t in labels]
    assert heatmap_parts(fig)[1].get_array().shape == (1, 30)


def test_heatmap_bad_arguments_name_the_thing(normality_results):
    with pytest.raises(ValueError, match=r"test 'lilliefors' not in the results of layer "
                                         r"'conv1'; tests: \['shapiro', 'anderson'\]"):
        normality_heatmap(normality_results, "pvalue", test="lilliefors")
    with pytest.raises(ValueError, match="reduce must be one of"):
        normality_heatmap(normality_results, reduce="mode")
    with pytest.raises(ValueError, match="variable 'effect' not in the results of layer"):
        normality_heatmap(normality_results, "effect")
    with pytest.raises(ValueError, match="fdr must be"):
        normality_heatmap(normality_results, fdr=2.0)
    no_fdr = {k: v.drop_vars("pvalue_fdr") for k, v in normality_results.items()}
    with pytest.raises(ValueError, match="fdr=None"):
        normality_heatmap(no_fdr)
    render(normality_heatmap(no_fdr, fdr=None))
    with pytest.raises(ValueError, match="'layer' dim"):
        normality_heatmap(normality_results["conv1"])
    with pytest.raises(TypeError, match="results must be"):
        normality_heatmap([normality_results["conv1"]])


def test_heatmap_lazy_input_computes_once():
    results = {"a": ts.normality(raw(channels=3, n=100).chunk({STEP: 2})),
               "b": ts.normality(np.exp(raw(channels=3, n=100, seed=9)).chunk({STEP: 3}))}
    with raise_if_dask_computes(max_computes=1):
        fig = normality_heatmap(results, "ks_distance")
    render(fig)
    loaded = {k: v.compute() for k, v in results.items()}
    _, values, _ = expected_cells(loaded, "ks_distance", np.median)
    assert_allclose(heatmap_parts(fig)[1].get_array(), values, rtol=1e-12)


# --------------------------------------------------------------------------- shift


def test_shift_median_line_and_interquartile_band():
    s = ts.shift(raw(channels=6), metrics=("wasserstein", "ks"))
    fig = shift(s)
    render(fig)
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    w = s["wasserstein"].transpose(STEP, CHANNEL).values
    assert_array_equal(line.get_xdata(), STEPS)
    assert_allclose(line.get_ydata(), np.median(w, axis=1), rtol=1e-12)
    assert line.get_ydata()[0] == 0.0  # the initial step is the reference
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    for q in (25, 75):
        for value in np.percentile(w, q, axis=1):
            assert np.isclose(ys, value).any()
    assert ax.get_ylabel() == "wasserstein from initial"


def test_shift_one_line_per_layer_and_run():
    da = raw(channels=3)
    by_run = xr.concat([da, 2.0 * da], dim=pd.Index(["r1", "r2"], name=RUN))
    results = {"conv1": ts.shift(by_run, metrics=("ks",)), "fc1": ts.shift(da, metrics=("ks",))}
    fig = shift(results, "ks", reduce="max", band="range")
    render(fig)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["conv1 / r1", "conv1 / r2", "fc1"]
    ks = results["conv1"]["ks"].transpose(RUN, STEP, CHANNEL).values
    assert_allclose(lines[1].get_ydata(), ks[1].max(axis=1))
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 3
    assert len(ax.get_legend().get_texts()) == 3
    fig = shift(results["fc1"], "ks", band=None)
    assert fig.axes[0].collections == [] or not any(
        isinstance(c, PolyCollection) for c in fig.axes[0].collections)
    assert fig.axes[0].get_lines()[0].get_label() == "ks"


def test_shift_bad_arguments_and_lazy_input():
    s = ts.shift(raw().chunk({STEP: 2}), metrics=("wasserstein",))
    with pytest.raises(ValueError, match=r"shift: variable 'energy' not in the results; "
                                         r"variables: \["):
        shift(s, "energy")
    with pytest.raises(ValueError, match="band must be one of"):
        shift(s, band="sd")
    with pytest.raises(ValueError, match="no 'step' dim"):
        shift(ts.shift(raw(), reference=raw(), by=CHANNEL, metrics=("wasserstein",)))
    with raise_if_dask_computes(max_computes=1):
        fig = shift({"conv1": s, "conv2": s * 2})
    render(fig)
    expected = np.median(s["wasserstein"].values, axis=1) * 2
    assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), expected, rtol=1e-12)


# --------------------------------------------------------------------------- emission_absorption


def emission_dataset(steps=(0, 10, 20), samples=25, outs=20, ins=8, seed=10) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    emission = rng.gamma(2.0, size=(len(steps), samples, outs)) * np.arange(1, outs + 1)
    absorption = rng.gamma(3.0, size=(len(steps), samples, ins))
    emission[-1, :4, 2] = np.nan  # 4 NaN in channel 2 at the last step
    return xr.Dataset({"emission": ((STEP, SAMPLE, OUT_CHANNEL), emission),
                       "absorption": ((STEP, SAMPLE, IN_CHANNEL), absorption)},
                      coords={STEP: list(steps)})


def box_medians(ax) -> np.ndarray:
    """Each box's median, left to right: the widest horizontal two-point lines.

    A box plot draws, per box, two vertical whiskers, two caps (half the box
    wide), the box outline (five points) and the median (as wide as the box).
    """
    flat = [line for line in ax.get_lines() if len(line.get_xdata()) == 2
            and line.get_ydata()[0] == line.get_ydata()[1]]
    spans = np.array([np.ptp(line.get_xdata()) for line in flat])
    medians = [line for line, span in zip(flat, spans, strict=True)
               if np.isclose(span, spans.max())]
    medians.sort(key=lambda line: np.mean(line.get_xdata()))
    return np.array([line.get_ydata()[0] for line in medians])


def test_emission_absorption_boxes_per_channel_with_numpy_medians():
    ds = emission_dataset()
    fig = emission_absorption(ds, k=15)
    render(fig)
    assert len(fig.axes) == 2
    em, ab = fig.axes
    assert len(em.get_xticks()) == 15 and len(ab.get_xticks()) == 8  # min(k, channels)
    emission = ds["emission"].values[-1]
    expected = [np.median(finite(emission[:, c])) for c in range(15)]
    assert_allclose(box_medians(em), expected, rtol=1e-12)
    assert_allclose(box_medians(ab), np.median(ds["absorption"].values[-1], axis=0), rtol=1e-12)
    assert em.get_title() == "emission (step 20); 4 NaN left out"
    assert ab.get_title() == "absorption (step 20)"
    assert em.get_xlabel() == "output channel c₁" and ab.get_xlabel() == "input channel c₂"
    assert em.get_ylabel() == ab.get_ylabel() == "‖local gradient‖ summed"
    assert [t.get_text() for t in em.get_xticklabels()] == [str(c) for c in range(15)]


def test_emission_absorption_pooled_steps_first_step_and_empty_channel():
    ds = emission_dataset()
    fig = emission_absorption(ds, k=4, step=None, logy=True)
    render(fig)
    em = fig.axes[0]
    pooled = ds["emission"].values.reshape(-1, ds.sizes[OUT_CHANNEL])
    assert_allclose(box_medians(em), [np.median(finite(pooled[:, c])) for c in range(4)])
    assert em.get_title() == "emission (all steps); 4 NaN left out"
    assert em.get_yscale() == "log"
    fig = emission_absorption(ds, k=3, step="first")
    assert_allclose(box_medians(fig.axes[1]),
                    np.median(ds["absorption"].values[0, :, :3], axis=0))
    all_nan = ds.copy(deep=True)
    all_nan["absorption"][{IN_CHANNEL: 1}] = np.nan
    fig = emission_absorption(all_nan, step=10)
    render(fig)
    assert fig.axes[1].get_title() == "absorption (step 10); 25 NaN left out"


def test_emission_absorption_bad_arguments_and_lazy_input():
    ds = emission_dataset()
    with pytest.raises(ValueError, match="variable 'absorption' not in the results"):
        emission_absorption(ds[["emission"]])
    with pytest.raises(ValueError, match="k must be a positive int"):
        emission_absorption(ds, k=0)
    with pytest.raises(ValueError, match="step 7 is not a step"):
        emission_absorption(ds, step=7)
    with pytest.raises(ValueError, match="must have dims"):
        emission_absorption(ds.rename({SAMPLE: "batch"}))
    with pytest.raises(TypeError, match="results must be the Dataset"):
        emission_absorption(ds["emission"])
    lazy = ds.chunk({STEP: 1, SAMPLE: 10})
    with raise_if_dask_computes(max_computes=1):
        fig = emission_absorption(lazy, k=5)
    render(fig)
    assert_allclose(box_medians(fig.axes[1]), np.median(ds["absorption"].values[-1, :, :5],
                                                        axis=0))


# --------------------------------------------------------------------------- imports


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


def test_import_tensorstats_does_not_import_matplotlib_and_plot_needs_it():
    done = run_python("""
        import sys
        import tensorstats
        assert "matplotlib" not in sys.modules, "import tensorstats imported matplotlib"
        sys.modules["matplotlib"] = None  # as if the plot extra were not installed
        try:
            import tensorstats.plot
        except ImportError as err:
            print(err)
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("tensorstats.plot needs matplotlib: "
                                   "pip install 'tensorstats[plot]'")


def test_figures_never_touch_pyplot_state():
    done = run_python("""
        import io, sys
        import numpy as np, xarray as xr, tensorstats as ts
        from tensorstats.plot import (distributions, emission_absorption, normality_heatmap,
                                      shift, trajectories)
        da = xr.DataArray(np.random.default_rng(0).normal(size=(3, 2, 50)),
                          dims=("step", "channel", "dim_1"))
        figs = [trajectories(ts.moments(da)), distributions(da),
                normality_heatmap({"a": ts.normality(da)}), shift(ts.shift(da))]
        for fig in figs:
            fig.savefig(io.BytesIO(), format="png")
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        ds = xr.Dataset({"emission": (("step", "sample", "out_channel"), np.ones((2, 3, 4))),
                         "absorption": (("step", "sample", "in_channel"), np.ones((2, 3, 4)))})
        emission_absorption(ds).savefig(io.BytesIO(), format="png")
        # Axes.boxplot reads every rcParam, which makes matplotlib import pyplot to
        # resolve the backend; no figure is ever registered with it
        import matplotlib.pyplot as plt
        assert plt.get_fignums() == []
        """)
    assert done.returncode == 0, done.stderr
